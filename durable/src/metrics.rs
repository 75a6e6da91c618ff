//! What a room or counter counts about itself: plain integers, bumped in memory on the hot path
//! (never a log line per message), persisted with each flush and read live through the admin API.

use std::collections::BTreeMap;

use edgeroom_protocol::{ErrorCode, ServerMessage};
use serde::{Deserialize, Serialize};

use crate::Outgoing;

/// Queues bill one operation per 64 KB (of 1,000 bytes) written, read or deleted.
const QUEUE_CHUNK_BYTES: u64 = 64_000;
/// Internal metadata the queue adds to each message.
const QUEUE_METADATA_BYTES: u64 = 100;

/// A room's live state for operators: who is connected and what it counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomLive {
    /// The room's sequence number.
    pub seq: u64,
    /// The room's epoch.
    pub epoch: String,
    /// Connections now (members and read-only watchers).
    pub connections: usize,
    /// Members present now.
    pub members: Vec<edgeroom_protocol::Member>,
    /// Everything counted so far.
    pub metrics: Metrics,
    /// The billable units of that activity.
    pub units: crate::pricing::Units,
    /// When this was read, in milliseconds since the Unix epoch.
    pub generated_ms: u64,
}

/// Cumulative counts of one room (or counter). Every field only grows, so a difference of two
/// readings is the activity between them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metrics {
    /// Requests the object served (REST calls, WebSocket upgrades, internal calls).
    pub requests: u64,
    /// WebSocket frames received (billed as requests at 20:1).
    pub frames_in: u64,
    /// Bytes of WebSocket frames received.
    pub bytes_in: u64,
    /// WebSocket frames sent (one per socket).
    pub frames_out: u64,
    /// Bytes of WebSocket frames sent.
    pub bytes_out: u64,
    /// Events appended to history (or, for counters, applied writes).
    pub events: u64,
    /// Events delivered: each event times the sockets it went to.
    pub deliveries: u64,
    /// Operations acknowledged.
    pub acks: u64,
    /// Refused frames and operations, by error code.
    pub refusals: BTreeMap<String, u64>,
    /// Rows the object's SQLite storage read.
    pub rows_read: u64,
    /// Rows the object's SQLite storage wrote.
    pub rows_written: u64,
    /// Complete flushes.
    pub flushes_ok: u64,
    /// Failed flush attempts.
    pub flushes_failed: u64,
    /// Milliseconds spent in flushes.
    pub flush_ms: u64,
    /// Bytes of snapshots written to R2.
    pub snapshot_bytes: u64,
    /// KV writes made.
    pub kv_writes: u64,
    /// D1 rows written.
    pub d1_rows_written: u64,
    /// R2 writes (class A operations) made.
    pub r2_writes: u64,
    /// R2 reads (class B operations) made: the last snapshot read back to build the next on.
    pub r2_reads: u64,
    /// Most connections at once.
    pub connections_peak: u64,
    /// Alarm invocations (billed as requests: flushes, heartbeat sweeps, export retries).
    pub alarms: u64,
    /// Queue operations of the export: each message written, read and deleted, per 64 KB.
    pub queue_ops: u64,
    /// Requests that reached the object from a client through the router Worker (each one is a
    /// Workers request; reads the router served from KV alone are not seen here).
    pub worker_requests: u64,
}

/// The counts a room carries in a socket's attachment between saves: every count but the
/// refusals, in this order (append only: attachments written by an older release are read by
/// the newer one).
macro_rules! carried_counts {
    ($($field:ident),* $(,)?) => {
        impl Metrics {
            /// The counts that move between flush checks, to carry in a socket's attachment.
            pub fn carried(&self) -> Vec<u64> {
                vec![$(self.$field),*]
            }

            /// Takes the carried counts that are ahead of these: every count only grows, so the
            /// larger one is the newer.
            pub fn merge_carried(&mut self, carried: &[u64]) {
                let mut values = carried.iter();
                $(if let Some(value) = values.next() {
                    self.$field = self.$field.max(*value);
                })*
            }
        }
    };
}

carried_counts!(
    requests,
    frames_in,
    bytes_in,
    frames_out,
    bytes_out,
    events,
    deliveries,
    acks,
    rows_read,
    rows_written,
    flushes_ok,
    flushes_failed,
    flush_ms,
    snapshot_bytes,
    kv_writes,
    d1_rows_written,
    r2_writes,
    connections_peak,
    alarms,
    queue_ops,
    worker_requests,
    r2_reads,
);

impl Metrics {
    /// Counts one received frame of `bytes`.
    pub fn frame_in(&mut self, bytes: usize) {
        self.frames_in += 1;
        self.bytes_in += bytes as u64;
    }

