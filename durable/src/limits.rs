//! Tunable limits of a room. Each one is a wrangler var (`[vars]` in `wrangler.toml`, or
//! `--var NAME:VALUE`), with a default that suits the platform's limits.

/// Declares the limits once: field, wrangler var name, type, default, doc.
macro_rules! limits {
    ($($(#[doc = $doc:literal])* $field:ident: $ty:ty = $default:expr, $var:literal;)+) => {
        /// Limits and tuning of a room.
        #[derive(Debug, Clone, PartialEq)]
        pub struct Limits {
            $($(#[doc = $doc])* #[doc = concat!("\n\nWrangler var `", $var, "`.")] pub $field: $ty,)+
        }

        impl Default for Limits {
            fn default() -> Self {
                Self { $($field: $default,)+ }
            }
        }

        impl Limits {
            /// The wrangler var names of every limit, in declaration order.
            pub const VAR_NAMES: &'static [&'static str] = &[$($var),+];

            /// Reads every limit through `lookup` (a wrangler var by name). Missing vars keep their
            /// default; a var that does not parse keeps its default and is reported in the returned
            /// warnings, so a typo never takes a room down.
            pub fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> (Self, Vec<String>) {
                let mut limits = Self::default();
                let mut warnings = Vec::new();
                $(read_var(&lookup, $var, &mut limits.$field, &mut warnings);)+
                (limits, warnings)
            }
        }
    };
}

/// Reads one limit (one copy per field type, not one inlined copy per field: smaller wasm).
#[inline(never)]
fn read_var<T>(lookup: &dyn Fn(&str) -> Option<String>, var: &str, field: &mut T, warnings: &mut Vec<String>)
where
    T: std::str::FromStr + PartialOrd + Default + std::fmt::Display,
{
    let Some(text) = lookup(var) else { return };
    match text.trim().parse::<T>() {
        Ok(value) if value >= T::default() => *field = value,
        _ => warnings.push(format!("ignoring {var}={text:?}: expected a non-negative number; using {field}")),
    }
}

limits! {
    /// Largest frame accepted from a client, in bytes.
    max_frame_bytes: usize = 64 * 1024, "MAX_FRAME_BYTES";
    /// Sustained operations per second per connection (token bucket refill rate).
    rate_per_second: f64 = 50.0, "RATE_LIMIT_PER_SEC";
    /// Operations a connection may burst above its sustained rate (token bucket size).
    rate_burst: f64 = 100.0, "RATE_LIMIT_BURST";
    /// Refused frames within `strike_window_ms` after which the connection is closed.
    max_strikes: u32 = 20, "ABUSE_MAX_STRIKES";
    /// Window over which refused frames are counted, in milliseconds.
    strike_window_ms: u64 = 10_000, "ABUSE_WINDOW_MS";
    /// Keys in a room's shared state.
    state_max_keys: usize = 1_000, "STATE_MAX_KEYS";
    /// Bytes of one state key.
    state_max_key_bytes: usize = 256, "STATE_MAX_KEY_BYTES";
    /// Bytes of one state value (its JSON text).
    state_max_value_bytes: usize = 32 * 1024, "STATE_MAX_VALUE_BYTES";
    /// Bytes of all keys and values of a room's shared state.
    state_max_bytes: usize = 1024 * 1024, "STATE_MAX_BYTES";
    /// Bytes of one connection's presence data (it lives in the 16 KiB socket attachment).
    presence_max_bytes: usize = 2 * 1024, "PRESENCE_MAX_BYTES";
    /// Least time between two presence frames of a room, in milliseconds: changes in between
    /// (a crowd joining) merge into one diff (0: every change goes at once).
    presence_interval_ms: u64 = 50, "PRESENCE_INTERVAL_MS";
    /// Bytes of a message topic.
    topic_max_bytes: usize = 128, "TOPIC_MAX_BYTES";
    /// Events kept in history for resume.
    history_max_events: u64 = 10_000, "HISTORY_MAX_EVENTS";
    /// Age after which events leave history, in milliseconds.
    history_max_age_ms: u64 = 24 * 60 * 60 * 1000, "HISTORY_MAX_AGE_MS";
    /// How long a retried operation (same op id) is recognized and answered with its first
    /// result instead of being applied again, in milliseconds (at most 10,000 operations).
    op_dedup_window_ms: u64 = 10 * 60 * 1000, "OP_DEDUP_WINDOW_MS";
    /// Most bytes of event bodies one resume replays; beyond it the client gets a `gap`.
    replay_max_bytes: usize = 8 * 1024 * 1024, "REPLAY_MAX_BYTES";
    /// Most events coalesced into one `events` frame.
    batch_max_events: usize = 100, "BATCH_MAX_EVENTS";
    /// Most bytes of event bodies coalesced into one `events` frame (a single larger event still
    /// goes alone), so clients with a 1 MiB frame limit can always resume.
    batch_max_bytes: usize = 256 * 1024, "BATCH_MAX_BYTES";
    /// Most bytes of event bodies in one history page (beyond the first event).
    history_page_max_bytes: usize = 1024 * 1024, "HISTORY_PAGE_MAX_BYTES";
    /// Bytes a connection may make the room send to it alone (welcome refreshes, resume replays)
    /// in a burst; refilled at a tenth of it per second. Over it the connection is closed (4012).
    send_budget_bytes: usize = 16 * 1024 * 1024, "SEND_BUDGET_BYTES";
    /// How long events wait to be coalesced before they are sent, in milliseconds (0: no wait).
    batch_delay_ms: u64 = 2, "BATCH_DELAY_MS";
    /// The alarm's check period: least time between two checks of what a changed room or
    /// counter copies to R2, D1 and KV, between two snapshots, and the base of the backoff after
    /// a failed write, in milliseconds (at least 1,000).
    flush_interval_ms: u64 = 5_000, "FLUSH_INTERVAL_MS";
    /// Longest a change waits for a snapshot (R2 and its D1 rows; a counter's D1 row) while the
    /// room stays busy, in milliseconds.
    snapshot_interval_ms: u64 = 300_000, "SNAPSHOT_INTERVAL_MS";
    /// A snapshot is taken sooner once this many events (counter writes) wait for one. Keep it at
    /// most `SNAPSHOT_MAX_EVENTS`, so consecutive snapshots hold every event between them.
    snapshot_after_events: u64 = 1_000, "SNAPSHOT_AFTER_EVENTS";
    /// A snapshot is taken sooner once this many bytes of event bodies wait for one.
    snapshot_after_bytes: u64 = 1024 * 1024, "SNAPSHOT_AFTER_BYTES";
    /// A changed room (counter) with no new event for this long is snapshotted, in milliseconds.
    /// Also how long after a change the first check comes (sooner when `SNAPSHOT_INTERVAL_MS` is
    /// shorter): each check of a room that is still busy is one billed alarm.
    idle_snapshot_ms: u64 = 120_000, "IDLE_SNAPSHOT_MS";
    /// REST reads reaching the object (KV misses) within `READ_MODEL_WINDOW_MS` that make it
    /// write its read model to KV (0: every object always does).
    read_model_min_reads: u64 = 10, "READ_MODEL_MIN_READS";
    /// The window in which `READ_MODEL_MIN_READS` reads make an object read-hot, in milliseconds.
    read_model_window_ms: u64 = 60_000, "READ_MODEL_WINDOW_MS";
    /// Least time between two KV writes of a read-hot object's read model, in milliseconds (at
    /// least 1,000); also how stale a KV read can be.
    read_model_interval_ms: u64 = 10_000, "READ_MODEL_INTERVAL_MS";
    /// How long a KV read model lives after a read-hot object first wrote it, in seconds (at
    /// least 60, KV's shortest expiry); then readers come back to the object, which decides again.
    read_model_ttl_s: u64 = 300, "READ_MODEL_TTL_S";
    /// Most recent events a snapshot carries (the state is always whole).
    snapshot_max_events: u64 = 1_000, "SNAPSHOT_MAX_EVENTS";
    /// A connection silent (no frame, no `ping` text) for this long is dropped at the next sweep,
    /// in milliseconds.
    heartbeat_timeout_ms: u64 = 60_000, "HEARTBEAT_TIMEOUT_MS";
    /// Longest time between two sweeps for silent connections while any are connected, in
    /// milliseconds (at least 1,000). Every alarm sweeps, and so does any wake-up once half the
    /// heartbeat timeout passed since the last sweep; this sets only how often an object with
    /// nothing else to do wakes itself (one billed alarm each).
    sweep_interval_ms: u64 = 300_000, "SWEEP_INTERVAL_MS";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vars_override_defaults_and_bad_values_are_reported() {
        let (limits, warnings) = Limits::from_vars(|name| match name {
            "HISTORY_MAX_EVENTS" => Some("50".into()),
            "RATE_LIMIT_PER_SEC" => Some("2.5".into()),
            "MAX_FRAME_BYTES" => Some("lots".into()),
            "BATCH_DELAY_MS" => Some("0".into()),
            _ => None,
        });
        assert_eq!(limits.history_max_events, 50);
        assert_eq!(limits.rate_per_second, 2.5);
        assert_eq!(limits.max_frame_bytes, Limits::default().max_frame_bytes);
        assert_eq!(limits.batch_delay_ms, 0);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("MAX_FRAME_BYTES"));
    }
}
