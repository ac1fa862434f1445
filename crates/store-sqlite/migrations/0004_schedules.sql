-- Schedules (issue 12): cron ticks that start runs, and per-run timeouts.
--
-- A tick produces exactly one run because of a database fact, not a lock:
-- the run a tick starts carries (schedule_id, scheduled_for) and that pair
-- is UNIQUE, so a second replica (or a restarted one) firing the same tick
-- fails on the index and changes nothing. `last_tick_at` is the last tick
-- processed (fired or skipped; at creation or resume: that moment, so no
-- tick before it ever fires); `next_due_at` is the first tick after it,
-- NULL while paused, and is what the schedulers' due scan reads.
-- AUTOINCREMENT: a deleted schedule's id is never handed out again, so runs
-- it started (which keep the id as history, without a foreign key) can never
-- be mistaken for ticks of a newer schedule. Times are INTEGER unix
-- milliseconds, JSON is TEXT.

CREATE TABLE schedules (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    team_id      INTEGER NOT NULL,
    app_id       INTEGER NOT NULL,
    cron         TEXT    NOT NULL CHECK (length(cron) BETWEEN 1 AND 256),
    timezone     TEXT    NOT NULL CHECK (length(timezone) BETWEEN 1 AND 64),
    input        TEXT    NOT NULL DEFAULT '{}' CHECK (json_type(input) = 'object'),
    -- NULL: the latest version when the tick fires
    version_no   INTEGER CHECK (version_no IS NULL OR version_no >= 1),
    environment  TEXT    NOT NULL DEFAULT 'default',
    enabled      INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    source       TEXT    NOT NULL CHECK (source IN ('towerfile', 'api')),
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    last_tick_at INTEGER NOT NULL,
    next_due_at  INTEGER,
    FOREIGN KEY (app_id, team_id) REFERENCES apps (id, team_id),
    FOREIGN KEY (app_id, version_no) REFERENCES versions (app_id, version_no),
    CHECK (enabled = 1 OR next_due_at IS NULL)
);
CREATE INDEX schedules_app ON schedules (app_id, id);
CREATE INDEX schedules_due ON schedules (next_due_at) WHERE next_due_at IS NOT NULL;

-- The schedule that started a run and the tick it was for (both or neither).
ALTER TABLE runs ADD COLUMN schedule_id INTEGER;
ALTER TABLE runs ADD COLUMN scheduled_for INTEGER
    CHECK ((scheduled_for IS NULL) = (schedule_id IS NULL));
-- One run per tick.
CREATE UNIQUE INDEX runs_schedule_tick ON runs (schedule_id, scheduled_for)
    WHERE schedule_id IS NOT NULL;

-- A per-run timeout that replaces the version's in the lease; NULL: the version's.
ALTER TABLE runs ADD COLUMN timeout_seconds INTEGER
    CHECK (timeout_seconds IS NULL OR timeout_seconds BETWEEN 1 AND 604800);
