//! MiniTower benchmark harness.
//!
//! Every scenario starts real `minitowerd` (and, where it needs one, real
//! `minitower-runner`) processes on free ports in a temp dir, measures, and
//! stops them again (a dropped process handle kills its process, so an error
//! never leaves one behind). The figures are printed as a Markdown table and
//! written as JSON with `--out`. Nothing here fails because something was
//! slow: goals are printed next to the figures, never asserted.

pub mod artifacts;
pub mod procs;
pub mod report;
pub mod scenarios;
pub mod stack;
pub mod stats;

use anyhow::Result;
use clap::{Parser, ValueEnum};
use report::{Meta, Report, ScenarioReport};
use std::path::PathBuf;
use std::time::Instant;

/// Which benchmark to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Runner protocol throughput with simulated runners (no Python).
    Dispatch,
    /// Hello-world runs one after another through one real runner.
    Latency,
    /// Many hello-world runs submitted at once to one runner.
    Burst,
    /// An app with a local wheel dependency: first and reused environment.
    Deps,
    /// Query latencies on a database with 1.1 million runs.
    Scale,
    /// Peak RSS of the server idle and under load, and of an idle runner.
    Memory,
    /// Every scenario above, in that order (not `chaos`).
    All,
    /// Randomized fault rounds (runner SIGKILL/SIGTERM/SIGSTOP, server
    /// SIGKILL, PostgreSQL restarts) judged by ground truth: a measurement
    /// of correctness, not of speed.
    Chaos,
    /// `dispatch` on PostgreSQL (a private instance): one replica, then two
    /// on the same database; not in `all`.
    DispatchPg,
    /// `latency` and `burst`, then the same workload through RQ (fork and
    /// spawn workers, private Redis), with MiniTower/RQ ratios; not in `all`.
    Compare,
}

/// Database backend(s) of `chaos`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChaosBackend {
    /// One `minitowerd` on SQLite.
    Sqlite,
    /// Two `minitowerd` replicas on a private PostgreSQL instance.
    Postgres,
    /// SQLite, then PostgreSQL.
    Both,
}

