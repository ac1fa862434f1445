//! `latency`: hello-world runs one after another through one real runner,
//! each timed from the trigger request to the `end` event of its SSE log
//! stream, as a client sees it.

use crate::report::{Goal, Metric, ScenarioReport};
use crate::stack::{expect_completed, trigger_and_follow, Stack};
use crate::stats::Samples;
use crate::{artifacts, procs, Options};
use anyhow::{bail, Result};
use minitower_client::Client;
use std::time::Instant;

/// The scenario.
pub async fn run(opts: &Options) -> Result<ScenarioReport> {
    let mut stack = Stack::start(opts, "latency").await?;
    let result = measure(opts, &mut stack).await;
    stack.stop().await;
    result
}

async fn measure(opts: &Options, stack: &mut Stack) -> Result<ScenarioReport> {
    stack
        .deploy("hello", artifacts::hello()?, "main.py")
        .await?;
    stack.add_runner("latency-runner", 1).await?;
    let input = serde_json::json!({"name": "bench"});

    // Warm-up: the first run downloads the artifact and is forked by the
    // fork server the runner started at boot.
    let first = trigger_and_follow(&stack.admin, "hello", input.clone()).await?;
    expect_completed(&first)?;
    if !first.lines.iter().any(|l| l.line == "Hello, bench!") {
        bail!(
            "the hello run did not print its greeting: {:?}",
            first.lines
        );
    }

    eprintln!(
        "[latency] measuring {} runs (load average {})",
        opts.latency_runs,
        procs::load_average()
    );
    let mut samples = Samples::new();
    let mut creates = Samples::new();
    let mut ids = Vec::new();
    let mut walls = Vec::new();
    let mut log_to_end = Samples::new();
    let snap0 = stack.snapshot()?;
    let t0 = Instant::now();
    for _ in 0..opts.latency_runs {
        let f = trigger_and_follow(&stack.admin, "hello", input.clone()).await?;
        expect_completed(&f)?;
        samples.push(f.elapsed);
        creates.push(f.create);
        ids.push(f.run_id);
        walls.push((f.sent_at, f.ended_at));
        if let Some(l) = f.last_log {
            log_to_end.push(f.elapsed.saturating_sub(l));
        }
    }
    let wall = t0.elapsed();
    let cost = snap0.cost(&stack.snapshot()?, opts.latency_runs);
    let phases = phases(&stack.admin, &ids, &walls).await?;

    let s = samples.summary();
    let mut r = ScenarioReport::new("latency");
    r.metric(
        Metric::new(
            format!("total of {} runs", s.n),
            wall.as_secs_f64() * 1000.0,
            "ms",
        )
        // the issue's: 40 runs in 0.4 s
        .goal(Goal::below(10.0 * s.n as f64)),
    );
    r.metric(Metric::new("p50", s.p50_ms, "ms").goal(Goal::below(8.0)));
    r.metric(Metric::new("p90", s.p90_ms, "ms"));
    r.metric(Metric::new("max", s.max_ms, "ms"));
    r.metric(Metric::new(
        "first run (warm-up, excluded)",
        first.elapsed.as_secs_f64() * 1000.0,
        "ms",
    ));
    cost.report(&mut r);
    r.note(format!(
        "trigger (POST /apps/hello/runs) → SSE log stream (GET .../logs/stream) ends with `end`; \
         one real runner, concurrency 1, fork server on (default); RUST_LOG server={} runner={}",
        opts.server_log, opts.runner_log
    ));
    r.note(format!(
        "phases p50 from the server's timestamps (ms resolution, same clock as the bench): trigger→queued {:.0} ms, \
         queued→started {:.0} ms, started→finished {:.0} ms, finished→`end` at the client {:.0} ms; create call p50 {:.2} ms",
        phases.2.summary().p50_ms,
        phases.0.summary().p50_ms,
        phases.1.summary().p50_ms,
        phases.3.summary().p50_ms,
        creates.summary().p50_ms
    ));
    r.detail("runs", s);
    r.detail("wall_ms", wall.as_secs_f64() * 1000.0);
    r.detail("samples_ms", samples.values());
    r.detail("create_call", creates.summary());
    r.detail("queued_to_started", phases.0.summary());
    r.detail("started_to_finished", phases.1.summary());
    r.detail("trigger_to_queued", phases.2.summary());
    r.detail("finished_to_client_end", phases.3.summary());
    r.detail("last_log_event_to_end_event", log_to_end.summary());
    r.detail("first_run_ms", first.elapsed.as_secs_f64() * 1000.0);
    Ok(r)
}

type Wall = chrono::DateTime<chrono::Utc>;

/// Queued→started, started→finished, trigger→queued and finished→end seen
/// by the client, per run, from the server's timestamps and the bench's clock.
pub async fn phases(
    admin: &Client,
    ids: &[i64],
    walls: &[(Wall, Wall)],
) -> Result<(Samples, Samples, Samples, Samples)> {
    let mut q2s = Samples::new();
    let mut s2f = Samples::new();
    let mut t2q = Samples::new();
    let mut f2e = Samples::new();
    let ms = |d: chrono::TimeDelta| d.num_microseconds().unwrap_or(0) as f64 / 1000.0;
    for (id, (sent, ended)) in ids.iter().zip(walls) {
        let d = admin.get_run(*id).await?;
        t2q.push_ms(ms(d.run.queued_at - *sent));
        if let (Some(st), Some(fin)) = (d.run.started_at, d.run.finished_at) {
            q2s.push_ms(ms(st - d.run.queued_at));
            s2f.push_ms(ms(fin - st));
            f2e.push_ms(ms(*ended - fin));
        }
    }
    Ok((q2s, s2f, t2q, f2e))
}
