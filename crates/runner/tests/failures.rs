//! Timeouts, cancellation, corrupt artifacts and self-fencing.

mod common;

use common::{process_gone, wait_for, Harness, Proxy, RunnerHandle};
use minitower_core::{AttemptStatus, RunStatus};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn timeout_kills_a_sleeping_script() {
    let h = Harness::start().await;
    let script = "import time\nprint('sleeping', flush=True)\ntime.sleep(600)\n";
    h.deploy("sleepy", &[("main.py", script)], "main.py", Some(1))
        .await;
    let runner = RunnerHandle::spawn(h.runner_config("r1"));
    let id = h.trigger("sleepy", json!({})).await;
    let done = h.finished(id).await;
    assert_eq!(done.run.status, RunStatus::Failed);
    assert_eq!(
        done.run.error_message.as_deref(),
        Some("timed out after 1 s")
    );
    assert!(h.logs(id).await.iter().any(|l| l.line == "sleeping"));
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_kills_a_script_that_ignores_sigterm_and_its_children() {
    let h = Harness::start().await;
    let script = r#"import signal, subprocess, time
signal.signal(signal.SIGTERM, lambda *a: print("ignoring SIGTERM", flush=True))
child = subprocess.Popen(["sleep", "600"])
print(f"child {child.pid}", flush=True)
while True:
    time.sleep(0.05)
"#;
    h.deploy("stubborn", &[("main.py", script)], "main.py", None)
        .await;
    let runner = RunnerHandle::spawn(h.runner_config("r1"));
    let id = h.trigger("stubborn", json!({})).await;
    let line = h.wait_log(id, |l| l.line.starts_with("child ")).await;
    let child: i32 = line.line["child ".len()..].parse().unwrap();
    assert!(!process_gone(child));
    h.team.cancel_run(id).await.unwrap();
    let done = h.finished(id).await;
    assert_eq!(done.run.status, RunStatus::Cancelled, "{:?}", done.run);
    assert_eq!(done.attempts[0].status, AttemptStatus::Cancelled);
    // SIGTERM came first (and was ignored), SIGKILL after the grace period.
    assert!(h
        .logs(id)
        .await
        .iter()
        .any(|l| l.line == "ignoring SIGTERM"));
    wait_for("child process to die", || async {
        process_gone(child).then_some(())
    })
    .await;
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn checksum_mismatch_fails_the_run() {
    let h = Harness::start().await;
    let v = h
        .deploy(
            "corrupt",
            &[("main.py", "print('never')\n")],
            "main.py",
            None,
        )
        .await;
    let sha = &v.artifact_sha256;
    let object = h.objects_dir.join("sha256").join(&sha[..2]).join(sha);
    assert!(
        object.exists(),
        "object layout changed: {}",
        object.display()
    );
    std::fs::write(
        &object,
        common::targz(&[("main.py", "print('tampered')\n")]),
    )
    .unwrap();
    let runner = RunnerHandle::spawn(h.runner_config("r1"));
    let id = h.trigger("corrupt", json!({})).await;
    let done = h.finished(id).await;
    assert_eq!(done.run.status, RunStatus::Failed);
    let msg = done.run.error_message.unwrap_or_default();
    assert!(
        msg.contains("checksum mismatch") && msg.contains(sha.as_str()),
        "{msg}"
    );
    assert!(!h.logs(id).await.iter().any(|l| l.line.contains("tampered")));
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partitioned_runner_fences_itself_and_stops_reporting() {
    let h = Harness::start_with(|c| c.lease_ttl = Duration::from_secs(3)).await;
    let script = "import os, time\nprint(f'pid {os.getpid()}', flush=True)\ntime.sleep(600)\n";
    h.deploy("stale", &[("main.py", script)], "main.py", None)
        .await;
    h.deploy("quick", &[("main.py", "print('quick')\n")], "main.py", None)
        .await;
    let addr = h.url.trim_start_matches("http://").to_string();
    let proxy = Proxy::start(&addr).await;
    let runner = RunnerHandle::spawn(h.runner_config_for(&proxy.url, "r1"));
    let id = h.trigger_with("stale", json!({}), Some(0)).await;
    let line = h.wait_log(id, |l| l.line.starts_with("pid ")).await;
    let pid: i32 = line.line[4..].parse().unwrap();

    proxy.partition(true);
    wait_for("the fenced script to be killed", || async {
        process_gone(pid).then_some(())
    })
    .await;
    let done = h.finished(id).await;
    assert_eq!(done.run.status, RunStatus::Dead);
    proxy.partition(false);

    // The runner is back at work: a new run goes through the same runner...
    let next = h.trigger("quick", json!({})).await;
    assert_eq!(h.finished(next).await.run.status, RunStatus::Completed);
    // ...and it never reported anything for the fenced attempt.
    let after = h.team.get_run(id).await.unwrap();
    assert_eq!(after.run.status, RunStatus::Dead);
    assert_eq!(after.attempts.len(), 1);
    assert_eq!(after.attempts[0].status, AttemptStatus::Expired);
    assert!(after.run.exit_code.is_none());
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn registration_retries_until_the_control_plane_answers() {
    let h = Harness::start().await;
    h.deploy("hello", &[("main.py", "print('hi')\n")], "main.py", None)
        .await;
    let addr = h.url.trim_start_matches("http://").to_string();
    let proxy = Proxy::start(&addr).await;
    proxy.partition(true);
    let runner = RunnerHandle::spawn(h.runner_config_for(&proxy.url, "r1"));
    let id = h.trigger("hello", json!({})).await;
    wait_for("registration attempts to be refused", || async {
        (proxy.refused() >= 3).then_some(())
    })
    .await;
    assert!(
        !runner.task.is_finished(),
        "the runner gave up while the control plane was unreachable"
    );
    proxy.partition(false);
    assert_eq!(h.finished(id).await.run.status, RunStatus::Completed);
    runner.stop().await;
}
