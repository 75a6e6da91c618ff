//! The edgeroom router Worker: the entry point wrangler runs.
//!
//! Every request is parsed into a [`Route`](edgeroom_protocol::Route), authenticated, rate
//! limited and forwarded to the Durable Object that owns its shard key (`<tenant>/room/<room>`),
//! or answered from the KV read model. The Durable Object classes are re-exported here so the
//! runtime finds them in this module.

// A panic in wasm resets every object in the isolate: request paths must not panic.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]
#![warn(missing_docs)]

mod admin;
mod auth;
mod cors;
mod counters;
mod rest;
mod retention;
mod router;

use edgeroom_durable::object::{json_error, Log};
use edgeroom_protocol::ErrorCode;
use worker::{event, Context, Env, Request, Response, Result, ScheduleContext, ScheduledEvent};

pub use edgeroom_durable::object::{CounterObject, RoomObject};

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let origin = req.headers().get("Origin").ok().flatten();
    let response = match router::handle(req, &env).await {
        Ok(response) => response,
        Err(error) => {
            Log::from_env(&env).error(&format!("request failed: {error}"));
            json_error(ErrorCode::Internal, "internal error; the request may be retried")?
        }
    };
    cors::apply(&env, origin.as_deref(), response)
}

/// The Cron Trigger: snapshot retention.
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let log = Log::from_env(&env);
    match retention::run(&env, worker::Date::now().as_millis()).await {
        Ok(deleted) => log.info(&format!("retention deleted {deleted} snapshots")),
        Err(error) => log.error(&format!("retention failed: {error}")),
    }
}
