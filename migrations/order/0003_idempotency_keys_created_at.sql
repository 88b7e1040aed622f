-- idempotency_keys are kept for IDEMPOTENCY_RETENTION (order-svc setting, default 24h) and
-- then deleted by the sweeper in small batches, oldest first (order_repo_idem_purge); this
-- index serves that scan, so a sweep reads only the expired rows.
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
