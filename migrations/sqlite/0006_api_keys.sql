-- API keys, stored as the SHA-256 of the key (keys are 256-bit random, so a plain hash is
-- enough). Keys are revoked, never deleted: once one has existed, authentication stays on.
CREATE TABLE api_keys (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    name                TEXT NOT NULL UNIQUE,
    hash                TEXT NOT NULL UNIQUE,       -- hex SHA-256 of the key
    admin               INTEGER NOT NULL DEFAULT 0,
    max_concurrent_runs INTEGER,                    -- NULL: the server's default
    max_queued_runs     INTEGER,                    -- NULL: the server's default
    created_at          INTEGER NOT NULL,
    revoked_at          INTEGER
);

-- What each key owns. NULL: made while authentication was off (only admin keys see it).
-- A child run and a session's turns carry the owner of their root and session.
ALTER TABLE runs ADD COLUMN owner_key INTEGER REFERENCES api_keys (id);
ALTER TABLE sessions ADD COLUMN owner_key INTEGER REFERENCES api_keys (id);
ALTER TABLE comparisons ADD COLUMN owner_key INTEGER REFERENCES api_keys (id);
-- For listing a key's runs and counting its queued and running ones.
CREATE INDEX runs_by_owner ON runs (owner_key, status);
