//! `memory`: peak RSS (VmHWM) of `minitowerd` idle and under the dispatch
//! load, and of an idle `minitower-runner`.

use crate::report::{Goal, Metric, ScenarioReport};
use crate::scenarios::dispatch;
use crate::stack::Stack;
use crate::{artifacts, procs, Options, Shared};
use anyhow::Result;
use std::time::Duration;

/// The scenario. The peak under load comes from `dispatch` when it ran
/// before in the same invocation, else from a shorter dispatch run here.
pub async fn run(opts: &Options, shared: &Shared) -> Result<ScenarioReport> {
    let mut stack = Stack::start(opts, "memory").await?;
    let result = measure(opts, &mut stack, shared).await;
    stack.stop().await;
    result
}

async fn measure(opts: &Options, stack: &mut Stack, shared: &Shared) -> Result<ScenarioReport> {
    let mut r = ScenarioReport::new("memory");
    stack.deploy("noop", artifacts::hello()?, "main.py").await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let server_idle = stack.server.proc.sample()?;

    let runner = stack.add_runner("memory-runner", 1).await?;
    let runner_pid = runner.proc.pid();
    // Let it settle: registration done, leasing long-poll waiting, the
    // fork server (a supervisor and its warm interpreter) started.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let runner_idle = procs::sample(runner_pid)?;
    // Every descendant: the fork server's interpreter is a grandchild.
    let mut tree = procs::children(runner_pid);
    let mut i = 0;
    while i < tree.len() {
        let more = procs::children(tree[i]);
        tree.extend(more);
        i += 1;
    }
    let kids: Vec<_> = tree
        .into_iter()
        .filter_map(|p| procs::sample(p).ok().map(|s| (p, s)))
        .collect();
    let kids_rss: f64 = kids.iter().map(|(_, s)| s.rss_mib).sum();

    let (peak, source) = match shared.dispatch_server_peak_mib {
        Some(p) => (
            p,
            format!("measured during `dispatch` ({} runs)", opts.dispatch_runs),
        ),
        None => {
            // Stop the real runner so it does not take the no-op runs.
            if let Some(real) = stack.runners.pop() {
                real.stop().await;
            }
            let n = opts.memory_dispatch_runs;
            eprintln!("[memory] short dispatch of {n} runs for the peak under load");
            let runners =
                dispatch::register_runners(&stack.server.url, opts.dispatch_runners, "mem").await?;
            procs::reset_peak(stack.server.proc.pid())?;
            dispatch::drive(
                std::slice::from_ref(&stack.admin),
                &runners,
                "noop",
                n,
                opts.dispatch_creators,
                opts.dispatch_inflight,
                opts.dispatch_protocol,
            )
            .await?;
            (
                stack.server.proc.sample()?.hwm_mib,
                format!("measured during a {n}-run dispatch in this scenario"),
            )
        }
    };

    r.metric(Metric::new("server idle RSS", server_idle.rss_mib, "MiB"));
    r.metric(Metric::new(
        "server idle peak (VmHWM)",
        server_idle.hwm_mib,
        "MiB",
    ));
    r.metric(
        Metric::new("server peak under dispatch (VmHWM)", peak, "MiB").goal(Goal::below(60.0)),
    );
    r.metric(Metric::new("runner idle RSS", runner_idle.rss_mib, "MiB"));
    r.metric(
        Metric::new("runner idle peak (VmHWM)", runner_idle.hwm_mib, "MiB").goal(Goal::below(20.0)),
    );
    r.metric(Metric::new(
        "runner's fork server: supervisor + warm Python (not in the runner's RSS)",
        kids_rss,
        "MiB",
    ));
    r.note(format!(
        "server peak under load {source}; idle figures after 1 s (server) and 2 s (runner) without work; \
         the runner's descendants (a fork server per slot: its supervisor and warm interpreter) are separate processes"
    ));
    r.detail("server_idle", server_idle);
    r.detail("runner_idle", runner_idle);
    r.detail(
        "runner_children",
        kids.iter()
            .map(|(p, s)| serde_json::json!({"pid": p, "rss_mib": s.rss_mib}))
            .collect::<Vec<_>>(),
    );
    r.detail("server_peak_under_load_mib", peak);
    if let Some(idle) = shared.dispatch_server_idle_mib {
        r.detail("dispatch_server_idle_mib", idle);
    }
    Ok(r)
}
