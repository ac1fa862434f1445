//! `chaos`: randomized fault rounds against real processes, judged by the
//! ground truth the workload's scripts write and by the API.
//!
//! Per backend (`sqlite`: one `minitowerd`; `postgres`: two replicas on a
//! private PostgreSQL) a few runners with concurrency 2 execute an app whose
//! script records when it starts, ticks and ends (see [`workload`],
//! [`truth`]). Each round creates a few runs over HTTP, waits a random
//! moment, and does one fault to a random target (see [`world::Fault`]).
//! After the last round everything is brought back up, the harness waits
//! until every acknowledged run is terminal (or a deadline passes), and
//! reports: runs acknowledged, lost, stuck, completed twice, executed
//! concurrently, log lines missing or duplicated, 5xx answers. Nothing here
//! fails on a finding: it is a measurement.

pub mod check;
mod judge;
pub mod postgres;
pub mod truth;
pub mod workload;
pub mod world;

use crate::report::ScenarioReport;
use crate::stack::{deploy, scratch_dir};
use crate::{ChaosBackend, Options};
use anyhow::{Context, Result};
use minitower_client::Client;
use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use workload::Account;
use world::{Done, Fault, World};

/// Slug of the workload's app.
const APP: &str = "chaos";

/// Names of the figures in the report.
pub mod metric {
    pub const ROUNDS: &str = "fault rounds";
    pub const ACKED: &str = "runs acknowledged (201)";
    pub const LOST: &str = "lost (acknowledged, not found)";
    pub const STUCK: &str = "stuck (not terminal at the deadline)";
    pub const COMPLETED_TWICE: &str = "completed twice (>1 completed attempt)";
    pub const CONCURRENT: &str = "executed concurrently (runs, ground truth)";
    pub const LONGEST_OVERLAP: &str = "longest concurrent execution";
    pub const MISSING: &str = "log lines missing";
    pub const DUPLICATED: &str = "log lines duplicated";
    pub const SERVER_ERRORS: &str = "5xx answers";
}

/// One database backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A small seeded generator (SplitMix64): the same seed gives the same
/// schedule of runs and faults (the timing of the processes still varies).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo))
    }
}

fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
    }
    u64::from_le_bytes(b)
}

/// The scenario: one report per backend.
pub async fn run(opts: &Options) -> Result<Vec<ScenarioReport>> {
    let seed = opts.seed.unwrap_or_else(random_seed);
    eprintln!("[chaos] seed {seed} (repeat the schedule with --seed {seed})");
    let backends = match opts.backend {
        ChaosBackend::Sqlite => vec![Backend::Sqlite],
        ChaosBackend::Postgres => vec![Backend::Postgres],
        ChaosBackend::Both => vec![Backend::Sqlite, Backend::Postgres],
    };
    let mut out = Vec::new();
    for b in backends {
        let pg_bin = match b {
            Backend::Postgres => match postgres::find_bin_dir(opts.pg_bin_dir.as_deref()) {
                Some(d) => Some(d),
                None => {
                    let mut r = ScenarioReport::new("chaos postgres");
                    r.note(
                        "skipped: no PostgreSQL binaries (initdb, postgres) under \
                         /usr/lib/postgresql/*/bin; pass --pg-bin-dir",
                    );
                    out.push(r);
                    continue;
                }
            },
            Backend::Sqlite => None,
        };
        out.push(run_backend(opts, b, seed, pg_bin.as_deref()).await?);
    }
    Ok(out)
}

async fn run_backend(
    opts: &Options,
    backend: Backend,
    seed: u64,
    pg_bin: Option<&Path>,
) -> Result<ScenarioReport> {
    let label = format!("chaos {}", backend.name());
    let (_tmp, dir) = scratch_dir(opts, &format!("chaos-{}", backend.name()))?;
    // Scripts may run as other users (runner isolation) and PostgreSQL as
    // `postgres`: they must reach their files below this dir.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))?;
    let truth_path = dir.join("truth.log");
    std::fs::write(&truth_path, b"")?;
    std::fs::set_permissions(&truth_path, std::fs::Permissions::from_mode(0o666))?;
    eprintln!("[{label}] data in {}", dir.display());

    let t0 = Instant::now();
    let (mut world, token) = World::start(opts, backend, &dir, pg_bin).await?;
    let clients = world.clients(&token)?;
    let account = Arc::new(Account::default());
    let driven = drive(
        opts,
        &label,
        &mut world,
        &clients,
        &account,
        seed,
        &truth_path,
    )
    .await;
    // Scripts still alive now that every run is terminal outlived their run.
    let truth_text = std::fs::read_to_string(&truth_path).unwrap_or_default();
    let pids = script_pids(&truth_text);
    let alive_after_settle = check::scripts_alive(&pids, &dir);
    let unexpected = world.unexpected_exits.clone();
    let escalations = world.term_escalations;
    world.stop().await;
    let truth_text = std::fs::read_to_string(&truth_path).unwrap_or_default();
    let pids = script_pids(&truth_text);
    let alive_after_stop = check::scripts_alive(&pids, &dir);
    check::kill_scripts(&alive_after_stop, &dir);
    let d = driven?;

    Ok(judge::report(judge::Collected {
        opts,
        backend,
        seed,
        label: &label,
        driven: d,
        truth_text,
        snap: account.snapshot(),
        alive_after_settle,
        alive_after_stop,
        unexpected,
        escalations,
        started: t0,
    }))
}

