//! Graceful shutdown with a long-poll and a log stream open.

mod common;

use common::*;
use minitower_core::RunStatus;
use minitower_store::Store;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_long_polls_and_streams_and_closes_the_database() {
    let mut app = spawn_app().await;
    let l = leased_run(&app).await;
    l.runner
        .start(l.run.id, &l.lease.lease_token)
        .await
        .unwrap();
    l.runner
        .send_logs(l.run.id, &l.lease.lease_token, vec![line(1, "working")])
        .await
        .unwrap();

    // An SSE stream on a run that is still running.
    let mut sse = open_stream(&l.team, l.run.id, "", None).await;
    assert_eq!(sse.next().await.unwrap().id.as_deref(), Some("1"));

    // A long-poll on an empty queue, known to be waiting.
    let waiter = app.runner("waiter", None).await;
    let before = app.state.now();
    app.advance(Duration::from_secs(1));
    let poll = {
        let waiter = waiter.clone();
        tokio::spawn(async move { waiter.lease(Duration::from_secs(30)).await })
    };
    let store = app.state.store.clone();
    eventually("the long-poll to start waiting", || {
        let store = store.clone();
        async move {
            let runners = store.list_runners().await.unwrap();
            let w = runners.iter().find(|r| r.name == "waiter").unwrap();
            (w.last_seen_at.unwrap() > before).then_some(())
        }
    })
    .await;

    let server = app.begin_shutdown();
    let stopped = tokio::time::timeout(HANG, server)
        .await
        .expect("run_until returned promptly")
        .expect("server task did not panic");
    assert!(stopped.is_ok(), "{stopped:?}");

    // The long-poll was answered "nothing to do", not cut off.
    let polled = tokio::time::timeout(HANG, poll).await.unwrap().unwrap();
    assert!(matches!(polled, Ok(None)), "{polled:?}");
    // The stream ended (no `end` event: the run is not finished).
    assert_eq!(sse.next().await, None);
    // Nobody listens any more.
    assert!(tokio::net::TcpStream::connect(app.addr).await.is_err());

    // The database is closed cleanly and opens again with everything in it.
    drop(store);
    let reopened = minitower_store_sqlite::open(&app.db_path)
        .await
        .expect("database reopens");
    reopened.ping().await.unwrap();
    let (team, _) = reopened.team_login_info("acme").await.unwrap().unwrap();
    let detail = reopened.get_run(team.id, l.run.id).await.unwrap().unwrap();
    assert_eq!(detail.run.status, RunStatus::Running);
    assert_eq!(
        reopened
            .get_logs(None, l.run.id, 0, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    reopened.close().await;
}

#[tokio::test]
async fn shutdown_of_an_idle_server() {
    let mut app = spawn_app().await;
    app.team("acme").await;
    let server = app.begin_shutdown();
    tokio::time::timeout(HANG, server)
        .await
        .expect("stopped")
        .unwrap()
        .unwrap();
    let reopened = minitower_store_sqlite::open(&app.db_path).await.unwrap();
    assert!(reopened.team_login_info("acme").await.unwrap().is_some());
    reopened.close().await;
}
