-- Contexts stored by content: a blob's id is the SHA-256 of its bytes (hex), stored once in
-- chunks of at most 1 MiB however many keys upload it or runs use it. A blob row is written
-- after its last chunk, so a blob that has a row is complete.
CREATE TABLE context_blobs (
    id         TEXT PRIMARY KEY,
    bytes      INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE context_chunks (
    blob_id TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    data    BLOB NOT NULL,
    PRIMARY KEY (blob_id, seq)
);

-- An uploaded context as a key sees it (owner_key 0: uploaded with keys off). Deleting one
-- removes this row; the blob goes once no upload and no run refers to it.
CREATE TABLE contexts (
    id          TEXT NOT NULL,
    owner_key   INTEGER NOT NULL,
    format      TEXT NOT NULL,
    bytes       INTEGER NOT NULL,
    description TEXT NOT NULL,
    name        TEXT,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (owner_key, id)
);
CREATE INDEX contexts_by_blob ON contexts (id);

-- What a run's REPL is given as `context` (NULL: a run from before contexts were blobs,
-- whose JSON text is in run_contexts, or a run with no context).
ALTER TABLE runs ADD COLUMN context_id TEXT;
ALTER TABLE runs ADD COLUMN context_format TEXT;
ALTER TABLE runs ADD COLUMN context_description TEXT;
CREATE INDEX runs_by_context ON runs (context_id);
