//! Snapshot retention, run by the Cron Trigger: per room, keep the newest `SNAPSHOT_KEEP_LAST`
//! snapshots (default 10) plus the newest of each of the last `SNAPSHOT_KEEP_DAYS` days (default
//! 7); delete the others from R2, then their D1 rows. Then delete R2 snapshots that no D1 row
//! names (a flush whose index write failed) once older than `SNAPSHOT_ORPHAN_AGE_MS` (1 h).

use std::collections::HashSet;

use edgeroom_durable::{
    orphaned_snapshots, snapshots_to_delete, SnapshotInfo, DB_BINDING, SNAPSHOTS_BINDING,
};
use serde::Deserialize;
use worker::wasm_bindgen::JsValue;
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
    let db = env.d1(DB_BINDING)?;
    // Only rooms with more snapshots than the newest `keep_last` can lose any.
    let rows: Vec<Row> = db
        .prepare(
            "SELECT s.tenant, s.room, s.seq, s.r2_key, s.created_ms FROM snapshots s
             JOIN (SELECT tenant, room FROM snapshots GROUP BY tenant, room HAVING COUNT(*) > ?1) busy
               ON busy.tenant = s.tenant AND busy.room = s.room
             ORDER BY s.tenant, s.room",
        )
        .bind(&[JsValue::from(keep_last as f64)])?
        .all()
        .await?
        .results()?;
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
            db.prepare("DELETE FROM snapshots WHERE tenant = ?1 AND room = ?2 AND seq = ?3")
                .bind(&[row.tenant.as_str().into(), row.room.as_str().into(), row.seq.as_str().into()])?
                .run()
                .await?;
            deleted += 1;
        }
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
    let db = env.d1(DB_BINDING)?;
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
            let placeholders = vec!["?"; keys.len()].join(",");
            let binds: Vec<JsValue> = keys.iter().map(|(key, _)| key.as_str().into()).collect();
            let rows: Vec<KeyRow> = db
                .prepare(format!("SELECT r2_key FROM snapshots WHERE r2_key IN ({placeholders})"))
                .bind(&binds)?
                .all()
                .await?
                .results()?;
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
