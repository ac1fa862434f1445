//! A runner whose queue has work takes each next run with the previous
//! run's result (`lease_next`) instead of a lease call of its own, and the
//! runs it takes that way run as any other.

mod common;

use common::{wait_for, Harness, Proxy, RunnerHandle};
use minitower_core::AttemptStatus;
use minitower_core::RunStatus;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn queued_runs_are_taken_with_the_previous_result() {
    let h = Harness::start().await;
    h.deploy(
        "hello",
        &[(
            "main.py",
            "import os\nprint('run', os.environ['MINITOWER_RUN_NO'])\n",
        )],
        "main.py",
        Some(60),
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(h.trigger("hello", json!({})).await);
    }
    let runner = RunnerHandle::spawn(h.runner_config("r1"));
    for (i, id) in ids.iter().enumerate() {
        let done = h.finished(*id).await;
        assert_eq!(done.run.status, RunStatus::Completed, "{:?}", done.run);
        assert_eq!(done.attempts.len(), 1);
        let logs = h.logs(*id).await;
        let want = format!("run {}", i + 1);
        assert!(logs.iter().any(|l| l.line == want), "{logs:?}");
    }
    // Counted when answered: the first lease, and the results; the lease
    // the runner long-polls with after the last result is still open, or
    // answered empty (204) by now.
    wait_for("the 5 results to be counted", || async {
        let results = common::route_calls(&h.url, "POST", "/api/v1/runs/{run}/result").await;
        (results >= 5).then_some(())
    })
    .await;
    let leases = common::route_calls(&h.url, "POST", "/api/v1/runs/lease").await;
    assert!(
        leases <= 2,
        "{leases} lease calls for 5 queued runs: the results did not lease the next"
    );
    runner.stop().await;
}

/// A draining runner finishes the run in hand, asks for no next one with
/// its result, and leaves the queue alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_draining_runner_takes_no_next_run_with_its_result() {
    let h = Harness::start().await;
    let script = "import time\nprint('working', flush=True)\ntime.sleep(1)\n";
    h.deploy("slow", &[("main.py", script)], "main.py", Some(60))
        .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(h.trigger("slow", json!({})).await);
    }
    let mut config = h.runner_config("r1");
    config.drain_timeout = std::time::Duration::from_secs(30);
    let runner = RunnerHandle::spawn(config);
    h.wait_log(ids[0], |l| l.line == "working").await;
    runner.drain.cancel();
    runner.task.await.unwrap().unwrap();
    let done = h.team.get_run(ids[0]).await.unwrap();
    assert_eq!(done.run.status, RunStatus::Completed, "{:?}", done.run);
    for id in &ids[1..] {
        let r = h.team.get_run(*id).await.unwrap();
        assert_eq!(r.run.status, RunStatus::Queued, "{:?}", r.run);
        assert!(r.attempts.is_empty(), "never leased: {:?}", r.attempts);
    }
}

/// The answer to a result that leased the next run is lost: the runner
/// retries the result (applied once), the run that answer carried never
/// runs on its first attempt, expires with its lease, and runs again; no
/// run is lost or run twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_answer_leaves_its_next_run_to_expire_and_run_again() {
    let h = Harness::start_with(|c| {
        c.lease_ttl = Duration::from_secs(3);
        c.expiry_check_interval = Duration::from_millis(200);
    })
    .await;
    let script = "import os\nprint('attempt', os.environ['MINITOWER_ATTEMPT_NO'])\n";
    h.deploy("hello", &[("main.py", script)], "main.py", Some(60))
        .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(h.trigger("hello", json!({})).await);
    }
    let addr = h.url.trim_start_matches("http://").to_string();
    let proxy = Proxy::start(&addr).await;
    proxy.lose_answer_to("/result HTTP/1.1");
    let runner = RunnerHandle::spawn(h.runner_config_for(&proxy.url, "r1"));
    let mut attempts = Vec::new();
    for id in &ids {
        let done = h.finished(*id).await;
        assert_eq!(done.run.status, RunStatus::Completed, "{:?}", done);
        attempts.push(done.attempts);
    }
    assert!(proxy.answer_lost(), "the first result's answer was lost");
    // The first run's result was applied once; the second run came with
    // the lost answer, started but never run: it expired, then ran.
    assert_eq!(attempts[0].len(), 1, "{:?}", attempts[0]);
    assert_eq!(attempts[1].len(), 2, "{:?}", attempts[1]);
    assert_eq!(attempts[1][0].status, AttemptStatus::Expired);
    assert_eq!(attempts[1][1].status, AttemptStatus::Completed);
    assert_eq!(attempts[2].len(), 1, "{:?}", attempts[2]);
    // Started with the lost answer, so its expiry spent a retry (the
    // server cannot tell it never ran), as a lost fast-path lease's does.
    let second = h.team.get_run(ids[1]).await.unwrap();
    assert_eq!(second.run.retry_count, 1);
    let lines: Vec<String> = h.logs(ids[1]).await.into_iter().map(|l| l.line).collect();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("attempt")).count(),
        1,
        "{lines:?}"
    );
    assert!(lines.contains(&"attempt 2".to_string()), "{lines:?}");
    runner.stop().await;
}
