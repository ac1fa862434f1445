//! A result's `source_commit` (the commit a git source resolved to) lands
//! on the attempt, on the fast path and the classic one; a malformed one is
//! a 400 that stores nothing.

mod common;

use common::*;
use minitower_core::api::*;
use minitower_core::{ResultStatus, RunStatus};
use std::time::Duration;

fn report(commit: Option<&str>, logs: Vec<NewLogLine>) -> ResultReport {
    let mut r = ResultReport::new(&result_req(ResultStatus::Completed, Some(0)), logs);
    r.source_commit = commit.map(str::to_string);
    r
}

#[tokio::test]
async fn the_commit_is_recorded_with_the_result_on_both_paths() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    let runner = app.runner("runner-1", None).await;
    let sha1 = "0123456789abcdef0123456789abcdef01234567";
    let sha256 = "ab".repeat(32);

    // Fast path: the lease started the attempt, the result carries lines.
    let fast = queue_run(&team, "hello", None).await;
    let lease = runner
        .lease_and_start(Duration::ZERO)
        .await
        .unwrap()
        .expect("a lease");
    let r = report(Some(sha1), vec![line(1, "built")]);
    runner
        .result_with_logs(fast.id, &lease.lease_token, &r)
        .await
        .unwrap();
    // A repeat (the answer was lost) is harmless.
    runner
        .result_with_logs(fast.id, &lease.lease_token, &r)
        .await
        .unwrap();
    let d = team.get_run(fast.id).await.unwrap();
    assert_eq!(d.run.status, RunStatus::Completed);
    assert_eq!(d.attempts[0].source_commit.as_deref(), Some(sha1));

    // Classic path: lease, start, a result without lines.
    let classic = queue_run(&team, "hello", None).await;
    let lease = lease_now(&runner).await;
    runner.start(classic.id, &lease.lease_token).await.unwrap();
    runner
        .result_with_logs(
            classic.id,
            &lease.lease_token,
            &report(Some(&sha256), vec![]),
        )
        .await
        .unwrap();
    let d = team.get_run(classic.id).await.unwrap();
    assert_eq!(
        d.attempts[0].source_commit.as_deref(),
        Some(sha256.as_str())
    );

    // No commit: nothing recorded.
    let plain = queue_run(&team, "hello", None).await;
    let lease = lease_now(&runner).await;
    runner.start(plain.id, &lease.lease_token).await.unwrap();
    runner
        .result(
            plain.id,
            &lease.lease_token,
            &result_req(ResultStatus::Completed, Some(0)),
        )
        .await
        .unwrap();
    let d = team.get_run(plain.id).await.unwrap();
    assert_eq!(d.attempts[0].source_commit, None);
}

#[tokio::test]
async fn a_malformed_commit_is_a_400_that_stores_nothing() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    let runner = app.runner("runner-1", None).await;
    let run = queue_run(&team, "hello", None).await;
    let lease = runner
        .lease_and_start(Duration::ZERO)
        .await
        .unwrap()
        .expect("a lease");
    let upper = "AB".repeat(20);
    let long = "a".repeat(41);
    for bad in ["abc1234", upper.as_str(), long.as_str(), "v1.0", ""] {
        let e = runner
            .result_with_logs(
                run.id,
                &lease.lease_token,
                &report(Some(bad), vec![line(1, "x")]),
            )
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(400), "{bad:?}: {e}");
        assert!(e.to_string().contains("source_commit"), "{e}");
    }
    let d = team.get_run(run.id).await.unwrap();
    assert_eq!(d.run.status, RunStatus::Running, "the result was not taken");
    assert_eq!(d.attempts[0].source_commit, None);
    assert!(
        team.logs(run.id, 0).await.unwrap().is_empty(),
        "no line stored"
    );
}
