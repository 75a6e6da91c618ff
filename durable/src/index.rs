//! The D1 index (`migrations/`): every statement the Worker runs against it, built here so native
//! tests run them on SQLite with the real migrations. The shells only bind and execute them.
//!
//! D1 binds integers as 32-bit, so 64-bit numbers travel as text (`seq`, counter values) with a
//! double beside them where SQL must order by them (`seq_order`).

use edgeroom_protocol::{CounterAddress, CounterView, RoomAddress, RoomView};

use crate::{Metrics, Snapshot, SqlValue};

/// One statement with its positional (`?N`) parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// The SQL text.
    pub sql: String,
    /// The parameters, in order.
    pub params: Vec<SqlValue>,
}

fn statement(sql: &str, params: Vec<SqlValue>) -> Statement {
    Statement { sql: sql.to_owned(), params }
}

fn number(value: u64) -> SqlValue {
    SqlValue::Real(value as f64)
}

/// What one room flush records beside its snapshot file.
#[derive(Debug, Clone, Copy)]
pub struct FlushRecord<'a> {
    /// The snapshot.
    pub snapshot: &'a Snapshot,
    /// The read model at the flush.
    pub view: &'a RoomView,
    /// The snapshot's R2 key.
    pub r2_key: &'a str,
    /// The snapshot's size.
    pub bytes: usize,
    /// The snapshot body's CRC-32.
    pub checksum: u32,
    /// The room's cumulative metrics.
    pub totals: &'a Metrics,
    /// The activity since the previous flush.
    pub since: &'a Metrics,
}

/// The rows one room flush records: its snapshot, the room's index row with its metric totals,
/// and one row of the metrics time series.
pub fn record_flush(record: &FlushRecord<'_>) -> [Statement; 3] {
    let FlushRecord { snapshot, view, r2_key, bytes, checksum, totals, since } = *record;
    let json = |metrics: &Metrics| serde_json::to_string(metrics).unwrap_or_else(|_| "{}".to_owned());
    let (tenant, room) = (SqlValue::from(snapshot.tenant.as_str()), SqlValue::from(snapshot.room.as_str()));
    let seq = SqlValue::from(snapshot.seq.to_string());
    let snapshot_row = statement(
        "INSERT INTO snapshots (tenant, room, seq, seq_order, r2_key, bytes, created_ms, checksum, epoch)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (tenant, room, seq) DO UPDATE SET r2_key = excluded.r2_key, bytes = excluded.bytes,
           created_ms = excluded.created_ms, checksum = excluded.checksum, epoch = excluded.epoch",
        vec![
            tenant.clone(),
            room.clone(),
            seq.clone(),
            number(snapshot.seq),
            r2_key.into(),
            number(bytes as u64),
            number(snapshot.created_ms),
            format!("{checksum:08x}").into(),
            view.epoch.as_str().into(),
        ],
    );
    let room_row = statement(
        "INSERT INTO rooms (tenant, room, seq, members, last_activity_ms, last_snapshot_key, last_snapshot_bytes, epoch, metrics)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (tenant, room) DO UPDATE SET seq = excluded.seq, members = excluded.members,
           last_activity_ms = excluded.last_activity_ms, last_snapshot_key = excluded.last_snapshot_key,
           last_snapshot_bytes = excluded.last_snapshot_bytes, epoch = excluded.epoch, metrics = excluded.metrics",
        vec![
            tenant.clone(),
            room.clone(),
            seq,
            number(view.members.len() as u64),
            number(snapshot.created_ms),
            r2_key.into(),
            number(bytes as u64),
            view.epoch.as_str().into(),
            json(totals).into(),
        ],
    );
    let series_row = statement(
        "INSERT INTO room_metrics (tenant, room, at_ms, metrics) VALUES (?1, ?2, ?3, ?4)",
        vec![tenant, room, number(snapshot.created_ms), json(since).into()],
    );
    [snapshot_row, room_row, series_row]
}