    /// Counts `frames` sent frames of `bytes` in all.
    pub fn frames_out(&mut self, frames: usize, bytes: usize) {
        self.frames_out += frames as u64;
        self.bytes_out += bytes as u64;
    }

    /// Counts a refusal with `code`.
    pub fn refused(&mut self, code: ErrorCode) {
        let name = serde_json::to_value(code).ok().and_then(|v| v.as_str().map(str::to_owned));
        *self.refusals.entry(name.unwrap_or_else(|| format!("{code:?}"))).or_default() += 1;
    }

    /// Counts what frames about to be sent carry: deliveries of events and acks.
    pub fn outgoing(&mut self, outgoing: &[Outgoing]) {
        for item in outgoing {
            let Outgoing::Deliver { message, recipients } = item else { continue };
            let events = match message {
                ServerMessage::Event(_) => 1,
                ServerMessage::Events(batch) => batch.events.len(),
                ServerMessage::Ack(_) => {
                    self.acks += recipients.len() as u64;
                    0
                }
                _ => 0,
            };
            self.deliveries += (events * recipients.len()) as u64;
        }
    }

    /// Counts one message of `bytes` handed to a queue: written, read and deleted, each billed per
    /// 64 KB (1 KB = 1,000 bytes; about 100 bytes of metadata ride along). Retries add reads.
    pub fn queued(&mut self, bytes: usize) {
        let chunks = (bytes as u64 + QUEUE_METADATA_BYTES).div_ceil(QUEUE_CHUNK_BYTES).max(1);
        self.queue_ops += 3 * chunks;
    }

    /// Notes the number of connections now.
    pub fn connections(&mut self, now: usize) {
        self.connections_peak = self.connections_peak.max(now as u64);
    }

    /// Adds the activity `more` (a reading of other metrics, or of another interval); the peak
    /// is the larger one.
    pub fn add(&mut self, more: &Metrics) {
        for (code, count) in &more.refusals {
            *self.refusals.entry(code.clone()).or_default() += count;
        }
        for (total, add) in [
            (&mut self.requests, more.requests),
            (&mut self.frames_in, more.frames_in),
            (&mut self.bytes_in, more.bytes_in),
            (&mut self.frames_out, more.frames_out),
            (&mut self.bytes_out, more.bytes_out),
            (&mut self.events, more.events),
            (&mut self.deliveries, more.deliveries),
            (&mut self.acks, more.acks),
            (&mut self.rows_read, more.rows_read),
            (&mut self.rows_written, more.rows_written),
            (&mut self.flushes_ok, more.flushes_ok),
            (&mut self.flushes_failed, more.flushes_failed),
            (&mut self.flush_ms, more.flush_ms),
            (&mut self.snapshot_bytes, more.snapshot_bytes),
            (&mut self.kv_writes, more.kv_writes),
            (&mut self.d1_rows_written, more.d1_rows_written),
            (&mut self.r2_writes, more.r2_writes),
            (&mut self.r2_reads, more.r2_reads),
            (&mut self.alarms, more.alarms),
            (&mut self.queue_ops, more.queue_ops),
            (&mut self.worker_requests, more.worker_requests),
        ] {
            *total += add;
        }
        self.connections_peak = self.connections_peak.max(more.connections_peak);
    }

    /// Whether anything but storage rows moved since `earlier` (saving the metrics writes a row
    /// itself, so rows alone never call for another save).
    pub fn moved_beyond_rows(&self, earlier: &Metrics) -> bool {
        let mut delta = self.since(earlier);
        delta.rows_read = 0;
        delta.rows_written = 0;
        delta.connections_peak = 0;
        delta != Metrics::default() || self.connections_peak != earlier.connections_peak
    }

