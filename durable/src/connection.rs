//! What the room knows about one WebSocket connection.

use edgeroom_protocol::Format;
use serde::{Deserialize, Serialize};

/// Per-connection data. The object shell keeps it in the socket's attachment, so it survives
/// hibernation and eviction (Rust memory does not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// Id within the room, from a persistent counter: never reused, also across restarts.
    pub id: u64,
    /// The form the server uses for frames it pushes to this connection.
    pub format: Format,
    /// Authenticated user id, when the router authenticated one.
    pub user: Option<String>,
}
