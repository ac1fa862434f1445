//! `dispatch-pg`: the `dispatch` workload (no-op runs through the whole
//! runner protocol over real HTTP, simulated runners, no Python) on
//! PostgreSQL, with one `minitowerd` replica and then two on the same
//! database. Each measurement gets a private PostgreSQL instance (`initdb`
//! into the scratch directory, fsync as configured by default), so nothing
//! of another run or of the machine's own PostgreSQL is measured.
//!
//! With two replicas the runners and the run creators are split evenly over
//! them: a run created on one replica is leased through the other, so the
//! wake-ups cross replicas through `LISTEN`/`NOTIFY` as in production.

use super::chaos::postgres::{self, Postgres};
mod statements;
use super::dispatch::{drive, register_runners};
use crate::procs::{Binaries, ProcSample, Server};
use crate::report::{Goal, Metric, ScenarioReport};
use crate::stack::{bootstrap, deploy, scratch_dir};
use crate::{artifacts, procs, Options};
use anyhow::{bail, Context, Result};
use minitower_client::Client;
use std::path::Path;
use std::time::Duration;

/// One report per replica count: one replica, then two.
pub async fn run(opts: &Options) -> Result<Vec<ScenarioReport>> {
    let bin = postgres::find_bin_dir(opts.pg_bin_dir.as_deref())
        .context("dispatch-pg needs PostgreSQL's initdb and postgres (--pg-bin-dir)")?;
    let mut reports = Vec::new();
    for replicas in [1, 2] {
        reports.push(
            measure(opts, &bin, replicas)
                .await
                .with_context(|| format!("dispatch-pg with {replicas} replica(s)"))?,
        );
    }
    Ok(reports)
}

async fn measure(opts: &Options, bin: &Path, replicas: usize) -> Result<ScenarioReport> {
    let label = format!("dispatch-pg-{replicas}");
    let (_tmp, dir) = scratch_dir(opts, &label)?;
    let settings: &[&str] = if opts.pg_statements > 0 {
        &[
            "shared_preload_libraries=pg_stat_statements",
            "pg_stat_statements.track=all",
        ]
    } else {
        &[]
    };
    let mut pg = Postgres::init_with(bin, &dir.join("pg"), settings).await?;
    eprintln!(
        "[{label}] private PostgreSQL pid {} on port {}",
        pg.pid(),
        pg.port
    );
    let bins = Binaries::locate(opts.bin_dir.as_deref())?;
    let mut env = vec![
        ("MINITOWER_DATABASE_URL".to_string(), pg.url()),
        (
            "MINITOWER_OBJECTS_DIR".to_string(),
            dir.join("objects").display().to_string(),
        ),
    ];
    env.extend(opts.server_env.iter().cloned());
    let mut servers: Vec<Server> = Vec::with_capacity(replicas);
    for i in 0..replicas {
        let server = Server::start(
            &bins,
            &dir.join(format!("server-{i}")),
            None,
            &opts.server_log,
            &env,
        )
        .await;
        match server {
            Ok(s) => servers.push(s),
            Err(e) => {
                stop_all(servers, &mut pg).await;
                return Err(e);
            }
        }
    }
    let result = drive_replicas(opts, &label, &servers, &pg).await;
    stop_all(servers, &mut pg).await;
    result
}

async fn stop_all(servers: Vec<Server>, pg: &mut Postgres) {
    for s in servers {
        s.stop().await;
    }
    pg.stop().await;
}

/// CPU seconds of the private PostgreSQL: the postmaster and every backend.
fn pg_cpu(pid: u32) -> Result<f64> {
    let s = procs::sample(pid)?;
    Ok(s.cpu_seconds + s.children_cpu_seconds)
}

