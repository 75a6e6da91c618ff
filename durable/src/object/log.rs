//! Leveled logging to the Workers console. The level comes from the `LOG_LEVEL` wrangler var
//! (default `warn`): every console line costs CPU in the runtime, so the hot path stays silent.

use worker::Env;

/// Severity, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Something failed.
    Error,
    /// Something is off but handled.
    Warn,
    /// Lifecycle events (an object opened, a flush ran).
    Info,
    /// Everything, for debugging.
    Debug,
}

/// A console logger that drops lines above its level.
#[derive(Debug, Clone, Copy)]
pub struct Log {
    level: Level,
}

impl Log {
    /// Reads `LOG_LEVEL` (`error`, `warn`, `info`, `debug`; default `warn`).
    pub fn from_env(env: &Env) -> Self {
        let level = match env.var("LOG_LEVEL").map(|v| v.to_string()).as_deref() {
            Ok("error") => Level::Error,
            Ok("info") => Level::Info,
            Ok("debug") => Level::Debug,
            _ => Level::Warn,
        };
        Self { level }
    }

    /// Whether lines of `level` are printed.
    pub fn enabled(&self, level: Level) -> bool {
        level <= self.level
    }

    /// Logs an error.
    pub fn error(&self, message: &str) {
        if self.enabled(Level::Error) {
            worker::console_error!("{message}");
        }
    }

    /// Logs a warning.
    pub fn warn(&self, message: &str) {
        if self.enabled(Level::Warn) {
            worker::console_warn!("{message}");
        }
    }

    /// Logs a lifecycle event.
    pub fn info(&self, message: &str) {
        if self.enabled(Level::Info) {
            worker::console_log!("{message}");
        }
    }
}
