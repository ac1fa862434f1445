//! Run and attempt statuses and the state machine that moves between them.
//!
//! Every store implementation asks these pure functions what the next state
//! is, then writes it with a compare-and-set on the state it read. Keeping the
//! rules here means SQLite and Postgres cannot disagree about what is legal.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Lifecycle of a run as the user sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Leased,
    Running,
    Cancelling,
    Completed,
    Failed,
    Cancelled,
    Dead,
}

/// Lifecycle order, so a status can key a `BTreeMap` (`Store::runs_summary`).
impl Ord for RunStatus {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (*self as u8).cmp(&(*other as u8))
    }
}

impl PartialOrd for RunStatus {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Lifecycle of one execution attempt of a run on one runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptStatus {
    Leased,
    Running,
    Cancelling,
    Completed,
    Failed,
    Cancelled,
    Expired,
}

/// The outcome a runner may report for its attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResultStatus {
    Completed,
    Failed,
    Cancelled,
}

impl RunStatus {
    /// All statuses, in lifecycle order (summary endpoints list them all).
    pub const ALL: [RunStatus; 8] = [
        RunStatus::Queued,
        RunStatus::Leased,
        RunStatus::Running,
        RunStatus::Cancelling,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Cancelled,
        RunStatus::Dead,
    ];

    /// Wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Leased => "leased",
            RunStatus::Running => "running",
            RunStatus::Cancelling => "cancelling",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Dead => "dead",
        }
    }

    /// Terminal runs never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled | RunStatus::Dead
        )
    }
}

impl AttemptStatus {
    /// Wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptStatus::Leased => "leased",
            AttemptStatus::Running => "running",
            AttemptStatus::Cancelling => "cancelling",
            AttemptStatus::Completed => "completed",
            AttemptStatus::Failed => "failed",
            AttemptStatus::Cancelled => "cancelled",
            AttemptStatus::Expired => "expired",
        }
    }

    /// Only an active attempt holds a lease.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            AttemptStatus::Leased | AttemptStatus::Running | AttemptStatus::Cancelling
        )
    }
}

impl ResultStatus {
    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultStatus::Completed => "completed",
            ResultStatus::Failed => "failed",
            ResultStatus::Cancelled => "cancelled",
        }
    }
    /// The attempt status a reported result leads to.
    pub fn attempt_status(self) -> AttemptStatus {
        match self {
            ResultStatus::Completed => AttemptStatus::Completed,
            ResultStatus::Failed => AttemptStatus::Failed,
            ResultStatus::Cancelled => AttemptStatus::Cancelled,
        }
    }
    /// The run status a reported result leads to.
    pub fn run_status(self) -> RunStatus {
        match self {
            ResultStatus::Completed => RunStatus::Completed,
            ResultStatus::Failed => RunStatus::Failed,
            ResultStatus::Cancelled => RunStatus::Cancelled,
        }
    }
}

/// A status string that is not one of the known set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}")]
pub struct UnknownStatus(pub String);

