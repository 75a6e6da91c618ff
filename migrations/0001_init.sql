-- edgeroom D1 schema: the index of rooms and their snapshots (filled by the snapshot flush).
CREATE TABLE IF NOT EXISTS rooms (
    tenant TEXT NOT NULL,
    room TEXT NOT NULL,
    seq TEXT NOT NULL DEFAULT '0',           -- u64 as text: D1 binds integers as 32-bit
    members INTEGER NOT NULL DEFAULT 0,
    last_activity_ms REAL NOT NULL DEFAULT 0,
    last_snapshot_key TEXT,
    last_snapshot_bytes INTEGER,
    PRIMARY KEY (tenant, room)
);
