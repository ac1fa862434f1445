//! `dispatch`: no-op runs through the full runner protocol over real HTTP
//! (create, lease, start, one log batch, result), driven by simulated
//! runners inside the bench process, on SQLite. Measures the control plane
//! alone: no Python, no runner process.

use crate::procs::{self, REGISTRATION_TOKEN};
use crate::report::{Goal, Metric, ScenarioReport};
use crate::stack::Stack;
use crate::stats::Samples;
use crate::{artifacts, Options, Shared};
use anyhow::{bail, Context, Result};
use minitower_client::Client;
use minitower_core::api::{
    CreateRunRequest, NewLogLine, RegisterRunnerRequest, ResultReport, ResultRequest,
};
use minitower_core::ResultStatus;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Which runner protocol the simulated runners speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// Lease that starts, result with the log line that also leases the
    /// next run: one call per run while the queue has work, as the real
    /// runner does.
    Chained,
    /// Lease that starts, result with the log line: two calls per run, as
    /// runners did before results leased the next run.
    Fast,
    /// Lease, start, logs, result: four calls per run, as runners before
    /// the fast path (and other clients of the original contract) do.
    Classic,
}

/// How long a simulated runner's lease long-polls when the queue is empty.
const LEASE_WAIT: Duration = Duration::from_millis(500);

/// Client-side latency of each protocol call.
#[derive(Debug, Default)]
pub struct Calls {
    pub create: Samples,
    pub lease: Samples,
    pub start: Samples,
    pub logs: Samples,
    pub result: Samples,
}

impl Calls {
    fn merge(&mut self, o: Calls) {
        self.create.extend(o.create);
        self.lease.extend(o.lease);
        self.start.extend(o.start);
        self.logs.extend(o.logs);
        self.result.extend(o.result);
    }
}

/// What one drive measured.
#[derive(Debug)]
pub struct Outcome {
    pub runs: usize,
    /// First create sent to last result acknowledged.
    pub wall: Duration,
    /// Create sent to result acknowledged, per run.
    pub end_to_end: Samples,
    pub calls: Calls,
    /// Leases that came back empty (queue momentarily drained).
    pub empty_leases: usize,
}

impl Outcome {
    /// Completed runs per second.
    pub fn rate(&self) -> f64 {
        self.runs as f64 / self.wall.as_secs_f64()
    }
}

/// Registers `n` runners (concurrency 1 each) and returns clients holding their tokens.
pub async fn register_runners(url: &str, n: usize, prefix: &str) -> Result<Vec<Client>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        // One connection pool per simulated runner, like separate processes.
        let c = Client::new(url, None)?;
        let reg = c
            .register_runner(
                REGISTRATION_TOKEN,
                &RegisterRunnerRequest {
                    name: format!("{prefix}-{i}"),
                    environment: None,
                    max_concurrency: Some(1),
                },
            )
            .await
            .context("registering a simulated runner")?;
        out.push(c.with_token(reg.token));
    }
    Ok(out)
}

#[derive(Default)]
struct Pair {
    created: Option<Instant>,
    done: Option<Instant>,
}

/// Both ends of a run's life are known once both sides reported; the runner
/// may finish before the creator has even read the create answer.
fn pair(
    map: &Mutex<HashMap<i64, Pair>>,
    e2e: &Mutex<Samples>,
    id: i64,
    created: Option<Instant>,
    done: Option<Instant>,
) {
    let mut m = map.lock().unwrap();
    let p = m.entry(id).or_default();
    if created.is_some() {
        p.created = created;
    }
    if done.is_some() {
        p.done = done;
    }
    if let (Some(c), Some(d)) = (p.created, p.done) {
        m.remove(&id);
        drop(m);
        e2e.lock().unwrap().push(d.duration_since(c));
    }
}

