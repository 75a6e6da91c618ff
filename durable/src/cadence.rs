//! When a changed room writes what to the shared stores — the policy that keeps a small app inside
//! the free plan.
//!
//! The object's SQLite storage is the source of truth; the shared stores are copies, so each is
//! written on its own, frugal cadence:
//! - **snapshots** (R2, with their D1 index rows) at most every `SNAPSHOT_INTERVAL_MS` after the
//!   first change they do not hold, sooner when much changed (`SNAPSHOT_AFTER_EVENTS` /
//!   `SNAPSHOT_AFTER_BYTES`) or when the room went idle (no connection and no change for
//!   `IDLE_SNAPSHOT_MS`), never closer than `FLUSH_INTERVAL_MS`;
//! - the **KV read model** only while REST readers actually read the room: reads that reach the
//!   object (a KV miss) are counted, and `READ_MODEL_MIN_READS` of them within
//!   `READ_MODEL_WINDOW_MS` mark the room as read for `READ_MODEL_TTL_MS`; while marked, a changed
//!   room writes its read model at most every `READ_MODEL_INTERVAL_MS`, each value expiring with
//!   the mark, so readers come back to the object (and renew the mark) when it ends.

use std::collections::VecDeque;

use crate::Limits;

/// KV refuses expirations sooner than this.
pub const MIN_KV_TTL_MS: u64 = 60_000;

/// The cadence settings, from [`Limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    floor_ms: u64,
    snapshot_interval_ms: u64,
    snapshot_after_events: u64,
    snapshot_after_bytes: u64,
    idle_ms: u64,
    read_model_interval_ms: u64,
    read_model_min_reads: u64,
    read_model_window_ms: u64,
    read_model_ttl_ms: u64,
}

impl Cadence {
    /// The cadence the limits ask for.
    pub fn new(limits: &Limits) -> Self {
        let floor_ms = limits.flush_interval_ms.max(1_000);
        Self {
            floor_ms,
            snapshot_interval_ms: limits.snapshot_interval_ms.max(floor_ms),
            snapshot_after_events: limits.snapshot_after_events,
            snapshot_after_bytes: limits.snapshot_after_bytes,
            idle_ms: limits.idle_snapshot_ms,
            read_model_interval_ms: limits.read_model_interval_ms.max(1_000),
            read_model_min_reads: limits.read_model_min_reads,
            read_model_window_ms: limits.read_model_window_ms,
            read_model_ttl_ms: limits.read_model_ttl_ms.max(MIN_KV_TTL_MS),
        }
    }

    /// When the next snapshot is due (`None`: the snapshots hold everything).
    pub fn snapshot_due_ms(&self, activity: &Activity, connected: bool) -> Option<u64> {
        let first = activity.first_change_ms?;
        let floor = activity.last_snapshot_ms.map_or(0, |at| at.saturating_add(self.floor_ms));
        let much_changed = activity.events >= self.snapshot_after_events.max(1)
            || activity.bytes >= self.snapshot_after_bytes.max(1);
        let mut due = if much_changed { 0 } else { first.saturating_add(self.snapshot_interval_ms) };
        if !connected {
            due = due.min(activity.last_change_ms.saturating_add(self.idle_ms));
        }
        Some(due.max(floor))
    }

    /// Whether REST readers mark the room as read at `now_ms` (always, with
    /// `READ_MODEL_MIN_READS=0`).
    pub fn is_read(&self, activity: &Activity, now_ms: u64) -> bool {
        self.read_model_min_reads == 0 || activity.read_until_ms.is_some_and(|until| until > now_ms)
    }

    /// When the read model should next be written (`None`: not read, or unchanged).
    pub fn read_model_due_ms(&self, activity: &Activity, now_ms: u64) -> Option<u64> {
        if !activity.read_model_stale || !self.is_read(activity, now_ms) {
            return None;
        }
        Some(activity.last_read_model_ms.map_or(0, |at| at.saturating_add(self.read_model_interval_ms)))
    }

