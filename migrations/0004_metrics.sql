-- Room metrics: cumulative totals on the room's index row, and the activity between two flushes
-- as a time series (kept METRICS_KEEP_DAYS days by the retention cron).
ALTER TABLE rooms ADD COLUMN metrics TEXT NOT NULL DEFAULT '{}';
CREATE TABLE IF NOT EXISTS room_metrics (
    tenant TEXT NOT NULL,
    room TEXT NOT NULL,
    at_ms REAL NOT NULL,               -- end of the interval (the flush)
    metrics TEXT NOT NULL              -- JSON: the activity since the previous flush
);
CREATE INDEX IF NOT EXISTS room_metrics_by_room ON room_metrics (tenant, room, at_ms);
CREATE INDEX IF NOT EXISTS room_metrics_by_time ON room_metrics (at_ms);
