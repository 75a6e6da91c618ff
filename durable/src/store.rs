//! The room's durable storage: the ordered event history, the shared state and the room's
//! persistent sequences (connection ids, the seq floor, the flushed seq), in SQL.

use edgeroom_protocol::{Body, Event, EventKind, StateEntry};

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
    // Finds a retried operation's original event; only rows with an op id are indexed.
    "CREATE INDEX IF NOT EXISTS events_by_op_id ON events (op_id) WHERE op_id IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL, seq INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sequences (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
];

/// Number of keys and bytes (keys plus values) of the shared state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateSize {
    /// Keys.
    pub keys: usize,
    /// Bytes of all keys and values.
    pub bytes: usize,
}

/// One event as stored: the broadcast [`Event`] plus what only the server keeps.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
        // Rooms created before the rename kept their sequences in a table named `counters`.
        let old = sql.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'counters'", &[])?;
        if !old.is_empty() {
            sql.query("ALTER TABLE counters RENAME TO sequences", &[])?;
        }
        for statement in SCHEMA {
            sql.query(statement, &[])?;
        }
        Ok(Self { sql })
    }

    /// The highest sequence number ever assigned (0 for a new room). A restore of an older
    /// snapshot leaves a floor in `sequences`, so numbers are never handed out twice.
    pub fn last_seq(&self) -> Result<u64, StoreError> {
        let rows = self.sql.query(
            "SELECT MAX(COALESCE((SELECT MAX(seq) FROM events), 0),
                        COALESCE((SELECT value FROM sequences WHERE name = 'seq_floor'), 0))",
            &[],
        )?;
        Ok(first_value(&rows).and_then(SqlValue::as_u64).unwrap_or(0))
    }

    /// Whether the room has never stored anything (a new or wiped object).
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        let rows = self.sql.query(
            "SELECT (SELECT COUNT(*) FROM events) + (SELECT COUNT(*) FROM state) + (SELECT COUNT(*) FROM sequences)",
            &[],
        )?;
        Ok(first_value(&rows).and_then(SqlValue::as_u64) == Some(0))
    }

    /// Rows this storage read and wrote so far.
    pub fn counts(&self) -> crate::SqlCounts {
        self.sql.counts()
    }

    /// Every persistent sequence.
    pub fn sequences(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = self.sql.query("SELECT name, value FROM sequences ORDER BY name", &[])?;
        rows.into_iter()
            .map(|row| {
                let mut values = row.into_iter();
                let name =
                    values.next().and_then(SqlValue::into_text).ok_or(StoreError::BadRow("sequence name"))?;
                let value =
                    values.next().and_then(|v| v.as_u64()).ok_or(StoreError::BadRow("sequence value"))?;
                Ok((name, value))
            })
            .collect()
    }

    /// Deletes history and shared state (sequences and meta stay).
    pub fn clear_room(&self) -> Result<(), StoreError> {
        self.sql.query("DELETE FROM events", &[])?;
        self.sql.query("DELETE FROM state", &[])?;
        Ok(())
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

    /// Up to `limit` events with `seq > after`, in order, stopping once `max_bytes` of bodies are
    /// in the page (the first event always is): a page never holds the whole history in memory.
    pub fn events_page(
        &self,
        after: u64,
        limit: u64,
        max_bytes: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = self.sql.query(
            "SELECT seq, kind, body, sender, topic, key, op_id, at_ms FROM (
                SELECT *, SUM(length(CAST(body AS BLOB))) OVER (ORDER BY seq) - length(CAST(body AS BLOB)) AS before
                FROM events WHERE seq > ? ORDER BY seq LIMIT ?
             ) WHERE before < ? ORDER BY seq",
            &[after.into(), limit.into(), (max_bytes.max(1) as u64).into()],
        )?;
        rows.into_iter().map(stored_event_from_row).collect()
    }

    /// The lowest sequence number still in history, if any event is kept.
    pub fn oldest_seq(&self) -> Result<Option<u64>, StoreError> {
        let rows = self.sql.query("SELECT MIN(seq) FROM events", &[])?;
        Ok(first_value(&rows).and_then(SqlValue::as_u64))
    }

    /// Bytes of the bodies of all events with `seq > after`.
    pub fn body_bytes_after(&self, after: u64) -> Result<u64, StoreError> {
        let rows = self.sql.query(
            "SELECT COALESCE(SUM(length(CAST(body AS BLOB))), 0) FROM events WHERE seq > ?",
            &[after.into()],
        )?;
        Ok(first_value(&rows).and_then(SqlValue::as_u64).unwrap_or(0))
    }

    /// The sequence number of the event an operation id produced, if history still has it.
    pub fn seq_of_op(&self, op_id: &str) -> Result<Option<u64>, StoreError> {
        let rows = self.sql.query("SELECT seq FROM events WHERE op_id = ? LIMIT 1", &[op_id.into()])?;
        Ok(first_value(&rows).and_then(SqlValue::as_u64))
    }

    /// Drops events beyond `max_events` or older than `min_at_ms`, always keeping the newest event
    /// (it carries the room's sequence number).
    pub fn trim_history(&self, max_events: u64, min_at_ms: u64) -> Result<(), StoreError> {
        let last = self.last_seq()?;
        self.sql.query(
            "DELETE FROM events WHERE seq < ? AND (seq <= ? OR at_ms < ?)",
            &[last.into(), last.saturating_sub(max_events).into(), min_at_ms.into()],
        )?;
        Ok(())
    }

    /// Every key of the shared state, in key order.
    pub fn state_entries(&self) -> Result<Vec<StateEntry>, StoreError> {
        let rows = self.sql.query("SELECT key, value, seq FROM state ORDER BY key", &[])?;
        rows.into_iter()
            .map(|row| {
                let [key, value, seq]: [SqlValue; 3] =
                    row.try_into().map_err(|_| StoreError::BadRow("state column count"))?;
                Ok(StateEntry {
                    key: key.into_text().ok_or(StoreError::BadRow("state key"))?,
                    value: value
                        .into_text()
                        .and_then(|text| Body::from_json(text).ok())
                        .ok_or(StoreError::BadRow("state value"))?,
                    seq: seq.as_u64().ok_or(StoreError::BadRow("state seq"))?,
                })
            })
            .collect()
    }

    /// Keys and bytes of the whole shared state.
    pub fn state_size(&self) -> Result<StateSize, StoreError> {
        let rows = self.sql.query(
            "SELECT COUNT(*), COALESCE(SUM(length(CAST(key AS BLOB)) + length(CAST(value AS BLOB))), 0) FROM state",
            &[],
        )?;
        let row = rows.first().ok_or(StoreError::BadRow("state size"))?;
        let number = |i: usize| row.get(i).and_then(SqlValue::as_u64).unwrap_or(0) as usize;
        Ok(StateSize { keys: number(0), bytes: number(1) })
    }

    /// Bytes (key plus value) that `key` takes now; 0 when absent.
    pub fn state_entry_bytes(&self, key: &str) -> Result<usize, StoreError> {
        let rows = self.sql.query(
            "SELECT length(CAST(key AS BLOB)) + length(CAST(value AS BLOB)) FROM state WHERE key = ?",
            &[key.into()],
        )?;
        Ok(first_value(&rows).and_then(SqlValue::as_u64).unwrap_or(0) as usize)
    }

    /// Sets `key` to `value`, recording the event `seq` that set it.
    pub fn put_state(&self, key: &str, value: &Body, seq: u64) -> Result<(), StoreError> {
        self.sql.query(
            "INSERT INTO state (key, value, seq) VALUES (?, ?, ?)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, seq = excluded.seq",
            &[key.into(), value.as_str().into(), seq.into()],
        )?;
        Ok(())
    }

    /// Removes `key` (nothing happens when it is absent).
    pub fn delete_state(&self, key: &str) -> Result<(), StoreError> {
        self.sql.query("DELETE FROM state WHERE key = ?", &[key.into()])?;
        Ok(())
    }

    /// A stored setting of the room (its names, what was last published, …).
    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let rows = self.sql.query("SELECT value FROM meta WHERE key = ?", &[key.into()])?;
        Ok(rows.into_iter().next().and_then(|row| row.into_iter().next()).and_then(SqlValue::into_text))
    }

    /// Stores a setting of the room.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.sql.query(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[key.into(), value.into()],
        )?;
        Ok(())
    }

    /// The current value of the named persistent sequence (0 if never advanced).
    pub fn sequence(&self, name: &str) -> Result<u64, StoreError> {
        let rows = self.sql.query("SELECT value FROM sequences WHERE name = ?", &[name.into()])?;
        Ok(first_value(&rows).and_then(SqlValue::as_u64).unwrap_or(0))
    }

    /// Sets the named persistent sequence.
    pub fn set_sequence(&self, name: &str, value: u64) -> Result<(), StoreError> {
        self.sql.query(
            "INSERT INTO sequences (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            &[name.into(), value.into()],
        )?;
        Ok(())
    }

    /// Advances the named persistent sequence and returns its new value (1 the first time).
    pub fn next_in_sequence(&self, name: &str) -> Result<u64, StoreError> {
        let rows = self.sql.query(
            "INSERT INTO sequences (name, value) VALUES (?, 1)
             ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
            &[name.into()],
        )?;
        first_value(&rows).and_then(SqlValue::as_u64).ok_or(StoreError::BadRow("sequence value"))
    }
}

