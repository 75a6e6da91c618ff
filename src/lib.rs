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

#[cfg(feature = "router")]
mod admin;
#[cfg(feature = "router")]
mod auth;
#[cfg(feature = "router")]
mod cors;
#[cfg(feature = "router")]
mod counters;
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

#[cfg(feature = "router")]
use edgeroom_durable::object::http::error_response;
#[cfg(feature = "router")]
use edgeroom_durable::object::init_tracing;
#[cfg(feature = "router")]
use edgeroom_durable::ApiError;
#[cfg(feature = "router")]
use worker::{event, Context, Env, MessageBatch, Request, Response, Result, ScheduleContext, ScheduledEvent};

#[cfg(feature = "counters")]
pub use edgeroom_durable::object::CounterObject;
#[cfg(feature = "rooms")]
pub use edgeroom_durable::object::RoomObject;

#[cfg(feature = "router")]
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

/// The export queue and its dead-letter queue: webhook deliveries.
#[cfg(feature = "router")]
#[event(queue)]
async fn queue(batch: MessageBatch<String>, env: Env, _ctx: Context) -> Result<()> {
    init_tracing(&env);
    export::consume(batch, &env).await
}

/// The Cron Trigger: snapshot retention.
#[cfg(feature = "router")]
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    init_tracing(&env);
    match retention::run(&env, worker::Date::now().as_millis()).await {
        Ok(deleted) => tracing::info!(deleted, "snapshot retention ran"),
        Err(error) => tracing::error!(%error, "snapshot retention failed"),
    }
}

/// Turns a runtime failure into the API's internal error.
#[cfg(feature = "router")]
fn internal(error: worker::Error) -> ApiError {
    edgeroom_durable::object::http::internal(error)
}
