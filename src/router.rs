//! Routing: parses the path, answers preflights and wrong methods, applies the per-IP and
//! per-token rate limits, checks rights, and hands each route to its handler, once.

use edgeroom_durable::ApiError;
use edgeroom_protocol::{ErrorCode, Method, Right, Route, RouteError};
use worker::{Env, Request, Response};

use crate::auth::{authenticate, Principal};
use crate::{admin, counters, internal, rooms};

/// Rate limiter binding keyed by client IP (see `[[ratelimits]]` in `wrangler.toml`).
const IP_LIMITER: &str = "IP_RATE_LIMITER";
/// Rate limiter binding keyed by token subject.
const TOKEN_LIMITER: &str = "TOKEN_RATE_LIMITER";

/// Serves one request. Every refusal is an [`ApiError`], answered as JSON by the caller.
pub async fn handle(req: Request, env: &Env) -> Result<Response, ApiError> {
    let url = edgeroom_durable::object::http::request_url(&req);
    let route = Route::parse(url.path()).map_err(|error| match error {
        RouteError::NotFound(_) => ApiError::not_found(error.to_string()),
        RouteError::BadName(name) => ApiError::from(name),
    })?;
    // The raw method: the worker crate maps methods it does not know to GET.
    let method = req.inner().method();
    if method == "OPTIONS" {
        return Ok(Response::empty().map_err(internal)?.with_status(204));
    }
    let allowed = route.method().as_str();
    if method != allowed {
        let error = ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("{method} is not allowed here; use {allowed}"),
        );
        let mut response = edgeroom_durable::object::http::error_response(&error).map_err(internal)?;
        response.headers_mut().set("Allow", allowed).map_err(internal)?;
        return Ok(response);
    }
    if let Some((name, _)) =
        url.query_pairs().find(|(name, _)| !route.query_params().contains(&name.as_ref()))
    {
        let known = route.query_params().join(", ");
        return Err(ApiError::bad_request(format!(
            "unknown query parameter {name:?}; this route takes: {known}"
        )));
    }
    if route == Route::Health {
        return Response::ok("ok").map_err(internal);
    }
    let ip = req.headers().get("CF-Connecting-IP").map_err(internal)?.unwrap_or_else(|| "unknown".to_owned());
    if over_limit(env, IP_LIMITER, &format!("ip:{ip}")).await {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            "too many requests from this address; retry shortly",
        ));
    }
    let Some((tenant, name)) = route.token_scope() else {
        return admin::handle(route, req, env).await;
    };
    let principal = authenticate(&req, &url, env, tenant, name)
        .map_err(|(code, message)| ApiError::new(code, message))?;
    if let Some(key) = &principal.rate_key {
        if over_limit(env, TOKEN_LIMITER, key).await {
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                "too many requests for this token; retry shortly",
            ));
        }
    }
    // Reads need `read`, every POST (publish, counter writes) needs `write`.
    let needed = if route.method() == Method::Post { Right::Write } else { Right::Read };
    if !principal.rights.has(needed) {
        let who = principal.user.as_deref().unwrap_or("anonymous");
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("{who} lacks the `{}` right in this room", needed.as_str()),
        ));
    }
    dispatch(route, principal, req, env).await
}

async fn dispatch(route: Route, who: Principal, req: Request, env: &Env) -> Result<Response, ApiError> {
    match route {
        Route::RoomSocket(address) => rooms::socket(env, &address, &who, &req).await,
        Route::RoomState(address) => rooms::state(env, &address, &who, &req).await,
        Route::RoomHistory(address) => rooms::history(env, &address, &who, &req).await,
        Route::RoomMessages(address) => rooms::publish(env, &address, &who, req).await,
        Route::CounterState(address) => counters::state(env, &address, &req).await,
        Route::CounterSocket(address) => counters::socket(env, &address, &who, &req).await,
        Route::CounterAdd(address) => counters::add(env, &address, req).await,
        Route::CounterSet(address) => counters::set(env, &address, req).await,
        Route::CounterReset(address) => counters::reset(env, &address, req).await,
        Route::CounterShards(address) => counters::shards(env, &address, req).await,
        Route::Health
        | Route::AdminToken(_)
        | Route::AdminRoom(_)
        | Route::AdminRooms(_)
        | Route::AdminSnapshots(_)
        | Route::AdminRestore(_)
        | Route::AdminFaults(_)
        | Route::AdminTenant(_)
        | Route::AdminRoomMetrics(_)
        | Route::AdminKick(_)
        | Route::AdminClose(_)
        | Route::AdminFlush(_)
        | Route::AdminTail(_)
        | Route::AdminCounters(_)
        | Route::AdminCounterReset(_)
        | Route::AdminCounterMetrics(_)
        | Route::AdminWebhooks(_)
        | Route::AdminWebhookCreate(_)
        | Route::AdminWebhookDelete(..)
        | Route::AdminDeadLetters(_)
        | Route::AdminDeadLetterReplay(_) => Err(ApiError::not_found("not a room or counter route")),
    }
}

/// Whether `key` is over the limit of `binding`. A missing binding or a limiter failure lets the
/// request through: availability over strictness.
async fn over_limit(env: &Env, binding: &str, key: &str) -> bool {
    match env.rate_limiter(binding) {
        Ok(limiter) => limiter.limit(key.to_owned()).await.is_ok_and(|outcome| !outcome.success),
        Err(_) => false,
    }
}