/// The room's index row between snapshots: what it shows beside its snapshot (members, epoch,
/// metric totals, last activity) changed. Updates only a row a snapshot already wrote, so a room
/// the index does not know never looks restorable.
pub fn record_index(view: &RoomView, totals: &Metrics, now_ms: u64) -> Statement {
    let json = serde_json::to_string(totals).unwrap_or_else(|_| "{}".to_owned());
    statement(
        "UPDATE rooms SET members = ?3, epoch = ?4, metrics = ?5, last_activity_ms = ?6
         WHERE tenant = ?1 AND room = ?2",
        vec![
            view.tenant.as_str().into(),
            view.room.as_str().into(),
            number(view.members.len() as u64),
            view.epoch.as_str().into(),
            json.into(),
            number(now_ms),
        ],
    )
}

/// The room's metrics time series since `from_ms`, oldest first: `at_ms, metrics`.
pub fn metrics_series(address: &RoomAddress, from_ms: u64) -> Statement {
    statement(
        "SELECT at_ms, metrics FROM room_metrics WHERE tenant = ?1 AND room = ?2 AND at_ms >= ?3 ORDER BY at_ms",
        vec![address.tenant().into(), address.room().into(), number(from_ms)],
    )
}

/// The tenant's metrics time series since `from_ms`, every room: `room, at_ms, metrics`.
pub fn tenant_series(tenant: &str, from_ms: u64) -> Statement {
    statement(
        "SELECT room, at_ms, metrics FROM room_metrics WHERE tenant = ?1 AND at_ms >= ?2 ORDER BY at_ms",
        vec![tenant.into(), number(from_ms)],
    )
}

/// Deletes time series rows (rooms' and counters') older than `before_ms`.
pub fn forget_metrics(before_ms: u64) -> [Statement; 2] {
    [
        statement("DELETE FROM room_metrics WHERE at_ms < ?1", vec![number(before_ms)]),
        statement("DELETE FROM counter_metrics WHERE at_ms < ?1", vec![number(before_ms)]),
    ]
}

/// The rows one counter flush records: the counter's index row and one row of its metrics time
/// series (the activity of all its shards since the previous flush).
pub fn record_counter_flush(address: &CounterAddress, view: &CounterView, since: &Metrics) -> [Statement; 2] {
    let json = serde_json::to_string(since).unwrap_or_else(|_| "{}".to_owned());
    let series_row = statement(
        "INSERT INTO counter_metrics (tenant, name, at_ms, metrics) VALUES (?1, ?2, ?3, ?4)",
        vec![address.tenant().into(), address.name().into(), number(view.generated_ms), json.into()],
    );
    [record_counter(address, view), series_row]
}

/// The counter's metrics time series since `from_ms`, oldest first: `at_ms, metrics`.
pub fn counter_metrics_series(address: &CounterAddress, from_ms: u64) -> Statement {
    statement(
        "SELECT at_ms, metrics FROM counter_metrics WHERE tenant = ?1 AND name = ?2 AND at_ms >= ?3 ORDER BY at_ms",
        vec![address.tenant().into(), address.name().into(), number(from_ms)],
    )
}

/// The tenant's counters' metrics time series since `from_ms`: `name, at_ms, metrics`.
pub fn tenant_counter_series(tenant: &str, from_ms: u64) -> Statement {
    statement(
        "SELECT name, at_ms, metrics FROM counter_metrics WHERE tenant = ?1 AND at_ms >= ?2 ORDER BY at_ms",
        vec![tenant.into(), number(from_ms)],
    )
}

/// The tenant's counters: `name, value, version, updated_ms`.
pub fn counters_of(tenant: &str, limit: u32) -> Statement {
    statement(
        "SELECT name, value, version, updated_ms FROM counters WHERE tenant = ?1 ORDER BY name LIMIT ?2",
        vec![tenant.into(), number(u64::from(limit))],
    )
}

