-- Child runs are found by their parent; every model call carries its cost.
CREATE INDEX runs_by_parent ON runs (parent_id);
ALTER TABLE llm_calls ADD COLUMN cost_usd REAL NOT NULL DEFAULT 0;
