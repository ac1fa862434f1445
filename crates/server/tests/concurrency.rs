//! Races over HTTP: many runners leasing, repeated idempotent creates,
//! results racing a cancel. Each run must end up with exactly one owner and
//! one terminal state.

mod common;

use common::*;
use futures::future::join_all;
use minitower_core::api::*;
use minitower_core::{ResultStatus, RunStatus};
use std::collections::HashSet;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_runners_never_share_a_run() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    let mut runs = HashSet::new();
    for _ in 0..6 {
        runs.insert(queue_run(&team, "hello", None).await.id);
    }
    let mut runners = Vec::new();
    for i in 0..12 {
        runners.push(app.runner(&format!("r{i}"), Some(1)).await);
    }
    let leases = join_all(runners.iter().map(|r| {
        let r = r.clone();
        async move { r.lease(Duration::ZERO).await.unwrap() }
    }))
    .await;
    let got: Vec<i64> = leases.iter().flatten().map(|l| l.run_id).collect();
    assert_eq!(got.len(), 6, "every run leased once: {got:?}");
    assert_eq!(got.iter().copied().collect::<HashSet<_>>(), runs);
    let summary = team.runs_summary().await.unwrap();
    assert_eq!((summary["queued"], summary["leased"]), (0, 6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_waiters_each_get_at_most_one_run() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    let mut runners = Vec::new();
    for i in 0..4 {
        runners.push(app.runner(&format!("w{i}"), Some(1)).await);
    }
    let waits: Vec<_> = runners
        .iter()
        .map(|r| {
            let r = r.clone();
            tokio::spawn(async move { r.lease(Duration::from_secs(30)).await.unwrap() })
        })
        .collect();
    // Whether a waiter is already parked or not when the runs arrive, each
    // must come back with exactly one distinct run.
    let mut ids = HashSet::new();
    for _ in 0..4 {
        ids.insert(queue_run(&team, "hello", None).await.id);
    }
    let mut got = HashSet::new();
    for w in waits {
        let lease = tokio::time::timeout(HANG, w)
            .await
            .expect("waiter answered")
            .unwrap()
            .expect("each waiter gets one run");
        assert!(
            got.insert(lease.run_id),
            "run {} handed out twice",
            lease.run_id
        );
    }
    assert_eq!(got, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotent_creates_race_to_one_run() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    let results = join_all((0..10).map(|_| {
        let team = team.clone();
        async move {
            team.create_run("hello", &CreateRunRequest::default(), Some("same-key"))
                .await
                .unwrap()
        }
    }))
    .await;
    let ids: HashSet<i64> = results.iter().map(|(r, _)| r.id).collect();
    assert_eq!(ids.len(), 1, "{results:?}");
    assert_eq!(results.iter().filter(|(_, created)| *created).count(), 1);
    assert_eq!(team.list_app_runs("hello", 50, 0).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn result_racing_cancel_converges() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    let runner = app.runner("r1", Some(16)).await;
    let mut pairs = Vec::new();
    for _ in 0..8 {
        let run = queue_run(&team, "hello", None).await;
        let lease = lease_now(&runner).await;
        runner.start(run.id, &lease.lease_token).await.unwrap();
        pairs.push((run.id, lease.lease_token));
    }
    let races = pairs.iter().map(|(id, token)| {
        let (team, runner, token, id) = (team.clone(), runner.clone(), token.clone(), *id);
        async move {
            let cancel = team.cancel_run(id);
            let req = result_req(ResultStatus::Completed, Some(0));
            let done = runner.result(id, &token, &req);
            let (c, d) = tokio::join!(cancel, done);
            // The cancel either lands first (cancelling) or finds the run
            // finished (409); the result is always accepted.
            match c {
                Ok(run) => assert!(
                    matches!(run.status, RunStatus::Cancelling | RunStatus::Completed),
                    "{run:?}"
                ),
                Err(e) => assert_eq!(e.status(), Some(409), "{e}"),
            }
            d.unwrap();
        }
    });
    join_all(races).await;
    for (id, _) in pairs {
        let d = team.get_run(id).await.unwrap();
        assert_eq!(
            d.run.status,
            RunStatus::Completed,
            "first terminal fact wins"
        );
        assert_eq!(d.attempts.len(), 1);
    }
    assert_eq!(team.list_runners().await.unwrap()[0].active_runs, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_uploads_and_creates_get_distinct_numbers() {
    let app = spawn_app().await;
    let team = team_with_app(&app).await;
    let versions = join_all((0..6).map(|i| {
        let team = team.clone();
        async move {
            let body = format!("print({i})");
            let bytes = targz(&[Entry::File("main.py", body.as_bytes())]);
            upload(&team, "hello", bytes, Some("main.py"), None)
                .await
                .unwrap()
                .version_no
        }
    }))
    .await;
    let mut nos = versions.clone();
    nos.sort();
    assert_eq!(nos, (1..=6).collect::<Vec<i64>>(), "{versions:?}");
    assert_eq!(app.object_files().len(), 6);

    let runs = join_all((0..10).map(|_| {
        let team = team.clone();
        async move { queue_run(&team, "hello", None).await.run_no }
    }))
    .await;
    let mut nos = runs.clone();
    nos.sort();
    assert_eq!(nos, (1..=10).collect::<Vec<i64>>(), "{runs:?}");
}
