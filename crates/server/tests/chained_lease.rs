//! A result that leases the runner's next run (`lease_next`): while the
//! queue has work, a run needs one runner call at its end instead of a
//! result and a lease. The next run comes started, within the runner's
//! concurrency, and only when asked for.

mod common;

use common::*;
use minitower_core::api::*;
use minitower_core::{AttemptStatus, ResultStatus, RunStatus};

/// A completed result with one log line, asking for the next lease or not.
fn report(lease_next: bool) -> ResultReport {
    ResultReport {
        lease_next,
        ..ResultReport::new(
            &result_req(ResultStatus::Completed, Some(0)),
            vec![line(1, "done")],
        )
    }
}

/// A team with app `hello`, runner `runner-1` and two queued runs.
async fn two_queued(
    app: &TestApp,
) -> (minitower_client::Client, minitower_client::Client, Run, Run) {
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    let runner = app.runner("runner-1", None).await;
    let first = queue_run(&team, "hello", None).await;
    let second = queue_run(&team, "hello", None).await;
    (team, runner, first, second)
}

/// Leases `first` (a lease that starts) and sends its completed result
/// asking for the next run; returns the result's answer.
async fn first_result_asking(runner: &minitower_client::Client, first: &Run) -> ResultAck {
    let lease = fast_lease(runner).await;
    assert_eq!(lease.run_id, first.id);
    let ack = runner
        .result_with_logs(first.id, &lease.lease_token, &report(true))
        .await
        .unwrap();
    assert_eq!(ack.run_status, RunStatus::Completed);
    ack
}

#[tokio::test]
async fn a_result_that_asks_leases_the_next_run_started() {
    let app = spawn_app().await;
    let (team, runner, first, second) = two_queued(&app).await;

    let ack = first_result_asking(&runner, &first).await;
    let next = ack.next.expect("the second run came with the result");
    assert_eq!(next.run_id, second.id);
    let state = next.started.clone().expect("the next lease is started");
    assert_eq!(
        (state.status, state.run_status),
        (AttemptStatus::Running, RunStatus::Running)
    );
    let detail = team.get_run(second.id).await.unwrap();
    assert_eq!(detail.run.status, RunStatus::Running);
    assert!(detail.run.started_at.is_some());

    // Its lease token is the one that works; with the queue empty the
    // last result brings nothing, and the run ends as any other.
    let ack = runner
        .result_with_logs(second.id, &next.lease_token, &report(true))
        .await
        .unwrap();
    assert_eq!(ack.run_status, RunStatus::Completed);
    assert!(ack.next.is_none(), "nothing was queued");
    let logs = team.logs(second.id, 0).await.unwrap();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].attempt_no, 1);
}

#[tokio::test]
async fn a_result_that_does_not_ask_leases_nothing() {
    let app = spawn_app().await;
    let (team, runner, first, second) = two_queued(&app).await;
    let lease = fast_lease(&runner).await;
    let ack = runner
        .result_with_logs(first.id, &lease.lease_token, &report(false))
        .await
        .unwrap();
    assert!(ack.next.is_none());
    assert_eq!(
        team.get_run(second.id).await.unwrap().run.status,
        RunStatus::Queued,
        "the second run waits for a lease"
    );
}

/// A result repeated after its answer was lost leases again only within
/// the runner's concurrency: the lost answer's run holds the freed slot.
#[tokio::test]
async fn a_repeated_result_never_leases_past_the_runners_concurrency() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    let runner = app.runner("runner-2", Some(2)).await;
    let mut runs = Vec::new();
    for _ in 0..4 {
        runs.push(queue_run(&team, "hello", None).await);
    }
    let a = fast_lease(&runner).await;
    let b = fast_lease(&runner).await;
    assert_eq!((a.run_id, b.run_id), (runs[0].id, runs[1].id));

    let lost = runner
        .result_with_logs(a.run_id, &a.lease_token, &report(true))
        .await
        .unwrap();
    assert_eq!(lost.next.expect("a third run").run_id, runs[2].id);
    let again = runner
        .result_with_logs(a.run_id, &a.lease_token, &report(true))
        .await
        .unwrap();
    assert_eq!(again.run_status, RunStatus::Completed);
    assert!(
        again.next.is_none(),
        "the runner already holds two runs: no fourth"
    );
    assert_eq!(
        team.get_run(runs[3].id).await.unwrap().run.status,
        RunStatus::Queued
    );
}

/// A result the server refuses leases nothing.
#[tokio::test]
async fn a_refused_result_leases_nothing() {
    let app = spawn_app().await;
    let (team, runner, first, second) = two_queued(&app).await;
    let lease = fast_lease(&runner).await;
    let mut bad = report(true);
    bad.logs[0].stream = "NOT A STREAM".into();
    expect_api_err(
        runner
            .result_with_logs(first.id, &lease.lease_token, &bad)
            .await,
        400,
        "invalid_request",
    );
    let wrong = runner
        .result_with_logs(first.id, "mtl_not_the_token", &report(true))
        .await;
    assert!(wrong.is_err(), "a wrong lease token is refused");
    assert_eq!(
        team.get_run(second.id).await.unwrap().run.status,
        RunStatus::Queued
    );
}

/// The run a result leases in its own transaction is delivered like any
/// lease: one whose declared secret is missing is failed there, naming it,
/// and the runner gets the run after it instead.
#[tokio::test]
async fn an_undeliverable_next_run_is_failed_and_the_one_after_it_comes() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    team.create_app("db", None).await.unwrap();
    let towerfile = "[app]\nname = \"db\"\nscript = \"main.py\"\nsecrets = [\"DB_PASSWORD\"]\n";
    let files = [
        Entry::File("Towerfile", towerfile.as_bytes()),
        Entry::File("main.py", b"print('never runs')\n"),
    ];
    upload(&team, "db", targz(&files), None, None)
        .await
        .unwrap();
    let runner = app.runner("runner-1", None).await;
    let first = queue_run(&team, "hello", None).await;
    let doomed = queue_run(&team, "db", None).await;
    let third = queue_run(&team, "hello", None).await;

    let ack = first_result_asking(&runner, &first).await;
    let next = ack.next.expect("the run after the undeliverable one");
    assert_eq!(next.run_id, third.id);
    assert!(next.started.is_some());

    let failed = team.get_run(doomed.id).await.unwrap();
    assert_eq!(failed.run.status, RunStatus::Failed);
    let why = failed.run.error_message.unwrap_or_default();
    assert!(why.contains("DB_PASSWORD"), "{why}");
    assert_eq!(
        team.get_run(third.id).await.unwrap().run.status,
        RunStatus::Running
    );
}
