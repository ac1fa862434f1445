//! One scenario's world: a temp dir, a fresh `minitowerd`, a team, apps, and
//! real runners; plus the "trigger and follow until the end" helper.

use crate::procs::{self, Binaries, PerRun, ProcSample, Runner, Server, BOOTSTRAP_TOKEN};
use crate::report::{Metric, ScenarioReport};
use crate::Options;
use anyhow::{bail, Context, Result};
use futures::StreamExt;
use minitower_client::{Client, LogEvent, VersionUpload};
use minitower_core::api::{BootstrapTeamRequest, CreateRunRequest, LogLine, Version};
use minitower_core::RunStatus;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A fresh control plane with a team, and the runners started on it.
pub struct Stack {
    _tmp: Option<tempfile::TempDir>,
    pub dir: PathBuf,
    pub bins: Binaries,
    pub server: Server,
    /// Admin token of team `bench`.
    pub admin: Client,
    pub runners: Vec<Runner>,
    runner_log: String,
    runner_env: Vec<(String, String)>,
}

impl Stack {
    /// Starts a server in a new temp dir and creates the team.
    pub async fn start(opts: &Options, label: &str) -> Result<Stack> {
        let (tmp, dir) = scratch_dir(opts, label)?;
        let bins = Binaries::locate(opts.bin_dir.as_deref())?;
        let server = Server::start(
            &bins,
            &dir.join("server"),
            None,
            &opts.server_log,
            &opts.server_env,
        )
        .await?;
        eprintln!(
            "[{label}] minitowerd pid {} on {} (data in {})",
            server.proc.pid(),
            server.url,
            dir.display()
        );
        let admin = bootstrap(&server.url).await?;
        Ok(Stack {
            _tmp: tmp,
            dir,
            bins,
            server,
            admin,
            runners: Vec::new(),
            runner_log: opts.runner_log.clone(),
            runner_env: opts.runner_env.clone(),
        })
    }

    /// Starts a runner process and waits until it is registered and online.
    pub async fn add_runner(&mut self, name: &str, concurrency: usize) -> Result<&Runner> {
        let dir = self.dir.join(name);
        let mut runner = Runner::start(
            &self.bins,
            &self.server,
            &dir,
            name,
            concurrency,
            &self.runner_log,
            &self.runner_env,
        )?;
        let started = Instant::now();
        loop {
            if runner.proc.exited() {
                bail!(
                    "runner {name} exited during start-up; its log:\n{}",
                    runner.proc.log_tail()
                );
            }
            let online = self
                .admin
                .list_runners()
                .await?
                .into_iter()
                .any(|r| r.name == name);
            if online {
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!(
                    "runner {name} did not register within 60 s; its log:\n{}",
                    runner.proc.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        eprintln!(
            "[runner] {name} pid {} registered after {:.0} ms",
            runner.proc.pid(),
            started.elapsed().as_secs_f64() * 1000.0
        );
        // A runner registered but its leasing loop may not be waiting yet;
        // runs queued meanwhile are picked up anyway.
        runner.name = name.to_string();
        self.runners.push(runner);
        Ok(self.runners.last().expect("just pushed"))
    }

    /// Creates an app and uploads `artifact` (a .tar.gz) as its first version.
    pub async fn deploy(&self, slug: &str, artifact: Vec<u8>, entrypoint: &str) -> Result<Version> {
        deploy(&self.admin, slug, artifact, entrypoint).await
    }

    /// CPU, memory and I/O counters of the server, the first runner and the bench.
    pub fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot {
            server: self.server.proc.sample()?,
            runner: match self.runners.first() {
                Some(r) => Some(r.proc.sample()?),
                None => None,
            },
            bench: procs::sample_self()?,
        })
    }

    /// Stops runners first, then the server.
    pub async fn stop(mut self) {
        for r in self.runners.drain(..) {
            r.stop().await;
        }
        self.server.stop().await;
    }
}

/// A scratch directory for one scenario: removed at the end unless `--keep`.
pub fn scratch_dir(opts: &Options, label: &str) -> Result<(Option<tempfile::TempDir>, PathBuf)> {
    let root = opts.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&root)?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!("minitower-bench-{label}-"))
        .tempdir_in(&root)
        .context("creating a temp dir")?;
    if opts.keep {
        let path = tmp.keep();
        Ok((None, path))
    } else {
        let path = tmp.path().to_path_buf();
        Ok((Some(tmp), path))
    }
}

/// Creates team `bench` and returns a client holding its admin token.
pub async fn bootstrap(url: &str) -> Result<Client> {
    let anon = Client::new(url, None)?;
    let team = anon
        .bootstrap_team(
            BOOTSTRAP_TOKEN,
            &BootstrapTeamRequest {
                slug: "bench".into(),
                name: "Bench".into(),
                password: None,
            },
        )
        .await
        .context("bootstrapping the team")?;
    Ok(anon.with_token(team.token))
}

