//! The wire protocol of edgeroom, shared by the router Worker, the Durable Objects and the clients.
//!
//! Every message exists in two forms that carry exactly the same information:
//! - a **binary** frame: one [`PROTOCOL_VERSION`] byte followed by the `postcard` encoding of the
//!   message enum (the variant order is part of the wire format: only append new variants);
//! - a **JSON** text frame: an object whose `"type"` field names the message, for browsers.
//!
//! The crate has no dependency on the `worker` crate, so everything here is tested natively.
//! `docs/protocol.md` at the repository root describes every message with an example.

// A panic in wasm resets every object in the isolate: request paths must not panic.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]
#![warn(missing_docs)]

mod body;
mod codec;
mod error;
mod message;
mod names;
mod rest;
mod rights;
mod route;
mod url;

pub use body::{Body, BodyError};
pub use codec::{DecodeError, Format, WireFrame};
pub use error::{close_code, ErrorCode, HttpError, HttpErrorDetail};
pub use message::{
    Ack, ClientMessage, CounterAdd, CounterReset, CounterSet, CounterValue, ErrorFrame, Event, EventKind,
    Events, Gap, Hello, Member, Ping, Pong, PresenceDiff, PresenceSet, Publish, ServerMessage, StateDelete,
    StateEntry, StateSet, Welcome,
};
pub use names::{is_loopback_host, validate_name, CounterAddress, NameError, RoomAddress, MAX_NAME_LEN};
pub use rest::{
    AdminActionResult, CounterAddRequest, CounterOp, CounterResetRequest, CounterSetRequest,
    CounterShardsRequest, CounterView, CounterWriteResult, FaultRequest, HistoryPage, KickRequest,
    PublishRequest, PublishResult, RestoreRequest, RestoreResult, RoomRecord, RoomView, SnapshotRecord,
};
pub use rights::{Right, Rights};
pub use route::{Method, Route, RouteError};
pub use url::RequestUrl;

/// Largest sequence number a request may name: 2^53 - 1, so every sequence number is exact in
/// JavaScript and in the runtime's SQLite bindings.
pub const MAX_SEQ: u64 = (1 << 53) - 1;

/// Version byte that starts every binary frame. A peer that receives another value answers with
/// [`ErrorCode::UnsupportedVersion`].
pub const PROTOCOL_VERSION: u8 = 1;
