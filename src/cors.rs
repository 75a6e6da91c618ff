//! CORS for browser clients, from the `CORS_ALLOWED_ORIGINS` var: `*`, a comma-separated list of
//! origins, or empty (no cross-origin access).

use worker::{Env, Headers, Response, Result};

/// Adds the CORS headers to `response` when the request's `origin` is allowed.
pub fn apply(env: &Env, origin: Option<&str>, response: Response) -> Result<Response> {
    let Some(origin) = origin else { return Ok(response) };
    // An upgrade's 101 carries the socket; browsers do not apply CORS to WebSockets.
    if response.status_code() == 101 {
        return Ok(response);
    }
    let allowed = env.var("CORS_ALLOWED_ORIGINS").map(|v| v.to_string()).unwrap_or_default();
    let allow = allowed.split(',').map(str::trim).any(|entry| entry == "*" || entry == origin);
    if !allow {
        return Ok(response);
    }
    // Headers of a proxied response are immutable: copy them into new ones.
    let headers = Headers::new();
    for (name, value) in response.headers().entries() {
        headers.set(&name, &value)?;
    }
    headers.set("Access-Control-Allow-Origin", origin)?;
    headers.append("Vary", "Origin")?;
    headers.set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")?;
    headers
        .set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-None-Match, Idempotency-Key")?;
    headers.set(
        "Access-Control-Expose-Headers",
        "ETag, X-Edgeroom-Seq, X-Edgeroom-Epoch, X-Edgeroom-Age-Ms, X-Edgeroom-Source",
    )?;
    headers.set("Access-Control-Max-Age", "600")?;
    Ok(response.with_headers(headers))
}
