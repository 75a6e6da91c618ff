//! The errors the client reports: [`Error`] for connections and requests, [`OpError`] for the
//! outcome of one operation.

use std::time::Duration;

use edgeroom_protocol::{close_code, ErrorCode};
use uuid::Uuid;

/// Why a connection, a request or a frame failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The options cannot work: a bad URL, a tenant or room name the server would refuse.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// The server answered an HTTP request (or a WebSocket upgrade) with an error.
    #[error("the server answered HTTP {status}{}: {message}", code.map(|c| format!(" ({})", error_code_name(c))).unwrap_or_default())]
    Http {
        /// HTTP status.
        status: u16,
        /// The stable error code of the JSON error body, when there was one.
        code: Option<ErrorCode>,
        /// The error body's message (or the raw body).
        message: String,
    },
    /// The server could not be reached or the link failed.
    #[error("network error: {0}")]
    Network(String),
    /// The server closed the WebSocket.
    #[error("the server closed the connection with code {code}{}", if reason.is_empty() { String::new() } else { format!(": {reason}") })]
    Closed {
        /// The close code (see `docs/protocol.md`); 1006 when the socket ended without a close frame.
        code: u16,
        /// The close reason the server gave.
        reason: String,
    },
    /// The server sent a frame this client cannot decode.
    #[error("malformed frame from the server: {0}")]
    MalformedFrame(String),
    /// The server sent a message that makes no sense at this point.
    #[error("unexpected message from the server: {0}")]
    Unexpected(String),
    /// An `error` frame that names no operation of this client.
    #[error("the server reported {}: {message}", error_code_name(*code))]
    Server {
        /// Stable error code.
        code: ErrorCode,
        /// Human-readable explanation.
        message: String,
    },
    /// Nothing arrived from the server for this long, heartbeats included: the link is presumed dead.
    #[error("no frame from the server for {0:?}; the link is presumed dead")]
    HeartbeatTimeout(Duration),
    /// Events arrived with a hole in their sequence numbers; the client resumes to fill it.
    #[error("expected event {expected}, got {got}")]
    SequenceHole {
        /// The next `seq` the client expected.
        expected: u64,
        /// The `seq` that arrived.
        got: u64,
    },
    /// The [`crate::TokenSource`] failed to produce a token (retried with backoff).
    #[error("the token source failed: {0}")]
    TokenSource(String),
    /// The client was closed (by the app, or after giving up reconnecting).
    #[error("the client is closed")]
    Shutdown,
}

impl Error {
    /// Whether trying again later may succeed. Bad options, names, tokens and rights never will.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::InvalidOptions(_) | Self::Shutdown => false,
            Self::Http { status, .. } => *status == 429 || *status >= 500,
            // An operator's kick or room close is a decision, not a failure: do not come back.
            Self::Closed { code, .. } => !matches!(
                *code,
                close_code::UNAUTHORIZED
                    | close_code::FORBIDDEN
                    | close_code::KICKED
                    | close_code::ROOM_CLOSED
            ),
            Self::Network(_)
            | Self::MalformedFrame(_)
            | Self::Unexpected(_)
            | Self::Server { .. }
            | Self::HeartbeatTimeout(_)
            | Self::TokenSource(_)
            | Self::SequenceHole { .. } => true,
        }
    }

    /// Whether the error means the credentials were missing, invalid or lacked a right.
    pub fn is_auth(&self) -> bool {
        match self {
            Self::Http { status, .. } => matches!(status, 401 | 403),
            Self::Closed { code, .. } => matches!(*code, close_code::UNAUTHORIZED | close_code::FORBIDDEN),
            Self::Server { code, .. } => matches!(code, ErrorCode::Unauthorized | ErrorCode::Forbidden),
            _ => false,
        }
    }
}

/// The snake_case name of an error code, as on the wire.
pub(crate) fn error_code_name(code: ErrorCode) -> String {
    serde_json::to_value(code).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Why an operation (publish, state change, counter write) did not produce an acknowledged `seq`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OpError {
    /// The server refused it; nothing of it was stored.
    #[error("operation {op_id} refused ({}): {message}", error_code_name(*code))]
    Refused {
        /// The operation's id.
        op_id: Uuid,
        /// Stable error code (`forbidden`, `too_large`, `limit_exceeded`, `internal`, …).
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The connection is over its rate limit; nothing was stored. The client does not fail
    /// operations with it today: it keeps them and sends them again (within their TTL), and the
    /// refusal reaches the app as an error event. Kept for servers that refuse for good.
    #[error("operation {op_id} refused: rate limited: {message}")]
    RateLimited {
        /// The operation's id.
        op_id: Uuid,
        /// The server's explanation.
        message: String,
    },
    /// Its time to live passed before it could be sent: it was never sent, so it was not applied.
    #[error("operation {op_id} expired before it could be sent; it was not applied")]
    Expired {
        /// The operation's id.
        op_id: Uuid,
    },
    /// Its time to live passed after it was sent but before an ack arrived: the room may or may
    /// not have applied it (read the history to find out); the client does not send it again.
    #[error("operation {op_id} timed out waiting for its ack; it may or may not have been applied")]
    TimedOut {
        /// The operation's id.
        op_id: Uuid,
    },
    /// The buffer of unacknowledged operations is full; the operation was not taken.
    #[error("operation {op_id} not taken: {pending} operations ({bytes} bytes) are already waiting")]
    BufferFull {
        /// The operation's id.
        op_id: Uuid,
        /// Operations waiting.
        pending: usize,
        /// Their encoded size.
        bytes: usize,
    },
    /// The client closed before the operation was acknowledged; it may or may not have been applied
    /// if it had been sent.
    #[error("operation {op_id} abandoned: {reason}")]
    Closed {
        /// The operation's id.
        op_id: Uuid,
        /// Why the client closed.
        reason: String,
    },
    /// The encoded operation is larger than the server accepts in one frame; it was not sent.
    #[error("operation {op_id} not sent: its frame of {bytes} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// The operation's id.
        op_id: Uuid,
        /// The frame's size.
        bytes: usize,
        /// [`crate::RoomOptions::max_frame_bytes`].
        limit: usize,
    },
    /// The value could not be encoded as JSON.
    #[error("the value is not valid JSON: {0}")]
    InvalidBody(String),
}

impl OpError {
    /// The operation's id (none for a value that could not be encoded).
    pub fn op_id(&self) -> Option<Uuid> {
        match self {
            Self::Refused { op_id, .. }
            | Self::RateLimited { op_id, .. }
            | Self::Expired { op_id }
            | Self::TimedOut { op_id }
            | Self::BufferFull { op_id, .. }
            | Self::TooLarge { op_id, .. }
            | Self::Closed { op_id, .. } => Some(*op_id),
            Self::InvalidBody(_) => None,
        }
    }
}
