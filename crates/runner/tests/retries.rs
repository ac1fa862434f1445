//! Failure retries end to end: a real control plane, a real runner and real
//! Python scripts. The Towerfile's `retries` / `retry_delay` become the
//! version's defaults; a run may bring its own.

mod common;

use common::{wait_for, Harness, RunnerHandle};
use minitower_core::api::{CreateRunRequest, RetryDelaySpec};
use minitower_core::retry::{base_delay, failure_retry_delay};
use minitower_core::{AttemptStatus, RunStatus};
use serde_json::json;
use std::time::Duration;

/// Fails until its counter file (named by the input) reaches `succeed_at`.
const FLAKY: &str = r#"
import json, os, sys
inp = json.load(open(os.environ["MINITOWER_INPUT_FILE"]))
path = inp["counter"]
n = int(open(path).read()) if os.path.exists(path) else 0
n += 1
open(path, "w").write(str(n))
print(f"attempt {n} of run {os.environ['MINITOWER_RUN_ID']}", flush=True)
sys.exit(0 if n >= inp.get("succeed_at", 3) else 1)
"#;

const TOWERFILE: &str =
    "[app]\nname = \"flaky\"\nscript = \"main.py\"\nretries = 3\nretry_delay = \"300ms\"\n";

async fn deploy_flaky(h: &Harness) {
    let v = h
        .deploy(
            "flaky",
            &[("main.py", FLAKY), ("Towerfile", TOWERFILE)],
            "main.py",
            None,
        )
        .await;
    assert_eq!((v.retries, v.retry_delay_ms), (3, 300));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_script_that_fails_twice_then_succeeds_completes_on_attempt_three() {
    let h = Harness::start().await;
    deploy_flaky(&h).await;
    let runner = RunnerHandle::spawn(h.runner_config("r1"));
    let counter = h.dir.path().join("counter-a");
    let id = h
        .trigger("flaky", json!({ "counter": counter.to_str().unwrap() }))
        .await;
    let done = h.finished(id).await;
    assert_eq!(done.run.status, RunStatus::Completed);
    assert_eq!(
        (done.run.failure_retries, done.run.failure_retry_count),
        (3, 2)
    );
    assert_eq!(std::fs::read_to_string(&counter).unwrap(), "3");
    let attempts: Vec<_> = done
        .attempts
        .iter()
        .map(|a| (a.attempt_no, a.status, a.exit_code))
        .collect();
    assert_eq!(
        attempts,
        vec![
            (1, AttemptStatus::Failed, Some(1)),
            (2, AttemptStatus::Failed, Some(1)),
            (3, AttemptStatus::Completed, Some(0)),
        ]
    );
    // Each retry waited at least its backoff delay (within [3/4, 1] of
    // 300 ms, 600 ms), measured from the attempts' own timestamps.
    let first = Duration::from_millis(300);
    for retry in 1..=2u32 {
        let ended = done.attempts[retry as usize - 1].finished_at.unwrap();
        let next = done.attempts[retry as usize].started_at;
        let waited = (next - ended).to_std().unwrap();
        let delay = failure_retry_delay(first, retry, id);
        assert!(delay >= base_delay(first, retry) * 3 / 4);
        // times are stored in whole milliseconds
        let delay = Duration::from_millis(delay.as_millis() as u64);
        assert!(
            waited >= delay,
            "retry {retry}: waited {waited:?} < {delay:?}"
        );
    }
    // Every attempt's output is in the log, in order.
    let lines: Vec<String> = h
        .logs(id)
        .await
        .into_iter()
        .filter(|l| l.stream == "stdout")
        .map(|l| l.line)
        .collect();
    assert_eq!(
        lines,
        (1..=3)
            .map(|n| format!("attempt {n} of run {id}"))
            .collect::<Vec<_>>()
    );
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_with_no_retries_fails_at_once() {
    let h = Harness::start().await;
    deploy_flaky(&h).await;
    let runner = RunnerHandle::spawn(h.runner_config("r1"));
    let counter = h.dir.path().join("counter-b");
    let req = CreateRunRequest {
        input: Some(json!({ "counter": counter.to_str().unwrap() })),
        retries: Some(0),
        ..Default::default()
    };
    let run = h.team.create_run("flaky", &req, None).await.unwrap().0;
    assert_eq!(run.failure_retries, 0);
    let done = h.finished(run.id).await;
    assert_eq!(
        (done.run.status, done.run.exit_code, done.attempts.len()),
        (RunStatus::Failed, Some(1), 1)
    );
    assert_eq!(done.run.failure_retry_count, 0);
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_during_the_retry_delay_ends_the_run_with_no_new_attempt() {
    let h = Harness::start().await;
    deploy_flaky(&h).await;
    let runner = RunnerHandle::spawn(h.runner_config("r1"));
    let counter = h.dir.path().join("counter-c");
    let req = CreateRunRequest {
        input: Some(json!({ "counter": counter.to_str().unwrap() })),
        retries: Some(2),
        retry_delay: Some(RetryDelaySpec::Text("2s".into())),
        ..Default::default()
    };
    let id = h.team.create_run("flaky", &req, None).await.unwrap().0.id;
    // The first attempt fails: the run waits for its retry.
    let waiting = wait_for("the failure retry", || async {
        let d = h.team.get_run(id).await.ok()?;
        (d.run.status == RunStatus::Queued && d.run.failure_retry_count == 1).then_some(d)
    })
    .await;
    let not_before = waiting.run.not_before.expect("a not-before time");
    assert_eq!(waiting.attempts.len(), 1);
    let cancelled = h.team.cancel_run(id).await.unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    // Past its not-before time, a run queued after it goes first and
    // finishes: the cancelled run was never leased again.
    wait_for("the retry time to pass", || async {
        (chrono::Utc::now() > not_before).then_some(())
    })
    .await;
    let marker = h.dir.path().join("counter-marker");
    let req = CreateRunRequest {
        input: Some(json!({ "counter": marker.to_str().unwrap(), "succeed_at": 1 })),
        ..Default::default()
    };
    let after = h.team.create_run("flaky", &req, None).await.unwrap().0.id;
    assert_eq!(h.finished(after).await.run.status, RunStatus::Completed);
    let d = h.team.get_run(id).await.unwrap();
    assert_eq!((d.run.status, d.attempts.len()), (RunStatus::Cancelled, 1));
    assert_eq!(std::fs::read_to_string(&counter).unwrap(), "1");
    runner.stop().await;
}
