#!/usr/bin/env python3
"""How fast can SQLite itself do the SQL of one dispatch run?

Replays, in one thread with Python's built-in sqlite3 (no HTTP, no async
runtime, no thread hand-offs), the statements the SQLite store issues for one
no-op run: create, lease, start, one log line, result -- the same queries as
crates/store-sqlite (reads included), on the real schema
(crates/store-sqlite/migrations/0001_init.sql), WAL, synchronous=NORMAL.

Two modes:
  per-call   one write transaction per API call (what minitowerd does: 5 per run)
  batched    every call of BATCH runs in one transaction (group commit)

Usage: python3 bench/tools/sqlite_floor.py [RUNS] [BATCH]
       (SQLITE_SYNC=OFF to see what the checkpoints' fsyncs cost)
The figures bound what any server built on this schema can reach on this
machine; Python adds a few microseconds per statement, so the true floor is
a little lower.
"""
import os
import sqlite3
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.path.join(HERE, "..", "..", "crates", "store-sqlite", "migrations", "0001_init.sql")
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
BATCH = int(sys.argv[2]) if len(sys.argv) > 2 else 100

RUN_SELECT = ("SELECT r.id, r.run_no, a.slug AS app, v.version_no, r.status, r.input, r.priority, "
              "r.max_retries, r.retry_count, r.cancel_requested, r.exit_code, r.error_message, "
              "r.queued_at, r.started_at, r.finished_at, r.environment "
              "FROM runs r JOIN apps a ON a.id = r.app_id JOIN versions v ON v.id = r.version_id")
HELD = ("SELECT a.id, a.attempt_no, a.status, a.exit_code, a.error_message, a.lease_expires_at, "
        "r.status AS run_status, r.cancel_requested, r.queued_at, r.started_at "
        "FROM run_attempts a JOIN runs r ON r.id = a.run_id "
        "WHERE a.run_id = ? AND a.runner_id = ? AND a.lease_token_hash = ? "
        "ORDER BY a.attempt_no DESC LIMIT 1")
LABELS = ("SELECT r.id, t.slug AS team, a.slug AS app, r.environment FROM runs r "
          "JOIN apps a ON a.id = r.app_id JOIN teams t ON t.id = r.team_id WHERE r.id = ?")


def setup(path):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=%s" % os.environ.get("SQLITE_SYNC", "NORMAL"))
    db.execute("PRAGMA foreign_keys=ON")
    db.executescript(open(SCHEMA).read())
    db.execute("INSERT INTO teams (id, slug, name, created_at) VALUES (1, 'bench', 'Bench', 0)")
    db.execute("INSERT INTO tokens (team_id, name, role, token_hash, created_at) "
               "VALUES (1, 'admin', 'admin', 'teamhash', 0)")
    db.execute("INSERT INTO apps (id, team_id, slug, created_at) VALUES (1, 1, 'noop', 0)")
    db.execute("INSERT INTO versions (id, app_id, team_id, version_no, artifact_sha256, artifact_size, "
               "entrypoint, timeout_seconds, created_at) VALUES (1, 1, 1, 1, 'sha', 1, 'main.py', 60, 0)")
    db.execute("INSERT INTO runners (id, name, environment, max_concurrency, token_hash, created_at) "
               "VALUES (1, 'r', 'default', 1000000, 'runnerhash', 0)")
    return db


def auth_team(db):
    db.execute("SELECT k.id, k.role, k.last_used_at, t.id, t.slug, t.name FROM tokens k "
               "JOIN teams t ON t.id = k.team_id WHERE k.token_hash = ? AND k.revoked_at IS NULL",
               ("teamhash",)).fetchone()


def auth_runner(db):
    db.execute("SELECT id, name, environment, max_concurrency FROM runners WHERE token_hash = ?",
               ("runnerhash",)).fetchone()


def create(db, now):
    auth_team(db)
    db.execute("SELECT a.id, a.slug, a.description, a.created_at, (SELECT MAX(version_no) FROM versions v "
               "WHERE v.app_id = a.id) FROM apps a WHERE a.team_id = ? AND a.slug = ?", (1, "noop")).fetchone()
    db.execute("SELECT v.id, v.app_id, v.version_no, v.artifact_sha256, v.entrypoint, v.timeout_seconds, "
               "v.params_schema, v.import_paths, v.created_at FROM versions v WHERE v.app_id = ? "
               "ORDER BY v.version_no DESC LIMIT 1", (1,)).fetchone()
    yield
    db.execute("SELECT v.id FROM versions v JOIN apps a ON a.id = v.app_id "
               "WHERE v.id = ? AND v.app_id = ? AND a.team_id = ?", (1, 1, 1)).fetchone()
    run_no = db.execute("SELECT COALESCE(MAX(run_no), 0) + 1 FROM runs WHERE app_id = ?", (1,)).fetchone()[0]
    rid = db.execute("INSERT INTO runs (team_id, app_id, version_id, run_no, environment, status, input, "
                     "priority, max_retries, idempotency_key, queued_at) "
                     "VALUES (1, 1, 1, ?, 'default', 'queued', '{}', 0, 2, NULL, ?) RETURNING id",
                     (run_no, now)).fetchone()[0]
    db.execute(RUN_SELECT + " WHERE r.id = ?", (rid,)).fetchone()


