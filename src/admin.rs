//! The admin API (`/v1/admin/...`), guarded by the `ADMIN_KEY` secret: minting tokens, the
//! rooms index, a room's live state and snapshots, restores, and (in tests) flush faults.

use edgeroom_auth::{admin_key_matches, TenantSecrets, TokenRequest};
use edgeroom_durable::object::{json_error, list_snapshots, RoomOp, DB_BINDING};
use edgeroom_protocol::{ErrorCode, Rights, RoomAddress, RoomRecord, Route};
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
            let body = match rest::read_body(&mut req).await? {
                Ok(body) => body,
                Err(response) => return Ok(response),
            };
            let request: TokenRequest = match serde_json::from_slice(&body) {
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
        Route::AdminSnapshots(address) => Response::from_json(&list_snapshots(env, &address, 100).await?),
        Route::AdminRooms(tenant) => Response::from_json(&list_rooms(env, &tenant).await?),
        Route::AdminRestore(address) => forward_body(env, &address, RoomOp::Restore, &admin, req).await,
        Route::AdminFaults(address) => forward_body(env, &address, RoomOp::Faults, &admin, req).await,
        _ => json_error(ErrorCode::NotFound, "not an admin route"),
    }
}

/// Forwards a JSON body (at most 64 KiB) to the room object as `op`.
async fn forward_body(
    env: &Env,
    address: &RoomAddress,
    op: RoomOp,
    who: &Principal,
    req: Request,
) -> Result<Response> {
    let mut req = req;
    let body = match rest::read_body(&mut req).await? {
        Ok(body) => body,
        Err(response) => return Ok(response),
    };
    let Ok(text) = String::from_utf8(body) else {
        return json_error(ErrorCode::BadRequest, "the body must be UTF-8 JSON");
    };
    rest::forward_json(env, address, op, who, text).await
}

/// A `rooms` row as D1 returns it.
#[derive(serde::Deserialize)]
struct RoomRow {
    room: String,
    seq: String,
    members: f64,
    last_activity_ms: f64,
    last_snapshot_key: Option<String>,
    last_snapshot_bytes: Option<f64>,
}

/// The tenant's rooms from the D1 index, most recently active first.
async fn list_rooms(env: &Env, tenant: &str) -> Result<Vec<RoomRecord>> {
    let rows: Vec<RoomRow> = env
        .d1(DB_BINDING)?
        .prepare(
            "SELECT room, seq, members, last_activity_ms, last_snapshot_key, last_snapshot_bytes FROM rooms
             WHERE tenant = ?1 ORDER BY last_activity_ms DESC LIMIT 1000",
        )
        .bind(&[tenant.into()])?
        .all()
        .await?
        .results()?;
    Ok(rows
        .into_iter()
        .map(|row| RoomRecord {
            room: row.room,
            seq: row.seq.parse().unwrap_or(0),
            members: row.members as u64,
            last_activity_ms: row.last_activity_ms as u64,
            last_snapshot_key: row.last_snapshot_key,
            last_snapshot_bytes: row.last_snapshot_bytes.map(|bytes| bytes as u64),
        })
        .collect())
}

fn presented_key(req: &Request) -> Result<Option<String>> {
    if let Some(key) = req.headers().get("X-Admin-Key")? {
        return Ok(Some(key));
    }
    Ok(req.headers().get("Authorization")?.and_then(|value| value.strip_prefix("Bearer ").map(str::to_owned)))
}
