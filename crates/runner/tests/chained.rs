//! A runner whose queue has work takes each next run with the previous
//! run's result (`lease_next`) instead of a lease call of its own, and the
//! runs it takes that way run as any other.

mod common;

use common::{Harness, RunnerHandle, DEADLINE};
use minitower_core::RunStatus;
use serde_json::json;

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
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while common::route_calls(&h.url, "POST", "/api/v1/runs/{run}/result").await < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "results not counted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
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
