-- Idempotency-Key: a retried request with the same key gets the runs the first one made.
CREATE TABLE idempotency_keys (
    scope      TEXT NOT NULL,       -- the API key (or "open") and the route
    key        TEXT NOT NULL,       -- the client's Idempotency-Key
    body_hash  TEXT NOT NULL,       -- hex SHA-256 of the request body, as canonical JSON
    run_ids    TEXT NOT NULL,       -- JSON array of the runs the request made
    created_at INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
