-- Environments as a team's objects, secrets per team and environment, and
-- token scopes with an audit of refusals (issue 13).
--
-- `default` exists for every team (create_team inserts it; the backfill
-- below covers existing teams), plus every environment name a team's runs
-- or schedules already use. Secrets hold only sealed values (`v1.<key id>.<base64>`,
-- AES-256-GCM bound to team, environment, name and version); the plain
-- value is never stored. Times are INTEGER unix milliseconds.

CREATE TABLE environments (
    id         INTEGER PRIMARY KEY,
    team_id    INTEGER NOT NULL REFERENCES teams (id),
    name       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (team_id, name)
);

INSERT INTO environments (team_id, name, created_at)
SELECT id, 'default', created_at FROM teams;

INSERT INTO environments (team_id, name, created_at)
SELECT team_id, environment, MIN(used_at) FROM (
    SELECT team_id, environment, queued_at AS used_at FROM runs
    UNION ALL
    SELECT team_id, environment, created_at AS used_at FROM schedules
) used
WHERE environment <> 'default'
GROUP BY team_id, environment;

CREATE TABLE secrets (
    id           INTEGER PRIMARY KEY,
    team_id      INTEGER NOT NULL,
    environment  TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    version      INTEGER NOT NULL CHECK (version >= 1),
    sealed_value TEXT    NOT NULL CHECK (sealed_value LIKE 'v1.%'),
    key_id       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (team_id, environment, name),
    FOREIGN KEY (team_id, environment) REFERENCES environments (team_id, name)
);

-- A scope narrower than the role: {"app": "etl", "actions": ["trigger", "read"]}.
ALTER TABLE tokens ADD COLUMN scope TEXT CHECK (scope IS NULL OR json_valid(scope));
-- The last refused use of the token and why (expired, out of scope).
ALTER TABLE tokens ADD COLUMN last_refused_at INTEGER;
ALTER TABLE tokens ADD COLUMN last_refusal TEXT;
