//! Lease expiry and runner presence, driven by the manual clock.

mod common;

use common::*;
use minitower_core::api::*;
use minitower_core::{AttemptStatus, ResultStatus, RunStatus};
use std::time::Duration;

fn past_ttl(app: &TestApp) -> Duration {
    app.lease_ttl() + Duration::from_secs(1)
}

#[tokio::test]
async fn expiry_requeues_then_kills() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    let runner = app.runner("r1", None).await;
    let (run, _) = team
        .create_run(
            "hello",
            &CreateRunRequest {
                max_retries: Some(1),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();

    let l1 = lease_now(&runner).await;
    runner.start(run.id, &l1.lease_token).await.unwrap();
    // Not yet expired: nothing happens.
    app.advance(app.lease_ttl() - Duration::from_secs(1));
    assert_eq!(app.reap().await.retried, 0);
    assert_eq!(
        team.get_run(run.id).await.unwrap().run.status,
        RunStatus::Running
    );

    app.advance(Duration::from_secs(2));
    let report = app.reap().await;
    assert_eq!(report.retried, 1);
    let d = team.get_run(run.id).await.unwrap();
    assert_eq!(d.run.status, RunStatus::Queued);
    assert_eq!(d.run.retry_count, 1);
    assert_eq!(d.attempts[0].status, AttemptStatus::Expired);
    // A second pass does not expire it again.
    assert_eq!(app.reap().await, Default::default());

    let l2 = lease_started(&runner).await;
    assert_eq!((l2.run_id, l2.attempt_no), (run.id, 2));
    assert_ne!(l2.lease_token, l1.lease_token);
    // The old attempt's token is fenced off; the new one works.
    expect_api_err(
        runner.heartbeat(run.id, &l1.lease_token).await,
        410,
        "lease_gone",
    );
    runner.heartbeat(run.id, &l2.lease_token).await.unwrap();

    app.advance(past_ttl(&app));
    let report = app.reap().await;
    assert_eq!((report.retried, report.dead), (0, 1));
    let d = team.get_run(run.id).await.unwrap();
    assert_eq!(d.run.status, RunStatus::Dead);
    assert_eq!(d.run.retry_count, 1);
    assert!(d.run.finished_at.is_some());
    assert_eq!(d.attempts.len(), 2);
    assert!(d
        .attempts
        .iter()
        .all(|a| a.status == AttemptStatus::Expired));
    assert!(runner.lease(Duration::ZERO).await.unwrap().is_none());
    // The slot of the runner was released by the expiries.
    assert_eq!(team.list_runners().await.unwrap()[0].active_runs, 0);
}

#[tokio::test]
async fn default_retries_allow_three_attempts() {
    let app = spawn_app().await;
    let l = leased_run(&app).await;
    l.runner
        .start(l.run.id, &l.lease.lease_token)
        .await
        .unwrap();
    for attempt in 2..=3 {
        app.advance(past_ttl(&app));
        app.reap().await;
        let next = lease_started(&l.runner).await;
        assert_eq!(next.attempt_no, attempt);
    }
    app.advance(past_ttl(&app));
    assert_eq!(app.reap().await.dead, 1);
    let r = l.team.get_run(l.run.id).await.unwrap().run;
    assert_eq!((r.status, r.retry_count), (RunStatus::Dead, 2));
}

#[tokio::test]
async fn expiry_of_a_cancelling_run_cancels_it() {
    let app = spawn_app().await;
    let l = leased_run(&app).await;
    l.runner
        .start(l.run.id, &l.lease.lease_token)
        .await
        .unwrap();
    assert_eq!(
        l.team.cancel_run(l.run.id).await.unwrap().status,
        RunStatus::Cancelling
    );
    app.advance(past_ttl(&app));
    assert_eq!(app.reap().await.cancelled, 1);
    let r = l.team.get_run(l.run.id).await.unwrap().run;
    assert_eq!(r.status, RunStatus::Cancelled);
    assert_eq!(r.retry_count, 0);
    assert!(l.runner.lease(Duration::ZERO).await.unwrap().is_none());
}

#[tokio::test]
async fn late_calls_after_expiry_are_gone() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    let runner = app.runner("r1", None).await;
    let (run, _) = team
        .create_run(
            "hello",
            &CreateRunRequest {
                max_retries: Some(0),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let l = lease_now(&runner).await;
    runner.start(run.id, &l.lease_token).await.unwrap();
    runner
        .send_logs(run.id, &l.lease_token, vec![line(1, "before")])
        .await
        .unwrap();
    app.advance(past_ttl(&app));
    app.reap().await;
    let dead = team.get_run(run.id).await.unwrap();
    assert_eq!(dead.run.status, RunStatus::Dead);

    let t = &l.lease_token;
    expect_api_err(runner.heartbeat(run.id, t).await, 410, "lease_gone");
    expect_api_err(
        runner
            .result(run.id, t, &result_req(ResultStatus::Completed, Some(0)))
            .await,
        410,
        "lease_gone",
    );
    expect_api_err(runner.start(run.id, t).await, 410, "lease_gone");
    expect_api_err(
        runner.send_logs(run.id, t, vec![line(2, "after")]).await,
        410,
        "lease_gone",
    );
    expect_api_err(runner.artifact(run.id, t).await, 410, "lease_gone");
    let after = team.get_run(run.id).await.unwrap();
    assert_eq!(after.run, dead.run, "the run was not resurrected");
    assert_eq!(after.attempts, dead.attempts);
    assert_eq!(team.logs(run.id, 0).await.unwrap().len(), 1);
}

#[tokio::test]
async fn late_result_after_requeue_does_not_touch_the_retry() {
    let app = spawn_app().await;
    let l = leased_run(&app).await;
    l.runner
        .start(l.run.id, &l.lease.lease_token)
        .await
        .unwrap();
    app.advance(past_ttl(&app));
    app.reap().await;
    expect_api_err(
        l.runner
            .result(
                l.run.id,
                &l.lease.lease_token,
                &result_req(ResultStatus::Completed, Some(0)),
            )
            .await,
        410,
        "lease_gone",
    );
    let r = l.team.get_run(l.run.id).await.unwrap().run;
    assert_eq!((r.status, r.retry_count), (RunStatus::Queued, 1));
    assert_eq!(lease_now(&l.runner).await.attempt_no, 2);
}

#[tokio::test]
async fn silent_runner_goes_offline() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    let quiet = app.runner("quiet", None).await;
    let _ = quiet;
    let chatty = app.runner("chatty", None).await;
    let status = |runners: &[RunnerInfo], name: &str| {
        runners.iter().find(|r| r.name == name).unwrap().status
    };
    let runners = team.list_runners().await.unwrap();
    assert_eq!(status(&runners, "quiet"), RunnerStatus::Online);

    // Two TTLs of silence: still online.
    app.advance(app.lease_ttl() * 2);
    chatty.lease(Duration::ZERO).await.unwrap();
    app.reap().await;
    let runners = team.list_runners().await.unwrap();
    assert_eq!(status(&runners, "quiet"), RunnerStatus::Online);

    // Past three TTLs: offline, while the one that kept polling stays online.
    app.advance(app.lease_ttl() + Duration::from_secs(1));
    let report = app.reap().await;
    assert_eq!(report.runners_offline, 1);
    let runners = team.list_runners().await.unwrap();
    assert_eq!(status(&runners, "quiet"), RunnerStatus::Offline);
    assert_eq!(status(&runners, "chatty"), RunnerStatus::Online);
    let metrics = app
        .anon
        .raw(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("minitower_runners_online{")
                && l.contains("environment=\"default\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );

    // Polling again brings it back.
    quiet.lease(Duration::ZERO).await.unwrap();
    let runners = team.list_runners().await.unwrap();
    assert_eq!(status(&runners, "quiet"), RunnerStatus::Online);
}
