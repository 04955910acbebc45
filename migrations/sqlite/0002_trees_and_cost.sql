-- Child runs are found by their parent.
CREATE INDEX runs_by_parent ON runs (parent_id);

-- Model calls gain their cost, and a kind for the calls that compact a conversation.
-- (SQLite cannot change a CHECK constraint in place: the table is rebuilt.)
CREATE TABLE llm_calls_new (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id        TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    attempt       INTEGER NOT NULL,
    iteration     INTEGER,                      -- NULL for the out-of-iterations final call
    kind          TEXT NOT NULL CHECK (kind IN ('root', 'sub', 'final', 'compaction')),
    provider      TEXT NOT NULL,
    model         TEXT NOT NULL,
    prompt_chars  INTEGER NOT NULL,
    reply         TEXT,
    input_tokens  INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd      REAL NOT NULL DEFAULT 0,
    latency_ms    INTEGER NOT NULL,
    error         TEXT,
    created_at    INTEGER NOT NULL
);
INSERT INTO llm_calls_new (id, run_id, attempt, iteration, kind, provider, model, prompt_chars,
    reply, input_tokens, output_tokens, cached_tokens, latency_ms, error, created_at)
SELECT id, run_id, attempt, iteration, kind, provider, model, prompt_chars,
    reply, input_tokens, output_tokens, cached_tokens, latency_ms, error, created_at
FROM llm_calls;
DROP TABLE llm_calls;
ALTER TABLE llm_calls_new RENAME TO llm_calls;
CREATE INDEX llm_calls_by_run ON llm_calls (run_id, id);