/// The counter's index row (value and version exact, as text).
pub fn record_counter(address: &CounterAddress, view: &CounterView) -> Statement {
    statement(
        "INSERT INTO counters (tenant, name, value, version, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (tenant, name) DO UPDATE SET value = excluded.value, version = excluded.version,
           updated_ms = excluded.updated_ms",
        vec![
            address.tenant().into(),
            address.name().into(),
            view.value.to_string().into(),
            view.version.to_string().into(),
            number(view.generated_ms),
        ],
    )
}

/// The room's snapshots, newest first: `seq, r2_key, bytes, created_ms, checksum`.
pub fn snapshots_of(address: &RoomAddress, limit: u32) -> Statement {
    statement(
        "SELECT seq, r2_key, bytes, created_ms, checksum FROM snapshots
         WHERE tenant = ?1 AND room = ?2 ORDER BY seq_order DESC LIMIT ?3",
        vec![address.tenant().into(), address.room().into(), number(u64::from(limit))],
    )
}

/// The R2 key of the room's snapshot at `seq`: `r2_key`.
pub fn snapshot_at(address: &RoomAddress, seq: u64) -> Statement {
    statement(
        "SELECT r2_key FROM snapshots WHERE tenant = ?1 AND room = ?2 AND seq = ?3",
        vec![address.tenant().into(), address.room().into(), seq.to_string().into()],
    )
}

/// Whether the index knows the room: `room`.
pub fn room_known(address: &RoomAddress) -> Statement {
    statement(
        "SELECT room FROM rooms WHERE tenant = ?1 AND room = ?2",
        vec![address.tenant().into(), address.room().into()],
    )
}

/// How a rooms listing is sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomOrder {
    /// Most recently flushed first.
    Activity,
    /// By name.
    Name,
    /// Most members first.
    Members,
    /// Largest snapshot first.
    Size,
}

impl RoomOrder {
    /// Parses `?sort=` (`activity`, `name`, `members`, `size`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "activity" => Some(Self::Activity),
            "name" => Some(Self::Name),
            "members" => Some(Self::Members),
            "size" => Some(Self::Size),
            _ => None,
        }
    }

    fn sql(self) -> &'static str {
        match self {
            Self::Activity => "last_activity_ms DESC, room",
            Self::Name => "room",
            Self::Members => "members DESC, room",
            Self::Size => "last_snapshot_bytes DESC, room",
        }
    }
}

/// A page of the tenant's rooms whose names contain `search`: `room, seq, members,
/// last_activity_ms, last_snapshot_key, last_snapshot_bytes, metrics`.
pub fn rooms_of(tenant: &str, search: &str, order: RoomOrder, limit: u32, offset: u32) -> Statement {
    Statement {
        sql: format!(
            "SELECT room, seq, members, last_activity_ms, last_snapshot_key, last_snapshot_bytes, metrics FROM rooms
             WHERE tenant = ?1 AND instr(room, ?2) > 0 ORDER BY {} LIMIT ?3 OFFSET ?4",
            order.sql()
        ),
        params: vec![tenant.into(), search.into(), number(u64::from(limit)), number(u64::from(offset))],
    }
}

/// How many rooms the tenant has: `count`.
pub fn room_count(tenant: &str) -> Statement {
    statement("SELECT COUNT(*) AS count FROM rooms WHERE tenant = ?1", vec![tenant.into()])
}

/// Every snapshot of the rooms with more than `keep_last`, grouped by room.
pub fn retention_candidates(keep_last: usize) -> Statement {
    statement(
        "SELECT s.tenant, s.room, s.seq, s.r2_key, s.created_ms FROM snapshots s
         JOIN (SELECT tenant, room FROM snapshots GROUP BY tenant, room HAVING COUNT(*) > ?1) busy
           ON busy.tenant = s.tenant AND busy.room = s.room
         ORDER BY s.tenant, s.room",
        vec![number(keep_last as u64)],
    )
}

