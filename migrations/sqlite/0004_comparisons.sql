-- A comparison: the same task run on several providers or models, one run each.
CREATE TABLE comparisons (
    id         TEXT PRIMARY KEY,               -- UUIDv7
    run_ids    TEXT NOT NULL,                  -- JSON array, in the order of the targets
    created_at INTEGER NOT NULL
);
