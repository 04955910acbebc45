-- Listings are pages newest first: each walks one of these in id order and stops after a
-- page, instead of sorting every matching row. Only root runs are listed, so the run
-- indexes hold roots only; the index of children by parent holds children only. Owners'
-- indexes hold only what has an owner: without API keys (the default) nothing has one, and
-- no write pays for them.
DROP INDEX runs_by_parent;
CREATE INDEX runs_by_parent ON runs (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX runs_roots ON runs (id) WHERE parent_id IS NULL;
CREATE INDEX runs_roots_by_status ON runs (status, id) WHERE parent_id IS NULL;
CREATE INDEX runs_roots_of_owner ON runs (owner_key, id)
    WHERE parent_id IS NULL AND owner_key IS NOT NULL;
CREATE INDEX runs_roots_by_owner ON runs (owner_key, status, id)
    WHERE parent_id IS NULL AND owner_key IS NOT NULL;
CREATE INDEX sessions_of_owner ON sessions (owner_key, id) WHERE owner_key IS NOT NULL;
CREATE INDEX comparisons_of_owner ON comparisons (owner_key, id) WHERE owner_key IS NOT NULL;
