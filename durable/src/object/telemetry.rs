//! Logging through `tracing` to the Workers console, as one JSON object per line so Workers Logs
//! can index the fields (tenant, room, connection, op). The level comes from the `LOG_LEVEL`
//! wrangler var (default `warn`): every console line costs CPU in the runtime, so nothing is
//! logged per message at the default level. The lines are formatted by [`crate::json_log`].

use std::sync::Once;

use tracing::Level;
use worker::wasm_bindgen::JsValue;
use worker::web_sys::console;
use worker::Env;

use crate::json_log::{level_filter, JsonLog};

/// Installs the isolate's subscriber once (the router and every object share the isolate), with
/// the level from `LOG_LEVEL` (`error`, `warn`, `info`, `debug`, `trace`; default `warn`).
pub fn init_tracing(env: &Env) {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let level = env.var("LOG_LEVEL").map(|v| v.to_string()).unwrap_or_default();
        let _ = tracing::subscriber::set_global_default(JsonLog::new(level_filter(&level), write_console));
    });
}

/// Writes one line with the console method of its level (`std::time` panics on wasm32; the
/// runtime timestamps every console line anyway).
fn write_console(level: Level, line: &str) {
    let line = JsValue::from_str(line);
    match level {
        Level::ERROR => console::error_1(&line),
        Level::WARN => console::warn_1(&line),
        Level::INFO => console::info_1(&line),
        _ => console::debug_1(&line),
    }
}
