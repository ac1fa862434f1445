//! `deps`: an app whose `requirements.txt` names a wheel built by the bench
//! (shipped in the archive, no network). The first run builds the
//! environment; the next ones reuse it. Each is compared with hello-world
//! runs on the same runner.

use crate::report::{Goal, Metric, ScenarioReport};
use crate::stack::{expect_completed, server_span_ms, trigger_and_follow, Followed, Stack};
use crate::stats::Samples;
use crate::{artifacts, procs, Options};
use anyhow::{bail, Result};

/// Hello-world runs measured as the baseline.
const BASELINE_RUNS: usize = 10;

/// The scenario.
pub async fn run(opts: &Options) -> Result<ScenarioReport> {
    let mut stack = Stack::start(opts, "deps").await?;
    let result = measure(opts, &mut stack).await;
    stack.stop().await;
    result
}

fn check_deps_output(f: &Followed) -> Result<()> {
    expect_completed(f)?;
    if !f
        .lines
        .iter()
        .any(|l| l.line.starts_with("benchdep 42 from "))
    {
        bail!("the deps app did not import its dependency: {:?}", f.lines);
    }
    Ok(())
}

async fn measure(opts: &Options, stack: &mut Stack) -> Result<ScenarioReport> {
    stack
        .deploy("hello", artifacts::hello()?, "main.py")
        .await?;
    stack
        .deploy("withdeps", artifacts::with_deps()?, "main.py")
        .await?;
    stack.add_runner("deps-runner", 1).await?;
    let input = serde_json::json!({});
    for _ in 0..2 {
        expect_completed(&trigger_and_follow(&stack.admin, "hello", input.clone()).await?)?;
    }
    let mut hello = Samples::new();
    let mut hello_span = Samples::new();
    for _ in 0..BASELINE_RUNS {
        let f = trigger_and_follow(&stack.admin, "hello", input.clone()).await?;
        expect_completed(&f)?;
        hello.push(f.elapsed);
        hello_span.push_ms(server_span_ms(&stack.admin, f.run_id).await?);
    }
    let base = hello_span.summary().p50_ms;

    eprintln!(
        "[deps] first run builds the environment (load average {})",
        procs::load_average()
    );
    let first = trigger_and_follow(&stack.admin, "withdeps", input.clone()).await?;
    check_deps_output(&first)?;
    let first_client_ms = first.elapsed.as_secs_f64() * 1000.0;
    let first_ms = server_span_ms(&stack.admin, first.run_id).await?;
    let setup_lines: Vec<String> = first
        .lines
        .iter()
        .filter(|l| l.stream == "setup")
        .map(|l| l.line.clone())
        .collect();
    let installer = if setup_lines.iter().any(|l| l.contains("with uv")) {
        "uv"
    } else if setup_lines.iter().any(|l| l.contains("with pip")) {
        "pip"
    } else {
        "unknown"
    };

    let mut reused = Samples::new();
    let mut reused_client = Samples::new();
    let mut overheads = Samples::new();
    for _ in 0..opts.deps_reused {
        let f = trigger_and_follow(&stack.admin, "withdeps", input.clone()).await?;
        check_deps_output(&f)?;
        if !f
            .lines
            .iter()
            .any(|l| l.stream == "setup" && l.line.starts_with("using cached environment"))
        {
            bail!(
                "a later deps run did not reuse the environment: {:?}",
                f.lines
            );
        }
        let span = server_span_ms(&stack.admin, f.run_id).await?;
        reused.push_ms(span);
        reused_client.push(f.elapsed);
        overheads.push_ms(span - base);
    }
    let ov = overheads.summary();

    let mut r = ScenarioReport::new("deps");
    r.metric(Metric::new("hello-world queued→finished p50", base, "ms"));
    r.metric(Metric::new("first run (environment built)", first_ms, "ms"));
    r.metric(Metric::new(
        "first run overhead vs hello",
        first_ms - base,
        "ms",
    ));
    r.metric(Metric::new(
        format!("reused run queued→finished p50 ({} runs)", ov.n),
        reused.summary().p50_ms,
        "ms",
    ));
    r.metric(Metric::new("reused overhead vs hello p50", ov.p50_ms, "ms").goal(Goal::below(10.0)));
    r.metric(Metric::new("reused overhead vs hello max", ov.max_ms, "ms"));
    r.note(format!(
        "requirements.txt names ./wheels/{} inside the archive; installer: {installer}; \
         overhead = the run's queued→finished (server timestamps, ms resolution) minus the hello-world \
         p50 of {BASELINE_RUNS} runs on the same runner; this leaves out the client's SSE delivery, which \
         is the same for both; hello-world is forked by the fork server, an app with dependencies \
         starts its own; client-observed p50: hello {:.1} ms, reused deps {:.1} ms",
        artifacts::WHEEL_FILE,
        hello.summary().p50_ms,
        reused_client.summary().p50_ms
    ));
    r.detail("installer", installer);
    r.detail("hello_client", hello.summary());
    r.detail("hello_server_span", hello_span.summary());
    r.detail("first_ms", first_ms);
    r.detail("first_client_ms", first_client_ms);
    r.detail("reused_client", reused_client.summary());
    r.detail("first_setup_log", setup_lines);
    r.detail("reused", reused.summary());
    r.detail("reused_samples_ms", reused.values());
    r.detail("reused_overhead", ov);
    Ok(r)
}
