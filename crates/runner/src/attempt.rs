//! One attempt, from lease to result.
//!
//! Heartbeats and log shipping start with the lease. The `start` ack runs
//! alongside the setup (artifact, workspace, environment); the process starts
//! once both are done. Cancel, timeout and shutdown end the process group with
//! SIGTERM then SIGKILL after the grace period; fencing kills it at once and
//! reports nothing. Logs are flushed before the result, which is retried
//! until the control plane acknowledges it.

use crate::artifacts::ArtifactCache;
use crate::backoff::Backoff;
use crate::envs::{EnvCache, PyEnv};
use crate::error::SetupError;
use crate::lease::{LeaseKeeper, Signals};
use crate::logs::{LogShipper, LogSink, Target};
use crate::prestart::Prestarter;
use crate::process::{self, kill_group, GroupGuard, Launch};
use crate::workspace::Workspace;
use crate::RunnerConfig;
use minitower_client::Client;
use minitower_core::api::{Lease, ResultRequest};
use minitower_core::ResultStatus;
use nix::sys::signal::Signal;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;
use tokio::process::Child;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What every attempt of this runner shares.
pub struct Shared {
    pub config: RunnerConfig,
    pub artifacts: ArtifactCache,
    pub envs: EnvCache,
    pub work_dir: PathBuf,
    pub prestart: Option<Arc<Prestarter>>,
    /// Cancels the attempts still running (second signal or drain timeout).
    pub force: CancellationToken,
}

enum Outcome {
    Report(ResultRequest),
    Fenced,
}

fn report(status: ResultStatus, exit_code: Option<i32>, msg: Option<String>) -> Outcome {
    Outcome::Report(ResultRequest {
        status,
        exit_code,
        error_message: msg,
    })
}

struct Prepared {
    ws: Workspace,
    launch: Launch,
    env: PyEnv,
}

/// Runs one leased attempt to its end; never fails, problems become the result.
pub async fn run(shared: Arc<Shared>, client: Client, lease: Lease, leased_at: Instant) {
    let run_id = lease.run_id;
    tracing::info!(run_id, attempt = lease.attempt_no, app = %lease.app, version = lease.version_no, "leased");
    let signals = Signals::default();
    let keeper = LeaseKeeper::start(client.clone(), &lease, leased_at, signals.clone());
    let target = Target {
        client: client.clone(),
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

    let mut workspace = None;
    let outcome = tokio::select! {
        biased;
        _ = signals.fenced.cancelled() => Outcome::Fenced,
        _ = signals.cancel.cancelled() => report(ResultStatus::Cancelled, None, Some("cancelled before the process started".into())),
        _ = shared.force.cancelled() => report(ResultStatus::Cancelled, None, Some("runner shut down before the run started".into())),
        (started, prepared) = async { tokio::join!(ack_start(&client, &lease, &signals), prepare(&shared, &client, &lease, &sink)) } => {
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
                    let o = execute(&shared, &lease, &p, &signals, &sink).await;
                    workspace = Some(p.ws);
                    o
                }
            }
        }
    };

    match outcome {
        Outcome::Fenced => {
            shipper.abandon();
            tracing::warn!(
                run_id,
                "attempt fenced: process killed, nothing more reported"
            );
        }
        Outcome::Report(result) => {
            if shipper.finish().await && !signals.fenced.is_cancelled() {
                send_result(&client, &lease, &result, &signals).await;
            }
        }
    }
    keeper.stop().await;
    drop(workspace);
}

/// Acknowledges the lease; false when the lease is gone.
async fn ack_start(client: &Client, lease: &Lease, signals: &Signals) -> bool {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(3));
    loop {
        match client.start(lease.run_id, &lease.lease_token).await {
            Ok(state) => {
                if state.cancel_requested {
                    signals.cancel.cancel();
                }
                return true;
            }
            Err(e) if e.is_lease_gone() => {
                signals.fenced.cancel();
                return false;
            }
            Err(e) if e.is_transient() => {
                let d = backoff.next_delay();
                tracing::warn!(run_id = lease.run_id, error = %e, retry_in = ?d, "start not acknowledged; will retry");
                tokio::time::sleep(d).await;
            }
            Err(e) => {
                // e.g. a cancel that raced the start: heartbeats will say what to do.
                tracing::warn!(run_id = lease.run_id, error = %e, "start refused; continuing on heartbeats");
                return true;
            }
        }
    }
}

async fn prepare(
    shared: &Shared,
    client: &Client,
    lease: &Lease,
    sink: &LogSink,
) -> Result<Prepared, SetupError> {
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
    let launch = Launch::for_entrypoint(&ws.dir, &lease.entrypoint)?;
    let deps = crate::envs::detect(&ws.dir)?;
    let env = shared.envs.ensure(&deps, &ws.dir, sink).await?;
    Ok(Prepared { ws, launch, env })
}

#[derive(Clone, Copy, PartialEq)]
enum Stop {
    Cancel,
    Timeout,
    Shutdown,
}

