//! Snapshot retention, run by the Cron Trigger: per room, keep the newest `SNAPSHOT_KEEP_LAST`
//! snapshots (default 10) plus the newest of each of the last `SNAPSHOT_KEEP_DAYS` days (default
//! 7); delete the others from R2, then their D1 rows.

use edgeroom_durable::{snapshots_to_delete, SnapshotInfo, DB_BINDING, SNAPSHOTS_BINDING};
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
    Ok(deleted)
}
