//! Several runners, concurrency, crash recovery, shutdown and latency.

mod common;

use common::{process_gone, wait_for, Harness, RunnerHandle};
use minitower_core::{AttemptStatus, RunStatus};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn two_runners_with_concurrency_two_run_twenty_runs_once_each() {
    let h = Harness::start().await;
    let script =
        "import time, os\ntime.sleep(0.05)\nprint('ran', os.environ['MINITOWER_RUN_ID'])\n";
    h.deploy("batch", &[("main.py", script)], "main.py", None)
        .await;
    let mut a = h.runner_config("a");
    a.concurrency = 2;
    let mut b = h.runner_config("b");
    b.concurrency = 2;
    let (ra, rb) = (RunnerHandle::spawn(a), RunnerHandle::spawn(b));
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(h.trigger("batch", json!({ "i": i })).await);
    }
    for id in &ids {
        let done = h.finished(*id).await;
        assert_eq!(done.run.status, RunStatus::Completed, "{:?}", done.run);
        assert_eq!(
            done.attempts.len(),
            1,
            "run {id} attempted more than once: {:?}",
            done.attempts
        );
        let logs = h.logs(*id).await;
        assert_eq!(
            logs.iter()
                .filter(|l| l.line == format!("ran {id}"))
                .count(),
            1
        );
    }
    ra.stop().await;
    rb.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_runner_binary_loses_its_run_to_another_runner() {
    let h = Harness::start_with(|c| c.lease_ttl = Duration::from_secs(3)).await;
    let script = r#"import os, time
print(f"pid {os.getpid()} attempt {os.environ['MINITOWER_ATTEMPT_NO']}", flush=True)
print("secret visible:", "MINITOWER_RUNNER_REGISTRATION_TOKEN" in os.environ, flush=True)
if os.environ["MINITOWER_ATTEMPT_NO"] == "1":
    time.sleep(600)
print("finished")
"#;
    h.deploy("crash", &[("main.py", script)], "main.py", None)
        .await;
    let data_dir = h.dir.path().join("binary-runner");
    let mut binary = std::process::Command::new(env!("CARGO_BIN_EXE_minitower-runner"))
        .env("MINITOWER_SERVER_URL", &h.url)
        .env("MINITOWER_RUNNER_NAME", "doomed")
        .env("MINITOWER_RUNNER_REGISTRATION_TOKEN", "reg")
        .env("MINITOWER_DATA_DIR", &data_dir)
        .env("MINITOWER_POLL_INTERVAL", "200ms")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let id = h.trigger("crash", json!({})).await;
    let line = h
        .wait_log(id, |l| {
            l.line.starts_with("pid ") && l.line.ends_with("attempt 1")
        })
        .await;
    let orphan: i32 = line.line.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(h
        .logs(id)
        .await
        .iter()
        .any(|l| l.line == "secret visible: False"));
    binary.kill().unwrap(); // SIGKILL
    binary.wait().unwrap();
    // The dead runner's supervisor takes the script along at once.
    wait_for("orphan to be gone", || async {
        process_gone(orphan).then_some(())
    })
    .await;

    let rescuer = RunnerHandle::spawn(h.runner_config("rescuer"));
    let done = h.finished(id).await;
    assert_eq!(done.run.status, RunStatus::Completed, "{:?}", done);
    assert_eq!(done.attempts.len(), 2);
    assert_eq!(done.attempts[0].status, AttemptStatus::Expired);
    assert_eq!(done.attempts[0].runner, "doomed");
    assert_eq!(done.attempts[1].status, AttemptStatus::Completed);
    assert_eq!(done.attempts[1].runner, "rescuer");
    let logs = h.logs(id).await;
    assert!(logs.iter().any(|l| l.line == "finished"));
    assert!(
        logs.windows(2).all(|w| w[0].seq < w[1].seq),
        "seqs continue across attempts"
    );
    rescuer.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_drains_then_hands_the_run_back() {
    let h = Harness::start().await;
    let script = "import os, time\nprint('working', flush=True)\nif os.environ['MINITOWER_ATTEMPT_NO'] == '1':\n    time.sleep(600)\n";
    h.deploy("long", &[("main.py", script)], "main.py", None)
        .await;
    let mut config = h.runner_config("r1");
    config.drain_timeout = Duration::from_millis(300);
    let runner = RunnerHandle::spawn(config);
    let id = h.trigger("long", json!({})).await;
    h.wait_log(id, |l| l.line == "working").await;
    runner.drain.cancel();
    // The drain timeout passes: the script is killed and the run handed
    // back without spending a retry.
    runner.task.await.unwrap().unwrap();
    let back = h.team.get_run(id).await.unwrap();
    assert_eq!(back.run.status, RunStatus::Queued, "{:?}", back);
    assert_eq!(back.run.retry_count, 0);
    assert_eq!(back.attempts[0].status, AttemptStatus::Expired);
    // No new leases after the signal.
    let queued = h.trigger("long", json!({})).await;
    let r = h.team.get_run(queued).await.unwrap();
    assert_eq!(r.run.status, RunStatus::Queued);
    // Another runner completes the handed-back run from the start.
    let other = RunnerHandle::spawn(h.runner_config("r2"));
    h.team.cancel_run(queued).await.unwrap();
    let done = h.finished(id).await;
    assert_eq!(done.run.status, RunStatus::Completed, "{:?}", done);
    assert_eq!(done.attempts.len(), 2);
    assert_eq!(done.attempts[1].runner, "r2");
    other.stop().await;
}

/// Prints trigger-to-completed latency of hello-world runs (server clock).
/// `cargo test -p minitower-runner --release --test scale -- --ignored --nocapture latency`
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn latency() {
    for prestart in [true, false] {
        let h = Harness::start().await;
        h.deploy(
            "hello",
            &[("main.py", "print('Hello, World!')\n")],
            "main.py",
            None,
        )
        .await;
        let mut config = h.runner_config("r1");
        config.prestart = prestart;
        let runner = RunnerHandle::spawn(config);
        let mut ms = Vec::new();
        for i in 0..60 {
            let id = h.trigger("hello", json!({})).await;
            let done = h.finished(id).await;
            assert_eq!(done.run.status, RunStatus::Completed);
            if i >= 10 {
                let d = done.run.finished_at.unwrap() - done.run.queued_at;
                ms.push(d.num_microseconds().unwrap() as f64 / 1000.0);
            }
        }
        ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "prestart={prestart}: trigger->completed over {} runs: p50 {:.1} ms, p90 {:.1} ms, min {:.1} ms",
            ms.len(),
            ms[ms.len() / 2],
            ms[ms.len() * 9 / 10],
            ms[0]
        );
        runner.stop().await;
    }
}
