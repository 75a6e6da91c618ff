//! The admin API (`/v1/admin/...`), guarded by the `ADMIN_KEY` secret: minting tokens, a room's
//! live state and snapshots, restores, (in test builds) flush faults, and the operator endpoints
//! of `operations.rs`.

use edgeroom_auth::{admin_key_matches, TenantSecrets, TokenRequest};
use edgeroom_durable::object::http::{call, forward, read_body, read_json};
use edgeroom_durable::object::list_snapshots;
use edgeroom_durable::{ApiError, InternalRequest, RoomOp};
use edgeroom_protocol::{ErrorCode, RestoreRequest, Rights, RoomAddress, Route};
use worker::{Env, Request, Response};

use crate::auth::string_binding;
use crate::{internal, operations, webhooks};

/// Serves an admin route after checking the admin key.
pub async fn handle(route: Route, mut req: Request, env: &Env) -> Result<Response, ApiError> {
    let configured = string_binding(env, "ADMIN_KEY").unwrap_or_default();
    let presented = presented_key(&req, &route).unwrap_or_default();
    if !admin_key_matches(&configured, &presented) {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "the admin API needs `Authorization: Bearer <ADMIN_KEY>`",
        ));
    }
    let admin =
        |address: RoomAddress, op| InternalRequest::room(address, op, Rights::ALL, Some("admin".to_owned()));
    match route {
        Route::AdminToken(tenant) => {
            let body = read_body(&mut req).await?;
            let request: TokenRequest = serde_json::from_slice(&body)
                .map_err(|error| ApiError::bad_request(format!("bad token request: {error}")))?;
            let secrets = match string_binding(env, "TENANT_SECRETS") {
                Some(json) => TenantSecrets::from_json(&json).map_err(ApiError::internal)?,
                None => TenantSecrets::default(),
            };
            let now_secs = worker::Date::now().as_millis() / 1000;
            let token = request
                .mint(&tenant, &secrets, now_secs)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            Response::from_json(&token).map_err(internal)
        }
        Route::AdminRoom(address) => {
            forward(env, &admin(address, RoomOp::State), &req).await.map_err(internal)
        }
        Route::AdminSnapshots(address) => {
            Response::from_json(&list_snapshots(env, &address, 100).await.map_err(internal)?)
                .map_err(internal)
        }
        Route::AdminRooms(tenant) => operations::rooms(env, &tenant, &req).await,
        Route::AdminTenant(tenant) => operations::tenant(env, &tenant).await,
        Route::AdminRoomMetrics(address) => operations::room_metrics(env, &address, &req).await,
        Route::AdminKick(address) => operations::room_action(env, &address, RoomOp::Kick, req).await,
        Route::AdminClose(address) => operations::room_action(env, &address, RoomOp::CloseAll, req).await,
        Route::AdminFlush(address) => operations::room_action(env, &address, RoomOp::Flush, req).await,
        Route::AdminTail(address) => operations::tail(env, &address, &req).await,
        Route::AdminCounters(tenant) => operations::counters(env, &tenant).await,
        Route::AdminCounterReset(address) => operations::reset_counter(env, &address).await,
        Route::AdminCounterMetrics(address) => operations::counter_metrics(env, &address, &req).await,
        Route::AdminWebhooks(tenant) => webhooks::list(env, &tenant).await,
        Route::AdminWebhookCreate(tenant) => webhooks::create(env, &tenant, req).await,
        Route::AdminWebhookDelete(tenant, id) => webhooks::delete(env, &tenant, &id).await,
        Route::AdminDeadLetters(tenant) => webhooks::dead_letters(env, &tenant).await,
        Route::AdminDeadLetterReplay(tenant) => webhooks::replay(env, &tenant).await,
        Route::AdminRestore(address) => {
            let restore: RestoreRequest = read_json(&mut req, "restore").await?;
            let body = serde_json::to_string(&restore).map_err(|e| ApiError::internal(e.to_string()))?;
            call(env, &admin(address, RoomOp::Restore), Some(body)).await.map_err(internal)
        }
        Route::AdminFaults(address) => {
            let body = String::from_utf8(read_body(&mut req).await?)
                .map_err(|_| ApiError::bad_request("the body must be UTF-8 JSON"))?;
            call(env, &admin(address, RoomOp::Faults), Some(body)).await.map_err(internal)
        }
        _ => Err(ApiError::not_found("not an admin route")),
    }
}

fn presented_key(req: &Request, route: &Route) -> Option<String> {
    let headers = req.headers();
    if let Ok(Some(key)) = headers.get("X-Admin-Key") {
        return Some(key);
    }
    // Browsers cannot set headers on a WebSocket: the console's tail sends the key in the query.
    if matches!(route, Route::AdminTail(_)) {
        if let Some(key) = edgeroom_durable::object::http::request_url(req).query_param("admin_key") {
            return Some(key.into_owned());
        }
    }
    headers
        .get("Authorization")
        .ok()
        .flatten()
        .and_then(|value| value.strip_prefix("Bearer ").map(str::to_owned))
}
