//! When an object copies itself to the shared stores: the cost policy of rooms and counters.
//!
//! The object's SQLite storage is the source of truth; R2 snapshots, the D1 index and the KV read
//! model are copies, so each is written on its own, frugal, demand-driven cadence:
//!
//! - **Snapshot** (R2 plus its D1 rows; for a counter, its D1 row): when the object changed and
//!   a change has waited `SNAPSHOT_INTERVAL_MS`, or `SNAPSHOT_AFTER_EVENTS` events or
//!   `SNAPSHOT_AFTER_BYTES` bytes of bodies wait, or nothing new happened for
//!   `IDLE_SNAPSHOT_MS` (a room that goes quiet is always snapshotted); never closer than
//!   `FLUSH_INTERVAL_MS` to the previous one, unless an operator asks.
//! - **Index row** (D1 `rooms`): with each snapshot, and in between only when what it shows
//!   apart from the snapshot (members, epoch) changed.
//! - **Read model** (KV): only while REST readers read the object. A read that reaches the
//!   object (a KV miss) is a read mark; `READ_MODEL_MIN_READS` marks within
//!   `READ_MODEL_WINDOW_MS` make the object *read-hot*. A read-hot object puts its read model
//!   with a lease of `READ_MODEL_TTL_S`: the KV value expires when the lease ends. During the
//!   lease (reads then come from KV and are invisible to the object) every change is put again
//!   at most once per `READ_MODEL_INTERVAL_MS`, with the same end; a change in the last minute
//!   of a lease (KV's shortest expiry) deletes the value instead. When the lease ends readers
//!   come back to the object, which decides again from their marks.
//!
//! Everything here is pure: the shells ask [`Cadence::decide`] what to write and record what
//! they wrote in [`Copies`], which the object keeps in its storage.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::Limits;

/// KV refuses expirations closer than 60 seconds.
pub const MIN_KV_TTL_MS: u64 = 60_000;
/// Writes of one kind never come closer than this, whatever the settings ask: KV and R2 take one
/// write per key per second. The floor under `FLUSH_INTERVAL_MS` (the check period and the
/// snapshot spacing) and `READ_MODEL_INTERVAL_MS`.
pub const MIN_SPACING_MS: u64 = 1_000;
/// [`Copies::kv_until_ms`] of a KV value written without an expiry (by an older release).
const LEGACY_KV: u64 = u64::MAX;
/// Most read marks an object remembers (it needs only `READ_MODEL_MIN_READS` of them).
const MAX_READ_MARKS: u64 = 10_000;

/// The cadence settings of one object, from its [`Limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    spacing_ms: u64,
    snapshot_interval_ms: u64,
    snapshot_after_events: u64,
    snapshot_after_bytes: u64,
    idle_snapshot_ms: u64,
    read_model_min_reads: u64,
    read_model_window_ms: u64,
    read_model_interval_ms: u64,
    read_model_ttl_ms: u64,
}

impl Cadence {
    /// The cadence the limits ask for (with the platform's floors).
    pub fn new(limits: &Limits) -> Self {
        Self {
            spacing_ms: limits.flush_interval_ms.max(MIN_SPACING_MS),
            snapshot_interval_ms: limits.snapshot_interval_ms,
            snapshot_after_events: limits.snapshot_after_events.max(1),
            snapshot_after_bytes: limits.snapshot_after_bytes.max(1),
            idle_snapshot_ms: limits.idle_snapshot_ms,
            read_model_min_reads: limits.read_model_min_reads.min(MAX_READ_MARKS),
            read_model_window_ms: limits.read_model_window_ms,
            read_model_interval_ms: limits.read_model_interval_ms.max(MIN_SPACING_MS),
            read_model_ttl_ms: limits.read_model_ttl_s.saturating_mul(1_000).max(MIN_KV_TTL_MS),
        }
    }

    /// Least time between two snapshots (and between two checks of the alarm).
    pub fn spacing_ms(&self) -> u64 {
        self.spacing_ms
    }

