//! A small `tracing` subscriber that writes each event as one JSON object per line, in the shape
//! `tracing-subscriber`'s JSON formatter gives without timestamps:
//! `{"level":"WARN","fields":{"message":"flush failed; backing off","room":"acme/lobby","failures":2},"target":"edgeroom_durable::object::room_host"}`.
//!
//! It replaces `tracing-subscriber` (fmt + json + registry) and `tracing-web` in the Worker, which
//! weighed 52 KB of wasm (23 KB gzipped, `docs/size.md`) for what edgeroom uses: events with
//! fields, a level filter, no spans (spans are accepted and ignored). Where the lines go is the caller's choice: the object shell
//! (`object::telemetry`) hands them to the Workers console, tests collect them.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

/// The subscriber: events at `max` or more severe are formatted and handed to `sink`.
pub struct JsonLog<W> {
    max: LevelFilter,
    sink: W,
}

impl<W: Fn(Level, &str) + Send + Sync + 'static> JsonLog<W> {
    /// Writes events at `max` or more severe to `sink`, one JSON line each.
    pub fn new(max: LevelFilter, sink: W) -> Self {
        Self { max, sink }
    }
}

/// The level a `LOG_LEVEL` value names (`error`, `warn`, `info`, `debug`, `trace`, `off`, any
/// case, or `0`–`5`); `warn` when it is unset, empty or names none. (`tracing` itself reads an
/// empty string as `error`; the documented default is `warn`.)
pub fn level_filter(value: &str) -> LevelFilter {
    match value.trim() {
        "" => LevelFilter::WARN,
        value => value.parse::<LevelFilter>().unwrap_or(LevelFilter::WARN),
    }
}

impl<W: Fn(Level, &str) + Send + Sync + 'static> Subscriber for JsonLog<W> {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if self.enabled(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.max >= *metadata.level()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max)
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        (self.sink)(*event.metadata().level(), &json_line(event));
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

/// The event as one JSON object (no trailing newline).
pub fn json_line(event: &Event<'_>) -> String {
    let metadata = event.metadata();
    let mut line = String::with_capacity(128);
    line.push_str("{\"level\":\"");
    line.push_str(metadata.level().as_str());
    line.push_str("\",\"fields\":{");
    let mut fields = Fields { line, first: true };
    event.record(&mut fields);
    let mut line = fields.line;
    line.push_str("},\"target\":");
    push_json_string(&mut line, metadata.target());
    line.push('}');
    line
}

struct Fields {
    line: String,
    first: bool,
}

impl Fields {
    fn key(&mut self, field: &Field) {
        if !self.first {
            self.line.push(',');
        }
        self.first = false;
        let name = field.name();
        push_json_string(&mut self.line, name.strip_prefix("r#").unwrap_or(name));
        self.line.push(':');
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        push_json_string(&mut self.line, &format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        push_json_string(&mut self.line, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.line.push_str(if value { "true" } else { "false" });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            // Rust prints finite floats without exponent or `inf`: valid JSON numbers.
            let _ = write!(self.line, "{value}");
        } else {
            self.line.push_str("null");
        }
    }
}

/// Appends `text` as a JSON string literal.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::{json, Value};

    use super::*;

    fn capture(max: &str, log: impl FnOnce()) -> Vec<(Level, Value)> {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = {
            let lines = Arc::clone(&lines);
            move |level: Level, line: &str| {
                let value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"));
                lines.lock().unwrap().push((level, value));
            }
        };
        tracing::subscriber::with_default(JsonLog::new(level_filter(max), sink), log);
        let lines = lines.lock().unwrap().clone();
        lines
    }

    #[test]
    fn events_are_json_lines_with_fields_and_target() {
        let error = "disk \"full\"\n\tnow";
        let lines = capture("info", || {
            tracing::warn!(room = %"acme/lobby", failures = 2u64, delta = -3i64, ok = true, ratio = 0.5, %error, "flush failed; backing off");
            tracing::info!(sockets = 3, "room opened");
            tracing::debug!("not at info");
            let _span = tracing::info_span!("ignored", x = 1).entered();
            tracing::error!(r#type = "x", nan = f64::NAN, "with a span");
        });
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].0, Level::WARN);
        assert_eq!(
            lines[0].1,
            json!({
                "level": "WARN",
                "fields": {
                    "message": "flush failed; backing off",
                    "room": "acme/lobby",
                    "failures": 2,
                    "delta": -3,
                    "ok": true,
                    "ratio": 0.5,
                    "error": "disk \"full\"\n\tnow",
                },
                "target": "edgeroom_durable::json_log::tests",
            })
        );
        assert_eq!(lines[1].1["fields"], json!({"message": "room opened", "sockets": 3}));
        assert_eq!(lines[2].1["fields"], json!({"message": "with a span", "type": "x", "nan": null}));

        // In the same test: tracing caches each call site's interest process-wide, so subscribers
        // with other levels on parallel test threads would race.
        the_level_comes_from_log_level_and_defaults_to_warn();
    }

    fn the_level_comes_from_log_level_and_defaults_to_warn() {
        let all = || {
            tracing::error!("e");
            tracing::warn!("w");
            tracing::info!("i");
            tracing::debug!("d");
            tracing::trace!("t");
        };
        let count = |max: &str| capture(max, all).len();
        assert_eq!(count(""), 2, "default warn");
        assert_eq!(count("nonsense"), 2);
        assert_eq!(count("error"), 1);
        assert_eq!(count("WARN"), 2);
        assert_eq!(count(" info "), 3);
        assert_eq!(count("debug"), 4);
        assert_eq!(count("trace"), 5);
        assert_eq!(count("off"), 0);
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut out = String::new();
        push_json_string(&mut out, "a\u{1}b\u{1f}é\\");
        assert_eq!(out, r#""a\u0001b\u001fé\\""#);
        assert_eq!(serde_json::from_str::<String>(&out).unwrap(), "a\u{1}b\u{1f}é\\");
    }
}
