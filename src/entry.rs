//! The router Worker's entry points: requests, the export queues, the retention cron.

use edgeroom_durable::object::http::error_response;
use edgeroom_durable::object::init_tracing;
use worker::{event, Context, Env, MessageBatch, Request, Response, Result, ScheduleContext, ScheduledEvent};

use crate::{cors, export, retention, router};

/// Every HTTP request and WebSocket upgrade: the router, then CORS.
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
#[event(queue)]
async fn queue(batch: MessageBatch<String>, env: Env, _ctx: Context) -> Result<()> {
    init_tracing(&env);
    export::consume(batch, &env).await
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