async fn execute(
    shared: &Shared,
    lease: &Lease,
    p: &Prepared,
    signals: &Signals,
    sink: &LogSink,
) -> Outcome {
    let vars = process::script_env(lease, &p.ws.dir, &p.env);
    let argv = p.launch.argv(&p.env);
    let warm = match (&shared.prestart, &p.launch) {
        (Some(pre), Launch::Python { script }) if p.env.dir == shared.envs.empty().dir => {
            pre.launch(script, &p.ws.dir, &vars).await
        }
        _ => None,
    };
    let mut child = match warm {
        Some(c) => c,
        None => match process::spawn(&argv, &p.ws.dir, &vars) {
            Ok(c) => c,
            Err(e) => return report(ResultStatus::Failed, None, Some(e.to_string())),
        },
    };
    let pgid = child.id().unwrap_or(0);
    let guard = GroupGuard::new(Some(pgid));
    let out = tokio::spawn(process::pump_lines(
        child.stdout.take(),
        "stdout",
        sink.clone(),
    ));
    let err = tokio::spawn(process::pump_lines(
        child.stderr.take(),
        "stderr",
        sink.clone(),
    ));
    let timeout = u64::try_from(lease.timeout_seconds).ok().filter(|t| *t > 0);
    let deadline = async {
        match timeout {
            Some(t) => tokio::time::sleep(Duration::from_secs(t)).await,
            None => std::future::pending().await,
        }
    };
    let grace = shared.config.kill_grace_period;
    let (stop, status) = tokio::select! {
        biased;
        _ = signals.fenced.cancelled() => (None, None),
        s = child.wait() => (None, s.ok()),
        _ = signals.cancel.cancelled() => (Some(Stop::Cancel), terminate(&mut child, pgid, grace, signals).await),
        _ = deadline => (Some(Stop::Timeout), terminate(&mut child, pgid, grace, signals).await),
        _ = shared.force.cancelled() => (Some(Stop::Shutdown), terminate(&mut child, pgid, grace, signals).await),
    };
    // Whatever is left of the group (background children) goes with the script.
    kill_group(pgid, Signal::SIGKILL);
    if signals.fenced.is_cancelled() {
        let _ = child.wait().await;
        out.abort();
        err.abort();
        guard.disarm();
        return Outcome::Fenced;
    }
    guard.disarm();
    // A grandchild that left the group may hold the pipes open: do not wait forever.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = out.await;
        let _ = err.await;
    })
    .await;
    let code = status.and_then(|s| s.code());
    match stop {
        Some(Stop::Cancel) => report(ResultStatus::Cancelled, code, Some("cancelled".into())),
        Some(Stop::Shutdown) => report(
            ResultStatus::Cancelled,
            code,
            Some("runner shut down before the run finished".into()),
        ),
        Some(Stop::Timeout) => report(
            ResultStatus::Failed,
            code,
            Some(format!("timed out after {} s", lease.timeout_seconds)),
        ),
        None => exit_outcome(status),
    }
}

fn exit_outcome(status: Option<ExitStatus>) -> Outcome {
    match status {
        Some(s) if s.success() => report(ResultStatus::Completed, Some(0), None),
        Some(s) => match (s.code(), s.signal()) {
            (Some(c), _) => report(
                ResultStatus::Failed,
                Some(c),
                Some(format!("exited with code {c}")),
            ),
            (None, Some(sig)) => report(
                ResultStatus::Failed,
                None,
                Some(format!("killed by signal {}", process::signal_name(sig))),
            ),
            (None, None) => report(
                ResultStatus::Failed,
                None,
                Some("process ended abnormally".into()),
            ),
        },
        None => report(
            ResultStatus::Failed,
            None,
            Some("lost track of the process".into()),
        ),
    }
}

/// SIGTERM to the group, SIGKILL after the grace period (at once when fenced).
async fn terminate(
    child: &mut Child,
    pgid: u32,
    grace: Duration,
    signals: &Signals,
) -> Option<ExitStatus> {
    kill_group(pgid, Signal::SIGTERM);
    tokio::select! {
        s = child.wait() => return s.ok(),
        _ = tokio::time::sleep(grace) => {}
        _ = signals.fenced.cancelled() => {}
    }
    kill_group(pgid, Signal::SIGKILL);
    child.wait().await.ok()
}

/// Sends the result until acknowledged, refused as already decided (409) or fenced.
async fn send_result(client: &Client, lease: &Lease, result: &ResultRequest, signals: &Signals) {
    let run_id = lease.run_id;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let r = tokio::select! {
            _ = signals.fenced.cancelled() => return,
            r = client.result(run_id, &lease.lease_token, result) => r,
        };
        match r {
            Ok(ack) => {
                tracing::info!(
                    run_id,
                    status = result.status.as_str(),
                    run_status = ack.run_status.as_str(),
                    "result reported"
                );
                return;
            }
            Err(e) if e.status() == Some(409) => {
                tracing::warn!(run_id, error = %e, "result refused: the attempt was already decided");
                return;
            }
            Err(e) if e.is_lease_gone() => {
                tracing::warn!(run_id, "lease gone before the result was reported");
                signals.fenced.cancel();
                return;
            }
            Err(e) if e.is_transient() => {
                let d = backoff.next_delay();
                tracing::warn!(run_id, error = %e, retry_in = ?d, "result not delivered; will retry");
                tokio::select! {
                    _ = signals.fenced.cancelled() => return,
                    _ = tokio::time::sleep(d) => {}
                }
            }
            Err(e) => {
                tracing::error!(run_id, error = %e, "result refused");
                return;
            }
        }
    }
}
