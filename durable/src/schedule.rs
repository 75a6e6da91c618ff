//! When an object sends, flushes and sweeps: the timing policy its shell carries out.
//!
//! Each object has one alarm. It serves two jobs: checking what a changed object copies to the
//! shared stores (snapshot, index, read model; what is due is [`crate::Cadence`]'s decision) at
//! most once per flush interval and again when the cadence says, with capped exponential backoff
//! after failures, and sweeping for silent WebSockets while any are connected. The shell asks [`Timers::next_alarm`]
//! where the alarm should be and sets it; it asks [`Schedule::send`] whether queued frames leave
//! now or after a short wait that lets events coalesce into one batch (and merged presence changes
//! wait for their interval).

use crate::cadence::MIN_SPACING_MS;
use crate::Limits;

/// Longest wait between two flush attempts after failures.
const MAX_FLUSH_BACKOFF_MS: u64 = 300_000;
/// The sweep for silent sockets runs at least this far apart.
const MIN_SWEEP_INTERVAL_MS: u64 = 1_000;

/// What the object has waiting to leave, as [`Schedule::send`] weighs it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Waiting {
    /// Frames are queued (control frames, events, or both).
    pub frames: bool,
    /// How many of the queued frames' events there are.
    pub events: usize,
    /// How long merged presence changes still wait for their interval, if any wait.
    pub presence_wait_ms: Option<u64>,
}

/// What to do with what waits to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendDecision {
    /// Send everything queued now.
    Now,
    /// Send within this many milliseconds (0: after the messages that already arrived are
    /// handled, so they join the batch). A timer due sooner stands.
    After(u64),
    /// Nothing waits.
    Wait,
}

/// The timing settings of one object, from its [`Limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    batch_delay_ms: u64,
    batch_max_events: usize,
    flush_interval_ms: u64,
    first_check_ms: u64,
    heartbeat_timeout_ms: u64,
    sweep_interval_ms: u64,
}

impl Schedule {
    /// The schedule the limits ask for.
    pub fn new(limits: &Limits) -> Self {
        Self {
            batch_delay_ms: limits.batch_delay_ms,
            batch_max_events: limits.batch_max_events,
            // Flushes never come closer than the floor (KV takes one write per key per second).
            flush_interval_ms: limits.flush_interval_ms.max(MIN_SPACING_MS),
            // Nothing is written before the room goes idle or the snapshot interval ends (other
            // copies that want to be sooner say so through `Timers::due_by`).
            first_check_ms: limits
                .idle_snapshot_ms
                .min(limits.snapshot_interval_ms)
                .max(limits.flush_interval_ms)
                .max(MIN_SPACING_MS),
            heartbeat_timeout_ms: limits.heartbeat_timeout_ms,
            sweep_interval_ms: limits.sweep_interval_ms.max(MIN_SWEEP_INTERVAL_MS),
        }
    }

    /// When what waits leaves. Control frames (acks, errors, welcomes) go at once, and so does a
    /// full batch. Events never leave in the turn that queued them: messages that already arrived
    /// are handled first and join their batch, so a saturated room sends one frame per batch and
    /// not one per event, while an idle room adds only that turn. Right after a send they wait
    /// for the rest of the batch delay (`since_last_send_ms` is the time since frames last
    /// left). Merged presence changes leave when their interval has passed, with the next send.
    pub fn send(&self, waiting: Waiting, since_last_send_ms: u64) -> SendDecision {
        if waiting.frames
            && (waiting.events == 0 || self.batch_delay_ms == 0 || waiting.events >= self.batch_max_events)
        {
            return SendDecision::Now;
        }
        let events_wait =
            (waiting.events > 0).then(|| self.batch_delay_ms.saturating_sub(since_last_send_ms));
        match (events_wait, waiting.presence_wait_ms) {
            (Some(a), Some(b)) => SendDecision::After(a.min(b)),
            (Some(wait), None) | (None, Some(wait)) => SendDecision::After(wait),
            (None, None) => SendDecision::Wait,
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

    /// How long after a change of an unchanged object its first flush check comes.
    pub fn first_check_ms(&self) -> u64 {
        self.first_check_ms
    }

    /// Longest time between two sweeps for silent sockets while some are connected.
    pub fn sweep_interval_ms(&self) -> u64 {
        self.sweep_interval_ms
    }

    /// How long after a sweep a wake-up of the object (a message, a request) sweeps again.
    pub fn wake_sweep_ms(&self) -> u64 {
        (self.heartbeat_timeout_ms / 2).max(MIN_SWEEP_INTERVAL_MS)
    }
}

/// The object's view of its alarm: when the next flush is due and how many failed in a row.
/// Kept in memory; after an eviction the pending alarm (stored by the runtime) still fires.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timers {
    flush_due_ms: Option<u64>,
    failures: u32,
    /// When this instance last swept for silent sockets.
    swept_ms: Option<u64>,
}

impl Timers {
    /// The object changed at `now_ms`: a flush check becomes due when the cadence could first
    /// want a write ([`Schedule::first_check_ms`]; an earlier due check stays). Returns the due
    /// time when it is new, so the shell moves the alarm.
    pub fn changed(&mut self, schedule: &Schedule, now_ms: u64) -> Option<u64> {
        if self.flush_due_ms.is_some() {
            return None;
        }
        let due = now_ms.saturating_add(schedule.first_check_ms());
        self.flush_due_ms = Some(due);
        Some(due)
    }