    /// What to write now, given what the copies hold and what the object is. `bytes_since` is
    /// asked only when the size decides (it may cost a storage read).
    pub fn decide<E>(
        &self,
        copies: &Copies,
        demand: &ReadDemand,
        now: &Observed,
        bytes_since: impl FnOnce() -> Result<u64, E>,
    ) -> Result<Decision, E> {
        let at = now.now_ms;
        let mut decision = Decision::default();
        let mut later = |due: u64| decision_later(&mut decision.next_ms, due);

        // Snapshot.
        let pending = now.seq != copies.snapshot_seq;
        let spaced = copies.snapshot_ms.saturating_add(self.spacing_ms);
        let snapshot = if now.forced {
            true
        } else if !pending {
            false
        } else if at < spaced {
            later(spaced);
            false
        } else {
            let interval_due = now.pending_since_ms.saturating_add(self.snapshot_interval_ms);
            let idle_due = now.last_change_ms.saturating_add(self.idle_snapshot_ms);
            let events = now.seq.abs_diff(copies.snapshot_seq);
            let due = events >= self.snapshot_after_events || at >= interval_due || at >= idle_due;
            if due || bytes_since()? >= self.snapshot_after_bytes {
                true
            } else {
                later(interval_due.min(idle_due));
                false
            }
        };
        decision.snapshot = snapshot;
        // The index row between snapshots, for a room the index already knows (a row written
        // before any snapshot would make a lost room look restorable).
        decision.index =
            !snapshot && copies.snapshot_ms > 0 && now.index_fingerprint != copies.index_fingerprint;

        // Read model.
        let due = self.read_model_due_ms(copies);
        // A value from an older release has no expiry: the next put gives it a full lease.
        let lease_end = if copies.kv_until_ms == LEGACY_KV {
            at.saturating_add(self.read_model_ttl_ms / 1_000 * 1_000)
        } else {
            copies.kv_until_ms
        };
        if copies.kv_until_ms > at {
            if now.view_fingerprint != copies.kv_fingerprint {
                if at < due {
                    decision_later(&mut decision.next_ms, due);
                } else if lease_end - at >= MIN_KV_TTL_MS {
                    let ttl_s = (lease_end - at) / 1_000;
                    decision.read_model = Some(ReadModelWrite::Put { ttl_s, until_ms: lease_end });
                } else {
                    decision.read_model = Some(ReadModelWrite::Delete);
                }
            }
        } else if demand.is_hot(self, at) {
            if at < due {
                decision_later(&mut decision.next_ms, due);
            } else {
                let ttl_s = self.read_model_ttl_ms / 1_000;
                let until_ms = at.saturating_add(ttl_s * 1_000);
                decision.read_model = Some(ReadModelWrite::Put { ttl_s, until_ms });
            }
        }
        Ok(decision)
    }

    /// The soonest the read model may be written again (at once when it never was).
    fn read_model_due_ms(&self, copies: &Copies) -> u64 {
        match copies.kv_written_ms {
            0 => 0,
            at => at.saturating_add(self.read_model_interval_ms),
        }
    }

    /// The latest time the alarm must fire after a change, from what the object knows without
    /// reading storage: when a KV copy exists or readers want one, its next write; when many
    /// events wait (`pending_events`), the next allowed snapshot. `None`: the ordinary check
    /// period will do.
    pub fn wake_by(
        &self,
        copies: &Copies,
        demand: &ReadDemand,
        now_ms: u64,
        pending_events: u64,
    ) -> Option<u64> {
        let mut by = None;
        if copies.kv_until_ms > now_ms || demand.is_hot(self, now_ms) {
            decision_later(&mut by, self.read_model_due_ms(copies).max(now_ms));
        }
        if pending_events >= self.snapshot_after_events {
            decision_later(&mut by, copies.snapshot_ms.saturating_add(self.spacing_ms).max(now_ms));
        }
        by
    }
}

fn decision_later(next: &mut Option<u64>, due: u64) {
    *next = Some(next.map_or(due, |current| current.min(due)));
}

/// What the object is now, for [`Cadence::decide`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observed {
    /// The time now.
    pub now_ms: u64,
    /// The room's seq (a counter's version).
    pub seq: u64,
    /// When the first change the snapshots do not hold was seen.
    pub pending_since_ms: u64,
    /// When the last change was seen.
    pub last_change_ms: u64,
    /// An operator (or a restore) asked for a snapshot now.
    pub forced: bool,
    /// A fingerprint of what the index row shows beside the snapshot (members, epoch).
    pub index_fingerprint: u64,
    /// A fingerprint of the read model (seq, epoch, members; the state changes with the seq).
    pub view_fingerprint: u64,
}

