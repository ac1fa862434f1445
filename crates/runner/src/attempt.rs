//! One attempt, from lease to result.
//!
//! Heartbeats and log shipping start with the lease. The `start` ack runs
//! alongside the setup (artifact, workspace, environment); the process starts
//! once both are done, under a supervisor that holds the fencing deadline
//! (see [`crate::supervisor`]). Cancel and timeout end the process group with
//! SIGTERM, then the whole tree with SIGKILL after the grace period; fencing
//! kills the tree at once and reports nothing; a shutdown kills it and hands
//! the run back (`release`) without spending a retry. Logs are flushed before
//! the result, which is retried until the control plane acknowledges it.
//! The calls to the control plane about the attempt are in `attempt/calls.rs`.

mod calls;

use crate::artifacts::ArtifactCache;
use crate::envs::{EnvCache, PyEnv};
use crate::error::SetupError;
use crate::events;
use crate::forkserver::SlotForks;
use crate::lease::{self, LeaseKeeper, Signals};
use crate::limits::AttemptLimits;
use crate::logs::{LogShipper, LogSink, Target};
use crate::process::{self, Launch};
use crate::registration::Session;
use crate::supervisor::client::{self as sup, Ending, Supervised};
use crate::workspace::Workspace;
use crate::RunnerConfig;
use calls::{ack_start, exit_outcome, release, report, send_result, Outcome};
use minitower_client::Client;
use minitower_core::api::Lease;
use minitower_core::job::{Entry, PtySize, Source};
use minitower_core::ResultStatus;
use nix::sys::signal::Signal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What every attempt of this runner shares.
pub struct Shared {
    pub config: RunnerConfig,
    pub artifacts: ArtifactCache,
    pub envs: EnvCache,
    /// Git checkouts and downloaded binaries (`crate::sources`).
    pub sources: crate::sources::Sources,
    pub work_dir: PathBuf,
    /// Each slot's fork servers (none when `prestart` is off).
    pub prestart: Vec<Arc<SlotForks>>,
    /// Cancels the attempts still running (second signal or drain timeout).
    pub force: CancellationToken,
    /// The supervisor executable.
    pub supervisor: PathBuf,
    /// Where per-attempt cgroups go, when the runner may create them.
    pub cgroups: Option<PathBuf>,
    /// This runner instance's scope marker (see `supervisor::SCOPE_VAR`).
    pub scope: String,
    /// How scripts are separated from the runner and each other.
    pub isolation: crate::isolation::Isolation,
    /// How resource limits are enforced (chosen at start).
    pub limits: crate::limits::Limiter,
}

struct Prepared {
    ws: Workspace,
    launch: Launch,
    env: PyEnv,
    /// A binary source's program, kept from collection while this lives.
    _binary: Option<crate::sources::CachedBinary>,
    /// A pseudo-terminal of this size instead of pipes.
    pty: Option<PtySize>,
}

/// When the lease call was sent and when its answer arrived.
#[derive(Debug, Clone, Copy)]
pub struct LeaseCall {
    pub sent: Instant,
    pub answered: Instant,
}

/// A run leased with the previous one's result, and when that call went.
pub type Next = Option<(Lease, LeaseCall)>;

