//! The thin workers-rs shells that bind the pure room logic to a Durable Object's storage and
//! hibernatable WebSockets. Compiled only with the `worker` feature (by the deployable Worker).

// `#[durable_object]` generates undocumented JS bindings.
#[allow(missing_docs)]
mod counter_object;
mod log;
// `#[durable_object]` generates undocumented JS bindings.
#[allow(missing_docs)]
mod room_object;
mod stores;
mod worker_sql;

pub use counter_object::{
    shard_request, CounterObject, CounterRequest, CounterWrite, ShardState, COUNTERS_BINDING, MAX_SHARDS,
    SHARD_HEADER,
};
pub use log::Log;
pub use room_object::RoomObject;
pub use stores::{list_snapshots, load_snapshot, Faults, DB_BINDING, READ_MODEL_BINDING, SNAPSHOTS_BINDING};
pub use worker_sql::WorkerSql;

use edgeroom_protocol::{ErrorCode, HttpError};

/// Headers the router sets on every request it forwards to a room object (and strips from
/// what clients send): the operation, the room's names, and who asks with which rights.
pub mod headers {
    /// `ws`, `state`, `history` or `publish` (see [`super::RoomOp`]).
    pub const OP: &str = "x-edgeroom-op";
    /// The tenant name.
    pub const TENANT: &str = "x-edgeroom-tenant";
    /// The room name.
    pub const ROOM: &str = "x-edgeroom-room";
    /// The authenticated user id, if any.
    pub const USER: &str = "x-edgeroom-user";
    /// The caller's rights in the room, as `read,write,…`.
    pub const RIGHTS: &str = "x-edgeroom-rights";
    /// Every internal header, for stripping them from client requests.
    pub const ALL: [&str; 5] = [OP, TENANT, ROOM, USER, RIGHTS];
}

/// What the router asks a room object to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomOp {
    /// Accept a WebSocket.
    Socket,
    /// Answer the room's current state.
    State,
    /// Answer a page of history.
    History,
    /// Store a server-side publish.
    Publish,
    /// Restore a snapshot (admin).
    Restore,
    /// Set the injected flush faults (tests).
    Faults,
}

impl RoomOp {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Socket => "ws",
            Self::State => "state",
            Self::History => "history",
            Self::Publish => "publish",
            Self::Restore => "restore",
            Self::Faults => "faults",
        }
    }

    /// Parses the header value.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Socket, Self::State, Self::History, Self::Publish, Self::Restore, Self::Faults]
            .into_iter()
            .find(|op| op.as_str() == name)
    }
}

/// A JSON error response `{"error":{"code","message"}}` with the code's HTTP status; shared by
/// the objects and the router so every error looks the same.
pub fn json_error(code: ErrorCode, message: &str) -> worker::Result<worker::Response> {
    Ok(worker::Response::from_json(&HttpError::new(code, message))?.with_status(code.http_status()))
}

/// Whether a request asks for a WebSocket upgrade.
pub fn is_websocket_upgrade(req: &worker::Request) -> worker::Result<bool> {
    Ok(req.headers().get("Upgrade")?.is_some_and(|value| value.eq_ignore_ascii_case("websocket")))
}
