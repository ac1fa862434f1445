//! The processes under test for one backend (one `minitowerd` on SQLite,
//! or two replicas on a private PostgreSQL; a few runners) and the faults
//! done to them. Every process is a child handle of the bench: a dropped
//! handle kills it, so an error or a panic leaves nothing behind.

use super::postgres::Postgres;
use super::{Backend, Rng};
use crate::procs::{Binaries, Runner, Server};
use crate::Options;
use anyhow::{Context, Result};
use minitower_client::Client;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Lease TTL and reaper interval of the servers (short, so that expiries
/// happen within a round; `--server-env` may override them).
pub const LEASE_TTL: &str = "3s";
pub const EXPIRY_CHECK_INTERVAL: &str = "500ms";

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// SIGKILL a runner, restart it (same name, same data dir).
    RunnerKill,
    /// SIGTERM a runner, restart it once it has exited.
    RunnerTerm,
    /// SIGSTOP a runner for longer than the lease TTL, then SIGCONT.
    RunnerStop,
    /// SIGKILL a `minitowerd`, restart it on the same port.
    ServerKill,
    /// Immediate shutdown of PostgreSQL (SIGQUIT), restart (crash recovery).
    PostgresRestart,
}

impl Fault {
    /// The faults that apply to a backend.
    pub fn all(backend: Backend) -> Vec<Fault> {
        let mut v = vec![
            Fault::RunnerKill,
            Fault::RunnerTerm,
            Fault::RunnerStop,
            Fault::ServerKill,
        ];
        if backend == Backend::Postgres {
            v.push(Fault::PostgresRestart);
        }
        v
    }
}

/// What was done in one round.
#[derive(Debug, Clone, Serialize)]
pub struct Done {
    pub round: usize,
    pub fault: Fault,
    pub target: String,
    /// Seconds since the rounds began, when the target was back (the fault
    /// began `down_ms` earlier).
    pub at_s: f64,
    /// How long the target was down or frozen, in ms.
    pub down_ms: f64,
    pub note: String,
}

struct ServerSlot {
    label: String,
    dir: PathBuf,
    port: Option<u16>,
    url: String,
    server: Option<Server>,
    starts: usize,
}

struct RunnerSlot {
    name: String,
    dir: PathBuf,
    url: String,
    runner: Option<Runner>,
}

/// The processes of one backend.
pub struct World {
    pub backend: Backend,
    pub dir: PathBuf,
    bins: Binaries,
    server_log: String,
    runner_log: String,
    server_env: Vec<(String, String)>,
    runner_env: Vec<(String, String)>,
    concurrency: usize,
    /// The servers' lease TTL and reaper interval.
    pub lease_ttl: Duration,
    pub expiry_interval: Duration,
    pg: Option<Postgres>,
    servers: Vec<ServerSlot>,
    runners: Vec<RunnerSlot>,
    /// Processes found dead that nobody killed (crashes), by label.
    pub unexpected_exits: Vec<String>,
    /// SIGTERMed runners that had not exited after the grace period and were killed.
    pub term_escalations: usize,
}

fn env_duration(env: &[(String, String)], key: &str, default: &str) -> Duration {
    let v = env
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or(default);
    minitower_core::validate::duration(v).unwrap_or(Duration::from_secs(3))
}

