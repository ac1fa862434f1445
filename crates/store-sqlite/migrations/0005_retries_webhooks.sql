-- Failure retries and webhooks (issue 12). Times are INTEGER unix
-- milliseconds, JSON is TEXT, exactly like the other tables.
--
-- Failure retries. A version carries the Towerfile's `retries` and
-- `retry_delay` (the first delay); a run copies them at creation (or takes
-- its own from the trigger) as `failure_retries` and `retry_delay_ms`, and
-- counts what it spent in `failure_retry_count`. This budget is separate
-- from the lease-expiry one (`max_retries` / `retry_count`). A failed
-- attempt with budget left puts the run back to `queued` with `not_before`
-- set: the lease skips it until then.
ALTER TABLE versions ADD COLUMN retries INTEGER NOT NULL DEFAULT 0
    CHECK (retries BETWEEN 0 AND 100);
ALTER TABLE versions ADD COLUMN retry_delay_ms INTEGER NOT NULL DEFAULT 2000
    CHECK (retry_delay_ms BETWEEN 1 AND 3600000);
ALTER TABLE runs ADD COLUMN failure_retries INTEGER NOT NULL DEFAULT 0
    CHECK (failure_retries BETWEEN 0 AND 100);
ALTER TABLE runs ADD COLUMN failure_retry_count INTEGER NOT NULL DEFAULT 0
    CHECK (failure_retry_count >= 0 AND failure_retry_count <= failure_retries);
ALTER TABLE runs ADD COLUMN retry_delay_ms INTEGER NOT NULL DEFAULT 2000
    CHECK (retry_delay_ms BETWEEN 1 AND 3600000);
ALTER TABLE runs ADD COLUMN not_before INTEGER;

-- The queue index carries not_before, so the lease's "not before now"
-- filter is judged on index entries without visiting the rows.
DROP INDEX runs_queue;
CREATE INDEX runs_queue ON runs (environment, priority DESC, queued_at, id, not_before)
    WHERE status = 'queued';
-- The earliest waiting retry of an environment, for the lease long-poll's
-- wake-up: one index seek.
CREATE INDEX runs_retry_due ON runs (environment, not_before)
    WHERE status = 'queued' AND not_before IS NOT NULL;

-- Webhook endpoints of a team (optionally of one app). The signing secret
-- (`whsec_...`) must be read back to sign each delivery, so it is stored;
-- the API shows it once, at creation. AUTOINCREMENT: ids are never reused.
CREATE TABLE webhooks (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    team_id    INTEGER NOT NULL REFERENCES teams (id),
    -- NULL: every app of the team
    app_id     INTEGER,
    url        TEXT    NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    secret     TEXT    NOT NULL CHECK (secret LIKE 'whsec_%'),
    events     TEXT    NOT NULL CHECK (events IN ('terminal', 'failures', 'all')),
    enabled    INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    FOREIGN KEY (app_id, team_id) REFERENCES apps (id, team_id)
);
CREATE INDEX webhooks_team ON webhooks (team_id, id);

-- One row per (endpoint, event), written in the transaction of the run's
-- state change. `claim` counts claims: a deliverer records its attempt only
-- if the row is still its claim, and a claim that was never recorded (the
-- process died) is due again at `next_attempt_at`.
CREATE TABLE webhook_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id      INTEGER NOT NULL REFERENCES webhooks (id),
    team_id         INTEGER NOT NULL REFERENCES teams (id),
    -- NULL for a test event
    run_id          INTEGER,
    event_type      TEXT    NOT NULL CHECK (length(event_type) BETWEEN 1 AND 64),
    payload         TEXT    NOT NULL CHECK (json_valid(payload)),
    status          TEXT    NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    claim           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    CHECK ((finished_at IS NULL) = (status = 'pending'))
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_outbox_webhook ON webhook_outbox (webhook_id, id);

-- Each delivery attempt: HTTP status (NULL when no answer), latency, the
-- start of the answer (at most 1 KiB) or the error.
CREATE TABLE webhook_deliveries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    outbox_id        INTEGER NOT NULL REFERENCES webhook_outbox (id),
    webhook_id       INTEGER NOT NULL REFERENCES webhooks (id),
    attempt_no       INTEGER NOT NULL CHECK (attempt_no >= 1),
    status_code      INTEGER,
    latency_ms       INTEGER NOT NULL CHECK (latency_ms >= 0),
    response_excerpt TEXT CHECK (response_excerpt IS NULL OR length(response_excerpt) <= 1024),
    error            TEXT,
    outcome          TEXT    NOT NULL CHECK (outcome IN ('delivered', 'retry', 'failed')),
    delivered_at     INTEGER NOT NULL,
    UNIQUE (outbox_id, attempt_no)
);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, id);