fn first_value(rows: &[Vec<SqlValue>]) -> Option<&SqlValue> {
    rows.first().and_then(|row| row.first())
}

fn stored_event_from_row(row: Vec<SqlValue>) -> Result<StoredEvent, StoreError> {
    let [seq, kind, body, sender, topic, key, op_id, at_ms]: [SqlValue; 8] =
        row.try_into().map_err(|_| StoreError::BadRow("event column count"))?;
    let kind = kind.as_text().and_then(EventKind::from_name).ok_or(StoreError::BadRow("kind"))?;
    let body =
        body.into_text().and_then(|text| Body::from_json(text).ok()).ok_or(StoreError::BadRow("body"))?;
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
    fn history_pages_stop_at_their_byte_cap_but_hold_at_least_one_event() {
        let store = RoomStore::open(MemorySql::new()).unwrap();
        for seq in 1..=10 {
            store.append(&message(seq, &"x".repeat(998))).unwrap(); // 1,000 bytes of JSON each
        }
        let seqs = |page: Vec<StoredEvent>| page.iter().map(|e| e.event.seq).collect::<Vec<_>>();
        assert_eq!(seqs(store.events_page(0, 100, 2_500).unwrap()), vec![1, 2, 3]);
        assert_eq!(seqs(store.events_page(3, 2, 1_000_000).unwrap()), vec![4, 5]);
        assert_eq!(seqs(store.events_page(9, 100, 1).unwrap()), vec![10], "the first event always fits");
    }

    #[test]
    fn a_reused_seq_is_refused() {
        let store = RoomStore::open(MemorySql::new()).unwrap();
        store.append(&message(1, "a")).unwrap();
        assert!(store.append(&message(1, "b")).is_err());
        assert_eq!(store.events_after(0, 10).unwrap(), vec![message(1, "a")]);
    }

    #[test]
    fn trim_keeps_the_newest_event_and_respects_count_and_age() {
        let store = RoomStore::open(MemorySql::new()).unwrap();
        for seq in 1..=10 {
            let mut event = message(seq, "x");
            event.at_ms = seq * 1000;
            store.append(&event).unwrap();
        }
        store.trim_history(5, 0).unwrap();
        assert_eq!(store.oldest_seq().unwrap(), Some(6));
        store.trim_history(100, 8_500).unwrap();
        assert_eq!(store.oldest_seq().unwrap(), Some(9));
        // Everything is too old, but the newest event stays and the sequence survives.
        store.trim_history(100, u64::MAX).unwrap();
        assert_eq!(store.oldest_seq().unwrap(), Some(10));
        assert_eq!(store.last_seq().unwrap(), 10);
    }

    #[test]
    fn op_ids_find_their_event() {
        let store = RoomStore::open(MemorySql::new()).unwrap();
        let mut event = message(1, "x");
        event.op_id = Some("op-1".into());
        store.append(&event).unwrap();
        assert_eq!(store.seq_of_op("op-1").unwrap(), Some(1));
        assert_eq!(store.seq_of_op("op-2").unwrap(), None);
    }

    #[test]
    fn state_size_counts_bytes_not_characters() {
        let store = RoomStore::open(MemorySql::new()).unwrap();
        store.put_state("k", &Body::from_value("é").unwrap(), 1).unwrap();
        // "k" is 1 byte; "\"é\"" is 4 bytes (é is 2 bytes in UTF-8).
        assert_eq!(store.state_size().unwrap(), StateSize { keys: 1, bytes: 5 });
        assert_eq!(store.state_entry_bytes("k").unwrap(), 5);
        store.put_state("k", &Body::from_value(&1).unwrap(), 2).unwrap();
        assert_eq!(store.state_entries().unwrap()[0].seq, 2);
        store.delete_state("k").unwrap();
        assert_eq!(store.state_size().unwrap(), StateSize::default());
    }

    #[test]
    fn meta_and_sequences_round_trip() {
        let store = RoomStore::open(MemorySql::new()).unwrap();
        assert_eq!(store.meta("tenant").unwrap(), None);
        store.set_meta("tenant", "acme").unwrap();
        store.set_meta("tenant", "globex").unwrap();
        assert_eq!(store.meta("tenant").unwrap().as_deref(), Some("globex"));
        assert_eq!(store.sequence("published").unwrap(), 0);
        store.set_sequence("published", 42).unwrap();
        assert_eq!(store.sequence("published").unwrap(), 42);
    }

    #[test]
    fn rooms_from_before_the_rename_keep_their_sequences() {
        let sql = std::rc::Rc::new(MemorySql::new());
        sql.query("CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)", &[]).unwrap();
        sql.query("INSERT INTO counters (name, value) VALUES ('connection', 41)", &[]).unwrap();
        let store = RoomStore::open(sql).unwrap();
        assert_eq!(store.next_in_sequence("connection").unwrap(), 42);
    }

    #[test]
    fn sequences_advance_and_persist() {
        let store = RoomStore::open(MemorySql::new()).unwrap();
        assert_eq!(store.next_in_sequence("connection").unwrap(), 1);
        assert_eq!(store.next_in_sequence("connection").unwrap(), 2);
        assert_eq!(store.next_in_sequence("other").unwrap(), 1);
    }
}
