//! The admin API (`/v1/admin/...`), guarded by the `ADMIN_KEY` secret: minting tokens and
//! reading a room's live state.

use edgeroom_auth::{admin_key_matches, TenantSecrets, TokenRequest};
use edgeroom_durable::object::{json_error, RoomOp};
use edgeroom_protocol::{ErrorCode, Rights, Route};
use worker::{Env, Request, Response, Result};

use crate::auth::{string_binding, Principal};
use crate::rest;

/// Serves an admin route after checking the admin key.
pub async fn handle(route: Route, mut req: Request, env: &Env) -> Result<Response> {
    let configured = string_binding(env, "ADMIN_KEY").unwrap_or_default();
    let presented = presented_key(&req)?.unwrap_or_default();
    if !admin_key_matches(&configured, &presented) {
        return json_error(
            ErrorCode::Unauthorized,
            "the admin API needs `Authorization: Bearer <ADMIN_KEY>`",
        );
    }
    let admin = Principal { user: Some("admin".to_owned()), rights: Rights::ALL, rate_key: None };
    match route {
        Route::AdminToken(tenant) => {
            let request: TokenRequest = match serde_json::from_str(&req.text().await?) {
                Ok(request) => request,
                Err(error) => {
                    return json_error(ErrorCode::BadRequest, &format!("bad token request: {error}"))
                }
            };
            let secrets = string_binding(env, "TENANT_SECRETS")
                .map(|json| TenantSecrets::from_json(&json))
                .transpose()
                .map_err(worker::Error::RustError)?
                .unwrap_or_default();
            let now_secs = worker::Date::now().as_millis() / 1000;
            match request.mint(&tenant, &secrets, now_secs) {
                Ok(token) => Response::from_json(&token),
                Err(error) => json_error(ErrorCode::BadRequest, &error.to_string()),
            }
        }
        Route::AdminRoom(address) => rest::forward(env, &address, RoomOp::State, &admin, req).await,
        _ => json_error(ErrorCode::NotFound, "not an admin route"),
    }
}

fn presented_key(req: &Request) -> Result<Option<String>> {
    if let Some(key) = req.headers().get("X-Admin-Key")? {
        return Ok(Some(key));
    }
    Ok(req.headers().get("Authorization")?.and_then(|value| value.strip_prefix("Bearer ").map(str::to_owned)))
}