    /// The check must come by `at_ms` (the cadence wants a write then): moves it earlier if it is
    /// later or not armed. Returns the due time when it moved, so the shell moves the alarm.
    /// While failed writes back off, the backoff stands.
    pub fn due_by(&mut self, at_ms: u64) -> Option<u64> {
        if self.failures > 0 || self.flush_due_ms.is_some_and(|due| due <= at_ms) {
            return None;
        }
        self.flush_due_ms = Some(at_ms);
        Some(at_ms)
    }

    /// When the next flush check is due, if one is armed.
    pub fn due_ms(&self) -> Option<u64> {
        self.flush_due_ms
    }

    /// Whether failed writes back off now (retries wait for the alarm).
    pub fn backing_off(&self) -> bool {
        self.failures > 0
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

    /// A check succeeded (it wrote what was due, or nothing was); the next one comes at `next_ms`
    /// (what the cadence waits for), never sooner than one interval.
    pub fn checked(&mut self, schedule: &Schedule, now_ms: u64, next_ms: Option<u64>) {
        self.failures = 0;
        let floor = now_ms.saturating_add(schedule.flush_interval_ms());
        self.flush_due_ms = next_ms.map(|next| next.max(floor));
    }

    /// A flush failed: retry after the backoff, or sooner when the cadence has another write due
    /// at `next_ms` (a failing store must not hold back the others' copies). Returns the number
    /// of failures in a row.
    pub fn flush_failed(&mut self, schedule: &Schedule, now_ms: u64, next_ms: Option<u64>) -> u32 {
        self.failures = self.failures.saturating_add(1);
        let delay = schedule.flush_retry_delay_ms(self.failures);
        let retry = now_ms.saturating_add(delay);
        let floor = now_ms.saturating_add(schedule.flush_interval_ms());
        self.flush_due_ms = Some(next_ms.map_or(retry, |next| next.max(floor).min(retry)));
        self.failures
    }

    /// A cleared fault (tests) should not wait out the backoff: retry within one interval.
    pub fn reset_backoff(&mut self, schedule: &Schedule, now_ms: u64) -> u64 {
        self.failures = 0;
        let due = now_ms.saturating_add(schedule.flush_interval_ms());
        self.flush_due_ms = Some(self.flush_due_ms.map_or(due, |current| current.min(due)));
        due
    }

    /// Whether a wake-up at `now_ms` should sweep for silent sockets: this instance never did,
    /// or half the heartbeat timeout passed since it did.
    pub fn sweep_due(&self, schedule: &Schedule, now_ms: u64) -> bool {
        self.swept_ms.is_none_or(|at| now_ms >= at.saturating_add(schedule.wake_sweep_ms()))
    }

    /// A sweep ran at `now_ms`.
    pub fn swept(&mut self, now_ms: u64) {
        self.swept_ms = Some(now_ms);
    }

    /// Where the alarm should be: the due flush, or the next sweep while sockets are connected,
    /// whichever comes first; `None` when the object may sleep. Every alarm sweeps, so a flush
    /// check that comes first is the sweep too.
    pub fn next_alarm(&self, schedule: &Schedule, now_ms: u64, connected: bool) -> Option<u64> {
        let sweep = connected.then(|| {
            self.swept_ms.unwrap_or(now_ms).saturating_add(schedule.sweep_interval_ms()).max(now_ms)
        });
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
            idle_snapshot_ms: 5_000,
            sweep_interval_ms: 30_000,
            ..Limits::default()
        })
    }

    fn waiting(events: usize, presence_wait_ms: Option<u64>) -> Waiting {
        Waiting { frames: events > 0, events, presence_wait_ms }
    }

