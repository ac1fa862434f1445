//! The attempt's calls to the control plane besides heartbeats and logs:
//! the `start` ack that starts the fencing deadline, the result (retried
//! until acknowledged, carrying the last log lines and a git commit) and
//! the hand-back on shutdown; and how a process's end becomes the result.

use crate::lease::Signals;
use crate::process;
use crate::registration::Session;
use crate::retry::{self, CallError, Delays};
use crate::supervisor::client::Ending;
use minitower_core::api::{Lease, NewLogLine, ResultReport, ResultRequest};
use minitower_core::ResultStatus;
use std::time::Duration;
use tokio::time::Instant;

/// What an attempt ends with.
pub(super) enum Outcome {
    Report(ResultRequest),
    /// Hand the run back without spending a retry (the runner shuts down).
    Release(&'static str),
    Fenced,
}

pub(super) fn report(status: ResultStatus, exit_code: Option<i32>, msg: Option<String>) -> Outcome {
    Outcome::Report(ResultRequest {
        status,
        exit_code,
        error_message: msg,
    })
}

/// Acknowledges the lease; false when the lease is gone. Its send time
/// starts the fencing deadline.
pub(super) async fn ack_start(session: &Session, lease: &Lease, signals: &Signals) -> bool {
    let delays = Delays::new(Duration::from_millis(100), Duration::from_secs(3));
    let sent = std::sync::Mutex::new(Instant::now());
    let answer = retry::call(
        session,
        &signals.fenced,
        delays,
        "start",
        lease.run_id,
        |client| {
            *sent.lock().expect("unpoisoned") = Instant::now();
            async move { client.start(lease.run_id, &lease.lease_token).await }
        },
    )
    .await;
    match answer {
        Ok(state) => {
            signals.fence.acked(*sent.lock().expect("unpoisoned"));
            if state.cancel_requested {
                signals.cancel.cancel();
            }
            true
        }
        Err(CallError::LeaseGone) => {
            signals.fenced.cancel();
            false
        }
        Err(CallError::Stopped) => false,
        Err(CallError::Refused(e)) => {
            // Heartbeats will say what to do; the script waits for one.
            tracing::warn!(run_id = lease.run_id, error = %e, "start refused; continuing on heartbeats");
            true
        }
    }
}

pub(super) fn exit_outcome(e: &Ending) -> Outcome {
    if let Some(reason) = &e.reason {
        return report(ResultStatus::Failed, e.code, Some(reason.clone()));
    }
    match (e.code, e.signal) {
        (Some(0), _) => report(ResultStatus::Completed, Some(0), None),
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
        (None, None) if e.lost => report(
            ResultStatus::Failed,
            None,
            Some("the supervisor of the process died unexpectedly".into()),
        ),
        (None, None) => report(
            ResultStatus::Failed,
            None,
            Some("process ended abnormally".into()),
        ),
    }
}

/// Sends the result until acknowledged, refused as already decided (409) or
/// fenced. A 401 (the runner token was rotated, e.g. by a second process
/// with the same name) registers again and retries with the new token.
/// The last log lines and a git source's commit go in the same body (a
/// server without them ignores both fields). With `lease_next` the same
/// call leases this slot's next run, which it returns (a server without
/// this returns none, and the slot long-polls as before).
pub(super) async fn send_result(
    session: &Session,
    lease: &Lease,
    result: &ResultRequest,
    tail: Vec<NewLogLine>,
    source_commit: Option<&str>,
    lease_next: bool,
    signals: &Signals,
) -> Option<Box<Lease>> {
    let run_id = lease.run_id;
    let delays = Delays::new(Duration::from_millis(100), Duration::from_secs(5));
    let plain = tail.is_empty() && source_commit.is_none() && !lease_next;
    let report = (!plain).then(|| ResultReport {
        source_commit: source_commit.map(str::to_string),
        lease_next,
        ..ResultReport::new(result, tail)
    });
    let report = report.as_ref();
    let answer = retry::call(
        session,
        &signals.fenced,
        delays,
        "result",
        run_id,
        |client| async move {
            match report {
                Some(r) => client.result_with_logs(run_id, &lease.lease_token, r).await,
                None => client.result(run_id, &lease.lease_token, result).await,
            }
        },
    )
    .await;
    match answer {
        Ok(ack) => {
            tracing::info!(
                run_id,
                status = result.status.as_str(),
                run_status = ack.run_status.as_str(),
                "result reported"
            );
            return ack.next;
        }
        Err(CallError::LeaseGone) => {
            tracing::warn!(run_id, "lease gone before the result was reported");
            signals.fenced.cancel();
        }
        Err(CallError::Stopped) => {}
        Err(CallError::Refused(e)) if e.status() == Some(409) => {
            tracing::warn!(run_id, error = %e, "result refused: the attempt was already decided");
        }
        Err(CallError::Refused(e)) => tracing::error!(run_id, error = %e, "result refused"),
    }
    None
}

/// Hands the run back without spending a retry. A server without the
/// `release` call gets the old answer: the attempt reported as cancelled.
/// Gives up after ten transient failures: the lease then simply expires.
pub(super) async fn release(
    session: &Session,
    lease: &Lease,
    why: &'static str,
    signals: &Signals,
) {
    let run_id = lease.run_id;
    let delays = Delays::limited(Duration::from_millis(100), Duration::from_secs(2), 10);
    let answer = retry::call(
        session,
        &signals.fenced,
        delays,
        "release",
        run_id,
        |client| async move { client.release(run_id, &lease.lease_token).await },
    )
    .await;
    match answer {
        Ok(ack) => tracing::info!(
            run_id,
            run_status = ack.run_status.as_str(),
            "run handed back: {why}"
        ),
        Err(CallError::LeaseGone | CallError::Stopped) => {}
        Err(CallError::Refused(e)) if e.status() == Some(409) => {}
        Err(CallError::Refused(e)) if matches!(e.status(), Some(404 | 405)) => {
            let result = ResultRequest {
                status: ResultStatus::Cancelled,
                exit_code: None,
                error_message: Some(why.into()),
            };
            send_result(session, lease, &result, Vec::new(), None, false, signals).await;
        }
        Err(CallError::Refused(e)) => {
            tracing::warn!(run_id, error = %e, "could not hand the run back; its lease will expire")
        }
    }
}
