//! The flush's writes to the shared stores — R2 (snapshots), D1 (index) and KV (read models) —
//! and the reads a restore needs. Test builds can make chosen stores fail (`fault-injection`).

// Each Worker of the split deploy uses its part: rooms their flush and restore, counters theirs,
// the router the snapshot listing and the fault switch.
#![cfg_attr(not(all(feature = "rooms", feature = "counters")), allow(dead_code))]

use edgeroom_protocol::{CounterAddress, CounterView, RoomAddress, SnapshotRecord};
use serde::Deserialize;
use worker::{Env, Error, Result};

use super::d1::{database, prepare};
use crate::{
    index, snapshot_key, FlushPlan, Metrics, ReadModelWrite, Snapshot, Written, READ_MODEL_BINDING,
    SNAPSHOTS_BINDING,
};

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
    /// Encode export batches but drop them instead of sending them, as if the queue took them
    /// (benchmarks: the room's own export work without the local queue simulator's).
    pub discard_queue: bool,
}

/// Reaches one fault's flag in [`Faults`].
type Switch = fn(&mut Faults) -> &mut bool;

impl Faults {
    /// Each fault's name (as in `POST .../faults` and [`Faults::parse`]) with its switch.
    const SWITCHES: [(&'static str, Switch); 5] = [
        ("d1", |faults| &mut faults.d1),
        ("r2", |faults| &mut faults.r2),
        ("kv", |faults| &mut faults.kv),
        ("queue", |faults| &mut faults.queue),
        ("discard_queue", |faults| &mut faults.discard_queue),
    ];

    /// The names [`Faults::parse`] knows.
    pub fn names() -> impl Iterator<Item = &'static str> {
        Self::SWITCHES.iter().map(|(name, _)| *name)
    }

