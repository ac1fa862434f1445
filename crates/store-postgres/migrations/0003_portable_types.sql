-- One representation for both databases: the store's SQL is written once
-- (crates/store-sql) and runs on SQLite and PostgreSQL alike, so times are
-- unix milliseconds in a BIGINT and JSON is stored as text, exactly as in
-- the SQLite schema. Values convert losslessly: times were already kept at
-- millisecond precision, and JSON text keeps its key order.

ALTER TABLE teams
    ALTER COLUMN created_at TYPE BIGINT USING (FLOOR(EXTRACT(EPOCH FROM created_at) * 1000))::BIGINT;

ALTER TABLE tokens
    ALTER COLUMN created_at TYPE BIGINT USING (FLOOR(EXTRACT(EPOCH FROM created_at) * 1000))::BIGINT,
    ALTER COLUMN last_used_at TYPE BIGINT USING (FLOOR(EXTRACT(EPOCH FROM last_used_at) * 1000))::BIGINT,
    ALTER COLUMN revoked_at TYPE BIGINT USING (FLOOR(EXTRACT(EPOCH FROM revoked_at) * 1000))::BIGINT,
    ALTER COLUMN expires_at TYPE BIGINT USING (FLOOR(EXTRACT(EPOCH FROM expires_at) * 1000))::BIGINT;

ALTER TABLE apps
    ALTER COLUMN created_at TYPE BIGINT USING (FLOOR(EXTRACT(EPOCH FROM created_at) * 1000))::BIGINT;

ALTER TABLE versions
    ALTER COLUMN created_at TYPE BIGINT USING (FLOOR(EXTRACT(EPOCH FROM created_at) * 1000))::BIGINT;

ALTER TABLE runs
    ALTER COLUMN queued_at TYPE BIGINT USING (FLOOR(EXTRACT(EPOCH FROM queued_at) * 1000))::BIGINT,
    ALTER COLUMN started_at TYPE BIGINT USING (FLOOR(EXTRACT(EPOCH FROM started_at) * 1000))::BIGINT,
    ALTER COLUMN finished_at TYPE BIGINT USING (FLOOR(EXTRACT(EPOCH FROM finished_at) * 1000))::BIGINT;

ALTER TABLE runners
    ALTER COLUMN last_seen_at TYPE BIGINT USING (FLOOR(EXTRACT(EPOCH FROM last_seen_at) * 1000))::BIGINT,
    ALTER COLUMN created_at TYPE BIGINT USING (FLOOR(EXTRACT(EPOCH FROM created_at) * 1000))::BIGINT;

ALTER TABLE run_attempts
    ALTER COLUMN lease_expires_at TYPE BIGINT USING (FLOOR(EXTRACT(EPOCH FROM lease_expires_at) * 1000))::BIGINT,
    ALTER COLUMN started_at TYPE BIGINT USING (FLOOR(EXTRACT(EPOCH FROM started_at) * 1000))::BIGINT,
    ALTER COLUMN finished_at TYPE BIGINT USING (FLOOR(EXTRACT(EPOCH FROM finished_at) * 1000))::BIGINT;

ALTER TABLE run_logs
    ALTER COLUMN logged_at TYPE BIGINT USING (FLOOR(EXTRACT(EPOCH FROM logged_at) * 1000))::BIGINT;

ALTER TABLE versions DROP CONSTRAINT versions_import_paths_check;
ALTER TABLE versions
    ALTER COLUMN params_schema TYPE TEXT USING params_schema::text,
    ALTER COLUMN import_paths DROP DEFAULT,
    ALTER COLUMN import_paths TYPE TEXT USING import_paths::text,
    ALTER COLUMN import_paths SET DEFAULT '[]',
    ADD CONSTRAINT versions_params_schema_json
        CHECK (params_schema IS NULL OR params_schema::json IS NOT NULL),
    ADD CONSTRAINT versions_import_paths_check CHECK (json_typeof(import_paths::json) = 'array');
ALTER TABLE runs
    ALTER COLUMN input DROP DEFAULT,
    ALTER COLUMN input TYPE TEXT USING input::text,
    ALTER COLUMN input SET DEFAULT '{}',
    ADD CONSTRAINT runs_input_json CHECK (input::json IS NOT NULL);
