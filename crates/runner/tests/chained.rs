//! A runner whose queue has work takes each next run with the previous
//! run's result (`lease_next`) instead of a lease call of its own, and the
//! runs it takes that way run as any other.

mod common;

use common::{Harness, RunnerHandle, DEADLINE};
use minitower_core::RunStatus;
use serde_json::json;

/// `minitower_http_requests_total` for `POST path`, summed over statuses.
async fn posts(h: &Harness, path: &str) -> u64 {
    let text = reqwest::get(format!("{}/metrics", h.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("minitower_http_requests_total{"))
        .filter(|l| l.contains(&format!("path=\"{path}\"")) && l.contains("method=\"POST\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

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
    while posts(&h, "/api/v1/runs/{run}/result").await < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "results not counted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let leases = posts(&h, "/api/v1/runs/lease").await;
    assert!(
        leases <= 2,
        "{leases} lease calls for 5 queued runs: the results did not lease the next"
    );
    runner.stop().await;
}