def lease(db, now, tok):
    auth_runner(db)
    yield
    db.execute("SELECT environment, max_concurrency, active_attempts FROM runners WHERE id = ?", (1,)).fetchone()
    db.execute("UPDATE runners SET last_seen_at = ?, status = 'online' WHERE id = ?", (now, 1))
    rid = db.execute("SELECT id FROM runs WHERE status = 'queued' AND environment = ? "
                     "ORDER BY priority DESC, queued_at ASC, id ASC LIMIT 1", ("default",)).fetchone()[0]
    db.execute("UPDATE runs SET status = 'leased' WHERE id = ? AND status = 'queued'", (rid,))
    db.execute("INSERT INTO run_attempts (run_id, attempt_no, runner_id, status, lease_token_hash, "
               "lease_expires_at, started_at) SELECT ?, COALESCE(MAX(attempt_no), 0) + 1, ?, 'leased', ?, ?, ? "
               "FROM run_attempts WHERE run_id = ? RETURNING attempt_no", (rid, 1, tok, now + 60000, now, rid)).fetchone()
    db.execute("SELECT r.run_no, r.input, r.queued_at, r.environment, a.slug AS app, t.slug AS team, "
               "v.version_no, v.entrypoint, v.timeout_seconds, v.artifact_sha256, v.import_paths, "
               "(SELECT MAX(seq) FROM run_logs l WHERE l.run_id = r.id) AS last_log_seq "
               "FROM runs r JOIN apps a ON a.id = r.app_id JOIN teams t ON t.id = r.team_id "
               "JOIN versions v ON v.id = r.version_id WHERE r.id = ?", (rid,)).fetchone()
    return rid


def start(db, now, rid, tok):
    auth_runner(db)
    yield
    h = db.execute(HELD, (rid, 1, tok)).fetchone()
    db.execute("UPDATE run_attempts SET status = ?, lease_expires_at = ? WHERE id = ? AND status = ?",
               ("running", now + 60000, h[0], "leased"))
    db.execute("UPDATE runs SET status = ?, started_at = COALESCE(started_at, ?) WHERE id = ? AND status = ?",
               ("running", now, rid, "leased"))
    db.execute(LABELS, (rid,)).fetchone()
    db.execute("UPDATE runners SET last_seen_at = ?, status = 'online' WHERE id = ?", (now, 1))


def logs(db, now, rid, tok):
    auth_runner(db)
    yield
    db.execute(HELD, (rid, 1, tok)).fetchone()
    db.execute("INSERT OR IGNORE INTO run_logs (run_id, seq, attempt_no, stream, line, logged_at) "
               "VALUES (?, 1, 1, 'stdout', ?, ?)", (rid, "no-op run %d" % rid, now))


def result(db, now, rid, tok):
    auth_runner(db)
    yield
    h = db.execute(HELD, (rid, 1, tok)).fetchone()
    db.execute("UPDATE run_attempts SET status = ?, exit_code = ?, error_message = ?, finished_at = ? "
               "WHERE id = ? AND status = ?", ("completed", 0, None, now, h[0], "running"))
    db.execute("UPDATE runs SET status = ?, exit_code = ?, error_message = ?, finished_at = ? "
               "WHERE id = ? AND status = ?", ("completed", 0, None, now, rid, "running"))
    db.execute(LABELS, (rid,)).fetchone()


def call(db, gen, in_tx):
    """Runs the reads before `yield`, then the writes in their own
    transaction unless the caller already holds one."""
    next(gen)
    if not in_tx:
        db.execute("BEGIN IMMEDIATE")
    try:
        next(gen)
    except StopIteration as e:
        out = e.value
    else:
        raise RuntimeError("generator did not finish")
    if not in_tx:
        db.execute("COMMIT")
    return out


def one_run(db, i, in_tx):
    now = int(time.time() * 1000)
    tok = "lease%d" % i
    call(db, create(db, now), in_tx)
    rid = call(db, lease(db, now, tok), in_tx)
    call(db, start(db, now, rid, tok), in_tx)
    call(db, logs(db, now, rid, tok), in_tx)
    call(db, result(db, now, rid, tok), in_tx)


def main():
    print("sqlite", sqlite3.sqlite_version)
    for mode in ("per-call", "batched"):
        with tempfile.TemporaryDirectory() as d:
            db = setup(os.path.join(d, "floor.db"))
            for i in range(200):  # warm-up
                one_run(db, -i - 1, False)
            t = time.perf_counter()
            c = time.process_time()
            if mode == "per-call":
                for i in range(RUNS):
                    one_run(db, i, False)
            else:
                for b in range(0, RUNS, BATCH):
                    db.execute("BEGIN IMMEDIATE")
                    for i in range(b, min(RUNS, b + BATCH)):
                        one_run(db, i, True)
                    db.execute("COMMIT")
            wall = time.perf_counter() - t
            cpu = time.process_time() - c
            n = db.execute("SELECT COUNT(*) FROM runs WHERE status = 'completed'").fetchone()[0]
            assert n == RUNS + 200, n
            extra = " (%d runs per transaction)" % BATCH if mode == "batched" else " (5 transactions per run)"
            print("%-9s %6.0f runs/s  %5.0f us CPU per run%s" % (mode, RUNS / wall, cpu / RUNS * 1e6, extra))


if __name__ == "__main__":
    main()
