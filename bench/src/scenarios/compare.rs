//! `compare`: the same hello-world workload through MiniTower and through
//! RQ in one invocation, so the ratios come from one machine state.
//!
//! MiniTower's side is the `latency` scenario (sequential runs, trigger →
//! SSE `end`) and the `burst` scenario (runs created at once, runner
//! concurrency `--burst-concurrency`). RQ's side (`compare/rq_driver.py`,
//! run with the Python of `--rq-venv`) starts a private `redis-server` on a
//! free loopback port and its own `rq worker` processes, once with RQ's
//! default worker (forks a work horse per job from a warm worker: no fresh
//! interpreter per job) and once with `rq.worker.SpawnWorker` (a fresh
//! interpreter per job), and runs the same counts: one worker for the
//! sequential jobs (enqueue → result, a blocking XREAD), `--burst-concurrency`
//! workers for the burst (the finished registry read every 5 ms).
//! Without `redis-server` on PATH or an importable `rq` in the venv the RQ
//! half is skipped with a note saying what is missing.

use crate::report::{Metric, ScenarioReport};
use crate::stats::Samples;
use crate::{procs, Options};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DRIVER: &str = include_str!("compare/rq_driver.py");

/// The scenario.
pub async fn run(opts: &Options) -> Result<ScenarioReport> {
    let latency = super::latency::run(opts).await?;
    let burst = super::burst::run(opts).await?;
    let mut r = ScenarioReport::new("compare");
    let n_seq = opts.latency_runs;
    let n_burst = opts.burst_runs;
    let get = |rep: &ScenarioReport, name: &str| rep.value(name).unwrap_or(f64::NAN);
    let mt = Figures {
        p50_ms: get(&latency, "p50"),
        total_ms: get(&latency, &format!("total of {n_seq} runs")),
        burst_rps: get(&burst, "throughput"),
        burst_cpu_ms: get(&burst, "server CPU per run")
            + get(&burst, "runner CPU per run")
            + get(&burst, "Python CPU per run (runner's children)"),
    };
    mt.report(&mut r, "MiniTower", n_seq, n_burst);
    r.detail("minitower_latency", &latency);
    r.detail("minitower_burst", &burst);

    let setup = match rq_setup(opts) {
        Ok(s) => s,
        Err(why) => {
            eprintln!("[compare] RQ skipped: {why}");
            r.note(format!("RQ skipped: {why}"));
            return Ok(r);
        }
    };
    for (label, class) in [
        ("RQ fork worker", None),
        ("RQ spawn worker", Some("rq.worker.SpawnWorker")),
    ] {
        eprintln!(
            "[compare] {label}: {n_seq} sequential, {n_burst} burst jobs (load average {})",
            procs::load_average()
        );
        let rq = rq_side(opts, &setup, class).await?;
        rq.report(&mut r, label, n_seq, n_burst);
        r.metric(Metric::new(
            format!("p50 MiniTower/{label}"),
            mt.p50_ms / rq.p50_ms,
            "×",
        ));
        r.metric(Metric::new(
            format!("burst throughput MiniTower/{label}"),
            mt.burst_rps / rq.burst_rps,
            "×",
        ));
        r.metric(Metric::new(
            format!("burst CPU per run MiniTower/{label}"),
            mt.burst_cpu_ms / rq.burst_cpu_ms,
            "×",
        ));
    }
    r.note(format!(
        "same invocation, same machine state: MiniTower = `latency` + `burst` (trigger → SSE `end`; \
         runner concurrency {c}; CPU = server + runner + its Python processes), RQ {v} with a private \
         redis-server (CPU = workers, their work horses and Redis); RQ workers {c} for the burst, 1 sequential; \
         RQ captures no job output and has no fencing, MiniTower ships every line to the control plane",
        c = opts.burst_concurrency,
        v = setup.version
    ));
    Ok(r)
}

struct Figures {
    p50_ms: f64,
    total_ms: f64,
    burst_rps: f64,
    burst_cpu_ms: f64,
}

impl Figures {
    fn report(&self, r: &mut ScenarioReport, who: &str, n_seq: usize, n_burst: usize) {
        r.metric(Metric::new(
            format!("{who} sequential p50"),
            self.p50_ms,
            "ms",
        ));
        r.metric(Metric::new(
            format!("{who} sequential total of {n_seq}"),
            self.total_ms,
            "ms",
        ));
        r.metric(Metric::new(
            format!("{who} burst of {n_burst}"),
            self.burst_rps,
            "runs/s",
        ));
        r.metric(Metric::new(
            format!("{who} burst CPU per run"),
            self.burst_cpu_ms,
            "ms",
        ));
    }
}

struct RqSetup {
    python: PathBuf,
    rq: PathBuf,
    redis_server: PathBuf,
    version: String,
}

/// What the RQ half needs, or why it cannot run.
fn rq_setup(opts: &Options) -> std::result::Result<RqSetup, String> {
    let venv = opts.rq_venv.clone().unwrap_or_else(default_venv);
    let python = venv.join("bin").join("python");
    let rq = venv.join("bin").join("rq");
    let redis_server = find_on_path("redis-server")
        .ok_or("no redis-server on PATH (apt-get install redis-server)")?;
    let out = std::process::Command::new(&python)
        .args(["-c", "import rq, redis; print(rq.__version__)"])
        .output()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    if !out.status.success() || !rq.is_file() {
        return Err(format!(
            "no importable rq in {} (python3 -m venv {0} && {0}/bin/pip install rq)",
            venv.display()
        ));
    }
    Ok(RqSetup {
        python,
        rq,
        redis_server,
        version: String::from_utf8_lossy(&out.stdout).trim().to_string(),
    })
}

fn default_venv() -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".cache").join("minitower-rq-venv")
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// One run of the driver with a private Redis.
async fn rq_side(opts: &Options, s: &RqSetup, class: Option<&str>) -> Result<Figures> {
    let (_tmp, dir) = crate::stack::scratch_dir(opts, "compare-rq")?;
    let port = procs::free_port()?;
    let log = std::fs::File::create(dir.join("redis.log"))?;
    let mut redis = tokio::process::Command::new(&s.redis_server)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(&dir)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("starting redis-server")?;
    let cfg = serde_json::json!({
        "redis_url": format!("redis://127.0.0.1:{port}/0"),
        "work_dir": dir,
        "rq": s.rq,
        "worker_class": class,
        "seq_runs": opts.latency_runs,
        "burst_runs": opts.burst_runs,
        "burst_workers": opts.burst_concurrency,
        "redis_pid": redis.id(),
    });
    let started = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(600),
        tokio::process::Command::new(&s.python)
            .arg("-c")
            .arg(DRIVER)
            .arg(cfg.to_string())
            .current_dir(&dir)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("the RQ driver took over 10 minutes")??;
    let _ = redis.kill().await;
    if !out.status.success() {
        bail!(
            "the RQ driver failed after {:?}: {}",
            started.elapsed(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("the RQ driver's answer")?;
    let mut seq = Samples::new();
    for ms in v["seq"]["samples_ms"].as_array().into_iter().flatten() {
        seq.push_ms(ms.as_f64().unwrap_or(f64::NAN));
    }
    let num = |p: &str| v.pointer(p).and_then(|x| x.as_f64()).unwrap_or(f64::NAN);
    Ok(Figures {
        p50_ms: seq.summary().p50_ms,
        total_ms: num("/seq/wall_ms"),
        burst_rps: opts.burst_runs as f64 / (num("/burst/wall_ms") / 1000.0),
        burst_cpu_ms: num("/burst/cpu_ms_per_job"),
    })
}
