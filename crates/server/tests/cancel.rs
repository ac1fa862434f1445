//! Cancellation in every run state.

mod common;

use common::*;
use minitower_core::{ResultStatus, RunStatus};
use std::time::Duration;

#[tokio::test]
async fn cancel_queued_run_is_final_and_never_leased() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    let runner = app.runner("r1", None).await;
    let run = queue_run(&team, "hello", None).await;
    let c = team.cancel_run(run.id).await.unwrap();
    assert_eq!(c.status, RunStatus::Cancelled);
    assert!(c.finished_at.is_some());
    assert!(runner.lease(Duration::ZERO).await.unwrap().is_none());
    // Cancelling a terminal run is a conflict.
    expect_api_err(team.cancel_run(run.id).await, 409, "conflict");
    assert_eq!(
        team.get_run(run.id).await.unwrap().run.status,
        RunStatus::Cancelled
    );
    expect_api_err(team.cancel_run(424242).await, 404, "not_found");
}

#[tokio::test]
async fn cancel_running_run_reaches_the_runner() {
    let app = spawn_app().await;
    let l = leased_run(&app).await;
    let hb = l
        .runner
        .heartbeat(l.run.id, &l.lease.lease_token)
        .await
        .unwrap();
    assert!(!hb.cancel_requested);
    l.runner
        .start(l.run.id, &l.lease.lease_token)
        .await
        .unwrap();
    let c = l.team.cancel_run(l.run.id).await.unwrap();
    assert_eq!(c.status, RunStatus::Cancelling);
    assert!(c.cancel_requested);
    // Again: 200 and unchanged.
    let again = l.team.cancel_run(l.run.id).await.unwrap();
    assert_eq!(again, c);
    let hb = l
        .runner
        .heartbeat(l.run.id, &l.lease.lease_token)
        .await
        .unwrap();
    assert!(hb.cancel_requested);
    assert_eq!(hb.run_status, RunStatus::Cancelling);
    let ack = l
        .runner
        .result(
            l.run.id,
            &l.lease.lease_token,
            &result_req(ResultStatus::Cancelled, None),
        )
        .await
        .unwrap();
    assert_eq!(ack.run_status, RunStatus::Cancelled);
    assert_eq!(
        l.team.get_run(l.run.id).await.unwrap().run.status,
        RunStatus::Cancelled
    );
    expect_api_err(l.team.cancel_run(l.run.id).await, 409, "conflict");
}

#[tokio::test]
async fn cancel_leased_not_started_run() {
    let app = spawn_app().await;
    let l = leased_run(&app).await;
    let c = l.team.cancel_run(l.run.id).await.unwrap();
    assert_eq!(c.status, RunStatus::Cancelling);
    // Starting after a cancel request keeps the run cancelling and says so.
    let st = l
        .runner
        .start(l.run.id, &l.lease.lease_token)
        .await
        .unwrap();
    assert!(st.cancel_requested);
    assert_eq!(st.run_status, RunStatus::Cancelling);
    let hb = l
        .runner
        .heartbeat(l.run.id, &l.lease.lease_token)
        .await
        .unwrap();
    assert!(hb.cancel_requested);
}
