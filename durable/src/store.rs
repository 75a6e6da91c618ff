//! The room's durable storage: the ordered event history, the shared state and the room's
//! persistent sequences (connection ids, the seq floor, the flushed seq), in SQL.
//!
//! History is written in rows of consecutive events ([`crate::event_rows`]): appended events wait
//! in memory until [`RoomStore::persist`] writes them together, which the room does before any
//! frame about them leaves the object. Every read of history persists first, so reads always see
//! every appended event.

use std::cell::RefCell;
use std::collections::VecDeque;

use edgeroom_protocol::{Body, Event, StateEntry};

use crate::event_rows::{pack, EventRow, MAX_EVENTS_PER_ROW};
use crate::sql::{Sql, SqlValue, StoreError};

/// Tables of a room object, created on first use. Each statement runs on its own.
const META_TABLE: &str = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)";
/// The `meta` key of the schema version the tables were last migrated to.
const SCHEMA_VERSION_META: &str = "schema_version";
/// Bump when a migration is added to [`RoomStore::open`].
const SCHEMA_VERSION: &str = "2";

const SCHEMA: &[&str] = &[
    // Consecutive events first_seq..=last_seq as a JSON array; at_ms is the newest event's time.
    // No secondary index: each would cost one more billed row per write.
    "CREATE TABLE IF NOT EXISTS event_rows (
        first_seq INTEGER PRIMARY KEY,
        last_seq INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        body_bytes INTEGER NOT NULL,
        events TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL, seq INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sequences (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    META_TABLE,
    // Presence and occupancy events waiting for export (sequenced events export from `events`).
    "CREATE TABLE IF NOT EXISTS export_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL)",
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

/// Rows of history read per query while paging through it.
const ROWS_PER_READ: u64 = 32;
/// Most events, and most body bytes, of the newest history kept in memory (see
/// [`RoomStore::events_page`]): two export batches.
const RECENT_EVENTS: usize = 256;
const RECENT_BYTES: usize = 512 * 1024;

/// A page of events being filled: at most `limit` events, and an event joins while the bytes of
/// the bodies before it are under `max_bytes` (the first always does).
struct Page {
    events: Vec<StoredEvent>,
    bytes: usize,
    limit: u64,
    max_bytes: usize,
}

/// The newest events written by one instance, in seq order and consecutive up to the last stored
/// one, at most [`RECENT_EVENTS`] and [`RECENT_BYTES`] of bodies (kept as a running sum: rows are
/// written on the message path).
#[derive(Default)]
struct RecentHistory {
    events: VecDeque<StoredEvent>,
    bytes: usize,
}

impl RecentHistory {
    /// Adds the events of a row just written; a row that does not follow the last starts anew.
    fn push_row(&mut self, events: Vec<StoredEvent>) {
        let follows = events.first().is_some_and(|first| {
            self.events.back().is_none_or(|last| last.event.seq.checked_add(1) == Some(first.event.seq))
        });
        if !follows {
            self.clear();
        }
        for stored in events {
            self.bytes = self.bytes.saturating_add(stored.event.body.len());
            self.events.push_back(stored);
        }
        while self.events.len() > RECENT_EVENTS || (self.bytes > RECENT_BYTES && self.events.len() > 1) {
            if let Some(dropped) = self.events.pop_front() {
                self.bytes = self.bytes.saturating_sub(dropped.event.body.len());
            }
        }
    }

    /// Forgets events up to `seq` (history trimmed through it).
    fn drop_through(&mut self, seq: u64) {
        while self.events.front().is_some_and(|stored| stored.event.seq <= seq) {
            if let Some(dropped) = self.events.pop_front() {
                self.bytes = self.bytes.saturating_sub(dropped.event.body.len());
            }
        }
    }

    fn clear(&mut self) {
        self.events.clear();
        self.bytes = 0;
    }

    /// The page of events after `after`, when these hold all of them.
    fn page(&self, after: u64, limit: u64, max_bytes: usize) -> Option<Vec<StoredEvent>> {
        if self.events.front()?.event.seq > after.saturating_add(1) {
            return None;
        }
        let mut page = Page::new(limit, max_bytes);
        for stored in self.events.iter().filter(|stored| stored.event.seq > after) {
            if !page.take(stored.clone()) {
                break;
            }
        }
        Some(page.events)
    }
}

impl Page {
    fn new(limit: u64, max_bytes: usize) -> Self {
        Self { events: Vec::new(), bytes: 0, limit, max_bytes }
    }

    /// Adds `stored` if the page has room; `false` when it is full.
    fn take(&mut self, stored: StoredEvent) -> bool {
        if (self.events.len() as u64) >= self.limit
            || (!self.events.is_empty() && self.bytes >= self.max_bytes)
        {
            return false;
        }
        self.bytes = self.bytes.saturating_add(stored.event.body.len());
        self.events.push(stored);
        true
    }
}

/// Typed access to a room's SQL storage.
pub struct RoomStore<S> {
    sql: S,
    /// Appended events not written yet, in seq order.
    unwritten: RefCell<Vec<StoredEvent>>,
    /// The newest events written by this instance, in seq order and consecutive up to the last
    /// stored one: pages that start within them (export batches, resumes of clients a little
    /// behind) need no storage read. Empty after a wake-up.
    recent: RefCell<RecentHistory>,
}

impl<S: Sql> RoomStore<S> {
    /// Wraps `sql` and creates the tables if they do not exist yet.
    pub fn open(sql: S) -> Result<Self, StoreError> {
        // A room opens at every wake-up: the stored schema version (one row read) spares the
        // scans of `sqlite_master` (a billed row per table each) that the migrations need.
        let store = Self { sql, unwritten: RefCell::new(Vec::new()), recent: RefCell::default() };
        store.sql.query(META_TABLE, &[])?;
        let current = store.meta(SCHEMA_VERSION_META)?.is_some_and(|version| version == SCHEMA_VERSION);
        if !current {
            // Rooms created before the rename kept their sequences in a table named `counters`.
            let old = store
                .sql
                .query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'counters'", &[])?;
            if !old.is_empty() {
                store.sql.query("ALTER TABLE counters RENAME TO sequences", &[])?;
            }
        }
        for statement in SCHEMA {
            store.sql.query(statement, &[])?;
        }
        if !current {
            store.migrate_event_table()?;
            store.set_meta(SCHEMA_VERSION_META, SCHEMA_VERSION)?;
        }
        Ok(store)
    }

    /// Rooms created before history was packed into rows kept one event per row in `events`:
    /// move them into rows once.
    fn migrate_event_table(&self) -> Result<(), StoreError> {
        let old =
            self.sql.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'", &[])?;
        if old.is_empty() {
            return Ok(());
        }
        let rows = self.sql.query(
            "SELECT seq, kind, body, sender, topic, key, op_id, at_ms FROM events ORDER BY seq",
            &[],
        )?;
        let events = rows.into_iter().map(legacy_event_from_row).collect::<Result<Vec<_>, _>>()?;
        self.write_rows(&events)?;
        self.sql.query("DROP TABLE events", &[])?;
        Ok(())
    }

    /// The highest sequence number ever assigned (0 for a new room). A restore of an older
    /// snapshot leaves a floor in `sequences`, so numbers are never handed out twice.
    pub fn last_seq(&self) -> Result<u64, StoreError> {
        if let Some(last) = self.unwritten.borrow().last() {
            return Ok(last.event.seq);
        }
        let rows = self.sql.query(
            "SELECT MAX(COALESCE((SELECT last_seq FROM event_rows ORDER BY first_seq DESC LIMIT 1), 0),
                        COALESCE((SELECT value FROM sequences WHERE name = 'seq_floor'), 0))",
            &[],
        )?;
        Ok(first_value(&rows).and_then(SqlValue::as_u64).unwrap_or(0))
    }

    /// Whether the room has never stored anything (a new or wiped object).
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        if !self.unwritten.borrow().is_empty() {
            return Ok(false);
        }
        // EXISTS stops at the first row; COUNT(*) would read (and bill) every row.
        let rows = self.sql.query(
            "SELECT EXISTS (SELECT 1 FROM event_rows) OR EXISTS (SELECT 1 FROM state)
                 OR EXISTS (SELECT 1 FROM sequences)",
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

    /// Replaces history and shared state with `events` (in seq order) and no state; sequences
    /// and meta stay. Events appended before are written first: frames about them may be queued.
    pub fn replace_room(&self, events: &[StoredEvent]) -> Result<(), StoreError> {
        self.persist()?;
        self.sql.query("DELETE FROM event_rows", &[])?;
        self.recent.borrow_mut().clear();
        self.sql.query("DELETE FROM state", &[])?;
        self.write_rows(events)
    }

    /// Appends one event. Its `seq` must be above the last one. It is written by the next
    /// [`Self::persist`] (or read), together with the events appended before it; a full row is
    /// written at once.
    pub fn append(&self, stored: StoredEvent) -> Result<(), StoreError> {
        let last = self.last_seq()?;
        if stored.event.seq <= last {
            return Err(StoreError::BadRow("appended seq is not above the last one"));
        }
        let full = {
            let mut unwritten = self.unwritten.borrow_mut();
            unwritten.push(stored);
            unwritten.len() >= MAX_EVENTS_PER_ROW
        };
        if full {
            self.persist()?;
        }
        Ok(())
    }

    /// Writes every appended event, as few rows as possible. On failure the unwritten events
    /// are dropped (they were never sent or acknowledged) and the error returned.
    pub fn persist(&self) -> Result<(), StoreError> {
        let events = std::mem::take(&mut *self.unwritten.borrow_mut());
        if events.is_empty() {
            return Ok(());
        }
        self.write_rows(&events)
    }

    /// Whether appended events wait to be written.
    pub fn has_unwritten(&self) -> bool {
        !self.unwritten.borrow().is_empty()
    }

    fn write_rows(&self, events: &[StoredEvent]) -> Result<(), StoreError> {
        for row in pack(events) {
            self.sql.query(
                "INSERT INTO event_rows (first_seq, last_seq, at_ms, body_bytes, events) VALUES (?, ?, ?, ?, ?)",
                &[
                    row.first_seq.into(),
                    row.last_seq.into(),
                    row.at_ms.into(),
                    row.body_bytes.into(),
                    row.encode_events()?.into(),
                ],
            )?;
            self.recent.borrow_mut().push_row(row.events);
        }
        Ok(())
    }

    /// Up to `limit` stored rows holding events after `after`, in order (the first one may also
    /// hold events up to `after`).
    fn rows_after(&self, after: u64, limit: u64) -> Result<Vec<EventRow>, StoreError> {
        let rows = self.sql.query(
            "SELECT first_seq, last_seq, at_ms, body_bytes, events FROM event_rows
             WHERE first_seq >= COALESCE((SELECT MAX(first_seq) FROM event_rows WHERE first_seq <= ?), 0)
               AND last_seq > ?
             ORDER BY first_seq LIMIT ?",
            &[after.saturating_add(1).into(), after.into(), limit.into()],
        )?;
        rows.into_iter().map(event_row_from_sql).collect()
    }

    /// Up to `limit` events with `seq > after`, in order.
    pub fn events_after(&self, after: u64, limit: u64) -> Result<Vec<StoredEvent>, StoreError> {
        self.events_page(after, limit, usize::MAX)
    }

    /// Up to `limit` events with `seq > after`, in order, stopping once `max_bytes` of bodies are
    /// in the page (the first event always is): a page never holds the whole history in memory.
    pub fn events_page(
        &self,
        after: u64,
        limit: u64,
        max_bytes: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.persist()?;
        if let Some(page) = self.recent.borrow().page(after, limit, max_bytes) {
            return Ok(page);
        }
        let mut page = Page::new(limit, max_bytes);
        let mut cursor = after;
        while (page.events.len() as u64) < limit {
            // Every row holds at least one event: never read (and pay for) more rows than events.
            let rows =
                self.rows_after(cursor, ROWS_PER_READ.min(limit.saturating_sub(page.events.len() as u64)))?;
            let Some(last_row) = rows.last() else { break };
            cursor = last_row.last_seq;
            for stored in
                rows.into_iter().flat_map(|row| row.events).filter(|stored| stored.event.seq > after)
            {
                if !page.take(stored) {
                    return Ok(page.events);
                }
            }
        }
        Ok(page.events)
    }

    /// The lowest sequence number still in history, if any event is kept.
    pub fn oldest_seq(&self) -> Result<Option<u64>, StoreError> {
        self.persist()?;
        let rows = self.sql.query("SELECT first_seq FROM event_rows ORDER BY first_seq LIMIT 1", &[])?;
        Ok(first_value(&rows).and_then(SqlValue::as_u64))
    }

    /// Bytes of the bodies of all events with `seq > after`.
    pub fn body_bytes_after(&self, after: u64) -> Result<u64, StoreError> {
        self.persist()?;
        // Whole rows after the one that holds `after`, plus that row's events after it.
        let rows = self.sql.query(
            "SELECT COALESCE(SUM(body_bytes), 0) FROM event_rows WHERE first_seq > ?",
            &[after.into()],
        )?;
        let whole = first_value(&rows).and_then(SqlValue::as_u64).unwrap_or(0);
        let straddling = self
            .rows_after(after, 1)?
            .into_iter()
            .filter(|row| row.first_seq <= after)
            .flat_map(|row| row.events)
            .filter(|stored| stored.event.seq > after)
            .map(|stored| stored.event.body.len() as u64)
            .sum::<u64>();
        Ok(whole + straddling)
    }

    /// The operations of the newest events, newest first, as `(op id, seq, at_ms)`: back to
    /// events stored before `since_ms` (whole rows), or about `max_events` events. Retries are
    /// recognized from these, without an index on op ids (it would cost a row written per event).
    pub fn recent_ops(&self, since_ms: u64, max_events: u64) -> Result<Vec<(String, u64, u64)>, StoreError> {
        fn take(events: Vec<StoredEvent>, ops: &mut Vec<(String, u64, u64)>, seen: &mut u64) {
            for stored in events.into_iter().rev() {
                *seen += 1;
                if let Some(op_id) = stored.op_id {
                    ops.push((op_id, stored.event.seq, stored.at_ms));
                }
            }
        }
        let (mut ops, mut seen) = (Vec::new(), 0u64);
        take(self.unwritten.borrow().clone(), &mut ops, &mut seen);
        // The first page starts at the newest row (no sentinel bound: `u64::MAX` is no JS number).
        let mut before: Option<u64> = None;
        while seen < max_events {
            let rows = match before {
                None => self.sql.query(
                    "SELECT first_seq, last_seq, at_ms, body_bytes, events FROM event_rows
                     ORDER BY first_seq DESC LIMIT ?",
                    &[ROWS_PER_READ.into()],
                )?,
                Some(before) => self.sql.query(
                    "SELECT first_seq, last_seq, at_ms, body_bytes, events FROM event_rows
                     WHERE first_seq < ? ORDER BY first_seq DESC LIMIT ?",
                    &[before.into(), ROWS_PER_READ.into()],
                )?,
            };
            let count = rows.len() as u64;
            for row in rows {
                let row = event_row_from_sql(row)?;
                if row.at_ms < since_ms || seen >= max_events {
                    return Ok(ops);
                }
                before = Some(row.first_seq);
                take(row.events, &mut ops, &mut seen);
            }
            if count < ROWS_PER_READ {
                break;
            }
        }
        Ok(ops)
    }

    /// Drops events beyond `max_events` or older than `min_at_ms` (the room's last seq is
    /// `last`), whole rows at a time so no row is rewritten; the row with the newest event always
    /// stays (it carries the room's sequence number). Events after `keep_after` stay whatever
    /// their age (they still wait for export).
    pub fn trim_history(
        &self,
        last: u64,
        max_events: u64,
        min_at_ms: u64,
        keep_after: u64,
    ) -> Result<(), StoreError> {
        // Rows are in seq and time order: find the first row to keep by age, reading only the
        // rows that go.
        let young = self.sql.query(
            "SELECT first_seq FROM event_rows WHERE at_ms >= ? ORDER BY first_seq LIMIT 1",
            &[min_at_ms.into()],
        )?;
        let by_age =
            first_value(&young).and_then(SqlValue::as_u64).map_or(last, |first| first.saturating_sub(1));
        let cutoff = by_age.max(last.saturating_sub(max_events)).min(keep_after).min(last.saturating_sub(1));
        self.sql.query(
            "DELETE FROM event_rows WHERE first_seq <= ? AND last_seq <= ?",
            &[cutoff.into(), cutoff.into()],
        )?;
        self.recent.borrow_mut().drop_through(cutoff);
        Ok(())
    }

    /// Queues a presence or occupancy event (JSON) for export.
    pub fn push_export(&self, event_json: &str) -> Result<(), StoreError> {
        self.sql.query("INSERT INTO export_outbox (event) VALUES (?)", &[event_json.into()])?;
        Ok(())
    }

    /// Up to `limit` queued export events, oldest first, with their row ids.
    pub fn export_outbox(&self, limit: u64) -> Result<Vec<(u64, String)>, StoreError> {
        let rows =
            self.sql.query("SELECT id, event FROM export_outbox ORDER BY id LIMIT ?", &[limit.into()])?;
        rows.into_iter()
            .map(|row| {
                let mut values = row.into_iter();
                let id = values.next().and_then(|v| v.as_u64()).ok_or(StoreError::BadRow("export id"))?;
                let event =
                    values.next().and_then(SqlValue::into_text).ok_or(StoreError::BadRow("export event"))?;
                Ok((id, event))
            })
            .collect()
    }

    /// Drops queued export events up to row `id`.
    pub fn drop_exported(&self, id: u64) -> Result<(), StoreError> {
        self.sql.query("DELETE FROM export_outbox WHERE id <= ?", &[id.into()])?;
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

fn event_row_from_sql(row: Vec<SqlValue>) -> Result<EventRow, StoreError> {
    let [first_seq, last_seq, at_ms, body_bytes, events]: [SqlValue; 5] =
        row.try_into().map_err(|_| StoreError::BadRow("event row column count"))?;
    let first_seq = first_seq.as_u64().ok_or(StoreError::BadRow("first_seq"))?;
    let last_seq = last_seq.as_u64().ok_or(StoreError::BadRow("last_seq"))?;
    let json = events.into_text().ok_or(StoreError::BadRow("events"))?;
    Ok(EventRow {
        first_seq,
        last_seq,
        at_ms: at_ms.as_u64().unwrap_or(0),
        body_bytes: body_bytes.as_u64().unwrap_or(0),
        events: EventRow::decode_events(first_seq, last_seq, &json)?,
    })
}

/// An event of the table used before history was packed into rows.
fn legacy_event_from_row(row: Vec<SqlValue>) -> Result<StoredEvent, StoreError> {
    use edgeroom_protocol::EventKind;
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
    use edgeroom_protocol::EventKind;

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
    fn recent_pages_from_memory_equal_pages_from_storage() {
        let sql = std::rc::Rc::new(MemorySql::new());
        let store = RoomStore::open(sql.clone()).unwrap();
        // Rows of one to three events with bodies of varied sizes; more events than memory keeps.
        let mut seq = 0;
        for row in 0..200u64 {
            for _ in 0..=row % 3 {
                seq += 1;
                store.append(message(seq, &"x".repeat((seq % 7 * 100) as usize))).unwrap();
            }
            store.persist().unwrap();
        }
        let reads = sql.counts().rows_read;
        assert_eq!(store.events_page(seq - 100, 100, usize::MAX).unwrap().len(), 100);
        assert_eq!(sql.counts().rows_read, reads, "the newest events come from memory");
        // The same pages as a store that has only the storage (a woken-up object).
        let check = |store: &RoomStore<_>, last: u64| {
            let storage = RoomStore::open(sql.clone()).unwrap();
            for after in [
                0,
                1,
                100,
                last.saturating_sub(300),
                last.saturating_sub(256),
                last.saturating_sub(255),
                last.saturating_sub(100),
                last.saturating_sub(1),
                last,
                last + 5,
            ] {
                for (limit, bytes) in [(100, usize::MAX), (100, 2_000), (5, 0), (1_000, 1 << 20)] {
                    assert_eq!(
                        store.events_page(after, limit, bytes).unwrap(),
                        storage.events_page(after, limit, bytes).unwrap(),
                        "after {after}, limit {limit}, bytes {bytes}"
                    );
                }
            }
        };
        check(&store, seq);
        store.trim_history(seq, 150, 0, u64::MAX).unwrap();
        check(&store, seq);
        store.replace_room(&[message(1, "a"), message(2, "b")]).unwrap();
        check(&store, 2);
        store.append(message(3, "c")).unwrap();
        check(&store, 3);
    }

    #[test]
    fn new_room_starts_at_zero_and_appends_in_order() {
        let store = RoomStore::open(MemorySql::new()).unwrap();
        assert_eq!(store.last_seq().unwrap(), 0);
        for seq in 1..=3 {
            store.append(message(seq, &format!("m{seq}"))).unwrap();
        }
        assert_eq!(store.last_seq().unwrap(), 3);
        let after_one = store.events_after(1, 10).unwrap();
        assert_eq!(after_one, vec![message(2, "m2"), message(3, "m3")]);
    }

    #[test]
    fn history_pages_stop_at_their_byte_cap_but_hold_at_least_one_event() {
        let store = RoomStore::open(MemorySql::new()).unwrap();
        for seq in 1..=10 {
            store.append(message(seq, &"x".repeat(998))).unwrap(); // 1,000 bytes of JSON each
        }
        let seqs = |page: Vec<StoredEvent>| page.iter().map(|e| e.event.seq).collect::<Vec<_>>();
        assert_eq!(seqs(store.events_page(0, 100, 2_500).unwrap()), vec![1, 2, 3]);
        assert_eq!(seqs(store.events_page(3, 2, 1_000_000).unwrap()), vec![4, 5]);
        assert_eq!(seqs(store.events_page(9, 100, 1).unwrap()), vec![10], "the first event always fits");
    }

    #[test]
    fn a_reused_seq_is_refused() {
        let store = RoomStore::open(MemorySql::new()).unwrap();
        store.append(message(1, "a")).unwrap();
        assert!(store.append(message(1, "b")).is_err());
        assert_eq!(store.events_after(0, 10).unwrap(), vec![message(1, "a")]);
    }

    #[test]
    fn trim_keeps_the_newest_event_and_respects_count_and_age() {
        let store = RoomStore::open(MemorySql::new()).unwrap();
        for seq in 1..=10 {
            let mut event = message(seq, "x");
            event.at_ms = seq * 1000;
            store.append(event).unwrap();
            store.persist().unwrap(); // one row per event, as in a quiet room
        }
        store.trim_history(10, 5, 0, u64::MAX).unwrap();
        assert_eq!(store.oldest_seq().unwrap(), Some(6));
        store.trim_history(10, 100, 8_500, u64::MAX).unwrap();
        assert_eq!(store.oldest_seq().unwrap(), Some(9));
        store.trim_history(10, 100, 0, 8).unwrap();
        assert_eq!(store.oldest_seq().unwrap(), Some(9), "events waiting for export stay");
        // Everything is too old, but the newest event stays and the sequence survives.
        store.trim_history(10, 100, u64::MAX, u64::MAX).unwrap();
        assert_eq!(store.oldest_seq().unwrap(), Some(10));
        assert_eq!(store.last_seq().unwrap(), 10);
    }

    #[test]
    fn events_stored_together_share_a_row_and_trimming_drops_whole_rows() {
        let sql = std::rc::Rc::new(MemorySql::new());
        let store = RoomStore::open(std::rc::Rc::clone(&sql)).unwrap();
        let written = || sql.counts().rows_written;
        let before = written();
        for seq in 1..=50 {
            store.append(message(seq, "m")).unwrap();
        }
        assert!(store.has_unwritten());
        assert_eq!(store.last_seq().unwrap(), 50, "appended events count before they are written");
        store.persist().unwrap();
        assert_eq!(written() - before, 1, "fifty events, one row");
        for seq in 51..=60 {
            store.append(message(seq, "m")).unwrap();
        }
        // A read writes what waits first, so it sees everything.
        assert_eq!(store.events_after(45, 100).unwrap().len(), 15);
        assert_eq!(store.body_bytes_after(45).unwrap(), 15 * 3);
        assert_eq!(store.body_bytes_after(0).unwrap(), 60 * 3);
        assert_eq!(store.events_page(48, 5, usize::MAX).unwrap()[0].event.seq, 49);
        let before = written();
        // Seq 30 lies inside the first row, which still holds newer events: it stays whole.
        store.trim_history(60, 30, 0, u64::MAX).unwrap();
        assert_eq!(store.oldest_seq().unwrap(), Some(1));
        assert_eq!(written(), before, "no row rewritten to drop part of it");
        store.trim_history(60, 5, 0, u64::MAX).unwrap();
        assert_eq!(store.oldest_seq().unwrap(), Some(51));
        assert_eq!(written() - before, 1, "a whole row goes as one row");
    }

    #[test]
    fn a_full_row_is_written_at_once() {
        let store = RoomStore::open(MemorySql::new()).unwrap();
        for seq in 1..=MAX_EVENTS_PER_ROW as u64 {
            store.append(message(seq, "m")).unwrap();
        }
        assert!(!store.has_unwritten());
    }

    #[test]
    fn recent_ops_reach_back_by_time_and_count() {
        let store = RoomStore::open(MemorySql::new()).unwrap();
        for seq in 1..=100 {
            let mut event = message(seq, "x");
            event.op_id = Some(format!("op-{seq}"));
            event.at_ms = seq * 1000;
            store.append(event).unwrap();
            if seq % 3 == 0 {
                store.persist().unwrap();
            }
        }
        let ops = store.recent_ops(0, 1_000).unwrap();
        assert_eq!(ops.len(), 100);
        assert_eq!(ops[0], ("op-100".to_owned(), 100, 100_000), "newest first, unwritten ones included");
        let recent = store.recent_ops(90_000, 1_000).unwrap();
        assert!(recent.iter().all(|(_, seq, _)| *seq >= 88), "whole rows back to the time: {recent:?}");
        assert!(recent.iter().any(|(_, seq, _)| *seq == 90));
        assert!(store.recent_ops(0, 10).unwrap().len() <= 12);
    }

    #[test]
    fn rooms_from_before_rows_keep_their_history() {
        let sql = std::rc::Rc::new(MemorySql::new());
        sql.query(
            "CREATE TABLE events (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, body TEXT NOT NULL,
             sender INTEGER, topic TEXT, key TEXT, op_id TEXT, at_ms INTEGER NOT NULL)",
            &[],
        )
        .unwrap();
        for seq in 1..=3 {
            sql.query(
                "INSERT INTO events VALUES (?, 'message', '\"m\"', 1, NULL, NULL, ?, 1700000000000)",
                &[seq.into(), format!("op-{seq}").into()],
            )
            .unwrap();
        }
        let store = RoomStore::open(std::rc::Rc::clone(&sql)).unwrap();
        assert_eq!(store.last_seq().unwrap(), 3);
        let events = store.events_after(0, 10).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[2].op_id.as_deref(), Some("op-3"));
        let old = sql.query("SELECT 1 FROM sqlite_master WHERE name = 'events'", &[]).unwrap();
        assert!(old.is_empty(), "the old table is gone");
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
