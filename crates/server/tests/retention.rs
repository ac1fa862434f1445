//! Retention through a real control plane (SQLite file, HTTP, manual
//! clock): old finished runs disappear from the API with their logs and
//! are counted in the metrics, live runs stay; writes go on during a purge;
//! the artifact collector deletes only unreferenced objects older than the
//! grace period, and never one an upload just committed again.

mod common;

use common::*;
use minitower_client::{Client, RunQuery};
use minitower_core::api::*;
use minitower_core::{ResultStatus, RunStatus};
use minitower_server::objects::Objects;
use minitower_server::retention::{collect_artifacts_once, purge_once};
use minitower_server::state::hash_token;
use minitower_store::conformance::{lease, Fixture};
use minitower_store::TokenOptions;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

const HOUR: Duration = Duration::from_secs(3600);

/// Leases the next run, starts it, logs `n` lines and finishes it.
async fn finish_next(runner: &Client, n: i64) -> i64 {
    let l = lease_started(runner).await;
    let lines = (1..=n).map(|s| line(s, &format!("old {s}"))).collect();
    runner
        .send_logs(l.run_id, &l.lease_token, lines)
        .await
        .unwrap();
    runner
        .result(
            l.run_id,
            &l.lease_token,
            &result_req(ResultStatus::Completed, Some(0)),
        )
        .await
        .unwrap();
    l.run_id
}

async fn metrics(app: &TestApp) -> String {
    app.raw(None, reqwest::Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_runs_leave_the_api_and_live_runs_stay() {
    let app = spawn_app_with(|c| c.retention = Some(HOUR)).await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    let runner = app.runner("r1", Some(4)).await;
    let mut old = Vec::new();
    for _ in 0..5 {
        queue_run(&team, "hello", None).await;
        old.push(finish_next(&runner, 3).await);
    }
    // A running run with logs, and a queued one (the app's newest).
    queue_run(&team, "hello", None).await;
    let running = lease_started(&runner).await;
    runner
        .send_logs(running.run_id, &running.lease_token, vec![line(1, "live")])
        .await
        .unwrap();
    let queued = queue_run(&team, "hello", None).await;

    let nothing = purge_once(&app.state).await.unwrap();
    assert_eq!(nothing.purged.runs, 0, "younger than the retention");
    app.advance(2 * HOUR);
    let report = purge_once(&app.state).await.unwrap();
    assert_eq!((report.purged.runs, report.purged.log_lines), (5, 15));
    assert!(report.reclaim_steps >= 1);
    for id in &old {
        expect_api_err(team.get_run(*id).await, 404, "not_found");
        expect_api_err(team.logs(*id, 0).await, 404, "not_found");
    }
    let r = team.get_run(running.run_id).await.unwrap();
    assert_eq!(r.run.status, RunStatus::Running);
    assert_eq!(team.logs(running.run_id, 0).await.unwrap().len(), 1);
    assert_eq!(
        team.get_run(queued.id).await.unwrap().run.status,
        RunStatus::Queued
    );
    let listed = team.list_runs(&RunQuery::default()).await.unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let text = metrics(&app).await;
    assert!(
        text.contains("minitower_retention_runs_deleted_total 5"),
        "{text}"
    );
    assert!(
        text.contains("minitower_retention_log_lines_deleted_total 15"),
        "{text}"
    );
}

/// A purge of many runs is many short transactions: runs created over HTTP
/// while it goes are stored between its batches, none refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_go_on_during_a_purge() {
    const OLD: i64 = 1500;
    let app = spawn_app_with(|c| {
        c.retention = Some(HOUR);
        c.retention_batch = 50;
    })
    .await;
    // Old runs straight through this server's store (faster than HTTP),
    // finished in January (`t`), long before the clock's now.
    let store = app.state.store.clone();
    let f = Fixture::new(store.clone()).await;
    let runner = f.runner("default", 1).await;
    for i in 0..OLD {
        f.run(i).await;
        let h = lease(&store, &runner, i).await.unwrap();
        h.finish(ResultStatus::Completed, Some(0), i).await.unwrap();
    }
    store
        .create_token(
            f.team.id,
            "http",
            Role::Admin,
            &hash_token("tok"),
            app.state.now(),
            TokenOptions::default(),
        )
        .await
        .unwrap();
    let team = app.client("tok");

    let purge = tokio::spawn({
        let state = app.state.clone();
        async move { purge_once(&state).await.unwrap() }
    });
    let mut during = 0;
    while !purge.is_finished() {
        queue_run(&team, "hello", None).await;
        if !purge.is_finished() {
            during += 1;
        }
    }
    let report = purge.await.unwrap();
    assert_eq!(report.purged.runs, OLD as u64, "every old run");
    assert!(
        report.batches >= 30,
        "{} batches of at most 50",
        report.batches
    );
    assert!(during > 0, "no run was created while the purge went on");
    let summary = team.runs_summary().await.unwrap();
    assert_eq!(summary["completed"], 0);
    assert!(summary["queued"] >= during, "{summary:?}");
}

/// `<objects>/sha256/<2>/<sha>`.
fn object_path(app: &TestApp, sha: &str) -> PathBuf {
    app.objects_dir.join("sha256").join(&sha[..2]).join(sha)
}

/// Stores `data` as an object the way nothing references it (a failed
/// upload's leftover), last committed `age` ago.
fn plant(app: &TestApp, data: &[u8], age: Duration) -> String {
    let sha = sha256_hex(data);
    let path = object_path(app, &sha);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, data).unwrap();
    set_age(&path, age);
    sha
}

