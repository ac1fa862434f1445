//! Retention on a real SQLite file: thousands of old finished runs with
//! their logs are purged in batches, the freed pages go back to the file
//! system (incremental vacuum), and the file shrinks, while live runs and
//! their logs are untouched and keep working.

use minitower_core::api::NewLogLine;
use minitower_core::status::{ResultStatus, RunStatus};
use minitower_store::conformance::{lease, t, Fixture, Held};
use minitower_store::{PurgeLimits, Purged, Store};
use std::path::Path;
use std::sync::Arc;

const OLD_RUNS: i64 = 3000;
const LINES_PER_RUN: i64 = 20;

/// `n` stdout lines of ~200 bytes from seq `from`.
fn lines(from: i64, n: i64, tag: &str) -> Vec<NewLogLine> {
    (from..from + n)
        .map(|seq| NewLogLine {
            seq,
            stream: "stdout".into(),
            line: format!("{tag} line {seq}: {}", "x".repeat(180)),
            logged_at: None,
        })
        .collect()
}

async fn append(h: &Held, from: i64, n: i64, tag: &str, secs: i64) {
    h.store
        .append_logs(
            h.runner_id,
            h.run_id(),
            &h.token_hash,
            &lines(from, n, tag),
            t(secs),
        )
        .await
        .unwrap();
}

/// The database file's size after a clean close (the WAL checkpointed into it).
fn size(path: &Path) -> u64 {
    let wal = path.with_extension("db-wal");
    assert!(
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) == 0,
        "WAL checkpointed at close"
    );
    std::fs::metadata(path).unwrap().len()
}

