-- Counter metrics: the activity of a counter (summed over its shards) between two flushes of its
-- home shard, as a time series like room_metrics (kept METRICS_KEEP_DAYS days by the cron).
CREATE TABLE IF NOT EXISTS counter_metrics (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    at_ms REAL NOT NULL,               -- end of the interval (the flush)
    metrics TEXT NOT NULL              -- JSON: the activity since the previous flush
);
CREATE INDEX IF NOT EXISTS counter_metrics_by_name ON counter_metrics (tenant, name, at_ms);
CREATE INDEX IF NOT EXISTS counter_metrics_by_time ON counter_metrics (at_ms);