    /// How long a read model written at `now_ms` may live in KV: until the read mark ends.
    pub fn read_model_ttl_ms(&self, activity: &Activity, now_ms: u64) -> u64 {
        let until = activity.read_until_ms.unwrap_or(now_ms.saturating_add(self.read_model_ttl_ms));
        until.saturating_sub(now_ms).clamp(MIN_KV_TTL_MS, self.read_model_ttl_ms)
    }

    /// A REST read reached the object at `now_ms` (the read model was not in KV). Returns the
    /// end of a read mark that this read started (the room was not marked before).
    pub fn read(&self, activity: &mut Activity, now_ms: u64) -> Option<u64> {
        let was_read = self.is_read(activity, now_ms);
        let window_start = now_ms.saturating_sub(self.read_model_window_ms);
        activity.reads.push_back(now_ms);
        while activity.reads.front().is_some_and(|at| *at < window_start)
            || activity.reads.len() as u64 > self.read_model_min_reads
        {
            activity.reads.pop_front();
        }
        if self.read_model_min_reads > 0 && activity.reads.len() as u64 >= self.read_model_min_reads {
            let until = now_ms.saturating_add(self.read_model_ttl_ms);
            activity.read_until_ms = Some(until);
            return (!was_read).then_some(until);
        }
        None
    }
}

/// What changed since the last snapshot and read model (memory only: after an eviction the
/// room counts as changed now, which at worst writes a little early).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Activity {
    last_snapshot_ms: Option<u64>,
    first_change_ms: Option<u64>,
    last_change_ms: u64,
    events: u64,
    bytes: u64,
    read_model_stale: bool,
    last_read_model_ms: Option<u64>,
    reads: VecDeque<u64>,
    read_until_ms: Option<u64>,
}

impl Activity {
    /// What a new instance learned from storage: changes wait for a snapshot since
    /// `pending_since_ms`, and the room is read until `read_until_ms`.
    pub fn resume(&mut self, pending_since_ms: Option<u64>, read_until_ms: Option<u64>) {
        if let Some(since) = pending_since_ms {
            self.needs_snapshot(since);
        }
        self.read_until_ms = self.read_until_ms.max(read_until_ms);
    }

    /// When the oldest change that no snapshot holds was made.
    pub fn pending_since_ms(&self) -> Option<u64> {
        self.first_change_ms
    }

    /// `events` events of `bytes` body bytes were stored at `now_ms`.
    pub fn stored(&mut self, now_ms: u64, events: u64, bytes: u64) {
        self.first_change_ms.get_or_insert(now_ms);
        self.last_change_ms = self.last_change_ms.max(now_ms);
        self.events = self.events.saturating_add(events);
        self.bytes = self.bytes.saturating_add(bytes);
        self.read_model_stale = true;
    }

    /// Something only the read model shows changed (presence).
    pub fn view_changed(&mut self, now_ms: u64) {
        self.last_change_ms = self.last_change_ms.max(now_ms);
        self.read_model_stale = true;
    }

    /// The room must be snapshotted although no event says so (a restore, an operator's flush,
    /// storage that was changed before this instance started).
    pub fn needs_snapshot(&mut self, now_ms: u64) {
        self.first_change_ms.get_or_insert(now_ms);
        self.last_change_ms = self.last_change_ms.max(now_ms);
        self.read_model_stale = true;
    }

    /// A snapshot taken when the activity was `taken` was written at `now_ms`; what changed
    /// since it was taken stays pending.
    pub fn snapshotted(&mut self, taken: &Activity, now_ms: u64) {
        self.last_snapshot_ms = Some(now_ms);
        let changed_since = self.events > taken.events || self.bytes > taken.bytes;
        self.events = self.events.saturating_sub(taken.events);
        self.bytes = self.bytes.saturating_sub(taken.bytes);
        self.first_change_ms = changed_since.then_some(taken.last_change_ms.max(now_ms));
    }

