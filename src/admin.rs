//! The admin API (`/v1/admin/...`), guarded by the `ADMIN_KEY` secret: minting tokens, the
//! rooms index, a room's live state and snapshots, restores, and (in test builds) flush faults.

use edgeroom_auth::{admin_key_matches, TenantSecrets, TokenRequest};
use edgeroom_durable::object::d1::{database, prepare};
use edgeroom_durable::object::http::{call, forward, read_body, read_json};
use edgeroom_durable::object::list_snapshots;
use edgeroom_durable::{index, ApiError, InternalRequest, RoomOp};
use edgeroom_protocol::{ErrorCode, RestoreRequest, Rights, RoomAddress, RoomRecord, Route};
use worker::{Env, Request, Response};

use crate::auth::string_binding;
use crate::internal;

/// Serves an admin route after checking the admin key.
pub async fn handle(route: Route, mut req: Request, env: &Env) -> Result<Response, ApiError> {
    let configured = string_binding(env, "ADMIN_KEY").unwrap_or_default();
    let presented = presented_key(&req).unwrap_or_default();
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
        Route::AdminRooms(tenant) => Response::from_json(&list_rooms(env, &tenant).await?).map_err(internal),
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
async fn list_rooms(env: &Env, tenant: &str) -> Result<Vec<RoomRecord>, ApiError> {
    let query =
        database(env).and_then(|db| prepare(&db, &index::rooms_of(tenant, 1000))).map_err(internal)?;
    let rows: Vec<RoomRow> = query.all().await.and_then(|result| result.results()).map_err(internal)?;
    rows.into_iter()
        .map(|row| {
            let seq = row.seq.parse().map_err(|_| {
                tracing::error!(tenant, room = %row.room, seq = %row.seq, "a rooms row has an unreadable seq");
                ApiError::internal(format!("the index row of room {:?} has an unreadable seq", row.room))
            })?;
            Ok(RoomRecord {
                room: row.room,
                seq,
                members: row.members as u64,
                last_activity_ms: row.last_activity_ms as u64,
                last_snapshot_key: row.last_snapshot_key,
                last_snapshot_bytes: row.last_snapshot_bytes.map(|bytes| bytes as u64),
            })
        })
        .collect()
}

fn presented_key(req: &Request) -> Option<String> {
    let headers = req.headers();
    if let Ok(Some(key)) = headers.get("X-Admin-Key") {
        return Some(key);
    }
    headers
        .get("Authorization")
        .ok()
        .flatten()
        .and_then(|value| value.strip_prefix("Bearer ").map(str::to_owned))
}
