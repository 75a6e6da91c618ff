//! Snapshot retention, run by the Cron Trigger: per room, keep the newest `SNAPSHOT_KEEP_LAST`
//! snapshots (default 10) plus the newest of each of the last `SNAPSHOT_KEEP_DAYS` days (default
//! 7); delete the others from R2, then their D1 rows. Then delete R2 snapshots that no D1 row
//! names (a flush whose index write failed) once older than `SNAPSHOT_ORPHAN_AGE_MS` (1 h), and
//! metrics time series rows older than `METRICS_KEEP_DAYS` (7).

use std::collections::HashSet;

use edgeroom_durable::object::d1::{database, prepare};
use edgeroom_durable::{index, orphaned_snapshots, snapshots_to_delete, SnapshotInfo, SNAPSHOTS_BINDING};
use serde::Deserialize;
use worker::{Env, Result};

#[derive(Deserialize)]
struct Row {
    tenant: String,
    room: String,
    seq: String,
    r2_key: String,
    created_ms: f64,
}

fn number_var(env: &Env, name: &str, default: u64) -> u64 {
    env.var(name).ok().and_then(|v| v.to_string().parse().ok()).unwrap_or(default)
}

/// Applies retention to every room; returns how many snapshots were deleted.
pub async fn run(env: &Env, now_ms: u64) -> Result<usize> {
    let keep_last = number_var(env, "SNAPSHOT_KEEP_LAST", 10) as usize;
    let keep_days = number_var(env, "SNAPSHOT_KEEP_DAYS", 7);
    let db = database(env)?;
    // Only rooms with more snapshots than the newest `keep_last` can lose any.
    let rows: Vec<Row> = prepare(&db, &index::retention_candidates(keep_last))?.all().await?.results()?;
    let bucket = env.bucket(SNAPSHOTS_BINDING)?;
    let mut deleted = 0;
    for room_rows in rows.chunk_by(|a, b| a.tenant == b.tenant && a.room == b.room) {
        let infos: Vec<SnapshotInfo> = room_rows
            .iter()
            .filter_map(|row| {
                Some(SnapshotInfo { seq: row.seq.parse().ok()?, created_ms: row.created_ms as u64 })
            })
            .collect();
        let doomed = snapshots_to_delete(&infos, now_ms, keep_last, keep_days);
        for row in room_rows.iter().filter(|row| row.seq.parse().is_ok_and(|seq: u64| doomed.contains(&seq)))
        {
            // R2 first: a row without its object would be a broken restore target.
            bucket.delete(row.r2_key.clone()).await?;
            prepare(&db, &index::forget_snapshot(&row.tenant, &row.room, &row.seq))?.run().await?;
            deleted += 1;
        }
    }
    let keep_metrics_days = number_var(env, "METRICS_KEEP_DAYS", 7);
    let cutoff = now_ms.saturating_sub(keep_metrics_days * 24 * 60 * 60 * 1000);
    for statement in index::forget_metrics(cutoff) {
        prepare(&db, &statement)?.run().await?;
    }
    Ok(deleted + delete_orphans(env, now_ms).await?)
}

/// R2 list pages one run looks at (1,000 objects each); the next run goes on from the start.
const ORPHAN_PAGES_PER_RUN: usize = 10;
/// Keys per D1 lookup (D1 binds at most 100 parameters).
const KEYS_PER_LOOKUP: usize = 90;

/// Deletes R2 snapshots without a D1 row; returns how many.
async fn delete_orphans(env: &Env, now_ms: u64) -> Result<usize> {
    let min_age_ms = number_var(env, "SNAPSHOT_ORPHAN_AGE_MS", 60 * 60 * 1000);
    let bucket = env.bucket(SNAPSHOTS_BINDING)?;
    let db = database(env)?;
    let (mut cursor, mut deleted) = (None::<String>, 0);
    for _ in 0..ORPHAN_PAGES_PER_RUN {
        let mut list = bucket.list().prefix("snapshots/").limit(1000);
        if let Some(cursor) = cursor.take() {
            list = list.cursor(cursor);
        }
        let page = list.execute().await?;
        let listed: Vec<(String, u64)> =
            page.objects().iter().map(|object| (object.key(), object.uploaded().as_millis())).collect();
        let mut indexed = HashSet::new();
        for keys in listed.chunks(KEYS_PER_LOOKUP) {
            let lookup = index::indexed_keys(keys.iter().map(|(key, _)| key.as_str()));
            let rows: Vec<KeyRow> = prepare(&db, &lookup)?.all().await?.results()?;
            indexed.extend(rows.into_iter().map(|row| row.r2_key));
        }
        for key in orphaned_snapshots(&listed, &indexed, now_ms, min_age_ms) {
            bucket.delete(key).await?;
            deleted += 1;
        }
        match page.cursor().filter(|_| page.truncated()) {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(deleted)
}

#[derive(Deserialize)]
struct KeyRow {
    r2_key: String,
}
