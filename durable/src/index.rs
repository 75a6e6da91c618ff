//! The D1 index (`migrations/`): every statement the Worker runs against it, built here so native
//! tests run them on SQLite with the real migrations. The shells only bind and execute them.
//!
//! D1 binds integers as 32-bit, so 64-bit numbers travel as text (`seq`, counter values) with a
//! double beside them where SQL must order by them (`seq_order`).

use edgeroom_protocol::{CounterAddress, CounterView, RoomAddress, RoomView};

use crate::{Snapshot, SqlValue};

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

/// The two rows one room flush records: its snapshot, and the room's index row.
pub fn record_flush(
    snapshot: &Snapshot,
    view: &RoomView,
    r2_key: &str,
    bytes: usize,
    checksum: u32,
) -> [Statement; 2] {
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
        "INSERT INTO rooms (tenant, room, seq, members, last_activity_ms, last_snapshot_key, last_snapshot_bytes, epoch)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (tenant, room) DO UPDATE SET seq = excluded.seq, members = excluded.members,
           last_activity_ms = excluded.last_activity_ms, last_snapshot_key = excluded.last_snapshot_key,
           last_snapshot_bytes = excluded.last_snapshot_bytes, epoch = excluded.epoch",
        vec![
            tenant,
            room,
            seq,
            number(view.members.len() as u64),
            number(snapshot.created_ms),
            r2_key.into(),
            number(bytes as u64),
            view.epoch.as_str().into(),
        ],
    );
    [snapshot_row, room_row]
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

/// The tenant's rooms, most recently active first.
pub fn rooms_of(tenant: &str, limit: u32) -> Statement {
    statement(
        "SELECT room, seq, members, last_activity_ms, last_snapshot_key, last_snapshot_bytes FROM rooms
         WHERE tenant = ?1 ORDER BY last_activity_ms DESC LIMIT ?2",
        vec![tenant.into(), number(u64::from(limit))],
    )
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
        for seq in [5, 40, 9_007_199_254_740_991] {
            for statement in record_flush(&snapshot(seq), &view("e1"), &format!("k{seq}"), 100, 0xabc) {
                run(&sql, &statement);
            }
        }
        // Re-recording the same seq updates in place.
        for statement in record_flush(&snapshot(40), &view("e2"), "k40", 200, 1) {
            run(&sql, &statement);
        }
        assert_eq!(run(&sql, &room_known(&address)).len(), 1);
        let listed = run(&sql, &snapshots_of(&address, 10));
        let seqs: Vec<_> = listed.iter().map(|row| row[0].as_text().unwrap().to_owned()).collect();
        assert_eq!(seqs, ["9007199254740991", "40", "5"], "newest first, exact at 2^53-1");
        assert_eq!(listed[1][2], SqlValue::Integer(200));
        assert_eq!(run(&sql, &snapshot_at(&address, 40))[0][0].as_text(), Some("k40"));
        let keys = run(&sql, &indexed_keys(["k5", "nope", "k40"]));
        assert_eq!(keys.len(), 2);
        assert_eq!(run(&sql, &retention_candidates(2)).len(), 3);
        assert!(run(&sql, &retention_candidates(3)).is_empty());
        run(&sql, &forget_snapshot("acme", "lobby", "5"));
        assert_eq!(run(&sql, &snapshots_of(&address, 10)).len(), 2);
        let rooms = run(&sql, &rooms_of("acme", 10));
        assert_eq!(rooms.len(), 1);
        assert_eq!(rooms[0][1].as_text(), Some("40"), "the room row shows the last flush");
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
}
