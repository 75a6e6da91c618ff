//! The edgeroom router Worker: the entry point wrangler runs.
//!
//! It validates every request and forwards it to the Durable Object that owns its shard key
//! (`<tenant>/room/<room>`). The Durable Object classes are re-exported here so the runtime finds
//! them in this module.

// A panic in wasm resets every object in the isolate: request paths must not panic.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]
#![warn(missing_docs)]

mod router;

use worker::{event, Context, Env, Request, Response, Result};

pub use edgeroom_durable::object::RoomObject;

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    router::handle(req, &env).await
}