    /// The activity since `earlier` (a reading of the same metrics).
    pub fn since(&self, earlier: &Metrics) -> Metrics {
        let mut refusals = self.refusals.clone();
        for (code, count) in &earlier.refusals {
            if let Some(now) = refusals.get_mut(code) {
                *now = now.saturating_sub(*count);
            }
        }
        refusals.retain(|_, count| *count > 0);
        Metrics {
            requests: self.requests.saturating_sub(earlier.requests),
            frames_in: self.frames_in.saturating_sub(earlier.frames_in),
            bytes_in: self.bytes_in.saturating_sub(earlier.bytes_in),
            frames_out: self.frames_out.saturating_sub(earlier.frames_out),
            bytes_out: self.bytes_out.saturating_sub(earlier.bytes_out),
            events: self.events.saturating_sub(earlier.events),
            deliveries: self.deliveries.saturating_sub(earlier.deliveries),
            acks: self.acks.saturating_sub(earlier.acks),
            refusals,
            rows_read: self.rows_read.saturating_sub(earlier.rows_read),
            rows_written: self.rows_written.saturating_sub(earlier.rows_written),
            flushes_ok: self.flushes_ok.saturating_sub(earlier.flushes_ok),
            flushes_failed: self.flushes_failed.saturating_sub(earlier.flushes_failed),
            flush_ms: self.flush_ms.saturating_sub(earlier.flush_ms),
            snapshot_bytes: self.snapshot_bytes.saturating_sub(earlier.snapshot_bytes),
            kv_writes: self.kv_writes.saturating_sub(earlier.kv_writes),
            d1_rows_written: self.d1_rows_written.saturating_sub(earlier.d1_rows_written),
            r2_writes: self.r2_writes.saturating_sub(earlier.r2_writes),
            r2_reads: self.r2_reads.saturating_sub(earlier.r2_reads),
            connections_peak: self.connections_peak,
            alarms: self.alarms.saturating_sub(earlier.alarms),
            queue_ops: self.queue_ops.saturating_sub(earlier.queue_ops),
            worker_requests: self.worker_requests.saturating_sub(earlier.worker_requests),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeroom_protocol::{Ack, Body, Event, EventKind, Events};
    use uuid::Uuid;

    fn event(seq: u64) -> Event {
        Event { seq, kind: EventKind::Message, body: Body::null(), sender: None, topic: None, key: None }
    }

    #[test]
    fn deliveries_are_events_times_recipients() {
        let mut metrics = Metrics::default();
        metrics.outgoing(&[
            Outgoing::Deliver { message: event(1).into(), recipients: vec![1, 2, 3] },
            Outgoing::Deliver {
                message: Events { events: vec![event(2), event(3)] }.into(),
                recipients: vec![1, 2],
            },
            Outgoing::Deliver { message: Ack { op_id: Uuid::nil(), seq: 1 }.into(), recipients: vec![1] },
            Outgoing::Close { to: 1, code: 4000, reason: String::new() },
        ]);
        assert_eq!((metrics.deliveries, metrics.acks), (7, 1));
    }

    #[test]
    fn rows_alone_do_not_call_for_a_save() {
        let earlier = Metrics { requests: 1, rows_written: 3, ..Metrics::default() };
        let rows = Metrics { rows_read: 9, rows_written: 4, ..earlier.clone() };
        assert!(!rows.moved_beyond_rows(&earlier));
        assert!(Metrics { alarms: 1, ..rows.clone() }.moved_beyond_rows(&earlier));
        assert!(Metrics { connections_peak: 2, ..rows }.moved_beyond_rows(&earlier));
    }

    #[test]
    fn queue_messages_cost_three_operations_per_64_kb() {
        let mut metrics = Metrics::default();
        metrics.queued(10);
        assert_eq!(metrics.queue_ops, 3);
        metrics.queued(63_900);
        assert_eq!(metrics.queue_ops, 6, "100 bytes of metadata still fit one chunk");
        metrics.queued(63_901);
        assert_eq!(metrics.queue_ops, 12, "one byte over is two chunks, each written, read, deleted");
    }

    #[test]
    fn readings_subtract_into_activity() {
        let mut earlier = Metrics::default();
        earlier.frame_in(10);
        earlier.refused(ErrorCode::RateLimited);
        let mut now = earlier.clone();
        now.frame_in(5);
        now.frames_out(3, 300);
        now.refused(ErrorCode::RateLimited);
        now.refused(ErrorCode::TooLarge);
        now.connections(4);
        now.alarms += 2;
        now.queued(1);
        now.worker_requests += 1;
        let delta = now.since(&earlier);
        assert_eq!((delta.frames_in, delta.bytes_in, delta.frames_out, delta.bytes_out), (1, 5, 3, 300));
        assert_eq!(delta.refusals.get("rate_limited"), Some(&1));
        assert_eq!(delta.refusals.get("too_large"), Some(&1));
        assert_eq!(delta.connections_peak, 4);
        assert_eq!((delta.alarms, delta.queue_ops, delta.worker_requests), (2, 3, 1));
        let mut sum = earlier.clone();
        sum.add(&delta);
        assert_eq!(sum, now, "adding the activity to the earlier reading gives the later one");
        assert_eq!(serde_json::from_str::<Metrics>(&serde_json::to_string(&now).unwrap()).unwrap(), now);
        assert_eq!(
            serde_json::from_str::<Metrics>("{}").unwrap(),
            Metrics::default(),
            "fields added later default"
        );
    }
}
