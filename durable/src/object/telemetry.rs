//! Logging through `tracing` to the Workers console, as one JSON object per line so Workers Logs
//! can index the fields (tenant, room, connection, op). The level comes from the `LOG_LEVEL`
//! wrangler var (default `warn`): every console line costs CPU in the runtime, so nothing is
//! logged per message at the default level.

use std::sync::Once;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;
use worker::Env;

/// Installs the isolate's subscriber once (the router and every object share the isolate), with
/// the level from `LOG_LEVEL` (`error`, `warn`, `info`, `debug`, `trace`; default `warn`).
pub fn init_tracing(env: &Env) {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let level = env.var("LOG_LEVEL").map(|v| v.to_string()).unwrap_or_default();
        let filter = level.parse::<LevelFilter>().unwrap_or(LevelFilter::WARN);
        let console = tracing_subscriber::fmt::layer()
            .json()
            .with_ansi(false)
            // `std::time` panics on wasm32; the runtime timestamps every console line anyway.
            .without_time()
            .with_writer(tracing_web::MakeWebConsoleWriter::new())
            .with_filter(filter);
        let _ = tracing_subscriber::registry().with(console).try_init();
    });
}
