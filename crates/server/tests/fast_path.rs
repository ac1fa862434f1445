//! The protocol's fast path: a lease that also starts the attempt, and a
//! result that carries the attempt's last log lines, so a run needs two
//! runner calls where it needed four. The old calls stay valid (every other
//! test in this crate uses them).

mod common;

use common::*;
use minitower_core::api::*;
use minitower_core::{AttemptStatus, ResultStatus, RunStatus};
use std::time::Duration;

async fn queued(app: &TestApp) -> (minitower_client::Client, minitower_client::Client, Run) {
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    let runner = app.runner("runner-1", None).await;
    let run = queue_run(&team, "hello", None).await;
    (team, runner, run)
}

#[tokio::test]
async fn a_lease_that_starts_and_a_result_with_logs_run_a_run_in_two_calls() {
    let app = spawn_app().await;
    let (team, runner, run) = queued(&app).await;

    let lease = fast_lease(&runner).await;
    assert_eq!(lease.run_id, run.id);
    let state = lease.started.clone().expect("the lease says it started");
    assert_eq!(
        (state.status, state.run_status, state.cancel_requested),
        (AttemptStatus::Running, RunStatus::Running, false)
    );
    let detail = team.get_run(run.id).await.unwrap();
    assert_eq!(detail.run.status, RunStatus::Running);
    assert!(detail.run.started_at.is_some(), "started_at is set");

    let report = ResultReport::new(
        &result_req(ResultStatus::Completed, Some(0)),
        vec![line(1, "hello"), line(2, "world")],
    );
    let ack = runner
        .result_with_logs(run.id, &lease.lease_token, &report)
        .await
        .unwrap();
    assert_eq!(ack.run_status, RunStatus::Completed);
    let logs = team.logs(run.id, 0).await.unwrap();
    assert_eq!(
        logs.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(),
        ["hello", "world"]
    );
    assert!(logs.iter().all(|l| l.attempt_no == 1));

    // The answer was lost and the runner sends the same report again:
    // nothing changes, no line is stored twice.
    let again = runner
        .result_with_logs(run.id, &lease.lease_token, &report)
        .await
        .unwrap();
    assert_eq!(again.run_status, RunStatus::Completed);
    assert_eq!(team.logs(run.id, 0).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_plain_lease_does_not_start_and_a_plain_result_still_works() {
    let app = spawn_app().await;
    let (team, runner, run) = queued(&app).await;
    let lease = lease_now(&runner).await;
    assert!(lease.started.is_none(), "no start unless asked");
    assert_eq!(
        team.get_run(run.id).await.unwrap().run.status,
        RunStatus::Leased
    );
    runner.start(run.id, &lease.lease_token).await.unwrap();
    runner
        .result(
            run.id,
            &lease.lease_token,
            &result_req(ResultStatus::Failed, Some(3)),
        )
        .await
        .unwrap();
    assert_eq!(
        team.get_run(run.id).await.unwrap().run.status,
        RunStatus::Failed
    );
}

#[tokio::test]
async fn a_result_with_bad_log_lines_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let (team, runner, run) = queued(&app).await;
    let lease = fast_lease(&runner).await;
    let mut bad = line(1, "fine");
    bad.stream = "NOT A STREAM".into();
    let report = ResultReport::new(
        &result_req(ResultStatus::Completed, Some(0)),
        vec![line(2, "kept?"), bad],
    );
    let msg = expect_api_err(
        runner
            .result_with_logs(run.id, &lease.lease_token, &report)
            .await,
        400,
        "invalid_request",
    );
    assert!(msg.contains("stream"), "{msg}");
    assert_eq!(
        team.get_run(run.id).await.unwrap().run.status,
        RunStatus::Running,
        "the run did not end"
    );
    assert!(
        team.logs(run.id, 0).await.unwrap().is_empty(),
        "no line of the refused report was stored"
    );
}

#[tokio::test]
async fn a_result_with_logs_after_the_lease_expired_is_gone() {
    let app = spawn_app().await;
    let (team, runner, run) = queued(&app).await;
    let lease = fast_lease(&runner).await;
    app.advance(app.lease_ttl() + Duration::from_secs(1));
    app.reap().await;
    let report = ResultReport::new(
        &result_req(ResultStatus::Completed, Some(0)),
        vec![line(1, "too late")],
    );
    let r = runner
        .result_with_logs(run.id, &lease.lease_token, &report)
        .await;
    assert!(
        matches!(&r, Err(e) if e.is_lease_gone()),
        "a fenced attempt reports nothing: {r:?}"
    );
    assert!(team.logs(run.id, 0).await.unwrap().is_empty());
}
