//! One counter shard: an exact 64-bit value with a version, changed by idempotent operations.
//!
//! The value is stored as text (the runtime's SQLite bindings are exact only up to 2^53), and
//! every applied operation remembers its result under its op id, so a retry returns the original
//! value and version instead of applying twice.

use edgeroom_protocol::CounterOp;

use crate::cadence::Copies;
use crate::counter_home::{ShardCount, ShardHistory};
use crate::sql::{Sql, SqlValue, StoreError};
use crate::Metrics;

/// Meta key of the shard's saved metrics.
const METRICS_META: &str = "metrics";
/// Meta key of the metrics at the last metrics series row or report to the home (the base of the
/// next one; older releases kept only [`METRICS_META`], which was both).
const METRICS_BASE_META: &str = "metrics_base";

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS counter_state (id INTEGER PRIMARY KEY CHECK (id = 1), value TEXT NOT NULL, version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS counter_ops (op_id TEXT PRIMARY KEY, value TEXT NOT NULL, version INTEGER NOT NULL, at_ms INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS counter_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
];

/// Applied operations remembered for retries, at the least.
const REMEMBERED_OPS: u64 = 10_000;

/// A shard's value and version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterState {
    /// The value.
    pub value: i64,
    /// Grows by one with every applied operation.
    pub version: u64,
}

