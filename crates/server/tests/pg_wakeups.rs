//! Cross-replica wake-ups through PostgreSQL LISTEN/NOTIFY: a run queued
//! through one replica wakes a runner long-polling on another, and a log
//! stream on one replica follows lines written through another. Skipped
//! without `MINITOWER_TEST_POSTGRES_URL`.

mod support;

use futures::StreamExt;
use minitower_client::LogEvent;
use minitower_core::api::{CreateRunRequest, ResultRequest};
use minitower_core::status::{ResultStatus, RunStatus};
use minitower_store_postgres::testing;
use std::time::{Duration, Instant};
use support::{config, deploy, line, register, Replica};

/// A hang detector, never a timing assertion.
const HANG: Duration = Duration::from_secs(10);

/// The next stream item, failing on a hang or an early end.
async fn next<S: futures::Stream + Unpin>(s: &mut S) -> S::Item {
    tokio::time::timeout(HANG, s.next())
        .await
        .expect("stream hung")
        .expect("stream ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_queued_on_one_replica_wakes_a_runner_polling_another() {
    let Some(db) = testing::test_db().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = Replica::start(config(&db.url, dir.path(), "a")).await;
    let b = Replica::start(config(&db.url, dir.path(), "b")).await;
    let admin_a = a.client(Some(&deploy(&a.base).await));
    let runner_token = register(&b.base, "r1", 1).await;
    let runner_b = b.client(Some(&runner_token));
    let runner_a = a.client(Some(&runner_token));

    // The wake itself: B's notifier hears of a run queued through A.
    let mut queue = b.state.notifier.watch_queue("default");
    queue.borrow_and_update();
    let req = CreateRunRequest::default();
    let (first, _) = admin_a.create_run("hello", &req, None).await.unwrap();
    tokio::time::timeout(HANG, queue.changed())
        .await
        .expect("B was told of the run queued through A")
        .unwrap();
    let lease = runner_b.lease(Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(lease.run_id, first.id);
    runner_b
        .start(lease.run_id, &lease.lease_token)
        .await
        .unwrap();
    let done = ResultRequest {
        status: ResultStatus::Completed,
        exit_code: Some(0),
        error_message: None,
    };
    runner_a
        .result(lease.run_id, &lease.lease_token, &done)
        .await
        .unwrap();

    // End to end: a 25 s long-poll on B returns as soon as A queues a run.
    let poll = tokio::spawn(async move {
        let started = Instant::now();
        let lease = runner_b.lease(Duration::from_secs(25)).await.unwrap();
        (lease, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (second, _) = admin_a.create_run("hello", &req, None).await.unwrap();
    let (lease, waited) = tokio::time::timeout(HANG, poll).await.unwrap().unwrap();
    assert_eq!(lease.expect("the poll got the run").run_id, second.id);
    eprintln!("long-poll on B woke {waited:?} after it started (run queued on A at ~300ms)");
    assert!(waited < Duration::from_secs(5), "woken, not timed out");

    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_log_stream_on_one_replica_follows_lines_sent_to_another() {
    let Some(db) = testing::test_db().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = Replica::start(config(&db.url, dir.path(), "a")).await;
    let b = Replica::start(config(&db.url, dir.path(), "b")).await;
    let token = deploy(&a.base).await;
    let admin_b = b.client(Some(&token));
    let runner_a = a.client(Some(&register(&a.base, "r1", 1).await));
    let (run, _) = a
        .client(Some(&token))
        .create_run("hello", &CreateRunRequest::default(), None)
        .await
        .unwrap();
    let lease = runner_a.lease(Duration::ZERO).await.unwrap().unwrap();
    runner_a.start(run.id, &lease.lease_token).await.unwrap();

    // B's notifier hears of lines stored through A.
    let mut runs = b.state.notifier.watch_runs();
    runner_a
        .send_logs(run.id, &lease.lease_token, vec![line(1, "one")])
        .await
        .unwrap();
    tokio::time::timeout(HANG, async {
        while runs.recv().await.unwrap() != run.id {}
    })
    .await
    .expect("B was told of logs stored through A");

    // And a client following on B sees every line, live, then the end.
    let mut stream = Box::pin(admin_b.stream_logs(run.id, 0).await.unwrap());
    match next(&mut stream).await.unwrap() {
        LogEvent::Log(l) => assert_eq!((l.seq, l.line.as_str()), (1, "one")),
        other => panic!("{other:?}"),
    }
    for seq in 2..=4 {
        runner_a
            .send_logs(run.id, &lease.lease_token, vec![line(seq, "live")])
            .await
            .unwrap();
        match next(&mut stream).await.unwrap() {
            LogEvent::Log(l) => assert_eq!(l.seq, seq),
            other => panic!("{other:?}"),
        }
    }
    let done = ResultRequest {
        status: ResultStatus::Completed,
        exit_code: Some(0),
        error_message: None,
    };
    runner_a
        .result(run.id, &lease.lease_token, &done)
        .await
        .unwrap();
    match next(&mut stream).await.unwrap() {
        LogEvent::End(status) => assert_eq!(status, RunStatus::Completed),
        other => panic!("{other:?}"),
    }
    drop(stream);
    a.stop().await;
    b.stop().await;
}
