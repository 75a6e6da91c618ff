//! When an object sends, flushes and sweeps: the timing policy its shell carries out.
//!
//! Each object has one alarm. It serves two jobs: flushing a changed object (snapshot, index, read
//! model) at most once per flush interval, with capped exponential backoff after failures, and
//! sweeping for silent WebSockets while any are connected. The shell asks [`Timers::next_alarm`]
//! where the alarm should be and sets it; it asks [`Schedule::send`] whether queued frames leave
//! now or after a short wait that lets events coalesce into one batch.

use crate::Limits;

/// Longest wait between two flush attempts after failures.
const MAX_FLUSH_BACKOFF_MS: u64 = 300_000;
/// The sweep for silent sockets runs at least this far apart.
const MIN_SWEEP_INTERVAL_MS: u64 = 1_000;

/// What to do with frames that were just queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendDecision {
    /// Send everything queued now.
    Now,
    /// Start a timer and send after this many milliseconds (more events may join the batch).
    After(u64),
    /// Nothing to do: nothing is queued, or a timer is already running.
    Wait,
}

/// The timing settings of one object, from its [`Limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    batch_delay_ms: u64,
    batch_max_events: usize,
    flush_interval_ms: u64,
    heartbeat_timeout_ms: u64,
}

impl Schedule {
    /// The schedule the limits ask for.
    pub fn new(limits: &Limits) -> Self {
        Self {
            batch_delay_ms: limits.batch_delay_ms,
            batch_max_events: limits.batch_max_events,
            // Flushes never come closer than the floor (KV takes one write per key per second).
            flush_interval_ms: limits.flush_interval_ms.max(limits.min_flush_interval_ms),
            heartbeat_timeout_ms: limits.heartbeat_timeout_ms,
        }
    }

    /// Whether frames leave now. Control frames (acks, errors, welcomes) go at once. Events go at
    /// once too when nothing was sent within the batch delay (an idle room adds no latency);
    /// while sends follow each other closely, events wait for the rest of the delay to coalesce
    /// into one frame, unless a full batch is already queued. `since_last_send_ms` is the time
    /// since frames last left.
    pub fn send(
        &self,
        has_outgoing: bool,
        queued_events: usize,
        timer_pending: bool,
        since_last_send_ms: u64,
    ) -> SendDecision {
        if !has_outgoing {
            return SendDecision::Wait;
        }
        if queued_events == 0 || self.batch_delay_ms == 0 || queued_events >= self.batch_max_events {
            return SendDecision::Now;
        }
        if timer_pending {
            SendDecision::Wait
        } else if since_last_send_ms >= self.batch_delay_ms {
            SendDecision::Now
        } else {
            SendDecision::After(self.batch_delay_ms - since_last_send_ms)
        }
    }

    /// Least time between two flushes of a changed object.
    pub fn flush_interval_ms(&self) -> u64 {
        self.flush_interval_ms
    }

    /// How long to wait before the next flush attempt after `failures` failed ones in a row.
    pub fn flush_retry_delay_ms(&self, failures: u32) -> u64 {
        let factor = 1u64 << failures.min(8);
        self.flush_interval_ms.saturating_mul(factor).min(MAX_FLUSH_BACKOFF_MS)
    }

    /// How often to look for silent sockets while some are connected.
    pub fn sweep_interval_ms(&self) -> u64 {
        (self.heartbeat_timeout_ms / 2).max(MIN_SWEEP_INTERVAL_MS)
    }
}

/// The object's view of its alarm: when the next flush is due and how many failed in a row.
/// Kept in memory; after an eviction the pending alarm (stored by the runtime) still fires.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timers {
    flush_due_ms: Option<u64>,
    failures: u32,
}

impl Timers {
    /// The object changed at `now_ms`: a flush becomes due within one interval (an earlier due
    /// flush stays). Returns the due time when it is new, so the shell moves the alarm.
    pub fn changed(&mut self, schedule: &Schedule, now_ms: u64) -> Option<u64> {
        if self.flush_due_ms.is_some() {
            return None;
        }
        let due = now_ms.saturating_add(schedule.flush_interval_ms());
        self.flush_due_ms = Some(due);
        Some(due)
    }

    /// Whether this instance has a flush scheduled (an evicted object's timers start empty).
    pub fn is_armed(&self) -> bool {
        self.flush_due_ms.is_some()
    }

    /// Whether a flush is due at `now_ms`.
    pub fn flush_due(&self, now_ms: u64) -> bool {
        self.flush_due_ms.is_some_and(|due| due <= now_ms)
    }

    /// The alarm fired and the flush, if due, is about to run: clear it.
    pub fn start_flush(&mut self) {
        self.flush_due_ms = None;
    }

