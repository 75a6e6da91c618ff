-- Snapshots written by room flushes (the R2 object is found through this table, never by listing
-- R2), and the counters table for the counter read model.
CREATE TABLE IF NOT EXISTS snapshots (
    tenant TEXT NOT NULL,
    room TEXT NOT NULL,
    seq TEXT NOT NULL,                 -- u64 as text: D1 binds integers as 32-bit
    seq_order REAL NOT NULL,           -- the same seq as a number for ordering (exact below 2^53)
    r2_key TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    created_ms REAL NOT NULL,
    checksum TEXT NOT NULL,            -- CRC-32 of the snapshot body, hex
    PRIMARY KEY (tenant, room, seq)
);
CREATE INDEX IF NOT EXISTS snapshots_by_room ON snapshots (tenant, room, seq_order);

CREATE TABLE IF NOT EXISTS counters (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,               -- i64 as text
    version TEXT NOT NULL,             -- u64 as text
    updated_ms REAL NOT NULL,
    PRIMARY KEY (tenant, name)
);