async fn purge_everything_before(store: &Arc<dyn Store>, secs: i64) -> (Purged, usize) {
    let mut total = Purged::default();
    let mut batches = 0;
    loop {
        let p = store
            .purge_finished_runs(t(secs), PurgeLimits::default())
            .await
            .unwrap();
        if p.runs == 0 {
            return (total, batches);
        }
        assert!(p.runs <= 500, "a batch is at most 500 runs");
        total.add(&p);
        batches += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_runs_go_the_file_shrinks_and_live_runs_stay() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("minitower.db");
    let store: Arc<dyn Store> = Arc::new(minitower_store_sqlite::open(&path).await.unwrap());
    let f = Fixture::new(store.clone()).await;
    let runner = f.runner("default", 4).await;

    let mut old = Vec::new();
    for i in 0..OLD_RUNS {
        let run = f.run(i).await;
        let h = lease(&store, &runner, i).await.unwrap();
        assert_eq!(h.run_id(), run.id);
        h.start(i).await.unwrap();
        append(&h, 1, LINES_PER_RUN, "old", i).await;
        let status = if i % 3 == 0 {
            ResultStatus::Failed
        } else {
            ResultStatus::Completed
        };
        h.finish(status, Some(0), i + 1).await.unwrap();
        old.push(run.id);
    }
    // Live: a run still queued since before all of them (another
    // environment, so the leases above left it), two running with logs,
    // and one that finished after the cutoff.
    let queued = f.run_with(0, |r| r.environment = "later".into()).await;
    let mut running = Vec::new();
    for i in 0..2 {
        let run = f.run(5000 + i).await;
        let h = lease(&store, &runner, 5000 + i).await.unwrap();
        assert_eq!(h.run_id(), run.id);
        h.start(5000 + i).await.unwrap();
        append(&h, 1, 50, "live", 5001).await;
        running.push(h);
    }
    let recent = f.run(9000).await;
    let h = lease(&store, &runner, 9000).await.unwrap();
    h.start(9000).await.unwrap();
    append(&h, 1, 7, "recent", 9000).await;
    h.finish(ResultStatus::Completed, Some(0), 9001)
        .await
        .unwrap();
    store.close().await;
    let before = size(&path);

    let store: Arc<dyn Store> = Arc::new(minitower_store_sqlite::open(&path).await.unwrap());
    let (purged, batches) = purge_everything_before(&store, 8000).await;
    assert_eq!(purged.runs, OLD_RUNS as u64);
    assert_eq!(purged.log_lines, (OLD_RUNS * LINES_PER_RUN) as u64);
    assert_eq!(purged.attempts, OLD_RUNS as u64);
    assert!(batches >= (OLD_RUNS / 500) as usize, "{batches} batches");
    let mut steps = 0;
    while store.reclaim_space().await.unwrap() > 0 {
        steps += 1;
        assert!(steps < 10_000, "reclaiming ends");
    }
    store.close().await;
    let after = size(&path);
    assert!(
        after * 4 < before,
        "the file shrank from {before} to {after} bytes"
    );

    // Reopened: the live runs and their logs are all there and still work.
    let store: Arc<dyn Store> = Arc::new(minitower_store_sqlite::open(&path).await.unwrap());
    let get = |id| {
        let store = store.clone();
        let team = f.team.id;
        async move { store.get_run(team, id).await.unwrap() }
    };
    for id in [old[0], old[1], old[OLD_RUNS as usize - 1]] {
        assert!(get(id).await.is_none(), "old run {id} purged");
    }
    assert_eq!(get(queued.id).await.unwrap().run.status, RunStatus::Queued);
    let r = get(recent.id).await.unwrap();
    assert_eq!((r.run.status, r.attempts.len()), (RunStatus::Completed, 1));
    assert_eq!(
        store.get_logs(None, recent.id, 0, 100).await.unwrap().len(),
        7
    );
    for h in &running {
        let d = get(h.run_id()).await.unwrap();
        assert_eq!(d.run.status, RunStatus::Running);
        let logs = store.get_logs(None, h.run_id(), 0, 1000).await.unwrap();
        assert_eq!(logs.len(), 50);
        assert!(logs.iter().all(|l| l.line.starts_with("live line")));
        let h = Held {
            store: store.clone(),
            ..h.clone()
        };
        h.heartbeat(5010).await.unwrap();
        append(&h, 51, 1, "live", 5010).await;
        h.finish(ResultStatus::Completed, Some(0), 5011)
            .await
            .unwrap();
        assert_eq!(
            store
                .get_logs(None, h.run_id(), 0, 1000)
                .await
                .unwrap()
                .len(),
            51
        );
    }
    let summary = store.runs_summary(f.team.id).await.unwrap();
    assert_eq!(summary[&RunStatus::Failed], 0, "every failed run was old");
    assert_eq!(summary[&RunStatus::Completed], 3);
    assert_eq!(summary[&RunStatus::Queued], 1);
    // Numbers move on past the purged ones.
    let (next, _) = store.create_run(f.new_run(9500)).await.unwrap();
    assert!(next.id > recent.id && next.run_no > r.run.run_no);
    store.close().await;
}

/// A file made before incremental auto-vacuum cannot give pages back: it
/// reuses them, and reclaiming says so at once instead of looping.
#[tokio::test]
async fn an_older_file_reuses_its_pages_and_reclaims_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let status = std::process::Command::new("sqlite3")
        .arg(&path)
        .arg("PRAGMA auto_vacuum = NONE; CREATE TABLE legacy (x INTEGER);")
        .status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("no sqlite3 CLI here; skipped");
        return;
    }
    let store: Arc<dyn Store> = Arc::new(minitower_store_sqlite::open(&path).await.unwrap());
    let f = Fixture::new(store.clone()).await;
    let runner = f.runner("default", 1).await;
    for i in 0..200 {
        f.run(i).await;
        let h = lease(&store, &runner, i).await.unwrap();
        h.start(i).await.unwrap();
        append(&h, 1, 20, "old", i).await;
        h.finish(ResultStatus::Completed, Some(0), i + 1)
            .await
            .unwrap();
    }
    let (purged, _) = purge_everything_before(&store, 1000).await;
    assert_eq!(purged.runs, 199, "all but the newest");
    assert_eq!(store.reclaim_space().await.unwrap(), 0);
}
