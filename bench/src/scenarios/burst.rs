//! `burst`: many hello-world runs submitted at once to one real runner
//! (concurrency 2); wall time from the first trigger until every run is
//! terminal.

use crate::report::{Goal, Metric, ScenarioReport};
use crate::stack::{expect_completed, trigger_and_follow, Stack};
use crate::stats::Samples;
use crate::{artifacts, procs, Options};
use anyhow::{bail, Context, Result};
use minitower_client::RunQuery;
use minitower_core::api::CreateRunRequest;
use std::time::{Duration, Instant};

/// How often the run summary is read while waiting for the burst to end.
const POLL: Duration = Duration::from_millis(5);

/// The scenario.
pub async fn run(opts: &Options) -> Result<ScenarioReport> {
    let mut stack = Stack::start(opts, "burst").await?;
    let result = measure(opts, &mut stack).await;
    stack.stop().await;
    result
}

async fn measure(opts: &Options, stack: &mut Stack) -> Result<ScenarioReport> {
    stack
        .deploy("hello", artifacts::hello()?, "main.py")
        .await?;
    stack
        .add_runner("burst-runner", opts.burst_concurrency)
        .await?;
    let input = serde_json::json!({"name": "burst"});
    let warmup = 4;
    for _ in 0..warmup {
        expect_completed(&trigger_and_follow(&stack.admin, "hello", input.clone()).await?)?;
    }

    let n = opts.burst_runs;
    eprintln!(
        "[burst] submitting {n} runs at once (load average {})",
        procs::load_average()
    );
    let req = CreateRunRequest {
        input: Some(input),
        ..Default::default()
    };
    let snap0 = stack.snapshot()?;
    let t0 = Instant::now();
    let creates = (0..n).map(|_| stack.admin.create_run("hello", &req, None));
    let created = futures::future::try_join_all(creates)
        .await
        .context("submitting the burst")?;
    let submitted = t0.elapsed();
    let ids: Vec<i64> = created.iter().map(|(r, _)| r.id).collect();

    // Completion is observed through the trigger-maintained run counts:
    // one cheap request every few milliseconds.
    let target = (warmup + n) as i64;
    let limit = Duration::from_secs(120 + n as u64);
    let wall = loop {
        let s = stack.admin.runs_summary().await?;
        let terminal: i64 = ["completed", "failed", "cancelled", "dead"]
            .iter()
            .map(|k| s.get(*k).copied().unwrap_or(0))
            .sum();
        if terminal >= target {
            let wall = t0.elapsed();
            let completed = s.get("completed").copied().unwrap_or(0);
            if completed != target {
                bail!("not every burst run completed: {s:?}");
            }
            break wall;
        }
        if t0.elapsed() > limit {
            bail!("the burst did not finish within {limit:?}: {s:?}");
        }
        tokio::time::sleep(POLL).await;
    };

    let cost = snap0.cost(&stack.snapshot()?, n);
    // Per-run queue wait and execution, from the server's timestamps.
    let mut queue = Samples::new();
    let mut exec = Samples::new();
    let mut total = Samples::new();
    let runs = stack
        .admin
        .list_runs(&RunQuery {
            app: Some("hello".into()),
            limit: Some(500),
            ..Default::default()
        })
        .await?;
    for run in runs.iter().filter(|r| ids.contains(&r.id)) {
        if let (Some(st), Some(fin)) = (run.started_at, run.finished_at) {
            queue.push_ms((st - run.queued_at).num_milliseconds() as f64);
            exec.push_ms((fin - st).num_milliseconds() as f64);
            total.push_ms((fin - run.queued_at).num_milliseconds() as f64);
        }
    }

    let wall_s = wall.as_secs_f64();
    let mut r = ScenarioReport::new("burst");
    r.metric(Metric::new(
        format!("wall time, {n} runs"),
        wall_s * 1000.0,
        "ms",
    ));
    r.metric(Metric::new("throughput", n as f64 / wall_s, "runs/s").goal(Goal::at_least(250.0)));
    r.metric(Metric::new(
        "submit all (concurrent creates)",
        submitted.as_secs_f64() * 1000.0,
        "ms",
    ));
    r.metric(Metric::new(
        "started→finished p50",
        exec.summary().p50_ms,
        "ms",
    ));
    cost.report(&mut r);
    r.note(format!(
        "{n} creates sent concurrently, one real runner with concurrency {}; completion seen by polling \
         GET /runs/summary every {} ms (adds ≤ {} ms); {warmup} warm-up runs first",
        opts.burst_concurrency,
        POLL.as_millis(),
        POLL.as_millis()
    ));
    r.detail("wall_ms", wall_s * 1000.0);
    r.detail("submit_ms", submitted.as_secs_f64() * 1000.0);
    r.detail("queued_to_started", queue.summary());
    r.detail("started_to_finished", exec.summary());
    r.detail("queued_to_finished", total.summary());
    Ok(r)
}