/// Command line of `minitower-bench`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "minitower-bench",
    about = "Benchmarks real minitowerd and minitower-runner processes and prints the figures."
)]
pub struct Options {
    /// Scenario to run.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the figures as JSON on stdout instead of the Markdown table.
    #[arg(long)]
    pub json: bool,
    /// Directory holding `minitowerd` and `minitower-runner` (default: next to this executable).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Where temp dirs are made (default: the system temp dir).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Keep the temp dirs (databases, logs) instead of removing them.
    #[arg(long)]
    pub keep: bool,
    /// `RUST_LOG` of the servers under test.
    #[arg(long, default_value = procs::PROCESS_RUST_LOG)]
    pub server_log: String,
    /// `RUST_LOG` of the runners under test.
    #[arg(long, default_value = procs::PROCESS_RUST_LOG)]
    pub runner_log: String,
    /// Extra `KEY=VALUE` for the servers (repeatable; for experiments, e.g.
    /// `--server-env MINITOWER_LEASE_TTL=30s`).
    #[arg(long, value_parser = parse_kv)]
    pub server_env: Vec<(String, String)>,
    /// Extra `KEY=VALUE` for the runners (repeatable; e.g.
    /// `--runner-env MINITOWER_PRESTART=false`).
    #[arg(long, value_parser = parse_kv)]
    pub runner_env: Vec<(String, String)>,
    /// dispatch: measured runs.
    #[arg(long, default_value_t = 20_000)]
    pub dispatch_runs: usize,
    /// dispatch: warm-up runs before measuring.
    #[arg(long, default_value_t = 1_000)]
    pub dispatch_warmup: usize,
    /// dispatch: simulated runners.
    #[arg(long, default_value_t = 16)]
    pub dispatch_runners: usize,
    /// dispatch: tasks creating runs, each one create at a time. Enough
    /// that creates keep the server busy: with 4, the rate was capped by 4
    /// creates in flight (4 / create latency) while a third of the machine
    /// idled (2026-12-07).
    #[arg(long, default_value_t = 16)]
    pub dispatch_creators: usize,
    /// dispatch: most runs created but not completed at any time.
    #[arg(long, default_value_t = 64)]
    pub dispatch_inflight: usize,
    /// dispatch, dispatch-pg: the runner protocol the simulated runners speak.
    #[arg(long, value_enum, default_value_t = scenarios::dispatch::Protocol::Chained)]
    pub dispatch_protocol: scenarios::dispatch::Protocol,
    /// latency: measured runs (one warm-up run comes first).
    #[arg(long, default_value_t = 40)]
    pub latency_runs: usize,
    /// burst: runs submitted at once.
    #[arg(long, default_value_t = 200)]
    pub burst_runs: usize,
    /// burst: the runner's concurrency.
    #[arg(long, default_value_t = 2)]
    pub burst_concurrency: usize,
    /// deps: runs with the environment reused.
    #[arg(long, default_value_t = 10)]
    pub deps_reused: usize,
    /// scale: finished runs in the database.
    #[arg(long, default_value_t = 1_000_000)]
    pub scale_finished: usize,
    /// scale: queued runs in the database.
    #[arg(long, default_value_t = 100_000)]
    pub scale_queued: usize,
    /// scale: samples per query.
    #[arg(long, default_value_t = 200)]
    pub scale_samples: usize,
    /// memory: runs of the short dispatch used when `dispatch` did not run before.
    #[arg(long, default_value_t = 5_000)]
    pub memory_dispatch_runs: usize,
    /// chaos: database backend(s).
    #[arg(long, value_enum, default_value_t = ChaosBackend::Both)]
    pub backend: ChaosBackend,
    /// chaos: fault rounds per backend.
    #[arg(long, default_value_t = 40)]
    pub rounds: usize,
    /// chaos: seed of the run and fault schedule (default: random; printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// chaos: at most this many seconds of fault rounds per backend.
    #[arg(long, default_value_t = 900)]
    pub chaos_time_limit: u64,
    /// chaos: most runs created per round (1 to this many).
    #[arg(long, default_value_t = 6)]
    pub chaos_runs_per_round: usize,
    /// chaos: runner processes.
    #[arg(long, default_value_t = 3)]
    pub chaos_runners: usize,
    /// chaos: concurrency of each runner.
    #[arg(long, default_value_t = 2)]
    pub chaos_concurrency: usize,
    /// chaos: seconds to wait after the faults for every run to end.
    #[arg(long, default_value_t = 180)]
    pub chaos_settle: u64,
    /// chaos, dispatch-pg: directory with PostgreSQL's initdb, postgres and pg_isready
    /// (default: the newest /usr/lib/postgresql/*/bin).
    #[arg(long)]
    pub pg_bin_dir: Option<PathBuf>,
    /// dispatch-pg: load `pg_stat_statements` into the private PostgreSQL and
    /// report this many statements, costliest first (0: off, the default, so
    /// the figures carry no tracking overhead).
    #[arg(long, default_value_t = 0)]
    pub pg_statements: usize,
    /// compare: a venv with `rq` installed (default:
    /// ~/.cache/minitower-rq-venv); RQ is skipped when it has none.
    #[arg(long)]
    pub rq_venv: Option<PathBuf>,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

impl Options {
    /// Options with every default and the given scenario (tests).
    pub fn defaults(scenario: Scenario) -> Options {
        let name = scenario
            .to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default();
        Options::parse_from(["minitower-bench", name.as_str()])
    }
}

/// Figures one scenario passes to a later one (`memory` reuses the peak
/// RSS measured during `dispatch`).
#[derive(Debug, Default)]
pub struct Shared {
    pub dispatch_server_peak_mib: Option<f64>,
    pub dispatch_server_idle_mib: Option<f64>,
}

/// Runs the chosen scenarios and returns the report.
pub async fn run(opts: &Options) -> Result<Report> {
    let started = Instant::now();
    let load_before = procs::load_average();
    let bins = procs::Binaries::locate(opts.bin_dir.as_deref())?;
    let list: Vec<Scenario> = match opts.scenario {
        Scenario::All => vec![
            Scenario::Dispatch,
            Scenario::Latency,
            Scenario::Burst,
            Scenario::Deps,
            Scenario::Scale,
            Scenario::Memory,
        ],
        s => vec![s],
    };
    let mut shared = Shared::default();
    let mut reports: Vec<ScenarioReport> = Vec::new();
    for s in list {
        let t = Instant::now();
        let load = procs::load_average();
        let jiffies = procs::machine_jiffies();
        eprintln!("== {s:?} (load average {load})");
        let rs = match s {
            Scenario::Dispatch => vec![scenarios::dispatch::run(opts, &mut shared).await?],
            Scenario::Latency => vec![scenarios::latency::run(opts).await?],
            Scenario::Burst => vec![scenarios::burst::run(opts).await?],
            Scenario::Deps => vec![scenarios::deps::run(opts).await?],
            Scenario::Scale => vec![scenarios::scale::run(opts).await?],
            Scenario::Memory => vec![scenarios::memory::run(opts, &shared).await?],
            Scenario::Chaos => scenarios::chaos::run(opts).await?,
            Scenario::Compare => vec![scenarios::compare::run(opts).await?],
            Scenario::DispatchPg => scenarios::dispatch_pg::run(opts).await?,
            Scenario::All => unreachable!(),
        };
        let busy = procs::busy_percent(jiffies, procs::machine_jiffies());
        for mut r in rs {
            r.detail("load_average_at_start", &load);
            r.detail("machine_cpu_busy_percent", busy);
            r.detail("scenario_seconds", t.elapsed().as_secs_f64());
            r.note(format!(
                "machine: load average {load} at start, all CPUs {busy:.0}% busy during the scenario \
                 (every process, the bench's included)"
            ));
            reports.push(r);
        }
        eprintln!("== {s:?} done in {:.1} s", t.elapsed().as_secs_f64());
    }
    let meta = Meta {
        date: chrono::Utc::now().format("%Y-%m-%d").to_string(),
        commit: git_commit(),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        machine: "shared machine".into(),
        load_average_before: load_before,
        load_average_after: procs::load_average(),
        server_rust_log: opts.server_log.clone(),
        runner_rust_log: opts.runner_log.clone(),
        server_env: opts
            .server_env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
        runner_env: opts
            .runner_env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
        server_binary: bins.server.display().to_string(),
        runner_binary: bins.runner.display().to_string(),
        python: python_version(),
        total_seconds: started.elapsed().as_secs_f64(),
    };
    Ok(Report {
        meta,
        scenarios: reports,
    })
}

fn git_commit() -> String {
    // The checkout the bench was built from (the binaries under test are
    // normally built from the same tree).
    let dir = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(head) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return "unknown".into();
    };
    let dirty = git(&[
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        "crates",
    ])
    .is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{head} (+ uncommitted changes under crates/)")
    } else {
        head
    }
}

fn python_version() -> String {
    let out = std::process::Command::new("python3")
        .arg("--version")
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => "unknown".into(),
    }
}
