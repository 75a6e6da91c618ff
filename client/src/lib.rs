//! Rust SDK of edgeroom: rooms with exact resume, acknowledged operations, presence, counters,
//! and the REST and admin APIs.
//!
//! ```no_run
//! use edgeroom_client::{Room, RoomEvent, RoomOptions};
//! use futures_util::StreamExt;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let options = RoomOptions::new("http://127.0.0.1:8787", "acme", "lobby");
//! let (room, mut events) = Room::connect(options).await?;
//! let seq = room.publish(&serde_json::json!({"text": "hi"})).await?;
//! println!("stored as event {seq}");
//! while let Some(event) = events.next().await {
//!     if let RoomEvent::Event(event) = event {
//!         println!("{} {}", event.seq, event.body.as_str());
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! What the client promises:
//! - every event reaches the [`RoomEvents`] stream once, in `seq` order, across reconnects; when
//!   the room cannot replay what was missed, a [`RoomEvent::Gap`] says so and carries the fresh state;
//! - every operation gets an `op_id` and ends in exactly one outcome: its acknowledged `seq`, or an
//!   [`OpError`] (refused, rate limited, expired before it was sent, timed out after it was sent,
//!   buffer full, client closed); operations issued while disconnected wait in a bounded buffer and
//!   are re-sent with the same `op_id`, so the room applies each once;
//! - a dead link is noticed within [`RoomOptions::heartbeat_timeout`], and the client reconnects with
//!   exponential backoff and full jitter ([`ReconnectPolicy`]), watchable as a [`ConnectionState`].

// Server input must never panic the client: every failure becomes an error the app sees.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]
#![warn(missing_docs)]

mod connection;
mod counter;
mod driver;
mod error;
mod event;
mod operation;
mod options;
mod pending;
mod reconnect;
mod rest;
mod room;
mod state;
mod token;

pub use counter::{Counter, CounterEvent, CounterEvents, CounterOptions};
pub use error::{Error, OpError};
pub use event::{Connected, ConnectionState, GapEvent, RoomEvent};
pub use operation::Operation;
pub use options::RoomOptions;
pub use reconnect::ReconnectPolicy;
pub use rest::RestClient;
pub use room::{Room, RoomEvents};
pub use state::Position;
pub use token::TokenSource;

pub use edgeroom_auth::{RoomGrant, TokenRequest, TokenResponse};
pub use edgeroom_protocol::{
    validate_name, AdminActionResult, Body, CounterValue, CounterView, ErrorCode, Event, EventKind, Format,
    HistoryPage, Member, PresenceDiff, PublishResult, RestoreResult, Right, RoomRecord, RoomView,
    SnapshotRecord,
};

/// The README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
