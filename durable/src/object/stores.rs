//! The flush's writes to the shared stores — R2 (snapshots), D1 (index) and KV (read models) —
//! and the reads a restore needs. Test-only fault injection makes chosen stores fail.

use edgeroom_protocol::{RoomAddress, RoomView, SnapshotRecord};
use serde::Deserialize;
use worker::wasm_bindgen::JsValue;
use worker::{Env, Error, Result};

use crate::{snapshot_key, Snapshot};

/// Binding name of the KV namespace holding the rooms' JSON read models.
pub const READ_MODEL_BINDING: &str = "READ_MODEL";
/// Binding name of the D1 database (index and metadata).
pub const DB_BINDING: &str = "DB";
/// Binding name of the R2 bucket holding snapshots.
pub const SNAPSHOTS_BINDING: &str = "SNAPSHOTS";

/// Stores whose writes fail on purpose (tests only; see [`Faults::allowed`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Fail D1 writes.
    pub d1: bool,
    /// Fail R2 writes.
    pub r2: bool,
    /// Fail KV writes.
    pub kv: bool,
}

impl Faults {
    /// Parses a comma-separated list such as `d1,kv`.
    pub fn parse(list: &str) -> Self {
        let has = |name: &str| list.split(',').any(|item| item.trim() == name);
        Self { d1: has("d1"), r2: has("r2"), kv: has("kv") }
    }

    /// Whether fault injection may be turned on: only with `ALLOW_FAULT_INJECTION=yes` in local
    /// dev mode (`AUTH_MODE=dev`), which the production environment never has.
    pub fn allowed(env: &Env) -> bool {
        let var = |name: &str| env.var(name).map(|v| v.to_string()).unwrap_or_default();
        var("ALLOW_FAULT_INJECTION") == "yes" && var("AUTH_MODE") == "dev"
    }

    fn check(fail: bool, store: &str) -> Result<()> {
        if fail {
            return Err(Error::RustError(format!("injected {store} failure")));
        }
        Ok(())
    }
}

fn rust_error(error: impl std::fmt::Display) -> Error {
    Error::RustError(error.to_string())
}

/// Writes one flush: the snapshot to R2, then its index rows to D1, then the read model to KV.
/// The caller records the flush only when all three succeeded.
pub async fn write_flush(env: &Env, faults: Faults, snapshot: &Snapshot, view: &RoomView) -> Result<()> {
    let (bytes, checksum) = snapshot.encode().map_err(rust_error)?;
    let size = bytes.len() as f64;
    let key = snapshot_key(&snapshot.tenant, &snapshot.room, snapshot.seq);

    Faults::check(faults.r2, "R2")?;
    env.bucket(SNAPSHOTS_BINDING)?.put(&key, bytes).execute().await?;

    Faults::check(faults.d1, "D1")?;
    let db = env.d1(DB_BINDING)?;
    let (tenant, room, seq) = (snapshot.tenant.as_str(), snapshot.room.as_str(), snapshot.seq.to_string());
    let created = snapshot.created_ms as f64;
    let snapshot_row = db
        .prepare(
            "INSERT INTO snapshots (tenant, room, seq, seq_order, r2_key, bytes, created_ms, checksum, epoch)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (tenant, room, seq) DO UPDATE SET r2_key = excluded.r2_key,
               bytes = excluded.bytes, created_ms = excluded.created_ms, checksum = excluded.checksum,
               epoch = excluded.epoch",
        )
        .bind(&[
            tenant.into(),
            room.into(),
            seq.as_str().into(),
            JsValue::from(snapshot.seq as f64),
            key.as_str().into(),
            JsValue::from(size),
            JsValue::from(created),
            format!("{checksum:08x}").into(),
            view.epoch.as_str().into(),
        ])?;
    let room_row = db
        .prepare(
            "INSERT INTO rooms (tenant, room, seq, members, last_activity_ms, last_snapshot_key, last_snapshot_bytes, epoch)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (tenant, room) DO UPDATE SET seq = excluded.seq, members = excluded.members,
               last_activity_ms = excluded.last_activity_ms, last_snapshot_key = excluded.last_snapshot_key,
               last_snapshot_bytes = excluded.last_snapshot_bytes, epoch = excluded.epoch",
        )
        .bind(&[
            tenant.into(),
            room.into(),
            seq.as_str().into(),
            JsValue::from(view.members.len() as f64),
            JsValue::from(created),
            key.as_str().into(),
            JsValue::from(size),
            view.epoch.as_str().into(),
        ])?;
    for result in db.batch(vec![snapshot_row, room_row]).await? {
        if let Some(error) = result.error() {
            return Err(Error::RustError(format!("D1: {error}")));
        }
    }

    Faults::check(faults.kv, "KV")?;
    let address = RoomAddress::new(&view.tenant, &view.room).map_err(rust_error)?;
    let json = serde_json::to_string(view).map_err(rust_error)?;
    env.kv(READ_MODEL_BINDING)?.put(&address.read_model_key(), json)?.execute().await.map_err(rust_error)
}

