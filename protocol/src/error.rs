//! Stable error codes, the HTTP error body, and WebSocket close codes.

use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code, shared by HTTP error bodies and `error` frames.
///
/// The snake_case names are part of the public API: never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed in a way no other code describes.
    BadRequest,
    /// A tenant, room or other name breaks the naming rules.
    BadName,
    /// No such route or resource.
    NotFound,
    /// The route exists but not for this HTTP method.
    MethodNotAllowed,
    /// A WebSocket route was requested without `Upgrade: websocket`.
    UpgradeRequired,
    /// A frame could not be decoded (bad JSON, missing fields, bad postcard, empty frame).
    MalformedFrame,
    /// A binary frame starts with a protocol version this server does not speak.
    UnsupportedVersion,
    /// A frame names a message type this protocol does not have.
    UnknownType,
    /// A frame, body or value is over its size limit.
    TooLarge,
    /// The client sends faster than its rate limit allows.
    RateLimited,
    /// A limit of the room (keys, bytes) would be exceeded.
    LimitExceeded,
    /// The operation is not available (yet) on this server.
    Unsupported,
    /// Missing or invalid credentials.
    Unauthorized,
    /// Valid credentials without the needed right.
    Forbidden,
    /// The server failed; the operation was not applied and may be retried.
    Internal,
    /// The room or counter cannot take requests right now (for example its history could not be
    /// restored yet); nothing was applied; retry with backoff.
    Unavailable,
}

impl ErrorCode {
    /// The HTTP status that goes with this code.
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadRequest
            | Self::BadName
            | Self::MalformedFrame
            | Self::UnsupportedVersion
            | Self::UnknownType => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::LimitExceeded => 409,
            Self::TooLarge => 413,
            Self::UpgradeRequired => 426,
            Self::RateLimited => 429,
            Self::Unsupported => 501,
            Self::Internal => 500,
            Self::Unavailable => 503,
        }
    }
}

/// The JSON body of every HTTP error: `{"error":{"code":"…","message":"…"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpError {
    /// The error.
    pub error: HttpErrorDetail,
}

/// The inside of [`HttpError`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpErrorDetail {
    /// Stable code.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
}

impl HttpError {
    /// Builds an error body.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { error: HttpErrorDetail { code, message: message.into() } }
    }
}

/// WebSocket close codes used by edgeroom (the 4xxx range is for applications).
pub mod close_code {
    /// Normal closure (the server is going away on purpose, or the client asked).
    pub const NORMAL: u16 = 1000;
    /// The client kept sending frames that could not be decoded.
    pub const PROTOCOL_ERROR: u16 = 4000;
    /// The client kept sending faster than its rate limit after being warned.
    pub const RATE_LIMITED: u16 = 4008;
    /// The client kept sending frames over the size limit.
    pub const TOO_LARGE: u16 = 4009;
    /// The connection sent nothing (no frame, no `ping` text) for longer than the heartbeat timeout.
    pub const HEARTBEAT_TIMEOUT: u16 = 4010;
    /// The server hit an internal error on this connection; reconnect and resume.
    pub const INTERNAL: u16 = 4011;
    /// The connection asked for more than its send budget (welcome refreshes, resumes) in too
    /// short a time; reconnect later and resume.
    pub const SEND_BUDGET: u16 = 4012;
    /// An operator closed this connection (admin API); reconnecting is allowed.
    pub const KICKED: u16 = 4013;
    /// An operator closed every connection of the room (admin API); reconnecting is allowed.
    pub const ROOM_CLOSED: u16 = 4014;
    /// Missing or invalid credentials.
    pub const UNAUTHORIZED: u16 = 4401;
    /// The credentials lack the right for this room.
    pub const FORBIDDEN: u16 = 4403;
}
