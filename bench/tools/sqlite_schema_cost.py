#!/usr/bin/env python3
"""What do the schema's indexes and triggers cost SQLite's writer per run?

Builds a database from every migration in crates/store-sqlite/migrations
(WAL, synchronous=NORMAL, foreign keys on, temp_store=MEMORY, as the store
opens it), queues and finishes runs with the write statements the SQLite
store issues for one run of `dispatch` (create: the app's counter and the
insert; result and next lease: runner seen, queue pick, run leased and
started, attempt inserted, log line, attempt and run finished), GROUP runs
per transaction as the writer's group commit does, and prints microseconds
per run, in all and per statement. The reads of the real units (auth, the
held attempt, the lease payload) are left out: this measures what writes
cost, not the whole unit.

Each VARIANT drops part of the schema first, so the difference to `full`
is what that part costs:
  full                   the schema as migrated
  noidx                  every secondary index but the queue's and the unique ones
  notrg                  every trigger (counters, guards, runner slots)
  nofk                   foreign keys off
  NAME                   one index or trigger, by name
  A+B                    several of the above at once

Usage: python3 bench/tools/sqlite_schema_cost.py [VARIANT ...]
       (PREFILL=20000 RUNS=10000 GROUP=10 in the environment)
This machine's figures drift by 10-15 % between runs minutes apart: compare
variants in one invocation, repeat `full` at the end, and trust only
differences larger than that.
"""
import collections
import glob
import os
import sqlite3
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MIGRATIONS = sorted(glob.glob(os.path.join(HERE, "..", "..", "crates", "store-sqlite",
                                           "migrations", "*.sql")))
PREFILL = int(os.environ.get("PREFILL", "20000"))
RUNS = int(os.environ.get("RUNS", "10000"))
GROUP = int(os.environ.get("GROUP", "10"))
RUNNERS = 16

INDEXES = ["runs_team", "runs_team_status", "runs_app", "runs_app_status", "runs_team_finished",
           "runs_finished", "runs_retry_due", "run_attempts_expiry", "run_attempts_runner",
           "runners_online", "run_counts_status"]
TRIGGERS = ["runs_count_insert", "runs_count_update", "runs_terminal_immutable",
            "runs_placement_immutable", "run_attempts_active_insert", "run_attempts_active_end",
            "run_attempts_monotonic"]
COLUMNS = ("team_id, app_id, version_id, run_no, environment, status, input, priority, "
           "max_retries, idempotency_key, queued_at, timeout_seconds, schedule_id, scheduled_for, "
           "failure_retries, retry_delay_ms, job_overrides")
INSERT = (f"INSERT INTO runs ({COLUMNS}) "
          "VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id")


def drops(variant):
    out = []
    for part in variant.split("+"):
        if part == "noidx":
            out += [f"DROP INDEX {i}" for i in INDEXES]
        elif part == "notrg":
            out += [f"DROP TRIGGER {t}" for t in TRIGGERS]
        elif part in INDEXES:
            out.append(f"DROP INDEX {part}")
        elif part in TRIGGERS:
            out.append(f"DROP TRIGGER {part}")
        elif part not in ("full", "nofk"):
            sys.exit(f"unknown variant part {part!r}")
    return out


def setup(path, variant):
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; "
                     "PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;")
    for m in MIGRATIONS:
        db.executescript(open(m).read())
    for sql in drops(variant):
        db.execute(sql)
    if "nofk" in variant.split("+"):
        db.execute("PRAGMA foreign_keys = OFF")
    db.execute("INSERT INTO teams (id, slug, name, created_at) VALUES (1, 't', 't', 0)")
    db.execute("INSERT INTO apps (id, team_id, slug, created_at) VALUES (1, 1, 'hello', 0)")
    db.execute("INSERT INTO versions (id, app_id, team_id, version_no, artifact_sha256, "
               "artifact_size, entrypoint, timeout_seconds, created_at) "
               "VALUES (1, 1, 1, 1, 'x', 1, 'main.py', 60, 0)")
    if not db.execute("SELECT 1 FROM environments WHERE team_id = 1 AND name = 'default'").fetchone():
        db.execute("INSERT INTO environments (team_id, name, created_at) VALUES (1, 'default', 0)")
    for r in range(1, RUNNERS + 1):
        db.execute("INSERT INTO runners (id, name, environment, max_concurrency, token_hash, "
                   "status, last_seen_at, created_at) VALUES (?, ?, 'default', 4, ?, 'online', 0, 0)",
                   (r, f"r{r}", f"h{r}"))
    return db