    /// The read model as of `taken` was written to KV at `now_ms`.
    pub fn read_model_written(&mut self, taken: &Activity, now_ms: u64) {
        self.last_read_model_ms = Some(now_ms);
        if self.last_change_ms <= taken.last_change_ms && self.events == taken.events {
            self.read_model_stale = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cadence() -> Cadence {
        Cadence::new(&Limits {
            flush_interval_ms: 5_000,
            snapshot_interval_ms: 600_000,
            snapshot_after_events: 1_000,
            snapshot_after_bytes: 1 << 20,
            idle_snapshot_ms: 60_000,
            read_model_interval_ms: 10_000,
            read_model_min_reads: 3,
            read_model_window_ms: 60_000,
            read_model_ttl_ms: 300_000,
            ..Limits::default()
        })
    }

    #[test]
    fn snapshots_wait_for_the_interval_unless_much_changed_or_idle() {
        let c = cadence();
        let mut a = Activity::default();
        assert_eq!(c.snapshot_due_ms(&a, true), None, "clean");
        a.stored(1_000, 1, 10);
        assert_eq!(c.snapshot_due_ms(&a, true), Some(601_000));
        assert_eq!(c.snapshot_due_ms(&a, false), Some(61_000), "vacated: snapshot when idle");
        a.stored(2_000, 999, 10);
        assert_eq!(c.snapshot_due_ms(&a, true), Some(0), "a thousand events: now");
        let taken = a.clone();
        a.stored(3_000, 5, 10);
        a.snapshotted(&taken, 4_000);
        assert_eq!(c.snapshot_due_ms(&a, true), Some(604_000), "what came in during the write waits");
        a.stored(4_500, 995, 0);
        assert_eq!(c.snapshot_due_ms(&a, true), Some(9_000), "never closer than the floor");
        let taken = a.clone();
        a.snapshotted(&taken, 9_000);
        assert_eq!(c.snapshot_due_ms(&a, true), None);
        a.view_changed(10_000);
        assert_eq!(c.snapshot_due_ms(&a, false), None, "presence is not in snapshots");
    }

    #[test]
    fn only_a_read_room_writes_its_read_model_and_the_mark_decays() {
        let c = cadence();
        let mut a = Activity::default();
        a.stored(0, 1, 1);
        assert_eq!(c.read_model_due_ms(&a, 0), None, "nobody reads it");
        c.read(&mut a, 1_000);
        c.read(&mut a, 70_000);
        c.read(&mut a, 80_000);
        assert!(!c.is_read(&a, 80_000), "reads spread beyond the window do not mark");
        assert_eq!(c.read(&mut a, 90_000), Some(390_000), "the mark starts");
        assert!(c.is_read(&a, 90_000));
        assert_eq!(c.read(&mut a, 91_000), None, "a renewal is not a new mark");
        assert_eq!(c.read_model_due_ms(&a, 90_000), Some(0));
        assert_eq!(c.read_model_ttl_ms(&a, 90_000), 300_000);
        let taken = a.clone();
        a.read_model_written(&taken, 90_000);
        assert_eq!(c.read_model_due_ms(&a, 91_000), None, "unchanged");
        a.stored(95_000, 1, 1);
        assert_eq!(c.read_model_due_ms(&a, 95_000), Some(100_000), "at most once per interval");
        assert_eq!(c.read_model_ttl_ms(&a, 350_000), 60_000, "expires with the mark, KV's minimum");
        assert!(!c.is_read(&a, 391_000), "the mark ended");
        assert_eq!(c.read_model_due_ms(&a, 391_000), None);
        // A new instance learns the pending change and the mark from storage.
        let mut woken = Activity::default();
        woken.resume(Some(95_000), Some(391_000));
        assert_eq!(c.snapshot_due_ms(&woken, true), Some(695_000), "not postponed by the wake-up");
        assert!(c.is_read(&woken, 200_000));
    }

    #[test]
    fn zero_min_reads_always_writes_the_read_model() {
        let c = Cadence::new(&Limits { read_model_min_reads: 0, ..Limits::default() });
        let mut a = Activity::default();
        a.stored(0, 1, 1);
        assert_eq!(c.read_model_due_ms(&a, 0), Some(0));
    }
}
