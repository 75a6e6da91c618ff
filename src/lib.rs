//! The edgeroom Worker: the router's entry points and the Durable Object classes.
//!
//! Cargo features choose what one build holds (docs/deploy.md): `router` (the `fetch`, `queue`
//! and `scheduled` entry points, `src/entry.rs`), `rooms` (`RoomObject`) and `counters`
//! (`CounterObject`). The default has all three (the one Worker of local development); a deploy
//! builds three Workers with one each.
//!
//! Every request is parsed into a [`Route`](edgeroom_protocol::Route), authenticated, rate
//! limited and either answered here (health, KV read models, the admin API's index reads) or sent
//! to the Durable Object that owns it as one
//! [`InternalRequest`](edgeroom_durable::InternalRequest). The Durable Object classes are
//! re-exported here so the runtime finds them in this module.

// A panic in wasm resets every object in the isolate: request paths must not panic.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]
#![warn(missing_docs)]

#[cfg(feature = "router")]
mod admin;
#[cfg(feature = "router")]
mod auth;
#[cfg(feature = "router")]
mod cors;
#[cfg(feature = "router")]
mod counters;
#[cfg(feature = "router")]
mod entry;
#[cfg(feature = "router")]
mod export;
#[cfg(feature = "router")]
mod operations;
#[cfg(feature = "router")]
mod retention;
#[cfg(feature = "router")]
mod rooms;
#[cfg(feature = "router")]
mod router;
#[cfg(feature = "router")]
mod webhooks;

#[cfg(feature = "counters")]
pub use edgeroom_durable::object::CounterObject;
#[cfg(feature = "rooms")]
pub use edgeroom_durable::object::RoomObject;

/// Turns a runtime failure into the API's internal error.
#[cfg(feature = "router")]
fn internal(error: worker::Error) -> edgeroom_durable::ApiError {
    edgeroom_durable::object::http::internal(error)
}
