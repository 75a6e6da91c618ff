-- Event export: each tenant's webhook endpoints (what they receive, signed with their secret)
-- and the batches that failed every delivery attempt (replayable through the admin API).
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    kinds TEXT NOT NULL,               -- JSON array of export kinds
    created_ms REAL NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE IF NOT EXISTS dead_letters (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,                  -- the batch id (its first event's id)
    room TEXT NOT NULL,
    batch TEXT NOT NULL,               -- the export batch, JSON
    failed_ms REAL NOT NULL,
    PRIMARY KEY (tenant, id)
);