impl World {
    /// Starts the database (PostgreSQL), the servers and the runners; `dir`
    /// must exist. Returns the world and the admin token of team `bench`.
    pub async fn start(
        opts: &Options,
        backend: Backend,
        dir: &Path,
        pg_bin: Option<&Path>,
    ) -> Result<(World, String)> {
        let bins = Binaries::locate(opts.bin_dir.as_deref())?;
        let mut server_env: Vec<(String, String)> = vec![
            ("MINITOWER_LEASE_TTL".into(), LEASE_TTL.into()),
            (
                "MINITOWER_EXPIRY_CHECK_INTERVAL".into(),
                EXPIRY_CHECK_INTERVAL.into(),
            ),
        ];
        let mut pg = None;
        let replicas = match backend {
            Backend::Sqlite => 1,
            _ => 2,
        };
        if backend == Backend::Postgres {
            let bin = pg_bin.context("no PostgreSQL binaries")?;
            let p = Postgres::init(bin, &dir.join("pg")).await?;
            eprintln!(
                "[chaos postgres] private PostgreSQL pid {} on 127.0.0.1:{} ({})",
                p.pid(),
                p.port,
                bin.display()
            );
            server_env.push(("MINITOWER_DATABASE_URL".into(), p.url()));
            // Both replicas serve the same artifacts.
            server_env.push((
                "MINITOWER_OBJECTS_DIR".into(),
                dir.join("objects").display().to_string(),
            ));
            pg = Some(p);
        }
        server_env.extend(opts.server_env.iter().cloned());
        let lease_ttl = env_duration(&server_env, "MINITOWER_LEASE_TTL", LEASE_TTL);
        let expiry_interval = env_duration(
            &server_env,
            "MINITOWER_EXPIRY_CHECK_INTERVAL",
            EXPIRY_CHECK_INTERVAL,
        );
        let mut w = World {
            backend,
            dir: dir.to_path_buf(),
            bins,
            server_log: opts.server_log.clone(),
            runner_log: opts.runner_log.clone(),
            server_env,
            runner_env: opts.runner_env.clone(),
            concurrency: opts.chaos_concurrency,
            lease_ttl,
            expiry_interval,
            pg,
            servers: Vec::new(),
            runners: Vec::new(),
            unexpected_exits: Vec::new(),
            term_escalations: 0,
        };
        for i in 0..replicas {
            let label = format!("server-{}", i + 1);
            w.servers.push(ServerSlot {
                dir: dir.join(&label),
                label,
                port: None,
                url: String::new(),
                server: None,
                starts: 0,
            });
            // One after the other: the first one creates the schema.
            w.start_server(i).await?;
        }
        let admin = crate::stack::bootstrap(&w.servers[0].url).await?;
        let token = admin.token().unwrap_or_default().to_string();
        for i in 0..opts.chaos_runners {
            let name = format!("runner-{}", i + 1);
            let url = w.servers[i % w.servers.len()].url.clone();
            w.runners.push(RunnerSlot {
                dir: dir.join(&name),
                name,
                url,
                runner: None,
            });
            w.start_runner(i)?;
        }
        // Wait until every runner has registered.
        let names: Vec<String> = w.runners.iter().map(|r| r.name.clone()).collect();
        let t = Instant::now();
        loop {
            let listed = admin.list_runners().await.unwrap_or_default();
            if names.iter().all(|n| listed.iter().any(|r| &r.name == n)) {
                break;
            }
            for r in &mut w.runners {
                if let Some(p) = r.runner.as_mut() {
                    if p.proc.exited() {
                        anyhow::bail!(
                            "runner {} exited during start-up; its log:\n{}",
                            r.name,
                            p.proc.log_tail()
                        );
                    }
                }
            }
            if t.elapsed() > Duration::from_secs(60) {
                anyhow::bail!("the runners did not register within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok((w, token))
    }

    /// Admin clients, one per server (a server's URL never changes).
    pub fn clients(&self, token: &str) -> Result<Vec<Client>> {
        self.servers
            .iter()
            .map(|s| Ok(Client::new(&s.url, Some(token.to_string()))?))
            .collect()
    }

    async fn start_server(&mut self, i: usize) -> Result<()> {
        let s = &mut self.servers[i];
        s.starts += 1;
        let server = Server::start_on(
            &self.bins,
            &s.dir,
            None,
            &self.server_log,
            &self.server_env,
            s.port,
            &format!("minitowerd-{}", s.starts),
        )
        .await
        .with_context(|| format!("starting {}", s.label))?;
        if s.port.is_none() {
            s.url = server.url.clone();
            s.port = server.url.rsplit(':').next().and_then(|p| p.parse().ok());
            eprintln!(
                "[chaos {}] {} pid {} on {}",
                self.backend.name(),
                s.label,
                server.proc.pid(),
                server.url
            );
        }
        s.server = Some(server);
        Ok(())
    }

    fn start_runner(&mut self, i: usize) -> Result<()> {
        let r = &mut self.runners[i];
        let runner = Runner::start_url(
            &self.bins,
            &r.url,
            &r.dir,
            &r.name,
            self.concurrency,
            &self.runner_log,
            &self.runner_env,
        )?;
        r.runner = Some(runner);
        Ok(())
    }

    /// Notes processes that died without being killed (and forgets their
    /// handles, so [`World::heal`] restarts them).
    pub fn check_alive(&mut self) {
        for s in &mut self.servers {
            if s.server.as_mut().is_some_and(|p| p.proc.exited()) {
                s.server = None;
                self.unexpected_exits.push(s.label.clone());
            }
        }
        for r in &mut self.runners {
            if r.runner.as_mut().is_some_and(|p| p.proc.exited()) {
                r.runner = None;
                self.unexpected_exits.push(r.name.clone());
            }
        }
    }

    /// Everything up and running again (after the rounds, and when a
    /// process died on its own).
    pub async fn heal(&mut self) -> Result<()> {
        self.check_alive();
        if let Some(pg) = self.pg.as_mut() {
            pg.start().await?;
        }
        for i in 0..self.servers.len() {
            if self.servers[i].server.is_none() {
                self.start_server(i).await?;
            }
        }
        for i in 0..self.runners.len() {
            match self.runners[i].runner.as_mut() {
                Some(r) => r.proc.signal(libc::SIGCONT),
                None => self.start_runner(i)?,
            }
        }
        Ok(())
    }

    /// Does one fault of kind `fault` to a randomly chosen target and
    /// brings the target back.
    pub async fn apply(&mut self, fault: Fault, rng: &mut Rng, round: usize) -> Result<Done> {
        let pause = Duration::from_millis(rng.range(0, 1000));
        let t0 = Instant::now();
        let (target, note) = match fault {
            Fault::RunnerKill => {
                let i = rng.below(self.runners.len() as u64) as usize;
                let r = &mut self.runners[i];
                let mut note = String::new();
                if let Some(mut p) = r.runner.take() {
                    note = format!("pid {}", p.proc.pid());
                    p.proc.kill().await;
                }
                tokio::time::sleep(pause).await;
                let name = r.name.clone();
                self.start_runner(i)?;
                (name, note)
            }
            Fault::RunnerTerm => {
                let i = rng.below(self.runners.len() as u64) as usize;
                let r = &mut self.runners[i];
                let mut note = String::new();
                if let Some(mut p) = r.runner.take() {
                    let pid = p.proc.pid();
                    p.proc.signal(libc::SIGTERM);
                    let exited = p.proc.wait_exit(Duration::from_secs(30)).await;
                    note = format!(
                        "pid {pid}, exited after {:.1} s",
                        t0.elapsed().as_secs_f64()
                    );
                    if !exited {
                        note = format!("pid {pid}, still running after 30 s: SIGKILL");
                        self.term_escalations += 1;
                        p.proc.kill().await;
                    }
                }
                let name = self.runners[i].name.clone();
                self.start_runner(i)?;
                (name, note)
            }
            Fault::RunnerStop => {
                let i = rng.below(self.runners.len() as u64) as usize;
                // Longer than the TTL plus a reaper pass: the lease expires
                // while it is frozen.
                let hold = self.lease_ttl
                    + self.expiry_interval
                    + Duration::from_millis(rng.range(1000, 2500));
                let r = &mut self.runners[i];
                let mut note = String::new();
                if let Some(p) = r.runner.as_mut() {
                    note = format!("pid {}, frozen {:.1} s", p.proc.pid(), hold.as_secs_f64());
                    p.proc.signal(libc::SIGSTOP);
                    tokio::time::sleep(hold).await;
                    p.proc.signal(libc::SIGCONT);
                }
                (r.name.clone(), note)
            }
            Fault::ServerKill => {
                let i = rng.below(self.servers.len() as u64) as usize;
                let s = &mut self.servers[i];
                let mut note = String::new();
                if let Some(mut p) = s.server.take() {
                    note = format!("pid {}", p.proc.pid());
                    p.proc.kill().await;
                }
                let label = s.label.clone();
                tokio::time::sleep(pause).await;
                self.start_server(i).await?;
                (label, note)
            }
            Fault::PostgresRestart => {
                let pg = self.pg.as_mut().context("no PostgreSQL in this world")?;
                let note = format!("pid {}", pg.pid());
                pg.crash().await;
                tokio::time::sleep(pause).await;
                pg.start().await?;
                ("postgres".to_string(), note)
            }
        };
        Ok(Done {
            round,
            fault,
            target,
            at_s: 0.0,
            down_ms: t0.elapsed().as_secs_f64() * 1000.0,
            note,
        })
    }

    /// Stops the runners, then the servers, then PostgreSQL.
    pub async fn stop(mut self) {
        for r in self.runners.drain(..) {
            if let Some(mut p) = r.runner {
                p.proc.signal(libc::SIGCONT);
                p.stop().await;
            }
        }
        for s in self.servers.drain(..) {
            if let Some(p) = s.server {
                p.stop().await;
            }
        }
        if let Some(pg) = self.pg.as_mut() {
            pg.stop().await;
        }
    }
}