/// Pushes `runs` runs of `app` through the protocol: `creators` tasks create
/// runs (at most `inflight` created and not yet completed; creator `i` uses
/// `admins[i % admins.len()]`, one per replica), one task per runner client
/// leases, starts, sends one log line and reports success.
pub async fn drive(
    admins: &[Client],
    runners: &[Client],
    app: &str,
    runs: usize,
    creators: usize,
    inflight: usize,
    protocol: Protocol,
) -> Result<Outcome> {
    let sem = Arc::new(Semaphore::new(inflight.max(1)));
    let next = Arc::new(AtomicUsize::new(0));
    let completed = Arc::new(AtomicUsize::new(0));
    let map = Arc::new(Mutex::new(HashMap::<i64, Pair>::new()));
    let e2e = Arc::new(Mutex::new(Samples::with_capacity(runs)));
    let last_done = Arc::new(Mutex::new(None::<Instant>));
    let t0 = Instant::now();
    let mut set: JoinSet<Result<(Calls, usize)>> = JoinSet::new();

    for i in 0..creators.max(1) {
        let (admin, sem, next, map, e2e) = (
            admins[i % admins.len()].clone(),
            sem.clone(),
            next.clone(),
            map.clone(),
            e2e.clone(),
        );
        let app = app.to_string();
        set.spawn(async move {
            let mut calls = Calls::default();
            let req = CreateRunRequest::default();
            loop {
                sem.acquire().await?.forget();
                if next.fetch_add(1, Ordering::SeqCst) >= runs {
                    sem.add_permits(1);
                    break;
                }
                let t = Instant::now();
                let (run, _) = admin.create_run(&app, &req, None).await?;
                calls.create.push(t.elapsed());
                pair(&map, &e2e, run.id, Some(t), None);
            }
            Ok((calls, 0))
        });
    }

    for client in runners {
        let (client, sem, completed, map, e2e, last_done) = (
            client.clone(),
            sem.clone(),
            completed.clone(),
            map.clone(),
            e2e.clone(),
            last_done.clone(),
        );
        set.spawn(async move {
            let mut calls = Calls::default();
            let mut empty = 0;
            let result = ResultRequest {
                status: ResultStatus::Completed,
                exit_code: Some(0),
                error_message: None,
            };
            // A run leased with the previous result (`Chained`); while a
            // task holds one, that run is not completed yet, so the loop
            // goes on to it.
            let mut next = None;
            while completed.load(Ordering::SeqCst) < runs {
                let lease = match next.take() {
                    Some(l) => l,
                    None => {
                        let t = Instant::now();
                        let leased = match protocol {
                            Protocol::Chained | Protocol::Fast => {
                                client.lease_and_start(LEASE_WAIT).await?
                            }
                            Protocol::Classic => client.lease(LEASE_WAIT).await?,
                        };
                        let Some(lease) = leased else {
                            empty += 1;
                            continue;
                        };
                        calls.lease.push(t.elapsed());
                        lease
                    }
                };
                let id = lease.run_id;
                let tok = lease.lease_token.as_str();
                let line = NewLogLine {
                    seq: lease.last_log_seq + 1,
                    stream: "stdout".into(),
                    line: format!("no-op run {id}"),
                    logged_at: Some(chrono::Utc::now()),
                };

                let done = if lease.started.is_some() {
                    // The fast path: started with the lease, the line goes
                    // with the result (what the real runner does).
                    let t = Instant::now();
                    let report = ResultReport {
                        lease_next: protocol == Protocol::Chained,
                        ..ResultReport::new(&result, vec![line])
                    };
                    next = client
                        .result_with_logs(id, tok, &report)
                        .await?
                        .next
                        .map(|l| *l);
                    let done = Instant::now();
                    calls.result.push(done - t);
                    done
                } else {
                    let t = Instant::now();
                    client.start(id, tok).await?;
                    calls.start.push(t.elapsed());

                    let t = Instant::now();
                    client.send_logs(id, tok, vec![line]).await?;
                    calls.logs.push(t.elapsed());

                    let t = Instant::now();
                    client.result(id, tok, &result).await?;
                    let done = Instant::now();
                    calls.result.push(done - t);
                    done
                };

                pair(&map, &e2e, id, None, Some(done));
                *last_done.lock().unwrap() = Some(done);
                completed.fetch_add(1, Ordering::SeqCst);
                sem.add_permits(1);
            }
            Ok((calls, empty))
        });
    }

    let mut calls = Calls::default();
    let mut empty_leases = 0;
    let limit = Duration::from_secs(60 + runs as u64 / 20);
    let joined = tokio::time::timeout(limit, async {
        while let Some(res) = set.join_next().await {
            let (c, e) = res.context("a bench task panicked")??;
            calls.merge(c);
            empty_leases += e;
        }
        Ok::<_, anyhow::Error>(())
    })
    .await;
    match joined {
        Err(_) => bail!(
            "dispatch did not finish within {limit:?} ({} of {runs} completed)",
            completed.load(Ordering::SeqCst)
        ),
        Ok(r) => r?,
    }
    let wall = last_done
        .lock()
        .unwrap()
        .map(|d| d.duration_since(t0))
        .unwrap_or_default();
    let end_to_end = std::mem::take(&mut *e2e.lock().unwrap());
    if end_to_end.len() != runs {
        bail!(
            "{} of {runs} runs were seen both created and completed",
            end_to_end.len()
        );
    }
    Ok(Outcome {
        runs,
        wall,
        end_to_end,
        calls,
        empty_leases,
    })
}