    /// A flush succeeded; `still_changed` when changes arrived while it was writing.
    pub fn flushed(&mut self, schedule: &Schedule, now_ms: u64, still_changed: bool) {
        self.failures = 0;
        self.flush_due_ms = still_changed.then(|| now_ms.saturating_add(schedule.flush_interval_ms()));
    }

    /// A flush failed: retry after the backoff. Returns the number of failures in a row.
    pub fn flush_failed(&mut self, schedule: &Schedule, now_ms: u64) -> u32 {
        self.failures = self.failures.saturating_add(1);
        let delay = schedule.flush_retry_delay_ms(self.failures);
        self.flush_due_ms = Some(now_ms.saturating_add(delay));
        self.failures
    }

    /// A cleared fault (tests) should not wait out the backoff: retry within one interval.
    pub fn reset_backoff(&mut self, schedule: &Schedule, now_ms: u64) -> u64 {
        self.failures = 0;
        let due = now_ms.saturating_add(schedule.flush_interval_ms());
        self.flush_due_ms = Some(self.flush_due_ms.map_or(due, |current| current.min(due)));
        due
    }

    /// Where the alarm should be: the due flush, or the next sweep while sockets are connected,
    /// whichever comes first; `None` when the object may sleep.
    pub fn next_alarm(&self, schedule: &Schedule, now_ms: u64, connected: bool) -> Option<u64> {
        let sweep = connected.then(|| now_ms.saturating_add(schedule.sweep_interval_ms()));
        match (self.flush_due_ms, sweep) {
            (Some(flush), Some(sweep)) => Some(flush.min(sweep)),
            (flush, sweep) => flush.or(sweep),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Schedule {
        Schedule::new(&Limits {
            batch_delay_ms: 2,
            batch_max_events: 10,
            flush_interval_ms: 5_000,
            heartbeat_timeout_ms: 60_000,
            ..Limits::default()
        })
    }

    #[test]
    fn control_frames_and_idle_rooms_send_now_and_busy_ones_coalesce() {
        let s = schedule();
        assert_eq!(s.send(false, 0, false, 0), SendDecision::Wait);
        assert_eq!(s.send(true, 0, false, 0), SendDecision::Now);
        assert_eq!(s.send(true, 1, false, 1_000), SendDecision::Now, "idle: no added latency");
        assert_eq!(s.send(true, 3, false, 0), SendDecision::After(2), "just sent: coalesce");
        assert_eq!(s.send(true, 3, false, 1), SendDecision::After(1));
        assert_eq!(s.send(true, 3, true, 0), SendDecision::Wait);
        assert_eq!(s.send(true, 10, true, 0), SendDecision::Now, "a full batch does not wait");
        let no_delay = Schedule::new(&Limits { batch_delay_ms: 0, ..Limits::default() });
        assert_eq!(no_delay.send(true, 3, false, 0), SendDecision::Now);
    }

    #[test]
    fn flush_interval_has_a_floor_and_backoff_a_cap() {
        let fast = Schedule::new(&Limits { flush_interval_ms: 10, ..Limits::default() });
        assert_eq!(fast.flush_interval_ms(), 1_000);
        let s = schedule();
        assert_eq!(s.flush_retry_delay_ms(1), 10_000);
        assert_eq!(s.flush_retry_delay_ms(2), 20_000);
        assert_eq!(s.flush_retry_delay_ms(30), 300_000);
        assert_eq!(s.sweep_interval_ms(), 30_000);
    }

    #[test]
    fn timers_arm_once_back_off_and_share_the_alarm_with_the_sweep() {
        let s = schedule();
        let mut timers = Timers::default();
        assert_eq!(timers.next_alarm(&s, 0, false), None, "a clean, empty object sleeps");
        assert_eq!(timers.next_alarm(&s, 0, true), Some(30_000));
        assert_eq!(timers.changed(&s, 100), Some(5_100));
        assert_eq!(timers.changed(&s, 200), None, "an armed flush is not moved later");
        assert_eq!(timers.next_alarm(&s, 200, true), Some(5_100));
        assert!(!timers.flush_due(5_000));
        assert!(timers.flush_due(5_100));
        timers.start_flush();
        assert_eq!(timers.flush_failed(&s, 5_100), 1);
        assert_eq!(timers.next_alarm(&s, 5_100, false), Some(15_100));
        assert_eq!(timers.flush_failed(&s, 15_100), 2);
        assert_eq!(timers.next_alarm(&s, 15_100, false), Some(35_100));
        assert_eq!(timers.reset_backoff(&s, 16_000), 21_000);
        assert_eq!(timers.next_alarm(&s, 16_000, false), Some(21_000));
        timers.start_flush();
        timers.flushed(&s, 21_000, true);
        assert_eq!(timers.next_alarm(&s, 21_000, false), Some(26_000), "changes during a flush");
        timers.start_flush();
        timers.flushed(&s, 26_000, false);
        assert_eq!(timers.next_alarm(&s, 26_000, false), None);
    }
}
