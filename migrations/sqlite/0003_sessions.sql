-- Sessions: runs that share one REPL namespace, turn after turn.
CREATE TABLE sessions (
    id              TEXT PRIMARY KEY,           -- UUIDv7
    status          TEXT NOT NULL CHECK (status IN ('open', 'closed', 'expired')),
    turns           INTEGER NOT NULL DEFAULT 0, -- runs submitted so far
    idle_timeout_ms INTEGER NOT NULL,
    metadata        TEXT NOT NULL DEFAULT '{}',
    created_at      INTEGER NOT NULL,
    last_used_at    INTEGER NOT NULL,
    closed_at       INTEGER
);
CREATE INDEX sessions_by_status ON sessions (status, last_used_at);

ALTER TABLE runs ADD COLUMN session_id TEXT REFERENCES sessions (id);
ALTER TABLE runs ADD COLUMN turn INTEGER;                -- 0-based, within its session
CREATE INDEX runs_by_session ON runs (session_id, turn);
