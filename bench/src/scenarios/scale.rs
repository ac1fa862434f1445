//! `scale`: a database with a million finished runs (each with its attempt
//! and a log line) and a hundred thousand queued ones, then query latencies
//! of a server started on it.
//!
//! Team, apps, versions and the runner are created through the `Store`
//! trait (so the schema and hashing are the real ones). The runs are bulk
//! loaded with `INSERT … SELECT` over a recursive CTE, 100,000 rows per
//! transaction, with sqlx on the same file: triggers (run counts) and CHECK
//! constraints stay active, foreign-key checks are off for the load (the
//! rows reference ids created just before). Going through
//! `Store::create_run` one by one costs a transaction and several queries
//! per run, far too slow for the five-minute budget of `all`.

use crate::artifacts::{self, sha256_hex};
use crate::procs::{self, Binaries, Server};
use crate::report::{Goal, Metric, ScenarioReport};
use crate::stack::scratch_dir;
use crate::stats::Samples;
use crate::Options;
use anyhow::{bail, Context, Result};
use chrono::Utc;
use minitower_client::{Client, RunQuery};
use minitower_core::api::ResultRequest;
use minitower_core::ResultStatus;
use minitower_store::{NewVersion, Store};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};
use std::path::Path;
use std::time::{Duration, Instant};

/// Apps the runs are spread over (round robin).
const APPS: usize = 10;
/// Rows per bulk transaction.
const CHUNK: usize = 100_000;
/// Unmeasured calls of each query before sampling.
const WARMUP: usize = 5;

struct Loaded {
    team_token: String,
    runner_token: String,
    app: String,
    load_seconds: f64,
}

fn secret(prefix: &str) -> String {
    let mut b = [0u8; 24];
    getrandom::fill(&mut b).expect("OS randomness");
    format!("{prefix}_{}", hex::encode(b))
}