/// Runs one leased attempt to its end; never fails, problems become the
/// result. Unless `stop` is cancelled by then, the result also leases the
/// slot's next run (one call at the end of a run instead of two), which is
/// returned for the slot to run at once.
pub async fn run(
    shared: Arc<Shared>,
    session: Arc<Session>,
    slot: usize,
    lease: Lease,
    call: LeaseCall,
    stop: &CancellationToken,
) -> Next {
    let run_id = lease.run_id;
    let (_, client) = session.client().await;
    tracing::info!(run_id, attempt = lease.attempt_no, app = %lease.app, version = lease.version_no, "leased");
    let ttl = lease::lease_ttl(&lease);
    let signals = Signals::new(ttl);
    // A lease answered already started (the fast path) needs no `start`
    // call. The server extended the lease after the call was sent, so its
    // send time bounds the fencing deadline as a start's would; after a long
    // poll that bound is too early to be of use, and a heartbeat sent at
    // once sets the deadline instead.
    let started = lease.started.clone();
    let quick = call.answered.duration_since(call.sent) < lease::margin_for(ttl);
    if let Some(state) = &started {
        if quick {
            signals.fence.acked(call.sent);
        }
        if state.cancel_requested {
            signals.cancel.cancel();
        }
    }
    let beat_now = started.is_some() && !quick;
    let keeper = LeaseKeeper::start(
        session.clone(),
        &lease,
        call.answered,
        signals.clone(),
        beat_now,
    );
    let target = Target {
        session: session.clone(),
        run_id,
        lease_token: lease.lease_token.clone(),
    };
    let shipper = LogShipper::start(
        target,
        lease.last_log_seq + 1,
        shared.config.max_log_bytes,
        signals.clone(),
    );
    let sink = shipper.sink();
    // The commit a git source resolved to, reported with the result.
    let commit = std::sync::OnceLock::new();

    let mut workspace = None;
    let outcome = tokio::select! {
        biased;
        _ = signals.fenced.cancelled() => Outcome::Fenced,
        _ = signals.cancel.cancelled() => report(ResultStatus::Cancelled, None, Some("cancelled before the process started".into())),
        _ = shared.force.cancelled() => Outcome::Release("runner shut down before the run started"),
        (started, prepared) = async { tokio::join!(
            async { started.is_some() || ack_start(&session, &lease, &signals).await },
            prepare(&shared, &client, &lease, &sink, &commit),
        ) } => {
            match (started, prepared) {
                (false, _) | (true, Err(SetupError::LeaseGone)) => {
                    signals.fenced.cancel();
                    Outcome::Fenced
                }
                (true, Err(e)) => {
                    tracing::warn!(run_id, error = %e, "setup failed");
                    sink.send("setup", format!("error: {e}"));
                    report(ResultStatus::Failed, None, Some(e.to_string()))
                }
                (true, Ok(p)) => {
                    let o = execute(&shared, slot, &lease, &p, &signals, &sink).await;
                    workspace = Some(p.ws);
                    o
                }
            }
        }
    };

    let mut next = None;
    match outcome {
        Outcome::Fenced => {
            shipper.abandon();
            tracing::warn!(
                run_id,
                "attempt fenced: process tree killed, nothing more reported"
            );
        }
        Outcome::Report(result) => {
            // A server with the fast path takes the last log lines with the
            // result; an older one gets them as a batch first.
            let tail = if lease.started.is_some() {
                shipper.finish_with_tail().await
            } else {
                shipper.finish().await.then(Vec::new)
            };
            if let Some(tail) = tail.filter(|_| !signals.fenced.is_cancelled()) {
                let commit = commit.get().map(String::as_str);
                // Only a server with the fast path (a started lease) may
                // know `lease_next`; an older one would ignore it anyway.
                let ask =
                    lease.started.is_some() && !stop.is_cancelled() && !shared.force.is_cancelled();
                let sent = Instant::now();
                let leased =
                    send_result(&session, &lease, &result, tail, commit, ask, &signals).await;
                // `sent` is before the first try: a fencing deadline from
                // it is never late.
                next = leased.map(|l| {
                    let answered = Instant::now();
                    (*l, LeaseCall { sent, answered })
                });
            }
        }
        Outcome::Release(why) => {
            if shipper.finish().await && !signals.fenced.is_cancelled() {
                release(&session, &lease, why, &signals).await;
            }
        }
    }
    keeper.stop().await;
    drop(workspace);
    next
}

async fn prepare(
    shared: &Shared,
    client: &Client,
    lease: &Lease,
    sink: &LogSink,
    commit: &std::sync::OnceLock<String>,
) -> Result<Prepared, SetupError> {
    let spec = lease.job_spec();
    // A git source's workspace is its checkout; the others unpack the
    // archive (a binary source runs its downloaded program in it).
    let mut binary = None;
    let ws = match &spec.source {
        Source::Git {
            url,
            git_ref,
            secret,
        } => {
            let source = (url.as_str(), git_ref.as_str(), secret.as_deref());
            let c = shared
                .sources
                .checkout(lease, source, &shared.work_dir, sink)
                .await?;
            let _ = commit.set(c.commit);
            c.ws
        }
        Source::Binary { url, sha256 } => {
            binary = Some(shared.sources.binary(lease, url, sha256, sink).await?);
            unpack_archive(shared, client, lease, sink).await?
        }
        Source::Archive => unpack_archive(shared, client, lease, sink).await?,
    };
    // A script is checked before its environment is built; a command's
    // program is looked up on the PATH the environment starts.
    let script = match &spec.entry {
        Entry::Script { path } => Some(Launch::for_entrypoint(&ws.dir, path)?),
        _ => None,
    };
    let deps = crate::envs::detect(&ws.dir)?;
    let env = shared.envs.ensure(&deps, &ws.dir, sink).await?;
    let program = binary.as_ref().map(|b| b.path.as_path());
    let launch = match script {
        Some(l) => l,
        None => Launch::for_entry(&spec.entry, &ws.dir, &env, program)?,
    };
    Ok(Prepared {
        ws,
        launch,
        env,
        _binary: binary,
        pty: spec.pty,
    })
}