/// The scenario: a fresh server, warm-up, then the measured drive.
pub async fn run(opts: &Options, shared: &mut Shared) -> Result<ScenarioReport> {
    let stack = Stack::start(opts, "dispatch").await?;
    let result = measure(opts, &stack, shared).await;
    stack.stop().await;
    result
}

async fn measure(opts: &Options, stack: &Stack, shared: &mut Shared) -> Result<ScenarioReport> {
    let app = "noop";
    stack.deploy(app, artifacts::hello()?, "main.py").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = stack.server.proc.sample()?;
    let runners = register_runners(&stack.server.url, opts.dispatch_runners, "sim").await?;

    if opts.dispatch_warmup > 0 {
        eprintln!("[dispatch] warm-up: {} runs", opts.dispatch_warmup);
        drive(
            std::slice::from_ref(&stack.admin),
            &runners,
            app,
            opts.dispatch_warmup,
            opts.dispatch_creators,
            opts.dispatch_inflight,
            opts.dispatch_protocol,
        )
        .await
        .context("warm-up")?;
    }

    let pid = stack.server.proc.pid();
    procs::reset_peak(pid)?;
    let routes0 = super::route_times(&stack.admin).await?;
    let s0 = stack.server.proc.sample()?;
    let b0 = procs::sample_self()?;
    eprintln!(
        "[dispatch] measuring {} runs (server pid {pid}, load average {})",
        opts.dispatch_runs,
        procs::load_average()
    );
    let out = drive(
        std::slice::from_ref(&stack.admin),
        &runners,
        app,
        opts.dispatch_runs,
        opts.dispatch_creators,
        opts.dispatch_inflight,
        opts.dispatch_protocol,
    )
    .await?;
    let s1 = stack.server.proc.sample()?;
    let b1 = procs::sample_self()?;
    let routes1 = super::route_times(&stack.admin).await?;

    let summary = stack.admin.runs_summary().await?;
    let total = opts.dispatch_warmup + opts.dispatch_runs;
    let done = summary.get("completed").copied().unwrap_or(0);
    if done as usize != total {
        bail!("expected {total} completed runs, the server counts {done}: {summary:?}");
    }

    let wall = out.wall.as_secs_f64();
    let server_cpu = s1.cpu_seconds - s0.cpu_seconds;
    let bench_cpu = b1.cpu_seconds - b0.cpu_seconds;
    let mut r = ScenarioReport::new("dispatch");
    r.metric(Metric::new("throughput", out.rate(), "runs/s").goal(Goal::at_least(5000.0)));
    let e2e = out.end_to_end.summary();
    r.metric(Metric::new("create→completed p50", e2e.p50_ms, "ms"));
    r.metric(Metric::new("create→completed p99", e2e.p99_ms, "ms"));
    for (name, s) in [
        ("create", &out.calls.create),
        ("lease", &out.calls.lease),
        ("start", &out.calls.start),
        ("logs", &out.calls.logs),
        ("result", &out.calls.result),
    ] {
        if s.is_empty() {
            continue; // start and logs on the fast path
        }
        let m = s.summary();
        r.metric(Metric::new(format!("{name} p50"), m.p50_ms, "ms"));
        r.metric(Metric::new(format!("{name} p99"), m.p99_ms, "ms"));
    }
    r.metric(Metric::new("server CPU", server_cpu, "s"));
    r.metric(Metric::new(
        "server CPU per run",
        server_cpu / out.runs as f64 * 1e6,
        "µs",
    ));
    r.metric(Metric::new("bench client CPU", bench_cpu, "s"));
    let per_run = s0.per_run(&s1, out.runs);
    r.metric(Metric::new(
        "server context switches per run",
        per_run.context_switches,
        "",
    ));
    r.metric(Metric::new(
        "server write syscalls per run",
        per_run.write_syscalls,
        "",
    ));
    r.metric(Metric::new(
        "server bytes written per run",
        per_run.write_kib,
        "KiB",
    ));
    r.metric(Metric::new("server idle RSS", idle.rss_mib, "MiB"));
    r.metric(Metric::new("server peak RSS (VmHWM)", s1.hwm_mib, "MiB").goal(Goal::below(60.0)));
    r.note(format!(
        "{} runs after {} warm-up runs; {} simulated runners (concurrency 1 each, own connection pool), \
         {} creator tasks, at most {} runs created and not completed; one log line per run; \
         protocol {:?}; server RUST_LOG={}; wall {:.2} s; {} empty leases",
        opts.dispatch_runs,
        opts.dispatch_warmup,
        opts.dispatch_runners,
        opts.dispatch_creators,
        opts.dispatch_inflight,
        opts.dispatch_protocol,
        opts.server_log,
        wall,
        out.empty_leases
    ));
    r.note(format!(
        "the bench process shares the 2 cores: server {:.0}% + bench {:.0}% of one core during the run",
        server_cpu / wall * 100.0,
        bench_cpu / wall * 100.0
    ));
    r.detail("wall_seconds", wall);
    r.detail("end_to_end", e2e);
    r.detail(
        "calls",
        serde_json::json!({
            "create": out.calls.create.summary(),
            "lease": out.calls.lease.summary(),
            "start": out.calls.start.summary(),
            "logs": out.calls.logs.summary(),
            "result": out.calls.result.summary(),
        }),
    );
    r.detail("server_route_time", super::route_means(&routes0, &routes1));
    r.detail("server_before", s0);
    r.detail("server_after", s1);
    r.detail("server_idle", idle);
    r.detail("bench_cpu_seconds", bench_cpu);
    r.detail("server_per_run", per_run);
    r.detail("bench_per_run", b0.per_run(&b1, out.runs));
    r.detail("empty_leases", out.empty_leases);
    // the create, and each runner call made
    let c = &out.calls;
    let calls = out.runs + c.lease.len() + c.start.len() + c.logs.len() + c.result.len();
    r.detail("requests_per_run", calls as f64 / out.runs as f64);
    r.detail("requests_per_second", calls as f64 / wall);
    shared.dispatch_server_peak_mib = Some(s1.hwm_mib);
    shared.dispatch_server_idle_mib = Some(idle.rss_mib);
    Ok(r)
}
