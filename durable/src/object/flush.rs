//! The flush's writes to the shared stores — R2 (snapshots), D1 (index) and KV (read models) —
//! and the reads a restore needs. Test builds can make chosen stores fail (`fault-injection`).

use edgeroom_protocol::{CounterAddress, CounterView, RoomAddress, SnapshotRecord};
use serde::Deserialize;
use worker::{Env, Error, Result};

use super::d1::{database, prepare};
use crate::{index, snapshot_key, FlushPlan, Metrics, Snapshot, READ_MODEL_BINDING, SNAPSHOTS_BINDING};

/// Stores whose writes fail on purpose (tests only; see [`Faults::allowed`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Fail D1 writes.
    pub d1: bool,
    /// Fail R2 writes.
    pub r2: bool,
    /// Fail KV writes.
    pub kv: bool,
    /// Fail export queue sends.
    pub queue: bool,
}

impl Faults {
    /// Parses a comma-separated list such as `d1,kv`.
    pub fn parse(list: &str) -> Self {
        let has = |name: &str| list.split(',').any(|item| item.trim() == name);
        Self { d1: has("d1"), r2: has("r2"), kv: has("kv"), queue: has("queue") }
    }

    /// Whether fault injection may be turned on: only in a build with the `fault-injection`
    /// feature (never a deploy), with `ALLOW_FAULT_INJECTION=yes`.
    pub fn allowed(env: &Env) -> bool {
        cfg!(feature = "fault-injection")
            && env.var("ALLOW_FAULT_INJECTION").is_ok_and(|v| v.to_string() == "yes")
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
/// The caller records the flush only when all three succeeded. Whatever was written (also
/// before a failure) is counted into `metrics`.
pub async fn write_flush(env: &Env, faults: Faults, plan: &FlushPlan, metrics: &mut Metrics) -> Result<()> {
    let (snapshot, view) = (&plan.snapshot, &plan.view);
    let (bytes, checksum) = snapshot.encode().map_err(rust_error)?;
    let size = bytes.len();
    let key = snapshot_key(&snapshot.tenant, &snapshot.room, snapshot.seq);

    Faults::check(faults.r2, "R2")?;
    env.bucket(SNAPSHOTS_BINDING)?.put(&key, bytes).execute().await?;
    metrics.r2_writes += 1;
    metrics.snapshot_bytes += size as u64;

    Faults::check(faults.d1, "D1")?;
    let db = database(env)?;
    let record = index::FlushRecord {
        snapshot,
        view,
        r2_key: &key,
        bytes: size,
        checksum,
        totals: &plan.totals,
        since: &plan.since,
    };
    let statements = index::record_flush(&record);
    let batch = statements.iter().map(|statement| prepare(&db, statement)).collect::<Result<Vec<_>>>()?;
    for result in db.batch(batch).await? {
        if let Some(error) = result.error() {
            return Err(Error::RustError(format!("D1: {error}")));
        }
    }
    metrics.d1_rows_written += statements.len() as u64;

    Faults::check(faults.kv, "KV")?;
    let address = RoomAddress::new(&view.tenant, &view.room).map_err(rust_error)?;
    let json = serde_json::to_string(view).map_err(rust_error)?;
    env.kv(READ_MODEL_BINDING)?.put(&address.read_model_key(), json)?.execute().await.map_err(rust_error)?;
    metrics.kv_writes += 1;
    Ok(())
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
    let rows: Vec<SnapshotRow> =
        prepare(&database(env)?, &index::snapshots_of(address, limit))?.all().await?.results()?;
    let bucket = env.bucket(SNAPSHOTS_BINDING)?;
    let mut records = Vec::with_capacity(rows.len());
    for row in rows {
        let in_r2 = bucket.head(row.r2_key.clone()).await?.is_some();
        let seq = row.seq.parse().map_err(|_| {
            tracing::error!(room = %address, seq = %row.seq, "a snapshot row has an unreadable seq");
            Error::RustError(format!("snapshot row {:?} has an unreadable seq", row.r2_key))
        })?;
        records.push(SnapshotRecord {
            seq,
            r2_key: row.r2_key,
            bytes: row.bytes as u64,
            created_ms: row.created_ms as u64,
            checksum: row.checksum,
            in_r2,
        });
    }
    Ok(records)
}

/// Loads the room's snapshot at `seq` (an admin restore), found through D1.
pub async fn load_snapshot(env: &Env, address: &RoomAddress, seq: u64) -> Result<Option<Snapshot>> {
    let key =
        prepare(&database(env)?, &index::snapshot_at(address, seq))?.first::<String>(Some("r2_key")).await?;
    match key {
        Some(key) => read_snapshot(env, &key).await.map(Some),
        None => Ok(None),
    }
}

/// Writes a counter's sum to D1 (exact, as text) with a row of its metrics series (`since`), and
/// its read model to KV. What was written (also before a failure) is counted into `metrics`.
pub async fn write_counter(
    env: &Env,
    address: &CounterAddress,
    view: &CounterView,
    since: &Metrics,
    metrics: &mut Metrics,
) -> Result<()> {
    let db = database(env)?;
    let statements = index::record_counter_flush(address, view, since);
    let batch = statements.iter().map(|statement| prepare(&db, statement)).collect::<Result<Vec<_>>>()?;
    for result in db.batch(batch).await? {
        if let Some(error) = result.error() {
            return Err(Error::RustError(format!("D1: {error}")));
        }
    }
    metrics.d1_rows_written += statements.len() as u64;
    let json = serde_json::to_string(view).map_err(rust_error)?;
    env.kv(READ_MODEL_BINDING)?.put(&address.read_model_key(), json)?.execute().await.map_err(rust_error)?;
    metrics.kv_writes += 1;
    Ok(())
}

/// Most snapshots an empty room tries, newest first, before it reports itself unavailable.
const RESTORE_CANDIDATES: u32 = 20;

/// Where an object with empty storage comes back from: its newest snapshot that reads and
/// verifies (older ones when newer are corrupt or missing), nothing for a room the index has
/// never seen, or unavailable when the room existed and nothing could be loaded now.
pub async fn restore_source(env: &Env, address: &RoomAddress) -> crate::RestoreSource {
    use crate::RestoreSource;
    let lookup = async {
        let db = database(env)?;
        let keys: Vec<KeyRow> =
            prepare(&db, &index::snapshots_of(address, RESTORE_CANDIDATES))?.all().await?.results()?;
        let known = prepare(&db, &index::room_known(address))?.first::<String>(Some("room")).await?.is_some();
        Ok::<_, Error>((keys.into_iter().map(|row| row.r2_key).collect::<Vec<_>>(), known))
    };
    let (keys, indexed) = match lookup.await {
        Ok(found) => found,
        Err(error) => return RestoreSource::Unavailable(format!("reading the D1 index failed: {error}")),
    };
    if keys.is_empty() && !indexed {
        return RestoreSource::NewRoom;
    }
    let mut last_error = "the index lists no snapshot".to_owned();
    for key in keys {
        match read_snapshot(env, &key).await {
            Ok(snapshot) => return RestoreSource::Snapshot(Box::new(snapshot)),
            Err(error) => {
                tracing::warn!(room = %address, key, %error, "snapshot unusable, trying an older one");
                last_error = error.to_string();
            }
        }
    }
    RestoreSource::Unavailable(format!("no snapshot could be loaded: {last_error}"))
}

#[derive(Deserialize)]
struct KeyRow {
    r2_key: String,
}

async fn read_snapshot(env: &Env, key: &str) -> Result<Snapshot> {
    let Some(object) = env.bucket(SNAPSHOTS_BINDING)?.get(key).execute().await? else {
        return Err(Error::RustError(format!("snapshot {key} is indexed in D1 but missing from R2")));
    };
    let bytes = object.body().ok_or_else(|| rust_error("empty R2 object"))?.bytes().await?;
    Snapshot::decode(&bytes).map_err(|e| Error::RustError(format!("snapshot {key}: {e}")))
}
