-- Retention (issue 14): finished runs older than MINITOWER_RETENTION are
-- deleted in small batches, oldest first, with everything that refers to
-- them; artifacts no version references are collected.
--
-- The purge's scan: finished runs in finish order, one index range.
CREATE INDEX runs_finished ON runs (finished_at, id) WHERE finished_at IS NOT NULL;
-- A run's webhook events (the purge deletes them and skips a run whose
-- event is still pending); test events have no run.
CREATE INDEX webhook_outbox_run ON webhook_outbox (run_id) WHERE run_id IS NOT NULL;
-- The artifact collector asks which stored hashes a version still uses.
CREATE INDEX versions_artifact ON versions (artifact_sha256);
