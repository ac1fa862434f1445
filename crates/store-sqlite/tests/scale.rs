//! Query latency on a large database: 1,000,000 finished and 100,000
//! queued runs. Ignored by default (it takes a while to fill); run with
//! `cargo test -p minitower-store-sqlite --release --test scale -- --ignored --nocapture`.

use minitower_store::conformance::{lease, t, Fixture};
use minitower_store::{RunFilter, Store};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FINISHED: i64 = 1_000_000;
const QUEUED: i64 = 100_000;
const APPS: i64 = 10;

/// Median wall time of `n` runs of `f`.
async fn time<F, Fut, T>(name: &str, n: usize, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut samples = vec![];
    for _ in 0..n {
        let start = Instant::now();
        std::hint::black_box(f().await);
        samples.push(start.elapsed());
    }
    samples.sort();
    let median = samples[samples.len() / 2];
    println!(
        "{name:<40} median {median:?} (max {:?})",
        samples.last().unwrap()
    );
    median
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "fills a 1.1M-run database; run explicitly"]
async fn queries_stay_fast_at_scale() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.db");
    let store = Arc::new(minitower_store_sqlite::open(&path).await.unwrap());
    let f = Fixture::new(store.clone()).await;
    let mut apps = vec![(f.app.id, f.version.id)];
    for i in 1..APPS {
        let (a, v) = f.app(&format!("app{i}")).await;
        apps.push((a.id, v.id));
    }
    let runner = f.runner("default", 1000).await;

    let fill = Instant::now();
    let mut c = SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .unwrap();
    // app k of 10: ids are consecutive from the fixture, versions likewise
    let (app0, ver0) = apps[0];
    let base = t(0).timestamp_millis();
    let mut tx = c.begin().await.unwrap();
    sqlx::query(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {FINISHED}) \
         INSERT INTO runs (team_id, app_id, version_id, run_no, environment, status, input, \
           priority, max_retries, queued_at, started_at, finished_at) \
         SELECT {team}, {app0} + i % {APPS}, {ver0} + i % {APPS}, i, 'default', \
           CASE i % 20 WHEN 0 THEN 'failed' WHEN 1 THEN 'dead' WHEN 2 THEN 'cancelled' \
                ELSE 'completed' END, '{{}}', 0, 0, \
           {base} + i * 1000, {base} + i * 1000 + 100, {base} + i * 1000 + 100 + (i % 600) * 1000 \
         FROM n",
        team = f.team.id,
    ))
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {QUEUED}) \
         INSERT INTO runs (team_id, app_id, version_id, run_no, environment, status, input, \
           priority, max_retries, queued_at) \
         SELECT {team}, {app0} + i % {APPS}, {ver0} + i % {APPS}, {FINISHED} + i, \
           CASE i % 4 WHEN 0 THEN 'gpu' ELSE 'default' END, 'queued', '{{}}', i % 3, 2, \
           {base} + ({FINISHED} + i) * 1000 \
         FROM n",
        team = f.team.id,
    ))
    .execute(&mut *tx)
    .await
    .unwrap();
    // each app's run counter, as `create_run` would have left it
    sqlx::query(
        "UPDATE apps SET last_run_no = \
         (SELECT COALESCE(MAX(run_no), 0) FROM runs WHERE runs.app_id = apps.id)",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    sqlx::query("PRAGMA optimize")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    println!("filled in {:?}", fill.elapsed());
    let now = t(FINISHED + QUEUED + 10);
    let now_s = FINISHED + QUEUED + 10;

    let mut budget = vec![];
    let mut secs = now_s;
    budget.push(
        time("lease", 50, || {
            secs += 1;
            let (store, runner) = (store.clone(), runner.clone());
            let s: Arc<dyn Store> = store;
            async move { lease(&s, &runner, secs).await.unwrap() }
        })
        .await,
    );
    let failed = RunFilter {
        status: Some(minitower_core::RunStatus::Failed),
        limit: 50,
        ..Default::default()
    };
    budget.push(
        time("list_runs(status=failed, limit 50)", 20, || {
            store.list_runs(f.team.id, &failed)
        })
        .await,
    );
    let all = RunFilter {
        limit: 50,
        ..Default::default()
    };
    budget.push(
        time("list_runs(limit 50)", 20, || {
            store.list_runs(f.team.id, &all)
        })
        .await,
    );
    let app_page = RunFilter {
        app_id: Some(apps[3].0),
        limit: 100,
        offset: 100,
        ..Default::default()
    };
    budget.push(
        time("list_runs(app, limit 100, page 2)", 20, || {
            store.list_runs(f.team.id, &app_page)
        })
        .await,
    );
    budget.push(time("runs_summary", 20, || store.runs_summary(f.team.id)).await);
    budget.push(time("pending_counts", 20, || store.pending_counts()).await);
    budget.push(
        time("reap_expired (nothing due)", 20, || {
            store.reap_expired(now, 100)
        })
        .await,
    );
    budget.push(time("get_run", 20, || store.get_run(f.team.id, 500_000)).await);
    // 24 h of finished runs at one per second: ~86k rows in the window
    let stats = time("run_stats(24h)", 5, || {
        store.run_stats(f.team.id, 24, t(FINISHED))
    })
    .await;
    println!("(stats walks every run of the window; not held to the same budget)");
    assert!(stats < Duration::from_secs(2), "stats took {stats:?}");
    for d in budget {
        assert!(d < Duration::from_millis(50), "a hot query took {d:?}");
    }
    store.close().await;
}
