-- Webhooks: a root run with a `webhook` is POSTed to it once it ends.
ALTER TABLE runs ADD COLUMN webhook_state TEXT;   -- NULL: no webhook; pending, delivering, delivered, failed
ALTER TABLE runs ADD COLUMN webhook_claimed_until BIGINT;  -- a node's claim on a delivery lapses then
CREATE INDEX runs_webhook_open ON runs (webhook_state) WHERE webhook_state IN ('pending', 'delivering');
