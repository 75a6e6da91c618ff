//! The thin workers-rs shells that bind the pure room logic to a Durable Object's storage and
//! hibernatable WebSockets. Compiled only with the `worker` feature (by the deployable Worker).

mod log;
// `#[durable_object]` generates undocumented JS bindings.
#[allow(missing_docs)]
mod room_object;
mod worker_sql;

pub use log::Log;
pub use room_object::RoomObject;
pub use worker_sql::WorkerSql;

use edgeroom_protocol::{ErrorCode, HttpError};

/// Header with the authenticated user id that the router sets on requests to an object.
pub const USER_HEADER: &str = "x-edgeroom-user";

/// A JSON error response `{"error":{"code","message"}}` with the code's HTTP status; shared by
/// the objects and the router so every error looks the same.
pub fn json_error(code: ErrorCode, message: &str) -> worker::Result<worker::Response> {
    Ok(worker::Response::from_json(&HttpError::new(code, message))?.with_status(code.http_status()))
}

/// Whether a request asks for a WebSocket upgrade.
pub fn is_websocket_upgrade(req: &worker::Request) -> worker::Result<bool> {
    Ok(req.headers().get("Upgrade")?.is_some_and(|value| value.eq_ignore_ascii_case("websocket")))
}