/// The version's archive, downloaded (or cached) and unpacked into a fresh
/// workspace.
async fn unpack_archive(
    shared: &Shared,
    client: &Client,
    lease: &Lease,
    sink: &LogSink,
) -> Result<Workspace, SetupError> {
    let artifact = shared
        .artifacts
        .get(
            client,
            lease.run_id,
            &lease.lease_token,
            &lease.artifact_sha256,
        )
        .await?;
    if !artifact.hit {
        sink.send(
            "setup",
            format!(
                "downloaded artifact {}",
                &lease.artifact_sha256[..12.min(lease.artifact_sha256.len())]
            ),
        );
    }
    let ws = Workspace::unpack(
        &shared.work_dir,
        lease.run_id,
        lease.attempt_no,
        &artifact.path,
    )
    .await?;
    drop(artifact);
    Ok(ws)
}

#[derive(Clone, Copy, PartialEq)]
enum Stop {
    Cancel,
    Timeout,
    Shutdown,
}

/// Starts the script under a supervisor (forked by the slot's fork server
/// when it fits) with the current fencing deadline.
async fn spawn(
    shared: &Shared,
    slot: usize,
    lease: &Lease,
    p: &Prepared,
    signals: &Signals,
    sink: &LogSink,
    limits: &AttemptLimits,
) -> Result<Supervised, SetupError> {
    let input = process::write_input(&p.ws.dir, &lease.input)?;
    let mut vars = process::script_env(lease, &p.ws.dir, &p.env, &input);
    let user = shared.isolation.user_for(slot);
    if user.is_some() {
        // Its own home and temp dir, inside the workspace only it can read.
        let tmp = p.ws.dir.join(".minitower").join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| SetupError::Io(e.to_string()))?;
        vars.insert("HOME".into(), p.ws.dir.clone().into());
        vars.insert("TMPDIR".into(), tmp.into());
    }
    crate::isolation::hand_over(&p.ws.dir, user)
        .map_err(|e| SetupError::Io(format!("workspace ownership: {e}")))?;
    for note in &input.notes {
        sink.send("setup", note.clone());
    }
    if p.pty.is_some() {
        process::terminal_env(&mut vars, lease, &input);
    }
    vars.insert(
        crate::supervisor::SCOPE_VAR.into(),
        shared.scope.clone().into(),
    );
    // Nothing runs before a start or heartbeat was acknowledged: that is
    // where the fencing deadline comes from.
    let mut acks = signals.fence.subscribe();
    let deadline = loop {
        if let Some(d) = *acks.borrow_and_update() {
            break d;
        }
        tokio::select! {
            _ = signals.fenced.cancelled() => return Err(SetupError::LeaseGone),
            r = acks.changed() => if r.is_err() { return Err(SetupError::LeaseGone) },
        }
    };
    let cgroup = limits.cgroup().cloned();
    // Each slot has its own fork servers (running as the slot's user), one
    // per environment; they fork plain Python scripts on pipes only,
    // outside any limits.
    if let (Some(forks), Launch::Python { script }) = (shared.prestart.get(slot), &p.launch) {
        if p.pty.is_none() && !limits.needs_plain_start() {
            if let Some(fork) = forks.for_env(&p.env.dir) {
                let forked = fork
                    .launch(script, &p.ws.dir, &vars, deadline, cgroup.clone())
                    .await;
                if let Some(s) = forked {
                    return Ok(s);
                }
            }
        }
    }
    let argv = p.launch.argv(&p.env);
    let launch = sup::Launch {
        exe: &shared.supervisor,
        argv: &argv,
        cwd: &p.ws.dir,
        env: &vars,
        deadline: Some(deadline),
        cgroup,
        user,
    };
    Supervised::start_confined(launch, p.pty, limits.confine().clone()).await
}

