//! The edgeroom router Worker: the entry point wrangler runs.
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

mod admin;
mod auth;
mod cors;
mod counters;
mod operations;
mod retention;
mod rooms;
mod router;

use edgeroom_durable::object::http::error_response;
use edgeroom_durable::object::init_tracing;
use edgeroom_durable::ApiError;
use worker::{event, Context, Env, Request, Response, Result, ScheduleContext, ScheduledEvent};

pub use edgeroom_durable::object::{CounterObject, RoomObject};

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    init_tracing(&env);
    let origin = req.headers().get("Origin").ok().flatten();
    let response = match router::handle(req, &env).await {
        Ok(response) => response,
        Err(error) => {
            if error.status() >= 500 {
                tracing::error!(%error, "request failed");
            }
            error_response(&error)?
        }
    };
    cors::apply(&env, origin.as_deref(), response)
}

/// The Cron Trigger: snapshot retention.
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    init_tracing(&env);
    match retention::run(&env, worker::Date::now().as_millis()).await {
        Ok(deleted) => tracing::info!(deleted, "snapshot retention ran"),
        Err(error) => tracing::error!(%error, "snapshot retention failed"),
    }
}

/// Turns a runtime failure into the API's internal error.
fn internal(error: worker::Error) -> ApiError {
    edgeroom_durable::object::http::internal(error)
}