async fn load(opts: &Options, db: &Path, objects: &Path) -> Result<Loaded> {
    let started = Instant::now();
    let now = Utc::now();
    let team_token = secret("mtb");
    let runner_token = secret("mtbr");
    let artifact = artifacts::hello()?;
    let sha = sha256_hex(&artifact);
    let obj = objects.join("sha256").join(&sha[..2]);
    std::fs::create_dir_all(&obj)?;
    std::fs::write(obj.join(&sha), &artifact)?;

    let store = minitower_store_sqlite::open(db).await?;
    let (team, _) = store
        .create_team(
            "bench",
            "Bench",
            None,
            "bench",
            &sha256_hex(team_token.as_bytes()),
            now,
        )
        .await?;
    let mut apps = Vec::new();
    for i in 0..APPS {
        let app = store
            .create_app(team.id, &format!("app-{i}"), None, now)
            .await?;
        store
            .create_version(
                team.id,
                app.id,
                NewVersion {
                    artifact_sha256: sha.clone(),
                    artifact_size: artifact.len() as i64,
                    entrypoint: "main.py".into(),
                    timeout_seconds: 60,
                    params_schema: None,
                    towerfile: None,
                    import_paths: Vec::new(),
                    retries: 0,
                    retry_delay_ms: 2000,
                    schedules: None,
                    job: minitower_core::job::JobSpec::script("main.py"),
                    priority: None,
                },
                now,
            )
            .await?;
        let v = store
            .get_version(team.id, app.id, None)
            .await?
            .context("version just created")?;
        apps.push((app.id, v.id));
    }
    let runner_id = store
        .register_runner(
            "scale-runner",
            "default",
            256,
            &sha256_hex(runner_token.as_bytes()),
            now,
        )
        .await?;
    store.close().await;

    let finished = opts.scale_finished as i64;
    let total = (opts.scale_finished + opts.scale_queued) as i64;
    // Runs spread over the last 30 days, oldest first; queued ones last.
    let span_ms: i64 = 30 * 24 * 3600 * 1000;
    let step = (span_ms / total.max(1)).max(1);
    let base = now.timestamp_millis() - span_ms;
    let case = |f: &dyn Fn(usize) -> i64| -> String {
        let mut s = String::from("CASE (x - 1) % 10");
        for (i, _) in apps.iter().enumerate() {
            s.push_str(&format!(" WHEN {i} THEN {}", f(i)));
        }
        s.push_str(" END");
        s
    };
    assert_eq!(APPS, 10, "the CASE expressions assume 10 apps");
    let app_case = case(&|i| apps[i].0);
    let version_case = case(&|i| apps[i].1);
    let insert_runs = format!(
        "WITH RECURSIVE c(x) AS (SELECT ?1 UNION ALL SELECT x + 1 FROM c WHERE x < ?2), \
         s(x, st, q) AS (SELECT x, \
             CASE WHEN x > {finished} THEN 'queued' \
                  WHEN x % 100 < 90 THEN 'completed' WHEN x % 100 < 97 THEN 'failed' \
                  WHEN x % 100 < 99 THEN 'cancelled' ELSE 'dead' END, \
             {base} + x * {step} FROM c) \
         INSERT INTO runs (id, team_id, app_id, version_id, run_no, environment, status, input, \
             priority, max_retries, retry_count, cancel_requested, exit_code, error_message, \
             queued_at, started_at, finished_at) \
         SELECT x, {team}, {app_case}, {version_case}, (x - 1) / {APPS} + 1, 'default', st, \
             '{{\"name\":\"World\"}}', 0, CASE st WHEN 'dead' THEN 0 ELSE 2 END, 0, \
             CASE st WHEN 'cancelled' THEN 1 ELSE 0 END, \
             CASE st WHEN 'completed' THEN 0 WHEN 'failed' THEN 1 END, \
             CASE st WHEN 'failed' THEN 'exited with code 1' END, \
             q, CASE WHEN st <> 'queued' THEN q + 40 END, \
             CASE WHEN st <> 'queued' THEN q + 140 + x % 500 END \
         FROM s",
        team = team.id,
    );
    let insert_attempts = format!(
        "INSERT INTO run_attempts (run_id, attempt_no, runner_id, status, lease_token_hash, \
             lease_expires_at, exit_code, error_message, started_at, finished_at) \
         SELECT id, 1, {runner_id}, CASE status WHEN 'dead' THEN 'expired' ELSE status END, \
             'bulk-' || id, finished_at, exit_code, error_message, started_at - 10, finished_at \
         FROM runs WHERE id BETWEEN ?1 AND ?2 AND status <> 'queued'"
    );
    let insert_logs = "INSERT INTO run_logs (run_id, seq, attempt_no, stream, line, logged_at) \
         SELECT id, 1, 1, 'stdout', 'Hello, World!', started_at + 30 \
         FROM runs WHERE id BETWEEN ?1 AND ?2 AND status <> 'queued'";

    let mut conn = SqliteConnectOptions::new()
        .filename(db)
        .foreign_keys(false)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Off)
        .pragma("cache_size", "-262144")
        .pragma("temp_store", "memory")
        .connect()
        .await
        .context("opening the database for the bulk load")?;
    let mut from = 1i64;
    while from <= total {
        let to = (from + CHUNK as i64 - 1).min(total);
        let mut tx = conn.begin().await?;
        sqlx::query(&insert_runs)
            .bind(from)
            .bind(to)
            .execute(&mut *tx)
            .await
            .context("bulk insert of runs")?;
        sqlx::query(&insert_attempts)
            .bind(from)
            .bind(to)
            .execute(&mut *tx)
            .await
            .context("bulk insert of attempts")?;
        sqlx::query(insert_logs)
            .bind(from)
            .bind(to)
            .execute(&mut *tx)
            .await
            .context("bulk insert of log lines")?;
        tx.commit().await?;
        from = to + 1;
    }
    let counted: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs")
        .fetch_one(&mut conn)
        .await?;
    if counted != total {
        bail!("loaded {counted} runs, expected {total}");
    }
    // Each app's run counter, as `Store::create_run` would have left it.
    sqlx::query(
        "UPDATE apps SET last_run_no = \
         (SELECT COALESCE(MAX(run_no), 0) FROM runs WHERE runs.app_id = apps.id)",
    )
    .execute(&mut conn)
    .await
    .context("setting the apps' run counters")?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(Loaded {
        team_token,
        runner_token,
        app: "app-3".into(),
        load_seconds: started.elapsed().as_secs_f64(),
    })
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn db_size(db: &Path) -> (u64, u64) {
    let main = file_size(db);
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    (main, file_size(Path::new(&wal)))
}

async fn sample<F, Fut>(n: usize, mut f: F) -> Result<Samples>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    for _ in 0..WARMUP {
        f().await?;
    }
    let mut s = Samples::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await?;
        s.push(t.elapsed());
    }
    Ok(s)
}

