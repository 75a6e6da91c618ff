//! The thin workers-rs shells that bind the pure room logic to a Durable Object's storage and
//! hibernatable WebSockets. Compiled only with the `worker` feature (by the deployable Worker).

// `#[durable_object]` generates undocumented JS bindings.
#[allow(missing_docs)]
mod room_object;
mod worker_sql;

pub use room_object::RoomObject;
pub use worker_sql::WorkerSql;

use edgeroom_protocol::{ErrorCode, HttpError};

/// A JSON error response `{"error":{"code","message"}}` with the code's HTTP status; shared by
/// the objects and the router so every error looks the same.
pub fn json_error(code: ErrorCode, message: &str) -> worker::Result<worker::Response> {
    Ok(
        worker::Response::from_json(&HttpError::new(code, message))?
            .with_status(code.http_status()),
    )
}
