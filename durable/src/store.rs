//! The room's durable storage: the ordered event history and the persistent counters, in SQL.

use edgeroom_protocol::{Body, Event, EventKind};

use crate::sql::{Sql, SqlValue, StoreError};

/// Tables of a room object, created on first use. Each statement runs on its own.
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        sender INTEGER,
        topic TEXT,
        key TEXT,
        op_id TEXT,
        at_ms INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
];

/// One event as stored: the broadcast [`Event`] plus what only the server keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// The event as clients see it.
    pub event: Event,
    /// The operation id that produced it, for idempotent retries.
    pub op_id: Option<String>,
    /// When it was stored, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// Typed access to a room's SQL storage.
pub struct RoomStore<S> {
    sql: S,
}

impl<S: Sql> RoomStore<S> {
    /// Wraps `sql` and creates the tables if they do not exist yet.
    pub fn open(sql: S) -> Result<Self, StoreError> {
        for statement in SCHEMA {
            sql.query(statement, &[])?;
        }
        Ok(Self { sql })
    }

    /// The highest sequence number ever assigned (0 for a new room).
    pub fn last_seq(&self) -> Result<u64, StoreError> {
        let rows = self.sql.query("SELECT MAX(seq) FROM events", &[])?;
        Ok(first_value(&rows).and_then(SqlValue::as_u64).unwrap_or(0))
    }

    /// Appends one event. Its `seq` must be above every stored one (the primary key enforces it).
    pub fn append(&self, stored: &StoredEvent) -> Result<(), StoreError> {
        let event = &stored.event;
        self.sql.query(
            "INSERT INTO events (seq, kind, body, sender, topic, key, op_id, at_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            &[
                event.seq.into(),
                event.kind.as_str().into(),
                event.body.as_str().into(),
                event.sender.into(),
                event.topic.clone().into(),
                event.key.clone().into(),
                stored.op_id.clone().into(),
                stored.at_ms.into(),
            ],
        )?;
        Ok(())
    }

    /// Up to `limit` events with `seq > after`, in order.
    pub fn events_after(&self, after: u64, limit: u64) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = self.sql.query(
            "SELECT seq, kind, body, sender, topic, key, op_id, at_ms FROM events
             WHERE seq > ? ORDER BY seq LIMIT ?",
            &[after.into(), limit.into()],
        )?;
        rows.into_iter().map(stored_event_from_row).collect()
    }

    /// Increments the named persistent counter and returns its new value (1 the first time).
    pub fn next_in_sequence(&self, name: &str) -> Result<u64, StoreError> {
        let rows = self.sql.query(
            "INSERT INTO counters (name, value) VALUES (?, 1)
             ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
            &[name.into()],
        )?;
        first_value(&rows)
            .and_then(SqlValue::as_u64)
            .ok_or(StoreError::BadRow("counter value"))
    }
}

fn first_value(rows: &[Vec<SqlValue>]) -> Option<&SqlValue> {
    rows.first().and_then(|row| row.first())
}

fn stored_event_from_row(row: Vec<SqlValue>) -> Result<StoredEvent, StoreError> {
    let [seq, kind, body, sender, topic, key, op_id, at_ms]: [SqlValue; 8] = row
        .try_into()
        .map_err(|_| StoreError::BadRow("event column count"))?;
    let kind = kind
        .as_text()
        .and_then(EventKind::from_name)
        .ok_or(StoreError::BadRow("kind"))?;
    let body = body
        .into_text()
        .and_then(|text| Body::from_json(text).ok())
        .ok_or(StoreError::BadRow("body"))?;
    Ok(StoredEvent {
        event: Event {
            seq: seq.as_u64().ok_or(StoreError::BadRow("seq"))?,
            kind,
            body,
            sender: sender.as_u64(),
            topic: topic.into_text(),
            key: key.into_text(),
        },
        op_id: op_id.into_text(),
        at_ms: at_ms.as_u64().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::testing::MemorySql;

    fn message(seq: u64, text: &str) -> StoredEvent {
        StoredEvent {
            event: Event {
                seq,
                kind: EventKind::Message,
                body: Body::from_value(text).unwrap(),
                sender: Some(1),
                topic: None,
                key: None,
            },
            op_id: None,
            at_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn new_room_starts_at_zero_and_appends_in_order() {
        let store = RoomStore::open(MemorySql::new()).unwrap();
        assert_eq!(store.last_seq().unwrap(), 0);
        for seq in 1..=3 {
            store.append(&message(seq, &format!("m{seq}"))).unwrap();
        }
        assert_eq!(store.last_seq().unwrap(), 3);
        let after_one = store.events_after(1, 10).unwrap();
        assert_eq!(after_one, vec![message(2, "m2"), message(3, "m3")]);
    }

    #[test]
    fn a_reused_seq_is_refused() {
        let store = RoomStore::open(MemorySql::new()).unwrap();
        store.append(&message(1, "a")).unwrap();
        assert!(store.append(&message(1, "b")).is_err());
        assert_eq!(store.events_after(0, 10).unwrap(), vec![message(1, "a")]);
    }

    #[test]
    fn counters_are_persistent_sequences() {
        let store = RoomStore::open(MemorySql::new()).unwrap();
        assert_eq!(store.next_in_sequence("connection").unwrap(), 1);
        assert_eq!(store.next_in_sequence("connection").unwrap(), 2);
        assert_eq!(store.next_in_sequence("other").unwrap(), 1);
    }
}
