-- Job kinds (issue 14). A version's `job` is the JSON of core's `JobSpec`
-- (entry, source, pty, limits); NULL for versions from before job kinds,
-- which are plain archive scripts named by `entrypoint`. `priority` is the
-- Towerfile's default priority of the version's runs. A run's
-- `job_overrides` is the JSON of core's `JobOverrides` (pty, limits, ref),
-- checked against the version when the run was created. An attempt's
-- `source_commit` is the commit a git source resolved to.
ALTER TABLE versions ADD COLUMN job TEXT;
ALTER TABLE versions ADD COLUMN priority BIGINT
    CHECK (priority BETWEEN -1000000 AND 1000000);
ALTER TABLE runs ADD COLUMN job_overrides TEXT;
ALTER TABLE run_attempts ADD COLUMN source_commit TEXT
    CHECK (source_commit IS NULL OR length(source_commit) IN (40, 64));