/// Deletes one snapshot row.
pub fn forget_snapshot(tenant: &str, room: &str, seq: &str) -> Statement {
    statement(
        "DELETE FROM snapshots WHERE tenant = ?1 AND room = ?2 AND seq = ?3",
        vec![tenant.into(), room.into(), seq.into()],
    )
}

/// Which of `keys` (at most 99: D1 binds at most 100 parameters) an index row names: `r2_key`.
pub fn indexed_keys<'a>(keys: impl IntoIterator<Item = &'a str>) -> Statement {
    let params: Vec<SqlValue> = keys.into_iter().map(SqlValue::from).collect();
    let placeholders = (1..=params.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(",");
    Statement { sql: format!("SELECT r2_key FROM snapshots WHERE r2_key IN ({placeholders})"), params }
}

/// The export kinds of every endpoint of the tenant: `kinds` (JSON arrays).
pub fn export_kinds(tenant: &str) -> Statement {
    statement("SELECT kinds FROM webhook_endpoints WHERE tenant = ?1", vec![tenant.into()])
}

/// Adds a webhook endpoint.
pub fn add_endpoint(
    tenant: &str,
    id: &str,
    url: &str,
    secret: &str,
    kinds_json: &str,
    now_ms: u64,
) -> Statement {
    statement(
        "INSERT INTO webhook_endpoints (tenant, id, url, secret, kinds, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        vec![tenant.into(), id.into(), url.into(), secret.into(), kinds_json.into(), number(now_ms)],
    )
}

/// The tenant's endpoints: `id, url, secret, kinds, created_ms`.
pub fn endpoints_of(tenant: &str) -> Statement {
    statement(
        "SELECT id, url, secret, kinds, created_ms FROM webhook_endpoints WHERE tenant = ?1 ORDER BY created_ms, id",
        vec![tenant.into()],
    )
}

/// Removes an endpoint.
pub fn remove_endpoint(tenant: &str, id: &str) -> Statement {
    statement("DELETE FROM webhook_endpoints WHERE tenant = ?1 AND id = ?2", vec![tenant.into(), id.into()])
}

/// Records a batch that failed every delivery attempt.
pub fn add_dead_letter(tenant: &str, id: &str, room: &str, batch_json: &str, now_ms: u64) -> Statement {
    statement(
        "INSERT INTO dead_letters (tenant, id, room, batch, failed_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (tenant, id) DO UPDATE SET batch = excluded.batch, failed_ms = excluded.failed_ms",
        vec![tenant.into(), id.into(), room.into(), batch_json.into(), number(now_ms)],
    )
}

/// The tenant's dead letters, oldest first: `id, room, batch, failed_ms`.
pub fn dead_letters_of(tenant: &str, limit: u32) -> Statement {
    statement(
        "SELECT id, room, batch, failed_ms FROM dead_letters WHERE tenant = ?1 ORDER BY failed_ms LIMIT ?2",
        vec![tenant.into(), number(u64::from(limit))],
    )
}

/// Forgets a dead letter (after its replay was queued).
pub fn remove_dead_letter(tenant: &str, id: &str) -> Statement {
    statement("DELETE FROM dead_letters WHERE tenant = ?1 AND id = ?2", vec![tenant.into(), id.into()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::testing::MemorySql;
    use crate::Sql;

    /// A database with every migration applied, as `wrangler d1 migrations apply` does.
    fn index() -> MemorySql {
        let sql = MemorySql::new();
        let mut files: Vec<_> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(file).unwrap();
            for part in text
                .split(';')
                .filter(|part| part.lines().any(|l| !l.trim().is_empty() && !l.trim().starts_with("--")))
            {
                sql.query(part, &[]).unwrap();
            }
        }
        sql
    }

    fn run(sql: &MemorySql, statement: &Statement) -> Vec<Vec<SqlValue>> {
        sql.query(&statement.sql, &statement.params).unwrap()
    }

    fn snapshot(seq: u64) -> Snapshot {
        Snapshot {
            tenant: "acme".into(),
            room: "lobby".into(),
            seq,
            created_ms: seq * 10,
            state: vec![],
            events: vec![],
            sequences: vec![],
        }
    }

    fn view(epoch: &str) -> RoomView {
        RoomView {
            tenant: "acme".into(),
            room: "lobby".into(),
            seq: 0,
            epoch: epoch.into(),
            state: Default::default(),
            members: vec![],
            generated_ms: 0,
        }
    }

    #[test]
    fn flushes_record_snapshots_and_rooms_and_reads_find_them() {
        let sql = index();
        let address = RoomAddress::new("acme", "lobby").unwrap();
        assert!(run(&sql, &room_known(&address)).is_empty());
        let totals = Metrics { events: 7, ..Metrics::default() };
        let quiet = Metrics::default();
        let record = |snapshot: &Snapshot, view: &RoomView, r2_key: &str, since: &Metrics| {
            let record =
                FlushRecord { snapshot, view, r2_key, bytes: 100, checksum: 0xabc, totals: &totals, since };
            for statement in record_flush(&record) {
                run(&sql, &statement);
            }
        };
        for seq in [5, 40, 9_007_199_254_740_991] {
            record(&snapshot(seq), &view("e1"), &format!("k{seq}"), &totals);
        }
        // Re-recording the same seq updates in place.
        record(&snapshot(40), &view("e2"), "k40", &quiet);
        assert_eq!(run(&sql, &metrics_series(&address, 0)).len(), 4);
        assert_eq!(run(&sql, &metrics_series(&address, 401)).len(), 1);
        assert_eq!(run(&sql, &tenant_series("acme", 0)).len(), 4);
        for statement in forget_metrics(401) {
            run(&sql, &statement);
        }
        assert_eq!(run(&sql, &metrics_series(&address, 0)).len(), 1);
        assert_eq!(run(&sql, &room_known(&address)).len(), 1);
        let listed = run(&sql, &snapshots_of(&address, 10));
        let seqs: Vec<_> = listed.iter().map(|row| row[0].as_text().unwrap().to_owned()).collect();
        assert_eq!(seqs, ["9007199254740991", "40", "5"], "newest first, exact at 2^53-1");
        assert_eq!(listed[1][2], SqlValue::Integer(100));
        assert_eq!(run(&sql, &snapshot_at(&address, 40))[0][0].as_text(), Some("k40"));
        let keys = run(&sql, &indexed_keys(["k5", "nope", "k40"]));
        assert_eq!(keys.len(), 2);
        assert_eq!(run(&sql, &retention_candidates(2)).len(), 3);
        assert!(run(&sql, &retention_candidates(3)).is_empty());
        run(&sql, &forget_snapshot("acme", "lobby", "5"));
        assert_eq!(run(&sql, &snapshots_of(&address, 10)).len(), 2);
        let rooms = run(&sql, &rooms_of("acme", "", RoomOrder::Activity, 10, 0));
        assert_eq!(rooms.len(), 1);
        assert_eq!(rooms[0][1].as_text(), Some("40"), "the room row shows the last flush");
        let saved: Metrics = serde_json::from_str(rooms[0][6].as_text().unwrap()).unwrap();
        assert_eq!(saved.events, 7);
        assert!(run(&sql, &rooms_of("acme", "zzz", RoomOrder::Name, 10, 0)).is_empty());
        assert_eq!(run(&sql, &rooms_of("acme", "lob", RoomOrder::Size, 10, 0)).len(), 1);
        assert!(run(&sql, &rooms_of("acme", "", RoomOrder::Members, 10, 1)).is_empty(), "offset pages on");
        assert_eq!(run(&sql, &room_count("acme"))[0][0], SqlValue::Integer(1));

        // Between snapshots the row shows new members; a room without a row gets none.
        let mut crowded = view("e3");
        crowded.members = vec![
            edgeroom_protocol::Member {
                connection_id: 1,
                user: None,
                data: edgeroom_protocol::Body::null()
            };
            2
        ];
        run(&sql, &record_index(&crowded, &totals, 500));
        let rooms = run(&sql, &rooms_of("acme", "", RoomOrder::Activity, 10, 0));
        assert_eq!((rooms[0][1].as_text(), &rooms[0][2]), (Some("40"), &SqlValue::Integer(2)));
        let mut unknown = view("e1");
        unknown.room = "never-snapshotted".into();
        run(&sql, &record_index(&unknown, &totals, 500));
        assert_eq!(run(&sql, &room_count("acme"))[0][0], SqlValue::Integer(1));
    }

    #[test]
    fn endpoints_and_dead_letters_round_trip() {
        let sql = index();
        run(&sql, &add_endpoint("acme", "w1", "https://a.example/h", "s", r#"["message"]"#, 1));
        run(&sql, &add_endpoint("acme", "w2", "https://b.example/h", "s", r#"["room_vacated"]"#, 2));
        run(&sql, &add_endpoint("globex", "w3", "https://c.example/h", "s", r#"["message"]"#, 3));
        assert_eq!(run(&sql, &export_kinds("acme")).len(), 2);
        assert_eq!(run(&sql, &endpoints_of("acme"))[1][0].as_text(), Some("w2"));
        run(&sql, &remove_endpoint("acme", "w1"));
        assert_eq!(run(&sql, &endpoints_of("acme")).len(), 1);
        run(&sql, &add_dead_letter("acme", "b1", "lobby", "{}", 5));
        run(&sql, &add_dead_letter("acme", "b1", "lobby", "{}", 6));
        assert_eq!(run(&sql, &dead_letters_of("acme", 10)).len(), 1, "a batch is one dead letter");
        run(&sql, &remove_dead_letter("acme", "b1"));
        assert!(run(&sql, &dead_letters_of("acme", 10)).is_empty());
    }

    #[test]
    fn counters_are_recorded_exactly() {
        let sql = index();
        let address = CounterAddress::new("acme", "likes").unwrap();
        let view = CounterView {
            tenant: "acme".into(),
            name: "likes".into(),
            value: i64::MIN,
            version: u64::MAX,
            shards: 1,
            generated_ms: 1,
        };
        run(&sql, &record_counter(&address, &view));
        run(&sql, &record_counter(&address, &view));
        let rows = sql.query("SELECT value, version FROM counters", &[]).unwrap();
        assert_eq!(
            rows,
            vec![vec![SqlValue::Text(i64::MIN.to_string()), SqlValue::Text(u64::MAX.to_string())]]
        );
    }

    #[test]
    fn counter_flushes_record_a_metrics_series_that_retention_trims() {
        let sql = index();
        let address = CounterAddress::new("acme", "likes").unwrap();
        let view = |at: u64| CounterView {
            tenant: "acme".into(),
            name: "likes".into(),
            value: 1,
            version: 1,
            shards: 1,
            generated_ms: at,
        };
        let since = Metrics { requests: 3, kv_writes: 1, ..Metrics::default() };
        for statement in record_counter_flush(&address, &view(1_000), &since) {
            run(&sql, &statement);
        }
        for statement in record_counter_flush(&address, &view(5_000), &Metrics::default()) {
            run(&sql, &statement);
        }
        let series = run(&sql, &counter_metrics_series(&address, 0));
        assert_eq!(series.len(), 2);
        let first: Metrics = match &series[0][1] {
            SqlValue::Text(json) => serde_json::from_str(json).unwrap(),
            other => panic!("metrics are JSON text, not {other:?}"),
        };
        assert_eq!(first, since);
        assert_eq!(run(&sql, &tenant_counter_series("acme", 2_000)).len(), 1);
        assert!(run(&sql, &tenant_counter_series("other", 0)).is_empty());
        for statement in forget_metrics(2_000) {
            run(&sql, &statement);
        }
        assert_eq!(run(&sql, &counter_metrics_series(&address, 0)).len(), 1);
    }
}