    #[test]
    fn control_frames_go_now_and_events_coalesce_with_what_already_arrived() {
        let s = schedule();
        assert_eq!(s.send(Waiting::default(), 0), SendDecision::Wait);
        assert_eq!(s.send(Waiting { frames: true, ..Waiting::default() }, 0), SendDecision::Now, "an ack");
        assert_eq!(s.send(waiting(1, None), 1_000), SendDecision::After(0), "idle: only the current turn");
        assert_eq!(s.send(waiting(3, None), 0), SendDecision::After(2), "just sent: the rest of the delay");
        assert_eq!(s.send(waiting(3, None), 1), SendDecision::After(1));
        assert_eq!(s.send(waiting(10, None), 0), SendDecision::Now, "a full batch does not wait");
        let no_delay = Schedule::new(&Limits { batch_delay_ms: 0, ..Limits::default() });
        assert_eq!(no_delay.send(waiting(3, None), 0), SendDecision::Now);
    }

    #[test]
    fn presence_changes_wait_for_their_interval_or_ride_with_events() {
        let s = schedule();
        assert_eq!(s.send(waiting(0, Some(30)), 0), SendDecision::After(30));
        assert_eq!(s.send(waiting(0, Some(0)), 0), SendDecision::After(0));
        assert_eq!(
            s.send(waiting(2, Some(30)), 0),
            SendDecision::After(2),
            "events do not wait for presence"
        );
        assert_eq!(s.send(waiting(2, Some(1)), 0), SendDecision::After(1));
        assert_eq!(
            s.send(Waiting { frames: true, events: 0, presence_wait_ms: Some(30) }, 0),
            SendDecision::Now
        );
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
    fn the_first_check_waits_for_the_idle_snapshot_or_the_interval() {
        let defaults = Schedule::new(&Limits::default());
        assert_eq!(defaults.first_check_ms(), 120_000, "IDLE_SNAPSHOT_MS");
        let short_interval = Schedule::new(&Limits { snapshot_interval_ms: 60_000, ..Limits::default() });
        assert_eq!(short_interval.first_check_ms(), 60_000);
        let floor =
            Schedule::new(&Limits { idle_snapshot_ms: 0, flush_interval_ms: 10, ..Limits::default() });
        assert_eq!(floor.first_check_ms(), 1_000);
    }

    #[test]
    fn sweeps_ride_on_wake_ups_and_the_alarm_comes_only_when_none_did() {
        let s = schedule();
        let mut timers = Timers::default();
        assert!(timers.sweep_due(&s, 0), "a new instance sweeps at its first wake-up");
        timers.swept(1_000);
        assert!(!timers.sweep_due(&s, 30_999), "within half the heartbeat timeout");
        assert!(timers.sweep_due(&s, 31_000));
        assert_eq!(timers.next_alarm(&s, 2_000, true), Some(31_000), "SWEEP_INTERVAL_MS after the last");
        assert_eq!(timers.next_alarm(&s, 40_000, true), Some(40_000), "overdue: now");
        assert_eq!(timers.next_alarm(&s, 2_000, false), None, "nobody to sweep");
        timers.changed(&s, 2_000);
        assert_eq!(timers.next_alarm(&s, 2_000, true), Some(7_000), "the check sweeps too");
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
        assert_eq!(timers.flush_failed(&s, 5_100, None), 1);
        assert_eq!(timers.next_alarm(&s, 5_100, false), Some(15_100));
        assert_eq!(timers.due_by(6_000), None, "the backoff stands");
        assert_eq!(timers.flush_failed(&s, 15_100, Some(16_000)), 2);
        assert_eq!(timers.next_alarm(&s, 15_100, false), Some(20_100), "another copy is due first");
        timers.start_flush();
        assert_eq!(timers.flush_failed(&s, 15_100, None), 3);
        assert_eq!(timers.next_alarm(&s, 15_100, false), Some(55_100));
        assert_eq!(timers.reset_backoff(&s, 16_000), 21_000);
        assert_eq!(timers.flush_failed(&s, 16_000, None), 1);
        assert_eq!(timers.reset_backoff(&s, 16_000), 21_000);
        assert_eq!(timers.next_alarm(&s, 16_000, false), Some(21_000));
        timers.start_flush();
        timers.checked(&s, 21_000, Some(21_500));
        assert_eq!(timers.next_alarm(&s, 21_000, false), Some(26_000), "never sooner than an interval");
        timers.start_flush();
        timers.checked(&s, 26_000, Some(56_000));
        assert_eq!(timers.next_alarm(&s, 26_000, false), Some(56_000), "when the cadence waits for");
        assert_eq!(timers.due_by(40_000), Some(40_000), "readers want KV sooner");
        assert_eq!(timers.due_by(45_000), None, "an earlier check stays");
        timers.start_flush();
        timers.checked(&s, 40_000, None);
        assert_eq!(timers.next_alarm(&s, 40_000, false), None);
    }
}
