//! Team-wide figures: per-status summary and the dashboard stats.

mod common;

use common::*;
use minitower_core::api::*;
use minitower_core::ResultStatus;
use reqwest::Method;
use std::time::Duration;

#[tokio::test]
async fn summary_and_stats() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    let summary = team.runs_summary().await.unwrap();
    let keys: Vec<&str> = summary.keys().map(String::as_str).collect();
    let mut want = vec![
        "queued",
        "leased",
        "running",
        "cancelling",
        "completed",
        "failed",
        "cancelled",
        "dead",
    ];
    want.sort();
    assert_eq!(keys, want);
    assert!(summary.values().all(|n| *n == 0));

    let runner = app.runner("r1", Some(4)).await;
    let done = queue_run(&team, "hello", None).await;
    let lease = lease_now(&runner).await;
    assert_eq!(lease.run_id, done.id);
    runner.start(done.id, &lease.lease_token).await.unwrap();
    app.advance(Duration::from_secs(2));
    runner
        .result(
            done.id,
            &lease.lease_token,
            &result_req(ResultStatus::Completed, Some(0)),
        )
        .await
        .unwrap();
    let running = queue_run(&team, "hello", None).await;
    let l2 = lease_now(&runner).await;
    runner.start(running.id, &l2.lease_token).await.unwrap();
    queue_run(&team, "hello", None).await;

    let summary = team.runs_summary().await.unwrap();
    assert_eq!(summary["completed"], 1);
    assert_eq!(summary["running"], 1);
    assert_eq!(summary["queued"], 1);
    assert_eq!(summary.values().sum::<i64>(), 3);

    let (status, body) = send_json(team.raw(Method::GET, "/api/v1/runs/stats?hours=24")).await;
    assert_eq!(status, 200, "{body}");
    let stats: RunStats = serde_json::from_value(body).unwrap();
    assert_eq!(stats.hours, 24);
    assert_eq!(stats.finished, 1);
    assert_eq!(stats.succeeded, 1);
    assert_eq!(stats.success_rate, Some(1.0));
    assert_eq!(stats.buckets.iter().map(|b| b.completed).sum::<i64>(), 1);
    assert!(!stats.buckets.is_empty() && stats.buckets.len() <= 25);
    let median = stats.median_duration_seconds.unwrap();
    assert!((1.5..=2.5).contains(&median), "{median}");
    for bad in ["hours=0", "hours=1000", "hours=x"] {
        let resp = team
            .raw(Method::GET, &format!("/api/v1/runs/stats?{bad}"))
            .send()
            .await
            .unwrap();
        envelope(resp, 400).await;
    }
}

#[tokio::test]
async fn stats_only_count_runs_inside_the_window() {
    let app = spawn_app().await;
    let l = leased_run(&app).await;
    l.runner
        .result(
            l.run.id,
            &l.lease.lease_token,
            &result_req(ResultStatus::Failed, Some(1)),
        )
        .await
        .unwrap();
    let now = l.team.run_stats(1).await.unwrap();
    assert_eq!((now.finished, now.succeeded), (1, 0));
    assert_eq!(now.success_rate, Some(0.0));
    assert_eq!(now.buckets.iter().map(|b| b.failed).sum::<i64>(), 1);
    app.advance(Duration::from_secs(2 * 3600));
    let later = l.team.run_stats(1).await.unwrap();
    assert_eq!(later.finished, 0);
    assert_eq!(later.success_rate, None);
    assert!(later.buckets.iter().all(|b| b.failed == 0));
    assert_eq!(l.team.run_stats(24).await.unwrap().finished, 1);
    // Another team sees none of it.
    let other = app.team("globex").await;
    assert_eq!(other.run_stats(24).await.unwrap().finished, 0);
}
