//! Routing: parses the path, answers preflights and wrong methods, applies the per-IP and
//! per-token rate limits, checks rights, and hands each route to its handler.

use edgeroom_durable::object::{json_error, RoomOp};
use edgeroom_protocol::{ErrorCode, Method, Right, Route, RouteError};
use worker::{Env, Request, Response, Result};

use crate::auth::{authenticate, Principal};
use crate::{admin, counters, rest};

/// Rate limiter binding keyed by client IP (see `[[ratelimits]]` in `wrangler.toml`).
const IP_LIMITER: &str = "IP_RATE_LIMITER";
/// Rate limiter binding keyed by token subject.
const TOKEN_LIMITER: &str = "TOKEN_RATE_LIMITER";

/// Serves one request. Every refusal is a JSON error response.
pub async fn handle(req: Request, env: &Env) -> Result<Response> {
    let url = req.url()?;
    let route = match Route::parse(url.path()) {
        Ok(route) => route,
        Err(error @ RouteError::NotFound(_)) => return json_error(ErrorCode::NotFound, &error.to_string()),
        Err(RouteError::BadName(error)) => return json_error(ErrorCode::BadName, &error.to_string()),
    };
    // The raw method: the worker crate maps methods it does not know to GET.
    let method = req.inner().method();
    if method == "OPTIONS" {
        return Ok(Response::empty()?.with_status(204));
    }
    let allowed = route.method().as_str();
    if method != allowed {
        let mut response =
            json_error(ErrorCode::MethodNotAllowed, &format!("{method} is not allowed here; use {allowed}"))?;
        response.headers_mut().set("Allow", allowed)?;
        return Ok(response);
    }
    if let Some((name, _)) =
        url.query_pairs().find(|(name, _)| !route.query_params().contains(&name.as_ref()))
    {
        let known = route.query_params().join(", ");
        let message = format!("unknown query parameter {name:?}; this route takes: {known}");
        return json_error(ErrorCode::BadRequest, &message);
    }
    if route == Route::Health {
        return Response::ok("ok");
    }
    let ip = req.headers().get("CF-Connecting-IP")?.unwrap_or_else(|| "unknown".to_owned());
    if over_limit(env, IP_LIMITER, &format!("ip:{ip}")).await {
        return json_error(ErrorCode::RateLimited, "too many requests from this address; retry shortly");
    }
    let address = match &route {
        Route::Health => return Response::ok("ok"),
        Route::AdminToken(_)
        | Route::AdminRoom(_)
        | Route::AdminRooms(_)
        | Route::AdminSnapshots(_)
        | Route::AdminRestore(_)
        | Route::AdminFaults(_) => return admin::handle(route, req, env).await,
        Route::RoomSocket(address)
        | Route::RoomState(address)
        | Route::RoomHistory(address)
        | Route::RoomMessages(address)
        | Route::CounterState(address)
        | Route::CounterSocket(address)
        | Route::CounterAdd(address)
        | Route::CounterSet(address)
        | Route::CounterReset(address)
        | Route::CounterShards(address) => address.clone(),
    };
    let principal = match authenticate(&req, &url, env, &address) {
        Ok(principal) => principal,
        Err((code, message)) => return json_error(code, &message),
    };
    if let Some(key) = &principal.rate_key {
        if over_limit(env, TOKEN_LIMITER, key).await {
            return json_error(ErrorCode::RateLimited, "too many requests for this token; retry shortly");
        }
    }
    // Reads need `read`, every POST (publish, counter writes) needs `write`.
    let needed = if route.method() == Method::Post { Right::Write } else { Right::Read };
    if !principal.rights.has(needed) {
        return forbidden(&principal, needed);
    }
    let op = match route {
        Route::RoomSocket(_) => RoomOp::Socket,
        Route::RoomState(_) => RoomOp::State,
        Route::RoomHistory(_) => RoomOp::History,
        Route::RoomMessages(_) => RoomOp::Publish,
        counter_route => return counters::handle(counter_route, &address, principal.rights, req, env).await,
    };
    rest::room(op, &address, principal, req, env).await
}

fn forbidden(principal: &Principal, needed: Right) -> Result<Response> {
    let who = principal.user.as_deref().unwrap_or("anonymous");
    json_error(ErrorCode::Forbidden, &format!("{who} lacks the `{}` right in this room", needed.as_str()))
}

/// Whether `key` is over the limit of `binding`. A missing binding or a limiter failure lets the
/// request through: availability over strictness.
async fn over_limit(env: &Env, binding: &str, key: &str) -> bool {
    match env.rate_limiter(binding) {
        Ok(limiter) => limiter.limit(key.to_owned()).await.is_ok_and(|outcome| !outcome.success),
        Err(_) => false,
    }
}