async fn drive_replicas(
    opts: &Options,
    label: &str,
    servers: &[Server],
    pg: &Postgres,
) -> Result<ScenarioReport> {
    let pg_pid = pg.pid();
    let replicas = servers.len();
    let first = bootstrap(&servers[0].url).await?;
    let token = first
        .token()
        .context("bootstrap gave no token")?
        .to_string();
    deploy(&first, "noop", artifacts::hello()?, "main.py").await?;
    let admins: Vec<Client> = servers
        .iter()
        .map(|s| Ok(Client::new(&s.url, None)?.with_token(token.clone())))
        .collect::<Result<_>>()?;
    let mut runners = Vec::with_capacity(opts.dispatch_runners);
    for i in 0..opts.dispatch_runners {
        let url = &servers[i % replicas].url;
        runners.extend(register_runners(url, 1, &format!("sim-{i}")).await?);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    if opts.dispatch_warmup > 0 {
        eprintln!("[{label}] warm-up: {} runs", opts.dispatch_warmup);
        drive(
            &admins,
            &runners,
            "noop",
            opts.dispatch_warmup,
            opts.dispatch_creators.max(replicas),
            opts.dispatch_inflight,
            opts.dispatch_protocol,
        )
        .await
        .context("warm-up")?;
    }
    let stats = match opts.pg_statements {
        0 => None,
        _ => Some(statements::reset(&pg.url()).await?),
    };
    let s0 = samples(servers)?;
    let pg0 = pg_cpu(pg_pid)?;
    eprintln!(
        "[{label}] measuring {} runs on {replicas} replica(s) (load average {})",
        opts.dispatch_runs,
        procs::load_average()
    );
    let out = drive(
        &admins,
        &runners,
        "noop",
        opts.dispatch_runs,
        opts.dispatch_creators.max(replicas),
        opts.dispatch_inflight,
        opts.dispatch_protocol,
    )
    .await?;
    let s1 = samples(servers)?;
    let pg_cpu = pg_cpu(pg_pid)? - pg0;
    let summary = admins[0].runs_summary().await?;
    let total = opts.dispatch_warmup + opts.dispatch_runs;
    let done = summary.get("completed").copied().unwrap_or(0);
    if done as usize != total {
        bail!("expected {total} completed runs, the servers count {done}: {summary:?}");
    }
    let server_cpu: f64 = s0
        .iter()
        .zip(&s1)
        .map(|(a, b)| b.cpu_seconds - a.cpu_seconds)
        .sum();
    let wall = out.wall.as_secs_f64();
    let mut r = ScenarioReport::new(&format!(
        "dispatch-pg ({replicas} replica{})",
        if replicas == 1 { "" } else { "s" }
    ));
    r.metric(Metric::new("throughput", out.rate(), "runs/s").goal(Goal::at_least(2000.0)));
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
        let m = s.summary();
        r.metric(Metric::new(format!("{name} p50"), m.p50_ms, "ms"));
    }
    r.metric(Metric::new(
        "server CPU per run (all replicas)",
        server_cpu / out.runs as f64 * 1e6,
        "µs",
    ));
    // PostgreSQL shares the 2 cores: its CPU per run bounds the rate.
    r.metric(Metric::new(
        "PostgreSQL CPU per run",
        pg_cpu / out.runs as f64 * 1e6,
        "µs",
    ));
    r.metric(Metric::new(
        "server peak RSS (largest replica)",
        s1.iter().map(|s| s.hwm_mib).fold(0.0, f64::max),
        "MiB",
    ));
    r.note(format!(
        "{} runs after {} warm-up runs on a private PostgreSQL; {} simulated runners and {} creator \
         tasks split over {replicas} replica(s); at most {} runs in flight; wall {wall:.2} s; {} \
         empty leases; PostgreSQL's own CPU (postmaster and backends) is reported apart",
        opts.dispatch_runs,
        opts.dispatch_warmup,
        opts.dispatch_runners,
        opts.dispatch_creators.max(replicas),
        opts.dispatch_inflight,
        out.empty_leases
    ));
    r.detail("wall_seconds", wall);
    r.detail("end_to_end", e2e);
    r.detail("server_cpu_seconds", server_cpu);
    r.detail("postgres_cpu_seconds", pg_cpu);
    r.detail("empty_leases", out.empty_leases);
    if let Some(mut db) = stats {
        statements::report(&mut db, &mut r, opts.pg_statements, out.runs).await?;
    }
    Ok(r)
}

fn samples(servers: &[Server]) -> Result<Vec<ProcSample>> {
    servers.iter().map(|s| s.proc.sample()).collect()
}
