-- The last run number of each app, taken by a create in the statement that
-- also locks the app (see insert_run in crates/store-sql/src/runs.rs): on
-- PostgreSQL lock, number and insert are then one round trip, where the
-- lock had to be a statement of its own before a MAX(run_no) could see the
-- runs committed while it waited. (Retention keeps each app's newest run,
-- so the numbers here are the MAX(run_no) of today.)
ALTER TABLE apps ADD COLUMN last_run_no INTEGER NOT NULL DEFAULT 0 CHECK (last_run_no >= 0);
UPDATE apps SET last_run_no = COALESCE((SELECT MAX(run_no) FROM runs WHERE runs.app_id = apps.id), 0);
