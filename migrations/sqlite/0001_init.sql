-- Runs are jobs: queued -> running -> succeeded | failed | cancelled.
-- Times are milliseconds since the Unix epoch.
CREATE TABLE runs (
    id               TEXT PRIMARY KEY,           -- UUIDv7: sorts by creation time
    root_id          TEXT NOT NULL,              -- the tree this run belongs to (itself for a root)
    parent_id        TEXT REFERENCES runs (id),
    depth            INTEGER NOT NULL DEFAULT 0,
    status           TEXT NOT NULL
                     CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    prompt           TEXT NOT NULL,
    spec             TEXT NOT NULL,              -- JSON RunSpec: provider, model, limits, ...
    answer           TEXT,
    finish_reason    TEXT,
    error_code       TEXT,
    error_message    TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER
);
CREATE INDEX runs_by_status ON runs (status, id);
CREATE INDEX runs_by_root ON runs (root_id);

-- The context as submitted (JSON), apart from the run so listing runs never reads it.
CREATE TABLE run_contexts (
    run_id  TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    context TEXT NOT NULL
);

CREATE TABLE iterations (
    run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    idx         INTEGER NOT NULL,               -- 1-based
    reply       TEXT NOT NULL,
    model_ms    INTEGER NOT NULL,
    exec_ms     INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    PRIMARY KEY (run_id, idx)
);

CREATE TABLE code_blocks (
    run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    iteration   INTEGER NOT NULL,
    idx         INTEGER NOT NULL,               -- 1-based, in reply order
    code        TEXT NOT NULL,
    stdout      TEXT NOT NULL,
    stderr      TEXT NOT NULL,
    error       TEXT,                           -- "ValueError: ...", timeout or crash notice
    timed_out   INTEGER NOT NULL DEFAULT 0,
    duration_ms INTEGER NOT NULL,
    PRIMARY KEY (run_id, iteration, idx)
);

-- Every model call: the root's turns and the sub-calls made from code.
CREATE TABLE llm_calls (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id        TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    attempt       INTEGER NOT NULL,
    iteration     INTEGER,                      -- NULL for the out-of-iterations final call
    kind          TEXT NOT NULL CHECK (kind IN ('root', 'sub', 'final')),
    provider      TEXT NOT NULL,
    model         TEXT NOT NULL,
    prompt_chars  INTEGER NOT NULL,
    reply         TEXT,
    input_tokens  INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens INTEGER NOT NULL DEFAULT 0,
    latency_ms    INTEGER NOT NULL,
    error         TEXT,
    created_at    INTEGER NOT NULL
);
CREATE INDEX llm_calls_by_run ON llm_calls (run_id, id);

-- Progress events, numbered per tree so a root's stream can carry its descendants' events.
CREATE TABLE events (
    root_id    TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    run_id     TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    type       TEXT NOT NULL,
    data       TEXT NOT NULL,                   -- JSON
    created_at INTEGER NOT NULL,
    PRIMARY KEY (root_id, seq)
);
CREATE INDEX events_by_run ON events (run_id, seq);
