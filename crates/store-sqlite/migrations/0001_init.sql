-- MiniTower schema for SQLite.
--
-- The invariants the control plane relies on are enforced here, not only in
-- code: status sets (CHECK), one active attempt per run (partial UNIQUE),
-- a runner never above its concurrency (trigger-maintained counter + CHECK),
-- terminal runs and attempts never coming back to life (triggers), and
-- scoped foreign keys so a version or run can never point across teams.
-- Timestamps are INTEGER unix milliseconds, JSON is TEXT.

CREATE TABLE teams (
    id            INTEGER PRIMARY KEY,
    slug          TEXT    NOT NULL UNIQUE,
    name          TEXT    NOT NULL,
    password_hash TEXT,
    created_at    INTEGER NOT NULL
);

CREATE TABLE tokens (
    id           INTEGER PRIMARY KEY,
    team_id      INTEGER NOT NULL REFERENCES teams (id),
    name         TEXT    NOT NULL,
    role         TEXT    NOT NULL CHECK (role IN ('admin', 'member')),
    token_hash   TEXT    NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
CREATE INDEX tokens_team ON tokens (team_id, id);

CREATE TABLE apps (
    id          INTEGER PRIMARY KEY,
    team_id     INTEGER NOT NULL REFERENCES teams (id),
    slug        TEXT    NOT NULL,
    description TEXT,
    created_at  INTEGER NOT NULL,
    UNIQUE (team_id, slug),
    -- target of the scoped foreign keys below
    UNIQUE (id, team_id)
);

CREATE TABLE versions (
    id              INTEGER PRIMARY KEY,
    app_id          INTEGER NOT NULL,
    team_id         INTEGER NOT NULL,
    version_no      INTEGER NOT NULL CHECK (version_no >= 1),
    artifact_sha256 TEXT    NOT NULL,
    artifact_size   INTEGER NOT NULL CHECK (artifact_size >= 0),
    entrypoint      TEXT    NOT NULL,
    timeout_seconds INTEGER NOT NULL CHECK (timeout_seconds >= 1),
    params_schema   TEXT CHECK (params_schema IS NULL OR json_valid(params_schema)),
    towerfile       TEXT,
    import_paths    TEXT    NOT NULL DEFAULT '[]' CHECK (json_type(import_paths) = 'array'),
    created_at      INTEGER NOT NULL,
    UNIQUE (app_id, version_no),
    UNIQUE (id, app_id),
    FOREIGN KEY (app_id, team_id) REFERENCES apps (id, team_id)
);

CREATE TABLE runs (
    id               INTEGER PRIMARY KEY,
    team_id          INTEGER NOT NULL,
    app_id           INTEGER NOT NULL,
    version_id       INTEGER NOT NULL,
    run_no           INTEGER NOT NULL CHECK (run_no >= 1),
    environment      TEXT    NOT NULL,
    status           TEXT    NOT NULL CHECK (status IN ('queued', 'leased', 'running', 'cancelling',
                                                        'completed', 'failed', 'cancelled', 'dead')),
    input            TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(input)),
    priority         INTEGER NOT NULL DEFAULT 0,
    max_retries      INTEGER NOT NULL DEFAULT 0 CHECK (max_retries >= 0),
    retry_count      INTEGER NOT NULL DEFAULT 0 CHECK (retry_count >= 0 AND retry_count <= max_retries),
    cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    exit_code        INTEGER,
    error_message    TEXT,
    idempotency_key  TEXT,
    queued_at        INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    UNIQUE (app_id, run_no),
    FOREIGN KEY (app_id, team_id) REFERENCES apps (id, team_id),
    FOREIGN KEY (version_id, app_id) REFERENCES versions (id, app_id),
    -- a run is finished exactly when it is terminal
    CHECK ((finished_at IS NOT NULL) = (status IN ('completed', 'failed', 'cancelled', 'dead')))
);
CREATE UNIQUE INDEX runs_idempotency ON runs (app_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- Leasing: the next queued run of an environment, in the exact pick order.
CREATE INDEX runs_queue ON runs (environment, priority DESC, queued_at, id)
    WHERE status = 'queued';
-- Team run lists, newest first, unfiltered / by status / by app / by app and status.
CREATE INDEX runs_team ON runs (team_id, id);
CREATE INDEX runs_team_status ON runs (team_id, status, id);
CREATE INDEX runs_app ON runs (app_id, id);
CREATE INDEX runs_app_status ON runs (app_id, status, id);
-- Stats: runs finished in a time window, index-only.
CREATE INDEX runs_team_finished ON runs (team_id, finished_at, status, started_at)
    WHERE finished_at IS NOT NULL;

-- Run counts per (team, app, environment, status), kept by triggers so the
-- summary and the pending gauge never scan the runs table.
CREATE TABLE run_counts (
    team_id     INTEGER NOT NULL,
    app_id      INTEGER NOT NULL,
    environment TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    n           INTEGER NOT NULL CHECK (n >= 0),
    PRIMARY KEY (team_id, status, app_id, environment)
) WITHOUT ROWID;
CREATE INDEX run_counts_status ON run_counts (status);

CREATE TRIGGER runs_count_insert AFTER INSERT ON runs
BEGIN
    INSERT INTO run_counts (team_id, app_id, environment, status, n)
    VALUES (NEW.team_id, NEW.app_id, NEW.environment, NEW.status, 1)
    ON CONFLICT (team_id, status, app_id, environment) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER runs_count_update AFTER UPDATE OF status ON runs
WHEN OLD.status IS NOT NEW.status
BEGIN
    UPDATE run_counts SET n = n - 1
    WHERE team_id = OLD.team_id AND app_id = OLD.app_id
      AND environment = OLD.environment AND status = OLD.status;
    INSERT INTO run_counts (team_id, app_id, environment, status, n)
    VALUES (NEW.team_id, NEW.app_id, NEW.environment, NEW.status, 1)
    ON CONFLICT (team_id, status, app_id, environment) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER runs_count_delete AFTER DELETE ON runs
BEGIN
    UPDATE run_counts SET n = n - 1
    WHERE team_id = OLD.team_id AND app_id = OLD.app_id
      AND environment = OLD.environment AND status = OLD.status;
END;

-- Terminal runs never change status again.
CREATE TRIGGER runs_terminal_immutable BEFORE UPDATE OF status ON runs
WHEN OLD.status IN ('completed', 'failed', 'cancelled', 'dead') AND NEW.status IS NOT OLD.status
BEGIN
    SELECT RAISE(ABORT, 'run is terminal: its status cannot change');
END;

-- The columns that place a run in the counters and the queue never move.
CREATE TRIGGER runs_placement_immutable BEFORE UPDATE OF team_id, app_id, environment ON runs
WHEN NEW.team_id IS NOT OLD.team_id OR NEW.app_id IS NOT OLD.app_id
  OR NEW.environment IS NOT OLD.environment
BEGIN
    SELECT RAISE(ABORT, 'team, app and environment of a run cannot change');
END;

CREATE TABLE runners (
    id              INTEGER PRIMARY KEY,
    name            TEXT    NOT NULL UNIQUE,
    environment     TEXT    NOT NULL,
    max_concurrency INTEGER NOT NULL CHECK (max_concurrency >= 1),
    token_hash      TEXT    NOT NULL UNIQUE,
    status          TEXT    NOT NULL DEFAULT 'online' CHECK (status IN ('online', 'offline')),
    last_seen_at    INTEGER,
    created_at      INTEGER NOT NULL,
    -- maintained by the run_attempts triggers; the CHECK is the hard cap
    active_attempts INTEGER NOT NULL DEFAULT 0,
    CHECK (active_attempts >= 0 AND active_attempts <= max_concurrency)
);
CREATE INDEX runners_online ON runners (status, last_seen_at);

CREATE TABLE run_attempts (
    id               INTEGER PRIMARY KEY,
    run_id           INTEGER NOT NULL REFERENCES runs (id),
    attempt_no       INTEGER NOT NULL CHECK (attempt_no >= 1),
    runner_id        INTEGER NOT NULL REFERENCES runners (id),
    status           TEXT    NOT NULL CHECK (status IN ('leased', 'running', 'cancelling',
                                                        'completed', 'failed', 'cancelled', 'expired')),
    lease_token_hash TEXT    NOT NULL,
    lease_expires_at INTEGER NOT NULL,
    exit_code        INTEGER,
    error_message    TEXT,
    -- when the attempt was leased
    started_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    UNIQUE (run_id, attempt_no),
    CHECK ((finished_at IS NULL) = (status IN ('leased', 'running', 'cancelling')))
);
-- At most one active attempt per run.
CREATE UNIQUE INDEX run_attempts_one_active ON run_attempts (run_id)
    WHERE status IN ('leased', 'running', 'cancelling');
-- The reaper's scan.
CREATE INDEX run_attempts_expiry ON run_attempts (lease_expires_at)
    WHERE status IN ('leased', 'running', 'cancelling');
CREATE INDEX run_attempts_runner ON run_attempts (runner_id);

CREATE TRIGGER run_attempts_active_insert AFTER INSERT ON run_attempts
WHEN NEW.status IN ('leased', 'running', 'cancelling')
BEGIN
    UPDATE runners SET active_attempts = active_attempts + 1 WHERE id = NEW.runner_id;
END;

CREATE TRIGGER run_attempts_active_end AFTER UPDATE OF status ON run_attempts
WHEN OLD.status IN ('leased', 'running', 'cancelling')
 AND NEW.status NOT IN ('leased', 'running', 'cancelling')
BEGIN
    UPDATE runners SET active_attempts = active_attempts - 1 WHERE id = OLD.runner_id;
END;

CREATE TRIGGER run_attempts_active_delete AFTER DELETE ON run_attempts
WHEN OLD.status IN ('leased', 'running', 'cancelling')
BEGIN
    UPDATE runners SET active_attempts = active_attempts - 1 WHERE id = OLD.runner_id;
END;

-- Attempts move forward only: a finished attempt never changes status again,
-- and an attempt never changes runner.
CREATE TRIGGER run_attempts_monotonic BEFORE UPDATE OF status, runner_id ON run_attempts
WHEN (OLD.status NOT IN ('leased', 'running', 'cancelling') AND NEW.status IS NOT OLD.status)
  OR NEW.runner_id IS NOT OLD.runner_id
BEGIN
    SELECT RAISE(ABORT, 'attempt is finished or changed runner');
END;

CREATE TABLE run_logs (
    run_id     INTEGER NOT NULL,
    seq        INTEGER NOT NULL CHECK (seq >= 1),
    attempt_no INTEGER NOT NULL,
    stream     TEXT    NOT NULL,
    line       TEXT    NOT NULL,
    logged_at  INTEGER NOT NULL,
    PRIMARY KEY (run_id, seq),
    FOREIGN KEY (run_id, attempt_no) REFERENCES run_attempts (run_id, attempt_no)
) WITHOUT ROWID;