    /// Parses a comma-separated list such as `d1,kv`; unknown names are ignored (the faults
    /// endpoint refuses them before they are stored).
    pub fn parse(list: &str) -> Self {
        let mut faults = Self::default();
        for item in list.split(',').map(str::trim) {
            if let Some((_, switch)) = Self::SWITCHES.iter().find(|(name, _)| *name == item) {
                *switch(&mut faults) = true;
            }
        }
        faults
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

/// Writes what `plan` holds: the snapshot to R2 and its rows to D1 (or the index row alone), and
/// the read model to KV. The copies are independent: a failing R2 or D1 does not hold back the
/// read model. Each part that succeeded is in the returned [`Written`] (the caller records
/// those), with the first error; whatever was written is counted into `metrics`.
pub async fn write_flush(
    env: &Env,
    faults: Faults,
    plan: &FlushPlan,
    metrics: &mut Metrics,
) -> (Written, Result<()>) {
    let mut written = Written::default();
    let mut first_error = None;
    if let Some(snapshot) = &plan.snapshot {
        match write_snapshot(env, faults, plan, snapshot, metrics).await {
            Ok(()) => written.snapshot = true,
            Err(error) => first_error = Some(error),
        }
    } else if plan.index {
        match write_index(env, faults, plan, metrics).await {
            Ok(()) => written.index = true,
            Err(error) => first_error = Some(error),
        }
    }
    if let Some(write) = plan.read_model {
        let key =
            RoomAddress::new(&plan.view.tenant, &plan.view.room).map(|address| address.read_model_key());
        let key = key.map_err(rust_error);
        written.read_model =
            put_read_model(env, faults, key, &plan.view, write, metrics, &mut first_error).await;
    }
    (written, first_error.map_or(Ok(()), Err))
}

/// Puts (or deletes) the read model `view` at `key` in KV and counts the write. A failure
/// becomes `first_error` unless an earlier one is there. Returns whether it was written.
async fn put_read_model(
    env: &Env,
    faults: Faults,
    key: Result<String>,
    view: &impl serde::Serialize,
    write: ReadModelWrite,
    metrics: &mut Metrics,
    first_error: &mut Option<Error>,
) -> bool {
    let put = async {
        let json = serde_json::to_string(view).map_err(rust_error)?;
        write_read_model(env, faults, &key?, json, write).await
    };
    match put.await {
        Ok(()) => {
            metrics.kv_writes += 1;
            true
        }
        Err(error) => {
            first_error.get_or_insert(error);
            false
        }
    }
}

/// The snapshot to R2, then its snapshot, index and metrics series rows to D1 in one batch.
async fn write_snapshot(
    env: &Env,
    faults: Faults,
    plan: &FlushPlan,
    snapshot: &Snapshot,
    metrics: &mut Metrics,
) -> Result<()> {
    let view = &plan.view;
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
    Ok(())
}

/// The room's index row alone (members or epoch changed between snapshots).
async fn write_index(env: &Env, faults: Faults, plan: &FlushPlan, metrics: &mut Metrics) -> Result<()> {
    Faults::check(faults.d1, "D1")?;
    let statement = index::record_index(&plan.view, &plan.totals, plan.taken_ms);
    prepare(&database(env)?, &statement)?.run().await?;
    metrics.d1_rows_written += 1;
    Ok(())
}

/// Puts a JSON read model in KV, expiring with its lease, or deletes it.
async fn write_read_model(
    env: &Env,
    faults: Faults,
    key: &str,
    json: String,
    write: ReadModelWrite,
) -> Result<()> {
    Faults::check(faults.kv, "KV")?;
    let kv = env.kv(READ_MODEL_BINDING)?;
    match write {
        ReadModelWrite::Put { ttl_s, .. } => {
            kv.put(key, json)?.expiration_ttl(ttl_s).execute().await.map_err(rust_error)
        }
        ReadModelWrite::Delete => kv.delete(key).await.map_err(rust_error),
    }
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

/// Writes what the counter's cadence decided: its sum to D1 (exact, as text) with a row of its
/// metrics series (`since`) when `d1`, and its read model to KV. The copies are independent, as a
/// room's: a failing D1 does not hold back the read model. Returns what was written with the first
/// error; what was written is counted into `metrics`.
pub async fn write_counter(
    env: &Env,
    address: &CounterAddress,
    view: &CounterView,
    d1: bool,
    read_model: Option<ReadModelWrite>,
    since: &Metrics,
    metrics: &mut Metrics,
) -> (Written, Result<()>) {
    let mut written = Written::default();
    let mut first_error = None;
    if d1 {
        let statements = index::record_counter_flush(address, view, since);
        let run = async {
            let db = database(env)?;
            let batch =
                statements.iter().map(|statement| prepare(&db, statement)).collect::<Result<Vec<_>>>()?;
            for result in db.batch(batch).await? {
                if let Some(error) = result.error() {
                    return Err(Error::RustError(format!("D1: {error}")));
                }
            }
            Ok(())
        };
        match run.await {
            Ok(()) => {
                metrics.d1_rows_written += statements.len() as u64;
                written.snapshot = true;
            }
            Err(error) => first_error = Some(error),
        }
    }
    if let Some(write) = read_model {
        let key = Ok(address.read_model_key());
        written.read_model =
            put_read_model(env, Faults::default(), key, view, write, metrics, &mut first_error).await;
    }
    (written, first_error.map_or(Ok(()), Err))
}

/// Most snapshots an empty room tries, newest first, before it reports itself unavailable.
const RESTORE_CANDIDATES: u32 = 20;

/// Where an object with empty storage comes back from: its newest snapshot that reads and
/// verifies (older ones when newer are corrupt or missing), nothing for a room the index has
/// never seen, or unavailable when the room existed and nothing could be loaded now.
pub async fn restore_source(env: &Env, address: &RoomAddress) -> crate::RestoreSource {
    use crate::RestoreSource;
    // Both reads in one batch: one round trip to D1 before a new room's first request.
    let lookup = async {
        let db = database(env)?;
        let statements = vec![
            prepare(&db, &index::snapshots_of(address, RESTORE_CANDIDATES))?,
            prepare(&db, &index::room_known(address))?,
        ];
        let mut results = db.batch(statements).await?.into_iter();
        let (Some(snapshots), Some(rooms)) = (results.next(), results.next()) else {
            return Err(rust_error("D1 answered the batch with fewer results"));
        };
        let keys: Vec<KeyRow> = snapshots.results()?;
        let known = !rooms.results::<serde_json::Value>()?.is_empty();
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

/// The room's snapshot at `seq` read back from R2, to build the next one on (see
/// [`crate::Room::snapshot`]); `None` (with a warning) when it cannot be read, so the next
/// snapshot reads the whole history instead.
pub async fn base_snapshot(
    env: &Env,
    address: &RoomAddress,
    seq: u64,
    metrics: &mut Metrics,
) -> Option<Snapshot> {
    let key = snapshot_key(address.tenant(), address.room(), seq);
    metrics.r2_reads += 1;
    match read_snapshot(env, &key).await {
        Ok(snapshot) => Some(snapshot),
        Err(error) => {
            tracing::warn!(room = %address, key, %error, "the last snapshot could not be read back; taking a whole one");
            None
        }
    }
}

async fn read_snapshot(env: &Env, key: &str) -> Result<Snapshot> {
    let Some(object) = env.bucket(SNAPSHOTS_BINDING)?.get(key).execute().await? else {
        return Err(Error::RustError(format!("snapshot {key} is indexed in D1 but missing from R2")));
    };
    let bytes = object.body().ok_or_else(|| rust_error("empty R2 object"))?.bytes().await?;
    Snapshot::decode(&bytes).map_err(|e| Error::RustError(format!("snapshot {key}: {e}")))
}