fn script_pids(text: &str) -> HashSet<u32> {
    truth::parse(text)
        .0
        .iter()
        .filter_map(|e| match e {
            truth::Event::Start { pid, .. } => Some(*pid),
            _ => None,
        })
        .collect()
}

/// What the rounds and the settling produced.
struct Driven {
    done: Vec<Done>,
    rounds_time: Duration,
    settle: Duration,
    outcomes: Vec<check::Outcome>,
}

async fn drive(
    opts: &Options,
    label: &str,
    world: &mut World,
    clients: &[Client],
    account: &Arc<Account>,
    seed: u64,
    truth_path: &Path,
) -> Result<Driven> {
    deploy(&clients[0], APP, workload::artifact()?, "main.py").await?;

    // Status polls in the background, as a user watching runs would do.
    let stop = Arc::new(AtomicBool::new(false));
    let poller = tokio::spawn(poll(account.clone(), clients.to_vec(), stop.clone()));

    let mut rng = Rng::new(seed);
    let faults = Fault::all(world.backend);
    let limit = Duration::from_secs(opts.chaos_time_limit);
    let t0 = Instant::now();
    account.start_clock(t0);
    let mut done = Vec::new();
    for round in 1..=opts.rounds {
        if t0.elapsed() > limit {
            eprintln!(
                "[{label}] time cap of {} s reached after {} rounds",
                opts.chaos_time_limit,
                round - 1
            );
            break;
        }
        world.check_alive();
        world.heal().await?;
        let n = rng.range(1, opts.chaos_runs_per_round.max(1) as u64 + 1);
        // Most runs last 0.5-3 s; a quarter last 4-7 s, longer than the
        // TTL plus a reaper pass, so that an execution a fault did not stop
        // is still running when the retry starts.
        let ks: Vec<i64> = (0..n)
            .map(|_| {
                if rng.below(4) == 0 {
                    rng.range(40, 71) as i64
                } else {
                    rng.range(5, 31) as i64
                }
            })
            .collect();
        let first = rng.below(clients.len() as u64) as usize;
        let order: Vec<&Client> = (0..clients.len())
            .map(|i| &clients[(first + i) % clients.len()])
            .collect();
        let creates = ks
            .iter()
            .map(|k| account.create(&order, APP, truth_path, *k, round));
        futures::future::join_all(creates).await;
        tokio::time::sleep(Duration::from_millis(rng.range(300, 2000))).await;
        let fault = faults[rng.below(faults.len() as u64) as usize];
        let mut d = world
            .apply(fault, &mut rng, round)
            .await
            .with_context(|| format!("round {round}: {fault:?}"))?;
        d.at_s = t0.elapsed().as_secs_f64();
        eprintln!(
            "[{label}] round {round}/{}: {:?} {} ({}), {} runs created",
            opts.rounds, d.fault, d.target, d.note, n
        );
        done.push(d);
        tokio::time::sleep(Duration::from_millis(rng.range(300, 1200))).await;
    }
    let rounds_time = t0.elapsed();

    // Everything back up, then wait for every acknowledged run to end.
    world.heal().await?;
    let acked = account.acked();
    eprintln!(
        "[{label}] faults over after {:.0} s; waiting up to {} s for {} runs to end",
        rounds_time.as_secs_f64(),
        opts.chaos_settle,
        acked.len()
    );
    let (settle, open) = check::settle(
        account,
        clients,
        &acked,
        Duration::from_secs(opts.chaos_settle),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let _ = poller.await;
    eprintln!(
        "[{label}] settled in {:.1} s ({} not terminal)",
        settle.as_secs_f64(),
        open.len()
    );
    let outcomes = check::outcomes(account, clients, &acked).await;
    Ok(Driven {
        done,
        rounds_time,
        settle,
        outcomes,
    })
}

/// Reads the status of one acknowledged run every 200 ms, going round the
/// runs and the servers.
async fn poll(account: Arc<Account>, clients: Vec<Client>, stop: Arc<AtomicBool>) {
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let acked = account.acked();
        if acked.is_empty() {
            continue;
        }
        let id = acked[(i / clients.len()) % acked.len()].id;
        let c = &clients[i % clients.len()];
        i = i.wrapping_add(1);
        let r = c.get_run(id).await;
        account.note("GET /api/v1/runs/{run}", &r);
    }
}