macro_rules! impl_str {
    ($t:ty, [$($v:expr),*]) => {
        impl FromStr for $t {
            type Err = UnknownStatus;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $( if s == $v.as_str() { return Ok($v); } )*
                Err(UnknownStatus(s.to_string()))
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
impl_str!(
    RunStatus,
    [
        RunStatus::Queued,
        RunStatus::Leased,
        RunStatus::Running,
        RunStatus::Cancelling,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Cancelled,
        RunStatus::Dead
    ]
);
impl_str!(
    AttemptStatus,
    [
        AttemptStatus::Leased,
        AttemptStatus::Running,
        AttemptStatus::Cancelling,
        AttemptStatus::Completed,
        AttemptStatus::Failed,
        AttemptStatus::Cancelled,
        AttemptStatus::Expired
    ]
);
impl_str!(
    ResultStatus,
    [
        ResultStatus::Completed,
        ResultStatus::Failed,
        ResultStatus::Cancelled
    ]
);

/// Why a transition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The attempt no longer holds the lease (expired, finished, superseded).
    #[error("the lease is no longer active")]
    LeaseGone,
    /// The run is in a state where this action makes no sense.
    #[error("cannot {action} a run that is {status}")]
    Conflict {
        action: &'static str,
        status: RunStatus,
    },
}

/// The statuses a transition writes. `changed == false` means an idempotent
/// repeat: nothing is to be written and the caller answers as before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub run: RunStatus,
    pub attempt: Option<AttemptStatus>,
    pub changed: bool,
}

impl Transition {
    fn to(run: RunStatus, attempt: Option<AttemptStatus>) -> Self {
        Transition {
            run,
            attempt,
            changed: true,
        }
    }
    fn same(run: RunStatus, attempt: Option<AttemptStatus>) -> Self {
        Transition {
            run,
            attempt,
            changed: false,
        }
    }
}

/// A queued run is handed to a runner: run `queued -> leased`, new attempt `leased`.
pub fn lease(run: RunStatus) -> Result<Transition, TransitionError> {
    match run {
        RunStatus::Queued => Ok(Transition::to(
            RunStatus::Leased,
            Some(AttemptStatus::Leased),
        )),
        status => Err(TransitionError::Conflict {
            action: "lease",
            status,
        }),
    }
}

/// The runner acknowledges its lease. Repeating it is harmless; a start
/// after cancel was requested keeps the cancelling state so the runner learns
/// of the cancel.
pub fn start(run: RunStatus, attempt: AttemptStatus) -> Result<Transition, TransitionError> {
    match attempt {
        AttemptStatus::Leased => Ok(Transition::to(
            RunStatus::Running,
            Some(AttemptStatus::Running),
        )),
        AttemptStatus::Running | AttemptStatus::Cancelling => {
            Ok(Transition::same(run, Some(attempt)))
        }
        _ => Err(TransitionError::LeaseGone),
    }
}

/// A heartbeat only extends the lease of an active attempt.
pub fn heartbeat(run: RunStatus, attempt: AttemptStatus) -> Result<Transition, TransitionError> {
    if attempt.is_active() {
        Ok(Transition::same(run, Some(attempt)))
    } else {
        Err(TransitionError::LeaseGone)
    }
}

/// A user cancels. Queued runs end at once; leased or running ones move to
/// `cancelling` and wait for the runner; a second cancel changes nothing.
pub fn cancel(
    run: RunStatus,
    attempt: Option<AttemptStatus>,
) -> Result<Transition, TransitionError> {
    match run {
        RunStatus::Queued => Ok(Transition::to(RunStatus::Cancelled, None)),
        RunStatus::Leased | RunStatus::Running => Ok(Transition::to(
            RunStatus::Cancelling,
            attempt.map(|a| {
                if a.is_active() {
                    AttemptStatus::Cancelling
                } else {
                    a
                }
            }),
        )),
        RunStatus::Cancelling => Ok(Transition::same(run, attempt)),
        status => Err(TransitionError::Conflict {
            action: "cancel",
            status,
        }),
    }
}

/// What the store knows about an attempt that already finished, so a
/// repeated result can be told apart from a conflicting one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedResult {
    pub status: AttemptStatus,
    pub exit_code: Option<i32>,
    pub error_message: Option<String>,
}

/// The runner reports the outcome of its attempt. The run takes the reported
/// status even when a cancel raced it: the first terminal fact wins, and the
/// run converges to exactly one terminal state.
pub fn result(
    run: RunStatus,
    attempt: AttemptStatus,
    reported: ResultStatus,
    exit_code: Option<i32>,
    error_message: Option<&str>,
    recorded: Option<&RecordedResult>,
) -> Result<Transition, TransitionError> {
    if attempt.is_active() {
        return Ok(Transition::to(
            reported.run_status(),
            Some(reported.attempt_status()),
        ));
    }
    match (attempt, recorded) {
        (AttemptStatus::Expired, _) => Err(TransitionError::LeaseGone),
        (_, Some(rec))
            if rec.status == reported.attempt_status()
                && rec.exit_code == exit_code
                && rec.error_message.as_deref() == error_message =>
        {
            Ok(Transition::same(run, Some(attempt)))
        }
        _ => Err(TransitionError::Conflict {
            action: "report a different result for",
            status: run,
        }),
    }
}

/// How many times an attempt may expire without ever having started (a
/// lease answer lost on the way, a runner that died during setup) before
/// such expiries spend retries too, so a run cannot circle forever.
pub const FREE_REQUEUES: i64 = 10;

/// The complete plan for ending an attempt, whoever ends it (a result, a
/// hand-back, the reaper): what the attempt and its run become and what is
/// written with them. The store applies it as-is in one transaction, with
/// compare-and-sets on the statuses it read, and the server turns the
/// outcome into metrics and wake-ups in one place; neither decides anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// The attempt's final status.
    pub attempt: AttemptStatus,
    /// The process's exit code, written to the attempt and, when the run
    /// finishes, to the run.
    pub exit_code: Option<i32>,
    /// Why the attempt ended, when there is more to say than its status.
    pub attempt_message: Option<String>,
    /// What the run becomes. `Queued` hands it back to the queue keeping its
    /// place in line; any other status finishes it.
    pub run: RunStatus,
    /// The run's error message when it finishes (ignored when requeued).
    pub run_message: Option<String>,
    /// True when the run is requeued and its (lease-expiry) retry count goes up.
    pub spends_retry: bool,
    /// Set when a failed attempt is retried ([`retry_failure`]): the run is
    /// requeued with its failure-retry count up by one and may not be leased
    /// again before this delay has passed.
    pub retry_after: Option<Duration>,
}