/// A `snapshots` row as D1 returns it (integers are text or doubles there).
#[derive(Deserialize)]
struct SnapshotRow {
    seq: String,
    r2_key: String,
    bytes: f64,
    created_ms: f64,
    checksum: String,
}

/// The room's snapshots from the D1 index, newest first (at most `limit`).
pub async fn list_snapshots(env: &Env, address: &RoomAddress, limit: u32) -> Result<Vec<SnapshotRecord>> {
    let rows: Vec<SnapshotRow> = env
        .d1(DB_BINDING)?
        .prepare(
            "SELECT seq, r2_key, bytes, created_ms, checksum FROM snapshots
             WHERE tenant = ?1 AND room = ?2 ORDER BY seq_order DESC LIMIT ?3",
        )
        .bind(&[address.tenant().into(), address.room().into(), JsValue::from(limit)])?
        .all()
        .await?
        .results()?;
    let bucket = env.bucket(SNAPSHOTS_BINDING)?;
    let mut records = Vec::with_capacity(rows.len());
    for row in rows {
        let in_r2 = bucket.head(row.r2_key.clone()).await?.is_some();
        records.push(SnapshotRecord {
            seq: row.seq.parse().unwrap_or(0),
            r2_key: row.r2_key,
            bytes: row.bytes as u64,
            created_ms: row.created_ms as u64,
            checksum: row.checksum,
            in_r2,
        });
    }
    Ok(records)
}

/// Loads a snapshot of the room: the one at `seq`, or the latest, found through D1.
pub async fn load_snapshot(env: &Env, address: &RoomAddress, seq: Option<u64>) -> Result<Option<Snapshot>> {
    let db = env.d1(DB_BINDING)?;
    let statement = match seq {
        Some(seq) => db
            .prepare("SELECT r2_key FROM snapshots WHERE tenant = ?1 AND room = ?2 AND seq = ?3")
            .bind(&[address.tenant().into(), address.room().into(), seq.to_string().into()])?,
        None => db
            .prepare("SELECT r2_key FROM snapshots WHERE tenant = ?1 AND room = ?2 ORDER BY seq_order DESC LIMIT 1")
            .bind(&[address.tenant().into(), address.room().into()])?,
    };
    let Some(key) = statement.first::<String>(Some("r2_key")).await? else { return Ok(None) };
    let Some(object) = env.bucket(SNAPSHOTS_BINDING)?.get(key.clone()).execute().await? else {
        return Err(Error::RustError(format!("snapshot {key} is indexed in D1 but missing from R2")));
    };
    let bytes = object.body().ok_or_else(|| rust_error("empty R2 object"))?.bytes().await?;
    Snapshot::decode(&bytes).map(Some).map_err(|e| Error::RustError(format!("snapshot {key}: {e}")))
}
