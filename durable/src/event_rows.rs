//! How history is packed into storage rows: events that are stored together (one coalesced
//! batch) share one row, because a Durable Object bills every row written, and an index entry
//! counts as another row. Each event keeps its own `seq`, op id and time inside the row, so
//! resume and history stay exact.

use crate::{StoreError, StoredEvent};

/// Most events in one row: bounds the work of reading a row for one event.
pub const MAX_EVENTS_PER_ROW: usize = 128;
/// Most body bytes in one row (SQLite rows of a Durable Object are capped at 2 MB).
pub const MAX_ROW_BODY_BYTES: usize = 512 * 1024;

/// One stored row: consecutive events `first_seq..=last_seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    /// The first event's seq (the row's key).
    pub first_seq: u64,
    /// The last event's seq.
    pub last_seq: u64,
    /// When the newest event of the row was stored (trimming by age).
    pub at_ms: u64,
    /// Bytes of the events' bodies (replay and page caps).
    pub body_bytes: u64,
    /// The events, in seq order.
    pub events: Vec<StoredEvent>,
}

impl EventRow {
    /// The events as the row's JSON column.
    pub fn encode_events(&self) -> Result<String, StoreError> {
        serde_json::to_string(&self.events).map_err(|_| StoreError::BadRow("event row encoding"))
    }

    /// The events of a row's JSON column, checked to be the consecutive seqs the row claims.
    pub fn decode_events(first_seq: u64, last_seq: u64, json: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let events: Vec<StoredEvent> =
            serde_json::from_str(json).map_err(|_| StoreError::BadRow("event row"))?;
        let consecutive = events.iter().zip(first_seq..).all(|(stored, seq)| stored.event.seq == seq);
        let complete = events.last().map(|stored| stored.event.seq) == Some(last_seq);
        if !consecutive || !complete {
            return Err(StoreError::BadRow("event row seqs"));
        }
        Ok(events)
    }
}

/// Packs consecutive events into as few rows as the caps allow, in order.
pub fn pack(events: &[StoredEvent]) -> Vec<EventRow> {
    let mut rows: Vec<EventRow> = Vec::new();
    for stored in events {
        let bytes = stored.event.body.len() as u64;
        let fits = rows.last().is_some_and(|row| {
            row.events.len() < MAX_EVENTS_PER_ROW
                && row.body_bytes + bytes <= MAX_ROW_BODY_BYTES as u64
                && row.last_seq.checked_add(1) == Some(stored.event.seq)
        });
        match rows.last_mut() {
            Some(row) if fits => {
                row.last_seq = stored.event.seq;
                row.at_ms = row.at_ms.max(stored.at_ms);
                row.body_bytes += bytes;
                row.events.push(stored.clone());
            }
            _ => rows.push(EventRow {
                first_seq: stored.event.seq,
                last_seq: stored.event.seq,
                at_ms: stored.at_ms,
                body_bytes: bytes,
                events: vec![stored.clone()],
            }),
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeroom_protocol::{Body, Event, EventKind};

    fn stored(seq: u64, body_len: usize) -> StoredEvent {
        let text = "x".repeat(body_len.saturating_sub(2));
        StoredEvent {
            event: Event {
                seq,
                kind: EventKind::Message,
                body: Body::from_value(&text).unwrap(),
                sender: None,
                topic: None,
                key: None,
            },
            op_id: Some(format!("op-{seq}")),
            at_ms: seq * 10,
        }
    }

    #[test]
    fn consecutive_events_share_rows_up_to_the_caps() {
        let events: Vec<_> = (1..=300).map(|seq| stored(seq, 10)).collect();
        let rows = pack(&events);
        let spans: Vec<_> = rows.iter().map(|r| (r.first_seq, r.last_seq)).collect();
        assert_eq!(spans, vec![(1, 128), (129, 256), (257, 300)]);
        assert_eq!(rows[2].at_ms, 3_000);
        assert_eq!(rows[2].body_bytes, 44 * 10);
        let big: Vec<_> = (1..=3).map(|seq| stored(seq, 300 * 1024)).collect();
        assert_eq!(pack(&big).len(), 3, "the byte cap splits rows");
        let gap = vec![stored(1, 10), stored(3, 10)];
        assert_eq!(pack(&gap).len(), 2, "a row only holds consecutive seqs");
    }

    #[test]
    fn rows_round_trip_and_refuse_seqs_that_do_not_match() {
        let rows = pack(&(5..=7).map(|seq| stored(seq, 10)).collect::<Vec<_>>());
        let json = rows[0].encode_events().unwrap();
        assert_eq!(EventRow::decode_events(5, 7, &json).unwrap(), rows[0].events);
        assert!(EventRow::decode_events(5, 8, &json).is_err());
        assert!(EventRow::decode_events(4, 7, &json).is_err());
        assert!(EventRow::decode_events(5, 7, "not json").is_err());
    }
}