impl Ending {
    /// The plan for a transition decided by [`result`]: the attempt and the
    /// run take the reported outcome and its exit code and message.
    pub fn from_result(t: Transition, exit_code: Option<i32>, message: Option<&str>) -> Ending {
        Ending {
            attempt: t.attempt.unwrap_or(AttemptStatus::Failed),
            exit_code,
            attempt_message: message.map(str::to_owned),
            run: t.run,
            run_message: message.map(str::to_owned),
            spends_retry: false,
            retry_after: None,
        }
    }
}

/// The reaper found an attempt whose lease passed. The attempt expires; the
/// run is cancelled if a cancel was requested, requeued while it has
/// retries left, and dead otherwise. An attempt that never started (still
/// `leased`: its script never ran) is requeued without spending a retry, up
/// to [`FREE_REQUEUES`] times per run (`attempt_no - 1 - retry_count` counts
/// the earlier attempts that spent none).
pub fn expire(
    run: RunStatus,
    attempt: AttemptStatus,
    cancel_requested: bool,
    retry_count: i64,
    max_retries: i64,
    attempt_no: i64,
) -> Result<Ending, TransitionError> {
    if !attempt.is_active() {
        return Err(TransitionError::LeaseGone);
    }
    let free = attempt == AttemptStatus::Leased
        && attempt_no.saturating_sub(1).saturating_sub(retry_count) < FREE_REQUEUES;
    let (next, spends_retry, run_message) = if cancel_requested || run == RunStatus::Cancelling {
        (
            RunStatus::Cancelled,
            false,
            Some("cancelled; the runner stopped answering".to_string()),
        )
    } else if free {
        (RunStatus::Queued, false, None)
    } else if retry_count < max_retries {
        (RunStatus::Queued, true, None)
    } else {
        (
            RunStatus::Dead,
            false,
            Some(format!(
                "lease expired; gave up after {attempt_no} attempt(s)"
            )),
        )
    };
    Ok(Ending {
        attempt: AttemptStatus::Expired,
        exit_code: None,
        attempt_message: Some("lease expired".into()),
        run: next,
        run_message,
        spends_retry,
        retry_after: None,
    })
}

/// The runner hands its attempt back (it shuts down) without spending a
/// retry: the attempt ends as `expired`, the run is queued again, or
/// cancelled when a cancel was requested meanwhile.
pub fn release(
    run: RunStatus,
    attempt: AttemptStatus,
    cancel_requested: bool,
) -> Result<Ending, TransitionError> {
    if !attempt.is_active() {
        return Err(TransitionError::LeaseGone);
    }
    let next = if cancel_requested || run == RunStatus::Cancelling {
        RunStatus::Cancelled
    } else {
        RunStatus::Queued
    };
    Ok(Ending {
        attempt: AttemptStatus::Expired,
        exit_code: None,
        attempt_message: Some("released by the runner (shutting down)".into()),
        run: next,
        run_message: Some("cancelled; the runner shut down".into()),
        spends_retry: false,
        retry_after: None,
    })
}

/// A run's failure-retry budget as read with it: separate from the
/// lease-expiry budget (`max_retries` / `retry_count`), which only lost
/// runners spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureRetries {
    pub run_id: i64,
    /// Failure retries the run may make (the version's `retries` or the
    /// trigger's own).
    pub allowed: i64,
    /// Failure retries already made.
    pub spent: i64,
    /// The first delay; later ones grow (see [`crate::retry`]).
    pub first_delay: Duration,
}

/// Turns the plan of a failed attempt into a failure retry when the run has
/// budget left and no cancel was requested: the run goes back to `queued`
/// (not finished: no exit code or message on the run, the attempt keeps
/// them) and waits `failure_retry_delay(first, spent + 1, run_id)`. Any
/// other plan (a completed or cancelled attempt, an expiry, a hand-back, a
/// run being cancelled) is returned unchanged, so a cancel always wins.
pub fn retry_failure(e: Ending, cancel_requested: bool, budget: &FailureRetries) -> Ending {
    let failed = e.attempt == AttemptStatus::Failed && e.run == RunStatus::Failed;
    if !failed || cancel_requested || budget.spent >= budget.allowed {
        return e;
    }
    let retry = u32::try_from(budget.spent.saturating_add(1)).unwrap_or(u32::MAX);
    let delay = crate::retry::failure_retry_delay(budget.first_delay, retry, budget.run_id);
    Ending {
        run: RunStatus::Queued,
        run_message: None,
        spends_retry: false,
        retry_after: Some(delay),
        ..e
    }
}

#[cfg(test)]
mod retry_tests;
#[cfg(test)]
mod tests;