/// What one check writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decision {
    /// A snapshot (R2, its D1 rows: snapshot, index, metrics series).
    pub snapshot: bool,
    /// The index row alone (what it shows beside the snapshot changed).
    pub index: bool,
    /// The KV read model.
    pub read_model: Option<ReadModelWrite>,
    /// When to check again if nothing else happens (`None`: every copy is current).
    pub next_ms: Option<u64>,
}

impl Decision {
    /// Whether anything is written.
    pub fn writes(&self) -> bool {
        self.snapshot || self.index || self.read_model.is_some()
    }
}

/// What one flush managed to write (each part is recorded on its own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// The snapshot with its D1 rows (for a counter, its D1 row).
    pub snapshot: bool,
    /// The index row alone.
    pub index: bool,
    /// The KV read model.
    pub read_model: bool,
}

/// One KV write of the read model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadModelWrite {
    /// Put the read model, expiring in `ttl_s` seconds (at `until_ms`, the lease's end).
    Put {
        /// `expirationTtl`, at least 60.
        ttl_s: u64,
        /// When the value expires.
        until_ms: u64,
    },
    /// Delete the value: it changed too close to the end of its lease to be put again.
    Delete,
}

/// What the shared stores hold of the object, kept in the object's storage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Copies {
    /// The seq (a counter's version) of the newest snapshot.
    pub snapshot_seq: u64,
    /// When it was taken (0: never by this storage).
    pub snapshot_ms: u64,
    /// What the index row shows beside the snapshot.
    pub index_fingerprint: u64,
    /// When the KV value expires (in the past: there is none).
    pub kv_until_ms: u64,
    /// When KV was last written (put or delete).
    pub kv_written_ms: u64,
    /// What the KV value holds.
    pub kv_fingerprint: u64,
    /// The epoch of the room the snapshot was taken in (a room's next snapshot builds on it
    /// only within that epoch; empty for counters and older releases).
    pub snapshot_epoch: String,
    /// When the first change the snapshot does not hold was seen (0: none, or not recorded).
    /// Kept for objects that cannot tell it from their history (counters), so that
    /// `SNAPSHOT_INTERVAL_MS` counts from it across hibernation instead of from each wake-up.
    pub pending_since_ms: u64,
}

impl Copies {
    /// Copies of an object flushed by an older release (every change went to all stores, and
    /// KV values never expired): the snapshot is at `flushed_seq` (taken at an unknown time), and
    /// a KV value without an expiry may exist, so the next change puts it again with one.
    pub fn legacy(flushed_seq: u64) -> Self {
        if flushed_seq == 0 {
            return Self::default();
        }
        Self { snapshot_seq: flushed_seq, snapshot_ms: 1, kv_until_ms: LEGACY_KV, ..Self::default() }
    }

    /// A snapshot at `seq` (with its index row) was written at `now_ms`.
    pub fn snapshotted(&mut self, seq: u64, now_ms: u64, index_fingerprint: u64) {
        self.snapshot_seq = seq;
        self.snapshot_ms = now_ms;
        self.index_fingerprint = index_fingerprint;
        self.pending_since_ms = 0;
    }

    /// A change was seen at `now_ms`. Returns whether the copies must be saved: the first change
    /// after a snapshot starts the interval.
    pub fn change_seen(&mut self, now_ms: u64) -> bool {
        if self.pending_since_ms != 0 {
            return false;
        }
        self.pending_since_ms = now_ms.max(1);
        true
    }

    /// When the first change the snapshot does not hold was seen, if recorded.
    pub fn pending_since(&self) -> Option<u64> {
        (self.pending_since_ms != 0).then_some(self.pending_since_ms)
    }

    /// The index row alone was written.
    pub fn indexed(&mut self, index_fingerprint: u64) {
        self.index_fingerprint = index_fingerprint;
    }

    /// The read model write `write` of the view `view_fingerprint` succeeded at `now_ms`.
    pub fn read_model_written(&mut self, write: ReadModelWrite, now_ms: u64, view_fingerprint: u64) {
        self.kv_written_ms = now_ms;
        match write {
            ReadModelWrite::Put { until_ms, .. } => {
                self.kv_until_ms = until_ms;
                self.kv_fingerprint = view_fingerprint;
            }
            ReadModelWrite::Delete => self.kv_until_ms = 0,
        }
    }

