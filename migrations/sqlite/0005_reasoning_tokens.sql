-- Reasoning ("thinking") tokens, already counted in output_tokens, shown apart.
ALTER TABLE llm_calls ADD COLUMN reasoning_tokens INTEGER NOT NULL DEFAULT 0;