def runs(db, n, times, clock):
    def timed(name, sql, args=()):
        t0 = time.perf_counter_ns()
        rows = db.execute(sql, args).fetchall()
        times[name] += time.perf_counter_ns() - t0
        return rows

    for _ in range(n // GROUP):
        timed("begin", "BEGIN IMMEDIATE")
        for _ in range(GROUP):
            clock[0] += 1
            now = clock[0]
            runner = now % RUNNERS + 1
            no = timed("create: counter", "UPDATE apps SET last_run_no = last_run_no + 1 "
                       "WHERE id = 1 AND team_id = 1 RETURNING last_run_no")[0][0]
            timed("create: insert", INSERT,
                  (1, 1, 1, no, "default", "{}", 0, 0, None, now, None, None, None, 0, 2000, None))
            timed("lease: runner seen", "UPDATE runners SET last_seen_at = ?, status = 'online' "
                  "WHERE id = ? RETURNING last_seen_at, environment, max_concurrency, "
                  "active_attempts", (now, runner))
            run = timed("lease: pick", "SELECT id FROM runs WHERE status = 'queued' "
                        "AND environment = 'default' AND (not_before IS NULL OR not_before <= ?) "
                        "ORDER BY priority DESC, queued_at ASC, id ASC LIMIT 1", (now,))[0][0]
            timed("lease: run started", "UPDATE runs SET status = 'running', "
                  "started_at = COALESCE(started_at, ?) WHERE id = ? AND status = 'queued'",
                  (now, run))
            attempt, attempt_no = timed(
                "lease: attempt", "INSERT INTO run_attempts (run_id, attempt_no, runner_id, "
                "status, lease_token_hash, lease_expires_at, started_at) "
                "SELECT ?1, COALESCE(MAX(attempt_no), 0) + 1, ?2, 'running', ?3, ?4, ?5 "
                "FROM run_attempts WHERE run_id = ?1 RETURNING id, attempt_no",
                (run, runner, "h" * 64, now + 30000, now))[0]
            timed("result: log line", "INSERT INTO run_logs (run_id, seq, attempt_no, stream, "
                  "line, logged_at) VALUES (?, 1, ?, 'stdout', 'hello', ?) "
                  "ON CONFLICT (run_id, seq) DO NOTHING", (run, attempt_no, now))
            timed("result: attempt ended", "UPDATE run_attempts SET status = 'completed', "
                  "exit_code = 0, error_message = NULL, finished_at = ? "
                  "WHERE id = ? AND status = 'running' AND lease_expires_at > ?",
                  (now, attempt, now))
            timed("result: run ended", "UPDATE runs SET status = 'completed', exit_code = 0, "
                  "error_message = NULL, finished_at = ? WHERE id = ? AND status = 'running'",
                  (now, run))
        timed("commit", "COMMIT")


def main():
    variants = sys.argv[1:] or ["full", "noidx", "notrg", "noidx+notrg", "full"]
    for v in variants:
        drops(v)  # refuse unknown names before any work
    print(f"{PREFILL} runs first, then {RUNS} measured, {GROUP} per transaction; "
          f"SQLite {sqlite3.sqlite_version}")
    with tempfile.TemporaryDirectory() as tmp:
        for i, v in enumerate(variants):
            db = setup(os.path.join(tmp, f"{i}.db"), v)
            clock = [1000]
            runs(db, PREFILL, collections.defaultdict(int), clock)
            times = collections.defaultdict(int)
            runs(db, RUNS, times, clock)
            db.close()
            total = sum(times.values()) / RUNS / 1000
            parts = "  ".join(f"{k} {t / RUNS / 1000:.1f}"
                              for k, t in sorted(times.items(), key=lambda kv: -kv[1]))
            print(f"{v:24s} {total:6.1f} µs/run ({1e6 / total:,.0f} runs/s)   {parts}")


if __name__ == "__main__":
    main()
