-- A sub-call's prompt, as its SHA-256 (hex): a run resumed after a restart answers its
-- code's repeated calls from the calls already made, matched by prompt.
ALTER TABLE llm_calls ADD COLUMN prompt_hash TEXT;
