-- The sub-call cache: replies of deterministic sub-calls (temperature 0), answered again
-- without a model call to runs that opt in (`cache`). `scope` is whose they are:
-- `tree:<root run id>` or `key:<API key id>` (`key:` when keys are off). `key` is the hex
-- SHA-256 of the call: provider, model, messages and sampling.
CREATE TABLE subcall_cache (
    scope      TEXT NOT NULL,
    key        TEXT NOT NULL,
    reply      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX subcall_cache_expiry ON subcall_cache (expires_at);

-- A call answered from that cache: no model was called, nothing was paid.
ALTER TABLE llm_calls ADD COLUMN cache_hit BIGINT NOT NULL DEFAULT 0;

-- The provider's own prompt cache (Anthropic): input tokens written to it, and the money
-- its reads saved less the premium its writes cost.
ALTER TABLE llm_calls ADD COLUMN cache_write_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE llm_calls ADD COLUMN cache_saved_usd DOUBLE PRECISION NOT NULL DEFAULT 0;
