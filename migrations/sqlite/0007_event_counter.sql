-- Each tree numbers its events from a counter on its root row. Taking a number locks that
-- row, which is what keeps numbers gap-free when several nodes write (see the PostgreSQL
-- schema); SQLite uses the same counter so that both backends share one statement.
ALTER TABLE runs ADD COLUMN event_seq INTEGER NOT NULL DEFAULT 0;
UPDATE runs SET event_seq = COALESCE((SELECT MAX(e.seq) FROM events e WHERE e.root_id = runs.id), 0)
WHERE parent_id IS NULL;