    /// Whether a KV value exists at `now_ms` (the object keeps it current).
    pub fn has_read_model(&self, now_ms: u64) -> bool {
        self.kv_until_ms > now_ms
    }
}

/// Reads that reached the object (KV misses), in memory: losing them (an eviction) only costs a
/// KV write that would have been made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadDemand {
    /// The times of the latest `READ_MODEL_MIN_READS` marks, oldest first.
    marks: VecDeque<u64>,
}

impl ReadDemand {
    /// A REST read reached the object at `now_ms`.
    pub fn mark(&mut self, cadence: &Cadence, now_ms: u64) {
        let keep = usize::try_from(cadence.read_model_min_reads.max(1)).unwrap_or(usize::MAX);
        self.marks.push_back(now_ms);
        while self.marks.len() > keep {
            self.marks.pop_front();
        }
    }

    /// Whether at least `READ_MODEL_MIN_READS` marks fall within the window before `now_ms`
    /// (always, with `READ_MODEL_MIN_READS=0`).
    pub fn is_hot(&self, cadence: &Cadence, now_ms: u64) -> bool {
        let needed = cadence.read_model_min_reads;
        if needed == 0 {
            return true;
        }
        let since = now_ms.saturating_sub(cadence.read_model_window_ms);
        self.marks.len() as u64 >= needed && self.marks.front().is_some_and(|oldest| *oldest >= since)
    }
}