/// The scenario.
pub async fn run(opts: &Options) -> Result<ScenarioReport> {
    let (_tmp, dir) = scratch_dir(opts, "scale")?;
    let bins = Binaries::locate(opts.bin_dir.as_deref())?;
    let server_dir = dir.join("server");
    std::fs::create_dir_all(&server_dir)?;
    let db = server_dir.join("minitower.db");
    eprintln!(
        "[scale] loading {} finished + {} queued runs into {} (load average {})",
        opts.scale_finished,
        opts.scale_queued,
        db.display(),
        procs::load_average()
    );
    let loaded = load(opts, &db, &server_dir.join("objects")).await?;
    let (db_main, _) = db_size(&db);
    eprintln!(
        "[scale] loaded in {:.1} s, {:.0} MiB",
        loaded.load_seconds,
        db_main as f64 / 1048576.0
    );
    let t = Instant::now();
    let server = Server::start(
        &bins,
        &server_dir,
        Some(&db),
        &opts.server_log,
        &opts.server_env,
    )
    .await?;
    let startup = t.elapsed();
    eprintln!(
        "[scale] minitowerd pid {} on {}",
        server.proc.pid(),
        server.url
    );
    let result = measure(opts, &server, &loaded).await;
    let rss = server.proc.sample().ok();
    server.stop().await;
    let (main_after, wal_after) = db_size(&db);
    let mut r = result?;
    r.metric(Metric::new(
        "database file after load",
        db_main as f64 / 1048576.0,
        "MiB",
    ));
    r.metric(Metric::new("bulk load time", loaded.load_seconds, "s"));
    r.metric(Metric::new(
        "server start on this file",
        startup.as_secs_f64() * 1000.0,
        "ms",
    ));
    r.note(format!(
        "{} finished runs (90% completed, 7% failed, 2% cancelled, 1% dead; one attempt and one log line each) \
         and {} queued runs over {APPS} apps; team/apps/versions/runner through the Store trait, runs/attempts/logs \
         bulk-inserted with INSERT…SELECT in {CHUNK}-row transactions via sqlx (triggers and CHECKs on, FK checks off); \
         no ANALYZE (the server never runs it); sequential requests, {WARMUP} warm-up calls each",
        opts.scale_finished, opts.scale_queued
    ));
    r.detail("db_bytes_after_load", db_main);
    r.detail("db_bytes_after_queries", main_after);
    r.detail("wal_bytes_after_queries", wal_after);
    r.detail("server_sample_after", rss);
    Ok(r)
}

async fn measure(opts: &Options, server: &Server, l: &Loaded) -> Result<ScenarioReport> {
    let team = Client::new(&server.url, Some(l.team_token.clone()))?;
    let runner = Client::new(&server.url, Some(l.runner_token.clone()))?;
    let n = opts.scale_samples;

    let done = ResultRequest {
        status: ResultStatus::Completed,
        exit_code: Some(0),
        error_message: None,
    };
    // Lease (timed), then start and result (not timed) so the runner's
    // concurrency never fills up and every lease does the full work.
    let mut lease = Samples::with_capacity(n);
    for i in 0..WARMUP + n {
        let t = Instant::now();
        let got = runner.lease(Duration::ZERO).await?;
        let el = t.elapsed();
        let Some(got) = got else {
            bail!("lease came back empty with queued runs in the database");
        };
        if i >= WARMUP {
            lease.push(el);
        }
        runner.start(got.run_id, &got.lease_token).await?;
        runner.result(got.run_id, &got.lease_token, &done).await?;
    }

    let failed = sample(n, || async {
        let runs = team
            .list_runs(&RunQuery {
                status: Some("failed".into()),
                limit: Some(50),
                ..Default::default()
            })
            .await?;
        if runs.len() != 50 {
            bail!("expected 50 failed runs, got {}", runs.len());
        }
        Ok(())
    })
    .await?;
    let summary = sample(n, || async {
        let s = team.runs_summary().await?;
        if s.get("queued").copied().unwrap_or(0) == 0 {
            bail!("the summary shows no queued runs: {s:?}");
        }
        Ok(())
    })
    .await?;
    let page = sample(n, || async {
        let runs = team.list_app_runs(&l.app, 50, 4950).await?;
        if runs.len() != 50 {
            bail!("expected a full page 100, got {} runs", runs.len());
        }
        Ok(())
    })
    .await?;

    let mut r = ScenarioReport::new("scale");
    for (name, s) in [
        ("lease", &lease),
        ("GET /runs?status=failed&limit=50", &failed),
        ("GET /runs/summary", &summary),
        ("GET /apps/{app}/runs page 100", &page),
    ] {
        let m = s.summary();
        r.metric(Metric::new(format!("{name} p50"), m.p50_ms, "ms").goal(Goal::below(5.0)));
        r.metric(Metric::new(format!("{name} p99"), m.p99_ms, "ms"));
    }
    r.detail(
        "queries",
        serde_json::json!({
            "lease": lease.summary(),
            "runs_failed": failed.summary(),
            "summary": summary.summary(),
            "app_page_100": page.summary(),
        }),
    );
    Ok(r)
}