fn set_age(path: &std::path::Path, age: Duration) {
    let f = std::fs::File::open(path).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreferenced_old_artifacts_are_collected() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    let used = app_with_version(&team, "hello").await.artifact_sha256;
    set_age(&object_path(&app, &used), 3 * HOUR);
    let orphan = plant(&app, b"left over by a failed upload", 3 * HOUR);
    let young = plant(&app, b"an upload in flight", Duration::from_secs(60));
    // Old, unreferenced, but an upload of the same content just committed
    // it again and is about to insert its version.
    let again = plant(&app, b"uploaded again", 3 * HOUR);
    let spool = app.state.objects.spool_dir().join("again");
    std::fs::write(&spool, b"uploaded again").unwrap();
    app.state.objects.commit(&spool, &again).await.unwrap();

    let report = collect_artifacts_once(&app.state).await.unwrap();
    assert_eq!(
        (report.candidates, report.referenced, report.collected),
        (2, 1, 1),
        "{report:?}"
    );
    assert_eq!(report.bytes, b"left over by a failed upload".len() as u64);
    assert!(!object_path(&app, &orphan).exists());
    for kept in [&used, &young, &again] {
        assert!(object_path(&app, kept).exists(), "{kept} kept");
    }
    // The referenced one still serves its runs.
    let runner = app.runner("r1", None).await;
    queue_run(&team, "hello", None).await;
    let l = lease_now(&runner).await;
    let body = runner
        .artifact(l.run_id, &l.lease_token)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256_hex(&body), used);
    let text = metrics(&app).await;
    assert!(
        text.contains("minitower_artifacts_collected_total 1"),
        "{text}"
    );
    // Once old enough, the re-committed one goes too (no version came).
    set_age(&object_path(&app, &again), 3 * HOUR);
    let report = collect_artifacts_once(&app.state).await.unwrap();
    assert_eq!(report.collected, 1);
    assert!(!object_path(&app, &again).exists());
}

/// Moving an object aside and checking its time again at that moment: one
/// committed since the cutoff is put back, whatever the listing said.
#[tokio::test]
async fn a_commit_between_listing_and_deleting_wins() {
    let dir = tempfile::tempdir().unwrap();
    let objects = minitower_server::objects::LocalObjects::open(dir.path()).unwrap();
    let data = b"raced";
    let sha = sha256_hex(data);
    let spool = objects.spool_dir().join("first");
    std::fs::write(&spool, data).unwrap();
    objects.commit(&spool, &sha).await.unwrap();
    let path = dir.path().join("sha256").join(&sha[..2]).join(&sha);
    set_age(&path, 3 * HOUR);
    let cutoff = SystemTime::now() - HOUR;
    let listed = objects.list_before(cutoff).await.unwrap();
    assert_eq!(listed.len(), 1);
    // the upload of the same content commits here
    let spool = objects.spool_dir().join("second");
    std::fs::write(&spool, data).unwrap();
    objects.commit(&spool, &sha).await.unwrap();
    assert!(!objects.delete_if_before(&sha, cutoff).await.unwrap());
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert!(objects.list_before(cutoff).await.unwrap().is_empty());
    assert!(
        std::fs::read_dir(objects.spool_dir())
            .unwrap()
            .next()
            .is_none(),
        "nothing left aside"
    );
    set_age(&path, 3 * HOUR);
    assert!(objects.delete_if_before(&sha, cutoff).await.unwrap());
    assert!(!path.exists());
    assert!(
        !objects.delete_if_before(&sha, cutoff).await.unwrap(),
        "gone"
    );
}
