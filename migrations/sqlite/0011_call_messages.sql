-- What each model call sent, so a trajectory can show (and export) the exact messages: for a
-- root call, the count of messages kept from the run's call before and those added (JSON
-- `{"keep": n, "append": [...]}`); for a sub-call, its one message. And the code block a
-- sub-call came from.
ALTER TABLE llm_calls ADD COLUMN messages TEXT;
ALTER TABLE llm_calls ADD COLUMN block INTEGER;