async fn execute(
    shared: &Shared,
    slot: usize,
    lease: &Lease,
    p: &Prepared,
    signals: &Signals,
    sink: &LogSink,
) -> Outcome {
    let name = format!("{}-{}", lease.run_id, lease.attempt_no);
    let kill_cgroup = shared.cgroups.as_ref().map(|b| b.join(&name));
    let wanted = lease.job.as_ref().map(|j| j.limits).unwrap_or_default();
    let limits = match shared
        .limits
        .prepare(&name, &wanted, kill_cgroup, &p.ws.dir)
    {
        Ok(l) => l,
        Err(e) => return report(ResultStatus::Failed, None, Some(e.to_string())),
    };
    for note in limits.notes() {
        sink.send("setup", note.clone());
    }
    let mut child = match spawn(shared, slot, lease, p, signals, sink, &limits).await {
        Ok(c) => c,
        Err(SetupError::LeaseGone) => {
            signals.fenced.cancel();
            return Outcome::Fenced;
        }
        Err(e) => return report(ResultStatus::Failed, None, Some(e.to_string())),
    };
    child.limits_mode = limits.mode();
    let began = Instant::now();
    sink.send(
        events::STREAM,
        events::started(
            child.pid,
            &shared.config.name,
            lease.attempt_no,
            child.limits_mode,
        ),
    );
    tracing::debug!(
        run_id = lease.run_id,
        pid = child.pid,
        cgroup = child.in_cgroup,
        "script started under its supervisor"
    );
    // Secret values never leave the runner in the output: masked in the
    // byte stream before it is split into log lines (crate::mask).
    let masker = crate::mask::Masker::new(lease.secrets.0.values());
    let out = tokio::spawn(process::pump_masked(
        child.stdout.take(),
        "stdout",
        sink.clone(),
        masker.clone(),
    ));
    let err = tokio::spawn(process::pump_masked(
        child.stderr.take(),
        "stderr",
        sink.clone(),
        masker,
    ));
    let timeout_at = u64::try_from(lease.timeout_seconds)
        .ok()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t));
    let grace = shared.config.kill_grace_period;
    let mut deadlines = signals.fence.subscribe();
    let mut stop: Option<Stop> = None;
    let mut kill_at: Option<Instant> = None;
    let mut killed = false;
    let (ctl, waiter) = (&mut child.control, &mut child.waiter);
    let mut ending: Ending = loop {
        tokio::select! {
            biased;
            _ = signals.fenced.cancelled(), if !killed => {
                ctl.kill().await;
                killed = true;
            }
            e = waiter.wait() => break e,
            Ok(()) = deadlines.changed() => {
                let d = *deadlines.borrow_and_update();
                ctl.set_deadline(d).await;
            }
            _ = signals.cancel.cancelled(), if stop.is_none() => stop = Some(Stop::Cancel),
            _ = sleep_until_opt(timeout_at), if stop.is_none() => stop = Some(Stop::Timeout),
            _ = shared.force.cancelled(), if stop.is_none() => stop = Some(Stop::Shutdown),
            _ = sleep_until_opt(kill_at), if !killed => {
                ctl.kill().await;
                killed = true;
            }
            _ = limits.disk_exceeded(), if !killed => {
                ctl.kill().await;
                killed = true;
            }
        }
        if stop.is_some() && kill_at.is_none() {
            ctl.signal(Signal::SIGTERM).await;
            kill_at = Some(Instant::now() + grace);
        }
    };
    if !ending.killed.is_empty() {
        sink.send(
            "system",
            format!(
                "killed {} process(es) the script left running: {}",
                ending.killed.len(),
                ending.killed.join(", ")
            ),
        );
    }
    if ending.fenced || signals.fenced.is_cancelled() {
        out.abort();
        err.abort();
        signals.fenced.cancel();
        return Outcome::Fenced;
    }
    // The pipes close when the whole tree is gone; the bound is a safety net.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = out.await;
        let _ = err.await;
    })
    .await;
    // Whether a limit ended it, from the kernel's counters (crate::limits).
    limits.finish(&mut ending).await;
    sink.send(events::STREAM, events::finished(&ending, began.elapsed()));
    let code = ending.code;
    match stop {
        Some(Stop::Cancel) => report(ResultStatus::Cancelled, code, Some("cancelled".into())),
        Some(Stop::Shutdown) => Outcome::Release("runner shut down before the run finished"),
        Some(Stop::Timeout) => report(
            ResultStatus::Failed,
            code,
            Some(format!("timed out after {} s", lease.timeout_seconds)),
        ),
        None => exit_outcome(&ending),
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
