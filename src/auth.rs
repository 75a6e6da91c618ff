//! Who is asking, and with which rights: the token (or local dev mode) of a room request.

use edgeroom_auth::{is_loopback_host, verify, AuthMode, TenantSecrets};
use edgeroom_protocol::RequestUrl;
use edgeroom_protocol::{ErrorCode, Rights};
use worker::{Env, Request};

/// The authenticated caller of one room request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token's subject; `None` for anonymous dev-mode access.
    pub user: Option<String>,
    /// Rights in the addressed room.
    pub rights: Rights,
    /// Key for the per-token rate limit.
    pub rate_key: Option<String>,
}

/// A refused request: the error code and message.
pub type Refusal = (ErrorCode, String);

/// Authenticates a request for room or counter `name` of `tenant`: a token from
/// `Authorization: Bearer` or `?token=`, verified with the tenant's secret; without a token only
/// local dev mode lets it in.
pub fn authenticate(
    req: &Request,
    url: &RequestUrl,
    env: &Env,
    tenant: &str,
    name: &str,
) -> Result<Principal, Refusal> {
    let Some(token) = token(req, url) else {
        return match AuthMode::from_var(string_binding(env, "AUTH_MODE").as_deref()) {
            AuthMode::Dev if is_loopback_host(url.host_str().unwrap_or_default()) => {
                Ok(Principal { user: None, rights: Rights::ALL, rate_key: None })
            }
            AuthMode::Dev => {
                warn_dev_mode_off_loopback();
                Err(unauthorized(edgeroom_auth::AuthError::Missing))
            }
            AuthMode::Token => Err(unauthorized(edgeroom_auth::AuthError::Missing)),
        };
    };
    let secrets = match string_binding(env, "TENANT_SECRETS") {
        Some(json) => TenantSecrets::from_json(&json).map_err(|e| (ErrorCode::Internal, e))?,
        None => TenantSecrets::default(),
    };
    let now_secs = worker::Date::now().as_millis() / 1000;
    let claims = verify(&token, &secrets, now_secs).map_err(unauthorized)?;
    if claims.tenant != tenant {
        return Err((ErrorCode::Forbidden, format!("the token is for tenant {:?}", claims.tenant)));
    }
    let rights = claims.rights_in(tenant, name);
    let rate_key = Some(format!("{}:{}", claims.tenant, claims.sub));
    Ok(Principal { user: Some(claims.sub), rights, rate_key })
}

/// A secret (production) or var (local `.dev.vars`, `--var`) by name.
pub fn string_binding(env: &Env, name: &str) -> Option<String> {
    env.secret(name).map(|s| s.to_string()).or_else(|_| env.var(name).map(|v| v.to_string())).ok()
}

fn token(req: &Request, url: &RequestUrl) -> Option<String> {
    let header = req.headers().get("Authorization").ok().flatten();
    if let Some(token) = header.as_deref().and_then(|h| h.strip_prefix("Bearer ")) {
        return Some(token.trim().to_owned());
    }
    url.query_param("token").map(|value| value.into_owned())
}

fn unauthorized(error: edgeroom_auth::AuthError) -> Refusal {
    (ErrorCode::Unauthorized, error.to_string())
}

/// `AUTH_MODE=dev` reached a non-loopback host: a deploy carries the local setting. Say so once
/// per isolate; tokens stay required.
fn warn_dev_mode_off_loopback() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!("AUTH_MODE=dev is ignored: it is honored only for requests to a loopback host");
    });
}