/// A stable 64-bit fingerprint (FNV-1a) of `parts`, for telling whether a copy changed.
pub fn fingerprint<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(&[0xff]) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cadence() -> Cadence {
        Cadence::new(&Limits::default())
    }

    fn never<E>() -> Result<u64, E> {
        panic!("the size was not needed")
    }

    fn ok(bytes: u64) -> impl FnOnce() -> Result<u64, ()> {
        move || Ok(bytes)
    }

    fn hot(c: &Cadence, now: u64) -> ReadDemand {
        let mut demand = ReadDemand::default();
        for i in 0..10 {
            demand.mark(c, now - 10 + i);
        }
        demand
    }

    #[test]
    fn defaults_are_frugal_and_floors_hold() {
        let c = cadence();
        assert_eq!(
            (c.spacing_ms, c.snapshot_interval_ms, c.snapshot_after_events, c.snapshot_after_bytes),
            (5_000, 300_000, 1_000, 1 << 20)
        );
        assert_eq!(
            (c.idle_snapshot_ms, c.read_model_min_reads, c.read_model_window_ms),
            (120_000, 10, 60_000)
        );
        assert_eq!((c.read_model_interval_ms, c.read_model_ttl_ms), (10_000, 300_000));
        let tiny = Cadence::new(&Limits {
            flush_interval_ms: 1,
            read_model_interval_ms: 1,
            read_model_ttl_s: 1,
            snapshot_after_events: 0,
            ..Limits::default()
        });
        assert_eq!((tiny.spacing_ms, tiny.read_model_interval_ms), (1_000, 1_000));
        assert_eq!(tiny.read_model_ttl_ms, MIN_KV_TTL_MS, "KV's shortest expiry");
        assert_eq!(tiny.snapshot_after_events, 1);
    }

    #[test]
    fn the_first_change_after_a_snapshot_is_remembered_until_the_next() {
        let mut copies = Copies::default();
        assert_eq!(copies.pending_since(), None);
        assert!(copies.change_seen(5_000), "the first change is saved");
        assert!(!copies.change_seen(9_000), "later ones change nothing");
        let stored: Copies = serde_json::from_str(&serde_json::to_string(&copies).unwrap()).unwrap();
        assert_eq!(stored.pending_since(), Some(5_000), "it survives in storage");
        copies.snapshotted(7, 10_000, 0);
        assert_eq!(copies.pending_since(), None);
        let older: Copies = serde_json::from_str(r#"{"snapshot_seq":3}"#).unwrap();
        assert_eq!(older.pending_since(), None, "copies saved by an older release");
    }

    #[test]
    fn a_busy_room_waits_for_the_interval_and_an_idle_one_is_snapshotted() {
        let c = Cadence::new(&Limits { idle_snapshot_ms: 30_000, ..Limits::default() });
        let copies = Copies { snapshot_seq: 10, snapshot_ms: 1_000, ..Copies::default() };
        let demand = ReadDemand::default();
        // Events keep coming: no snapshot before the interval; the check comes back by then.
        let busy = Observed {
            now_ms: 60_000,
            seq: 50,
            pending_since_ms: 2_000,
            last_change_ms: 59_000,
            ..Default::default()
        };
        let d = c.decide(&copies, &demand, &busy, ok(10)).unwrap();
        assert!(!d.writes(), "{d:?}");
        assert_eq!(d.next_ms, Some(89_000), "idle due before the interval");
        // The room went quiet for IDLE_SNAPSHOT_MS: snapshot (the size is not even asked).
        let quiet = Observed { now_ms: 89_000, ..busy };
        assert!(c.decide(&copies, &demand, &quiet, never::<()>).unwrap().snapshot);
        // Still busy when the interval is reached: snapshot.
        let late = Observed { now_ms: 302_000, last_change_ms: 301_000, ..busy };
        assert!(c.decide(&copies, &demand, &late, never::<()>).unwrap().snapshot);
        // Many events or many bytes: snapshot sooner.
        let many = Observed { seq: 1_010, ..busy };
        assert!(c.decide(&copies, &demand, &many, never::<()>).unwrap().snapshot);
        assert!(c.decide(&copies, &demand, &busy, ok(2 << 20)).unwrap().snapshot);
        // Never closer than the spacing, unless forced.
        let soon = Observed { now_ms: 3_000, seq: 5_000, ..busy };
        let d = c.decide(&copies, &demand, &soon, never::<()>).unwrap();
        assert_eq!((d.snapshot, d.next_ms), (false, Some(6_000)));
        let forced = Observed { forced: true, ..soon };
        assert!(c.decide(&copies, &demand, &forced, never::<()>).unwrap().snapshot);
        // Nothing pending: nothing to do, no check needed.
        let clean = Observed { seq: 10, ..busy };
        assert_eq!(c.decide(&copies, &demand, &clean, never::<()>).unwrap(), Decision::default());
    }

    #[test]
    fn the_index_row_moves_alone_only_when_members_or_epoch_change_in_a_known_room() {
        let c = cadence();
        let demand = ReadDemand::default();
        let now = Observed { now_ms: 10_000, seq: 3, index_fingerprint: 7, ..Default::default() };
        let never_snapshotted = Copies { snapshot_seq: 3, ..Copies::default() };
        assert!(!c.decide(&never_snapshotted, &demand, &now, never::<()>).unwrap().index);
        let known = Copies { snapshot_seq: 3, snapshot_ms: 1, index_fingerprint: 6, ..Copies::default() };
        let d = c.decide(&known, &demand, &now, never::<()>).unwrap();
        assert!(d.index && !d.snapshot);
        let same = Copies { index_fingerprint: 7, ..known };
        assert!(!c.decide(&same, &demand, &now, never::<()>).unwrap().writes());
    }

    #[test]
    fn reads_make_a_room_hot_and_marks_decay() {
        let c = cadence();
        let mut demand = ReadDemand::default();
        for i in 0..9 {
            demand.mark(&c, 1_000 + i);
        }
        assert!(!demand.is_hot(&c, 2_000), "nine reads are not enough");
        demand.mark(&c, 2_000);
        assert!(demand.is_hot(&c, 2_000));
        assert!(demand.is_hot(&c, 61_000));
        assert!(!demand.is_hot(&c, 61_001), "the oldest mark left the window");
        let always = Cadence::new(&Limits { read_model_min_reads: 0, ..Limits::default() });
        assert!(ReadDemand::default().is_hot(&always, 0));
    }

    #[test]
    fn only_read_rooms_write_kv_within_a_lease_that_ends() {
        let c = cadence();
        let start = 100_000;
        let now = Observed { now_ms: start, seq: 5, view_fingerprint: 1, ..Default::default() };
        let copies = Copies { snapshot_seq: 5, snapshot_ms: 1, ..Copies::default() };
        // Nobody reads: no KV.
        assert_eq!(
            c.decide(&copies, &ReadDemand::default(), &now, never::<()>).unwrap(),
            Decision::default()
        );
        // Read-hot: put with a lease of READ_MODEL_TTL_S.
        let demand = hot(&c, start);
        let d = c.decide(&copies, &demand, &now, never::<()>).unwrap();
        let put = ReadModelWrite::Put { ttl_s: 300, until_ms: start + 300_000 };
        assert_eq!(d.read_model, Some(put));
        let mut copies = copies;
        copies.read_model_written(put, start, 1);
        // Unchanged: nothing more, even while the readers' marks are gone (they read KV now).
        let later = Observed { now_ms: start + 70_000, ..now };
        let cold = ReadDemand::default();
        assert_eq!(c.decide(&copies, &cold, &later, never::<()>).unwrap().read_model, None);
        // Changed: at most once per interval, with the lease's end.
        let changed = Observed { now_ms: start + 5_000, seq: 6, view_fingerprint: 2, ..now };
        let d = c.decide(&copies, &cold, &changed, ok(0)).unwrap();
        assert_eq!((d.read_model, d.next_ms), (None, Some(start + 10_000)));
        let changed = Observed { now_ms: start + 10_000, ..changed };
        let d = c.decide(&copies, &cold, &changed, ok(0)).unwrap();
        assert_eq!(d.read_model, Some(ReadModelWrite::Put { ttl_s: 290, until_ms: start + 300_000 }));
        // A change in the last minute deletes the value; the lease ends.
        let end = Observed { now_ms: start + 250_000, ..changed };
        let d = c.decide(&copies, &cold, &end, never::<()>).unwrap();
        assert_eq!(d.read_model, Some(ReadModelWrite::Delete));
        copies.read_model_written(ReadModelWrite::Delete, start + 250_000, 2);
        assert!(!copies.has_read_model(start + 250_000));
        // After the lease, readers come back and decide again.
        let after = Observed { now_ms: start + 400_000, ..changed };
        assert_eq!(c.decide(&copies, &cold, &after, never::<()>).unwrap().read_model, None);
        let again = hot(&c, start + 400_000);
        assert!(matches!(
            c.decide(&copies, &again, &after, never::<()>).unwrap().read_model,
            Some(ReadModelWrite::Put { ttl_s: 300, .. })
        ));
    }

    #[test]
    fn the_alarm_is_pulled_in_for_readers_and_for_many_events() {
        let c = cadence();
        let copies =
            Copies { snapshot_ms: 1_000, kv_written_ms: 5_000, kv_until_ms: 100_000, ..Copies::default() };
        let cold = ReadDemand::default();
        assert_eq!(c.wake_by(&copies, &cold, 8_000, 1), Some(15_000));
        assert_eq!(c.wake_by(&copies, &cold, 20_000, 1), Some(20_000));
        let no_copy = Copies { kv_until_ms: 0, ..copies };
        assert_eq!(c.wake_by(&no_copy, &cold, 8_000, 1), None);
        assert_eq!(c.wake_by(&no_copy, &hot(&c, 8_000), 8_000, 1), Some(15_000));
        assert_eq!(c.wake_by(&no_copy, &cold, 8_000, 1_000), Some(8_000));
    }

    #[test]
    fn legacy_copies_put_kv_again_with_an_expiry_and_fingerprints_differ() {
        let c = cadence();
        let copies = Copies::legacy(40);
        assert_eq!((copies.snapshot_seq, copies.snapshot_ms), (40, 1));
        let now = Observed {
            now_ms: 20_000,
            seq: 41,
            last_change_ms: 20_000,
            pending_since_ms: 20_000,
            view_fingerprint: 9,
            ..Default::default()
        };
        let d = c.decide(&copies, &ReadDemand::default(), &now, ok(0)).unwrap();
        assert_eq!(d.read_model, Some(ReadModelWrite::Put { ttl_s: 300, until_ms: 320_000 }));
        assert_eq!(Copies::legacy(0), Copies::default());
        assert_ne!(fingerprint([b"ab".as_slice(), b"c"]), fingerprint([b"a".as_slice(), b"bc"]));
        assert_eq!(fingerprint([b"x".as_slice()]), fingerprint([b"x".as_slice()]));
    }
}