/// Why an operation was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CounterError {
    /// The result would leave the i64 range.
    #[error("{value} + {delta} overflows a 64-bit counter")]
    Overflow {
        /// The value before.
        value: i64,
        /// The refused delta.
        delta: i64,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One counter shard over its SQL storage.
pub struct Counter<S> {
    sql: S,
    cached: Option<CounterState>,
    /// What the shard counted, cumulative (storage rows are added from the SQL counts).
    metrics: Metrics,
    /// The totals at the last series row or report (see [`Counter::saved_metrics`]).
    saved: Metrics,
    /// The totals last written to storage (see [`Counter::keep_metrics`]).
    kept: Metrics,
}

impl<S: Sql> Counter<S> {
    /// Opens the shard, creating its tables on first use.
    pub fn open(sql: S) -> Result<Self, StoreError> {
        for statement in SCHEMA {
            sql.query(statement, &[])?;
        }
        let mut counter = Self {
            sql,
            cached: None,
            metrics: Metrics::default(),
            saved: Metrics::default(),
            kept: Metrics::default(),
        };
        if let Some(json) = counter.meta(METRICS_META)? {
            // Metrics are advisory: unreadable saved ones start afresh rather than fail the counter.
            counter.metrics = serde_json::from_str(&json).unwrap_or_default();
            counter.saved = counter.metrics.clone();
            counter.kept = counter.metrics.clone();
        }
        if let Some(json) = counter.meta(METRICS_BASE_META)? {
            counter.saved = serde_json::from_str(&json).unwrap_or_else(|_| counter.metrics.clone());
        }
        Ok(counter)
    }

    /// Everything the shard counted (storage rows included), cumulative across restarts up to the
    /// last save.
    pub fn metrics(&self) -> Metrics {
        let mut metrics = self.metrics.clone();
        let counts = self.sql.counts();
        metrics.rows_read += counts.rows_read;
        metrics.rows_written += counts.rows_written;
        metrics
    }

    /// The counts the shell adds (requests, frames, flush results).
    pub fn metrics_mut(&mut self) -> &mut Metrics {
        &mut self.metrics
    }

    /// The totals to save now and the activity since the last save (a row of the time series).
    pub fn metrics_to_save(&self) -> (Metrics, Metrics) {
        let totals = self.metrics();
        let since = totals.since(&self.saved);
        (totals, since)
    }

    /// `totals` (from [`Counter::metrics_to_save`]) went into a series row (or a report to the
    /// home): stores them as the totals and as the base of the next row, so an eviction keeps both.
    pub fn saved_metrics(&mut self, totals: Metrics) -> Result<(), StoreError> {
        let json = serde_json::to_string(&totals).map_err(|_| StoreError::BadRow("counter metrics"))?;
        self.set_meta(METRICS_META, &json)?;
        self.set_meta(METRICS_BASE_META, &json)?;
        self.kept = totals.clone();
        self.saved = totals;
        Ok(())
    }

    /// Stores the totals when anything but storage rows moved since the last save: an alarm that
    /// writes no series row calls it, so counts made between flushes survive hibernation and
    /// eviction (one storage row per such alarm).
    pub fn keep_metrics(&mut self) -> Result<(), StoreError> {
        let totals = self.metrics();
        if !totals.moved_beyond_rows(&self.kept) {
            return Ok(());
        }
        let json = serde_json::to_string(&totals).map_err(|_| StoreError::BadRow("counter metrics"))?;
        self.set_meta(METRICS_META, &json)?;
        self.kept = totals;
        Ok(())
    }

    /// The current value and version.
    pub fn get(&mut self) -> Result<CounterState, StoreError> {
        if let Some(state) = self.cached {
            return Ok(state);
        }
        let rows = self.sql.query("SELECT value, version FROM counter_state WHERE id = 1", &[])?;
        let state = match rows.into_iter().next() {
            Some(row) => state_from_row(row)?,
            None => CounterState::default(),
        };
        self.cached = Some(state);
        Ok(state)
    }

    /// Applies `op` once per `op_id`: a retry returns the state the first application produced.
    /// Returns the state and whether this call applied it.
    pub fn apply(
        &mut self,
        op_id: &str,
        op: &CounterOp,
        now_ms: u64,
    ) -> Result<(CounterState, bool), CounterError> {
        if let Some(state) = self.recall(op_id)? {
            return Ok((state, false));
        }
        let current = self.get()?;
        let value = match *op {
            CounterOp::Add(delta) => current
                .value
                .checked_add(delta)
                .ok_or(CounterError::Overflow { value: current.value, delta })?,
            CounterOp::Set(value) => value,
            CounterOp::Reset => 0,
        };
        if current.version == 0 && self.meta("copies")?.is_none() {
            // A new counter: its copies start empty (not as an older release's, see `copies`).
            self.set_copies(&Copies::default())?;
        }
        let next = CounterState { value, version: current.version.saturating_add(1) };
        self.sql.query(
            "INSERT INTO counter_state (id, value, version) VALUES (1, ?, ?)
             ON CONFLICT (id) DO UPDATE SET value = excluded.value, version = excluded.version",
            &[value.to_string().into(), next.version.into()],
        )?;
        self.sql.query(
            "INSERT INTO counter_ops (op_id, value, version, at_ms) VALUES (?, ?, ?, ?)",
            &[op_id.into(), value.to_string().into(), next.version.into(), now_ms.into()],
        )?;
        if next.version.is_multiple_of(64) {
            self.sql.query(
                "DELETE FROM counter_ops WHERE version <= ?",
                &[next.version.saturating_sub(REMEMBERED_OPS).into()],
            )?;
        }
        self.cached = Some(next);
        self.metrics.events += 1;
        Ok((next, true))
    }

    /// The shard counts the counter has had (stored in its home shard; one shard when never
    /// declared). A stored value that does not parse is an error, never a silent default.
    pub fn shard_history(&self) -> Result<ShardHistory, StoreError> {
        if let Some(json) = self.meta("shard_history")? {
            return serde_json::from_str(&json).map_err(|_| StoreError::BadRow("counter shard history"));
        }
        // Counters from before the history was kept stored only the count.
        match self.meta("shards")? {
            Some(text) => {
                let shards = text.parse().map_err(|_| StoreError::BadRow("counter shard count"))?;
                Ok(ShardHistory(vec![ShardCount { shards, since_ms: 0 }]))
            }
            None => Ok(ShardHistory::default()),
        }
    }

    /// Number of shards of the counter (see [`Counter::shard_history`]).
    pub fn shards(&self) -> Result<u32, StoreError> {
        Ok(self.shard_history()?.current())
    }

    /// Stores the shard counts.
    pub fn set_shard_history(&self, history: &ShardHistory) -> Result<(), StoreError> {
        let json = serde_json::to_string(history).map_err(|_| StoreError::BadRow("counter shard history"))?;
        self.set_meta("shard_history", &json)
    }

    /// Stores which counter and shard this object is (it only learns them from requests; alarms
    /// and sockets need them later).
    pub fn remember_identity(&self, tenant: &str, name: &str, shard: u32) -> Result<(), StoreError> {
        self.set_meta("identity", &format!("{shard}/{tenant}/{name}"))
    }

    /// The tenant, counter name and shard stored by [`Counter::remember_identity`].
    pub fn identity(&self) -> Result<Option<(String, String, u32)>, StoreError> {
        let Some(text) = self.meta("identity")? else { return Ok(None) };
        let mut parts = text.splitn(3, '/');
        let shard = parts.next().and_then(|s| s.parse().ok());
        match (shard, parts.next(), parts.next()) {
            (Some(shard), Some(tenant), Some(name)) => Ok(Some((tenant.to_owned(), name.to_owned(), shard))),
            _ => Err(StoreError::BadRow("counter identity")),
        }
    }

    /// The state an already applied op id produced on this shard, if it is still remembered.
    pub fn recall(&self, op_id: &str) -> Result<Option<CounterState>, StoreError> {
        let seen =
            self.sql.query("SELECT value, version FROM counter_ops WHERE op_id = ?", &[op_id.into()])?;
        seen.into_iter().next().map(state_from_row).transpose()
    }

    /// A new id for a live subscription socket (never reused by this shard).
    pub fn next_subscriber_id(&self) -> Result<u64, StoreError> {
        let next = match self.meta("subscribers")? {
            Some(text) => text.parse::<u64>().map_err(|_| StoreError::BadRow("subscriber ids"))? + 1,
            None => 1,
        };
        self.set_meta("subscribers", &next.to_string())?;
        Ok(next)
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let rows = self.sql.query("SELECT value FROM counter_meta WHERE key = ?", &[key.into()])?;
        Ok(rows.into_iter().next().and_then(|row| row.into_iter().next()).and_then(SqlValue::into_text))
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.sql.query(
            "INSERT INTO counter_meta (key, value) VALUES (?, ?)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[key.into(), value.into()],
        )?;
        Ok(())
    }

    /// What the shared stores hold of the counter (home only; see [`crate::Cadence`]). A counter
    /// flushed by an older release (D1 and a KV value without expiry on every change) gets copies
    /// that make its next check write both again, the KV value now with an expiry.
    pub fn copies(&mut self) -> Result<Copies, StoreError> {
        match self.meta("copies")? {
            Some(json) => serde_json::from_str(&json).map_err(|_| StoreError::BadRow("counter copies")),
            None if self.get()?.version > 0 => Ok(Copies::legacy(1)),
            None => Ok(Copies::default()),
        }
    }

    /// Stores what the shared stores hold of the counter.
    pub fn set_copies(&self, copies: &Copies) -> Result<(), StoreError> {
        let json = serde_json::to_string(copies).map_err(|_| StoreError::BadRow("counter copies"))?;
        self.set_meta("copies", &json)
    }

    /// Whether this (non-home) shard reports its changes to the home.
    pub fn watched(&self) -> Result<bool, StoreError> {
        Ok(self.meta("watched")?.as_deref() == Some("1"))
    }

    /// Turns change reports to the home on or off.
    pub fn set_watched(&self, on: bool) -> Result<(), StoreError> {
        self.set_meta("watched", if on { "1" } else { "0" })
    }
}

fn state_from_row(row: Vec<SqlValue>) -> Result<CounterState, StoreError> {
    let mut values = row.into_iter();
    let value = values.next().and_then(SqlValue::into_text).and_then(|t| t.parse().ok());
    let version = values.next().and_then(|v| v.as_u64());
    match (value, version) {
        (Some(value), Some(version)) => Ok(CounterState { value, version }),
        _ => Err(StoreError::BadRow("counter state")),
    }
}

/// Sums shard states without overflow: `None` when the sum leaves the i64 range.
pub fn sum_shards(states: &[CounterState]) -> Option<CounterState> {
    let value: i128 = states.iter().map(|s| i128::from(s.value)).sum();
    let version = states.iter().fold(0u64, |sum, s| sum.saturating_add(s.version));
    Some(CounterState { value: i64::try_from(value).ok()?, version })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::testing::MemorySql;

    #[test]
    fn operations_apply_once_with_versions() {
        let mut counter = Counter::open(MemorySql::new()).unwrap();
        assert_eq!(counter.get().unwrap(), CounterState::default());
        assert_eq!(
            counter.apply("a", &CounterOp::Add(5), 1).unwrap(),
            (CounterState { value: 5, version: 1 }, true)
        );
        assert_eq!(
            counter.apply("b", &CounterOp::Add(-7), 1).unwrap().0,
            CounterState { value: -2, version: 2 }
        );
        // A retry gets the original result and changes nothing.
        assert_eq!(
            counter.apply("a", &CounterOp::Add(5), 1).unwrap(),
            (CounterState { value: 5, version: 1 }, false)
        );
        assert_eq!(counter.get().unwrap(), CounterState { value: -2, version: 2 });
        assert_eq!(counter.apply("c", &CounterOp::Set(40), 1).unwrap().0.value, 40);
        assert_eq!(
            counter.apply("d", &CounterOp::Reset, 1).unwrap().0,
            CounterState { value: 0, version: 4 }
        );
    }

    #[test]
    fn extremes_are_exact_and_overflow_is_refused() {
        let sql = std::rc::Rc::new(MemorySql::new());
        let mut counter = Counter::open(sql.clone()).unwrap();
        counter.apply("max", &CounterOp::Set(i64::MAX), 1).unwrap();
        assert_eq!(
            counter.apply("over", &CounterOp::Add(1), 1),
            Err(CounterError::Overflow { value: i64::MAX, delta: 1 })
        );
        assert_eq!(counter.get().unwrap(), CounterState { value: i64::MAX, version: 1 });
        // Exact after reopening (the value is stored as text).
        let mut reopened = Counter::open(sql).unwrap();
        assert_eq!(reopened.get().unwrap().value, i64::MAX);
        reopened.apply("min", &CounterOp::Set(i64::MIN), 1).unwrap();
        assert!(matches!(
            reopened.apply("under", &CounterOp::Add(-1), 1),
            Err(CounterError::Overflow { .. })
        ));
        assert_eq!(reopened.apply("back", &CounterOp::Add(i64::MAX), 1).unwrap().0.value, -1);
    }

    #[test]
    fn sums_are_checked_and_metadata_round_trips() {
        let states = [CounterState { value: i64::MAX, version: 3 }, CounterState { value: -5, version: 2 }];
        assert_eq!(sum_shards(&states), Some(CounterState { value: i64::MAX - 5, version: 5 }));
        assert_eq!(
            sum_shards(&[
                CounterState { value: i64::MAX, version: 1 },
                CounterState { value: 1, version: 1 }
            ]),
            None
        );
        let mut counter = Counter::open(MemorySql::new()).unwrap();
        assert_eq!(counter.shards().unwrap(), 1);
        let mut history = counter.shard_history().unwrap();
        history.grow(4, 10);
        counter.set_shard_history(&history).unwrap();
        assert_eq!(counter.shards().unwrap(), 4);
        assert_eq!(counter.shard_history().unwrap(), history);
        assert!(!counter.watched().unwrap());
        counter.set_watched(true).unwrap();
        assert!(counter.watched().unwrap());
        assert_eq!(counter.recall("a").unwrap(), None);
        counter.apply("a", &CounterOp::Add(2), 1).unwrap();
        assert_eq!(counter.recall("a").unwrap(), Some(CounterState { value: 2, version: 1 }));
        assert_eq!(counter.identity().unwrap(), None);
        counter.remember_identity("acme", "likes", 3).unwrap();
        assert_eq!(counter.identity().unwrap(), Some(("acme".into(), "likes".into(), 3)));
        assert_eq!(counter.next_subscriber_id().unwrap(), 1);
        assert_eq!(counter.next_subscriber_id().unwrap(), 2);
        assert_eq!(counter.copies().unwrap(), Copies::default(), "a new counter has no copies yet");
        let legacy = std::rc::Rc::new(MemorySql::new());
        let mut old = Counter::open(legacy.clone()).unwrap();
        legacy.query("INSERT INTO counter_state (id, value, version) VALUES (1, '5', 3)", &[]).unwrap();
        assert_eq!(old.copies().unwrap(), Copies::legacy(1), "a counter from an older release");
        let copies = Copies { snapshot_seq: 3, snapshot_ms: 9, ..Copies::default() };
        counter.set_copies(&copies).unwrap();
        assert_eq!(counter.copies().unwrap(), copies);
        assert_eq!(Counter::open(MemorySql::new()).unwrap().copies().unwrap(), Copies::default());
    }

    #[test]
    fn metrics_count_writes_and_rows_and_survive_a_reopen() {
        let sql = std::rc::Rc::new(MemorySql::new());
        let mut counter = Counter::open(sql.clone()).unwrap();
        counter.metrics_mut().requests += 2;
        counter.apply("a", &CounterOp::Add(1), 1).unwrap();
        counter.apply("a", &CounterOp::Add(1), 1).unwrap();
        let (totals, since) = counter.metrics_to_save();
        assert_eq!((totals.requests, totals.events), (2, 1), "a retry is not a second event");
        assert!(totals.rows_written >= 2, "state and op rows: {totals:?}");
        assert!(totals.rows_read >= 1);
        assert_eq!(since, totals, "nothing saved before");
        counter.saved_metrics(totals.clone()).unwrap();
        counter.metrics_mut().frame_in(10);
        let (_, since) = counter.metrics_to_save();
        assert_eq!(since.frames_in, 1);
        assert_eq!((since.requests, since.events), (0, 0), "only what came after the save");
        // An evicted shard starts from the saved totals; its new storage counts add to them.
        let reopened = Counter::open(sql).unwrap();
        let after = reopened.metrics();
        assert_eq!((after.requests, after.events, after.frames_in), (2, 1, 0));
        assert!(after.rows_written >= totals.rows_written);
    }

    #[test]
    fn kept_metrics_survive_a_reopen_and_the_next_series_row_still_counts_them() {
        let sql = std::rc::Rc::new(MemorySql::new());
        let mut counter = Counter::open(sql.clone()).unwrap();
        counter.metrics_mut().requests += 1;
        let (totals, _) = counter.metrics_to_save();
        counter.saved_metrics(totals).unwrap();
        // Counted after the series row, kept by an alarm, then the instance is evicted.
        counter.metrics_mut().requests += 5;
        counter.keep_metrics().unwrap();
        let mut reopened = Counter::open(sql).unwrap();
        let (totals, since) = reopened.metrics_to_save();
        assert_eq!((totals.requests, since.requests), (6, 5), "the kept counts are in the next row");
        // Rows alone (the save's own write) do not call for another save.
        let before = reopened.sql.counts().rows_written;
        reopened.keep_metrics().unwrap();
        assert_eq!(reopened.sql.counts().rows_written, before);
    }

    #[test]
    fn a_corrupt_shard_count_is_an_error_not_a_default() {
        let sql = std::rc::Rc::new(MemorySql::new());
        let counter = Counter::open(sql.clone()).unwrap();
        sql.query("INSERT INTO counter_meta (key, value) VALUES ('shards', 'many')", &[]).unwrap();
        assert!(counter.shards().is_err());
    }
}