/// Creates an app and uploads its first version.
pub async fn deploy(
    admin: &Client,
    slug: &str,
    artifact: Vec<u8>,
    entrypoint: &str,
) -> Result<Version> {
    admin
        .create_app(slug, None)
        .await
        .with_context(|| format!("creating app {slug}"))?;
    let len = artifact.len() as u64;
    admin
        .upload_version(
            slug,
            VersionUpload {
                artifact: reqwest::Body::from(artifact),
                artifact_len: Some(len),
                entrypoint: Some(entrypoint.into()),
                timeout_seconds: Some(60),
                params_schema: None,
            },
        )
        .await
        .with_context(|| format!("uploading a version of {slug}"))
}

/// One run as the client saw it.
#[derive(Debug, Clone)]
pub struct Followed {
    pub run_id: i64,
    pub status: RunStatus,
    pub lines: Vec<LogLine>,
    /// Trigger (request sent) to the stream's `end` event.
    pub elapsed: Duration,
    /// Trigger to the create answer.
    pub create: Duration,
    /// Wall clock when the trigger was sent and when `end` arrived (the
    /// server's timestamps use the same clock: same machine).
    pub sent_at: chrono::DateTime<chrono::Utc>,
    pub ended_at: chrono::DateTime<chrono::Utc>,
    /// Trigger to the last `log` event before `end`.
    pub last_log: Option<Duration>,
}

/// Triggers a run and follows its SSE log stream until `End`.
pub async fn trigger_and_follow(
    admin: &Client,
    app: &str,
    input: serde_json::Value,
) -> Result<Followed> {
    let sent_at = chrono::Utc::now();
    let t0 = Instant::now();
    let (run, _) = admin
        .create_run(
            app,
            &CreateRunRequest {
                input: Some(input),
                ..Default::default()
            },
            None,
        )
        .await
        .with_context(|| format!("triggering {app}"))?;
    let create = t0.elapsed();
    let stream = admin
        .stream_logs(run.id, 0)
        .await
        .with_context(|| format!("following run {}", run.id))?;
    futures::pin_mut!(stream);
    let mut lines = Vec::new();
    let mut last_log = None;
    let follow = async {
        while let Some(ev) = stream.next().await {
            match ev? {
                LogEvent::Log(l) => {
                    last_log = Some(t0.elapsed());
                    lines.push(l)
                }
                LogEvent::End(status) => return Ok::<_, anyhow::Error>(Some(status)),
            }
        }
        Ok(None)
    };
    let status = tokio::time::timeout(Duration::from_secs(300), follow)
        .await
        .with_context(|| format!("run {} did not end within 300 s", run.id))??;
    let elapsed = t0.elapsed();
    let ended_at = chrono::Utc::now();
    let Some(status) = status else {
        bail!(
            "the log stream of run {} closed without an end event",
            run.id
        );
    };
    Ok(Followed {
        run_id: run.id,
        status,
        lines,
        elapsed,
        create,
        sent_at,
        ended_at,
        last_log,
    })
}

/// Queued→finished of a run in milliseconds, from the server's timestamps
/// (millisecond resolution): the run's whole life on the server and runner,
/// without the client's own request and stream overheads.
pub async fn server_span_ms(admin: &Client, run_id: i64) -> Result<f64> {
    let d = admin.get_run(run_id).await?;
    let fin = d
        .run
        .finished_at
        .with_context(|| format!("run {run_id} has no finished_at"))?;
    Ok((fin - d.run.queued_at).num_milliseconds() as f64)
}

/// Fails unless the run completed.
pub fn expect_completed(f: &Followed) -> Result<()> {
    if f.status != RunStatus::Completed {
        let text: Vec<String> = f
            .lines
            .iter()
            .map(|l| format!("[{}] {}", l.stream, l.line))
            .collect();
        bail!(
            "run {} ended {:?}, not completed; its log:\n{}",
            f.run_id,
            f.status,
            text.join("\n")
        );
    }
    Ok(())
}

/// Counters of the processes of a stack at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub server: ProcSample,
    pub runner: Option<ProcSample>,
    pub bench: ProcSample,
}

/// Per-run costs between two snapshots.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Cost {
    pub server: PerRun,
    pub runner: Option<PerRun>,
    pub bench: PerRun,
}

impl Snapshot {
    /// Costs per run from `self` to `later`.
    pub fn cost(&self, later: &Snapshot, runs: usize) -> Cost {
        Cost {
            server: self.server.per_run(&later.server, runs),
            runner: match (&self.runner, &later.runner) {
                (Some(a), Some(b)) => Some(a.per_run(b, runs)),
                _ => None,
            },
            bench: self.bench.per_run(&later.bench, runs),
        }
    }
}

impl Cost {
    /// Adds the CPU-per-run figures to a report.
    pub fn report(&self, r: &mut ScenarioReport) {
        r.metric(Metric::new("server CPU per run", self.server.cpu_ms, "ms"));
        if let Some(run) = &self.runner {
            r.metric(Metric::new("runner CPU per run", run.cpu_ms, "ms"));
            r.metric(Metric::new(
                "Python CPU per run (runner's children)",
                run.children_cpu_ms,
                "ms",
            ));
        }
        r.detail("cost_per_run", self);
    }
}
