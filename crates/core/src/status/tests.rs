use super::*;
use AttemptStatus as A;
use RunStatus as R;

const ACTIVE_ATTEMPTS: [AttemptStatus; 3] = [A::Leased, A::Running, A::Cancelling];
const DONE_ATTEMPTS: [AttemptStatus; 4] = [A::Completed, A::Failed, A::Cancelled, A::Expired];

#[test]
fn status_strings_round_trip() {
    for s in RunStatus::ALL {
        assert_eq!(s.as_str().parse::<RunStatus>().unwrap(), s);
    }
    for s in ACTIVE_ATTEMPTS.iter().chain(DONE_ATTEMPTS.iter()) {
        assert_eq!(s.as_str().parse::<AttemptStatus>().unwrap(), *s);
    }
    assert!("bogus".parse::<RunStatus>().is_err());
    assert_eq!(
        serde_json::to_string(&R::Cancelling).unwrap(),
        "\"cancelling\""
    );
}

#[test]
fn only_queued_runs_can_be_leased() {
    let t = lease(R::Queued).unwrap();
    assert_eq!(t.run, R::Leased);
    assert_eq!(t.attempt, Some(A::Leased));
    assert!(t.changed);
    for s in RunStatus::ALL.into_iter().filter(|s| *s != R::Queued) {
        assert!(
            matches!(lease(s), Err(TransitionError::Conflict { .. })),
            "{s}"
        );
    }
}

#[test]
fn start_moves_leased_to_running_and_repeats_harmlessly() {
    let t = start(R::Leased, A::Leased).unwrap();
    assert_eq!(
        (t.run, t.attempt, t.changed),
        (R::Running, Some(A::Running), true)
    );
    let t = start(R::Running, A::Running).unwrap();
    assert!(!t.changed);
    let t = start(R::Cancelling, A::Cancelling).unwrap();
    assert_eq!(
        (t.run, t.attempt, t.changed),
        (R::Cancelling, Some(A::Cancelling), false)
    );
    for a in DONE_ATTEMPTS {
        assert_eq!(start(R::Failed, a), Err(TransitionError::LeaseGone));
    }
}

#[test]
fn heartbeat_needs_an_active_attempt() {
    for a in ACTIVE_ATTEMPTS {
        assert!(!heartbeat(R::Running, a).unwrap().changed);
    }
    for a in DONE_ATTEMPTS {
        assert_eq!(heartbeat(R::Queued, a), Err(TransitionError::LeaseGone));
    }
}

#[test]
fn cancel_rules() {
    let t = cancel(R::Queued, None).unwrap();
    assert_eq!((t.run, t.attempt, t.changed), (R::Cancelled, None, true));
    for (run, att) in [(R::Leased, A::Leased), (R::Running, A::Running)] {
        let t = cancel(run, Some(att)).unwrap();
        assert_eq!(
            (t.run, t.attempt, t.changed),
            (R::Cancelling, Some(A::Cancelling), true)
        );
    }
    let t = cancel(R::Cancelling, Some(A::Cancelling)).unwrap();
    assert!(!t.changed);
    assert_eq!(t.run, R::Cancelling);
    for run in [R::Completed, R::Failed, R::Cancelled, R::Dead] {
        assert!(
            matches!(cancel(run, None), Err(TransitionError::Conflict { .. })),
            "{run}"
        );
    }
}

#[test]
fn result_from_active_attempt_sets_run_status() {
    for a in ACTIVE_ATTEMPTS {
        for (rep, run, att) in [
            (ResultStatus::Completed, R::Completed, A::Completed),
            (ResultStatus::Failed, R::Failed, A::Failed),
            (ResultStatus::Cancelled, R::Cancelled, A::Cancelled),
        ] {
            let t = result(R::Running, a, rep, Some(0), None, None).unwrap();
            assert_eq!((t.run, t.attempt, t.changed), (run, Some(att), true));
        }
    }
}

#[test]
fn cancel_racing_result_converges_to_the_result() {
    // The run was cancelling when the runner's "completed" arrived.
    let t = result(
        R::Cancelling,
        A::Cancelling,
        ResultStatus::Completed,
        Some(0),
        None,
        None,
    )
    .unwrap();
    assert_eq!(t.run, R::Completed);
    // And cancel after the result is a conflict, not a second terminal state.
    assert!(cancel(t.run, t.attempt).is_err());
}

#[test]
fn repeated_result_is_idempotent_and_different_one_conflicts() {
    let rec = RecordedResult {
        status: A::Failed,
        exit_code: Some(3),
        error_message: None,
    };
    let t = result(
        R::Failed,
        A::Failed,
        ResultStatus::Failed,
        Some(3),
        None,
        Some(&rec),
    )
    .unwrap();
    assert!(!t.changed);
    assert!(matches!(
        result(
            R::Failed,
            A::Failed,
            ResultStatus::Completed,
            Some(0),
            None,
            Some(&rec)
        ),
        Err(TransitionError::Conflict { .. })
    ));
    assert!(matches!(
        result(
            R::Failed,
            A::Failed,
            ResultStatus::Failed,
            Some(4),
            None,
            Some(&rec)
        ),
        Err(TransitionError::Conflict { .. })
    ));
}

#[test]
fn late_result_after_expiry_is_lease_gone() {
    assert_eq!(
        result(
            R::Queued,
            A::Expired,
            ResultStatus::Completed,
            Some(0),
            None,
            None
        ),
        Err(TransitionError::LeaseGone)
    );
}

#[test]
fn expiry_requeues_then_dies_or_cancels() {
    let e = expire(R::Running, A::Running, false, 0, 2, 1).unwrap();
    assert_eq!(
        (e.run, Some(e.attempt), e.spends_retry),
        (R::Queued, Some(A::Expired), true)
    );
    let e = expire(R::Running, A::Running, false, 1, 2, 2).unwrap();
    assert_eq!((e.run, e.spends_retry), (R::Queued, true));
    let e = expire(R::Running, A::Running, false, 2, 2, 3).unwrap();
    assert_eq!((e.run, e.spends_retry), (R::Dead, false));
    let e = expire(R::Cancelling, A::Cancelling, true, 0, 2, 1).unwrap();
    assert_eq!((e.run, e.spends_retry), (R::Cancelled, false));
    let e = expire(R::Leased, A::Leased, true, 0, 2, 1).unwrap();
    assert_eq!(e.run, R::Cancelled);
    for a in DONE_ATTEMPTS {
        assert_eq!(
            expire(R::Failed, a, false, 0, 2, 1),
            Err(TransitionError::LeaseGone)
        );
    }
}

#[test]
fn an_attempt_that_never_started_spends_no_retry() {
    // max_retries = 0: the lost lease answer still leads to a run, not `dead`.
    let e = expire(R::Leased, A::Leased, false, 0, 0, 1).unwrap();
    assert_eq!(
        (e.run, Some(e.attempt), e.spends_retry),
        (R::Queued, Some(A::Expired), false)
    );
    // ... up to FREE_REQUEUES free expiries per run, then retries are spent.
    let last_free = FREE_REQUEUES; // attempts 1..=FREE_REQUEUES were free
    let e = expire(R::Leased, A::Leased, false, 0, 0, last_free).unwrap();
    assert_eq!((e.run, e.spends_retry), (R::Queued, false));
    let e = expire(R::Leased, A::Leased, false, 0, 0, last_free + 1).unwrap();
    assert_eq!((e.run, e.spends_retry), (R::Dead, false));
    let e = expire(R::Leased, A::Leased, false, 0, 1, last_free + 1).unwrap();
    assert_eq!((e.run, e.spends_retry), (R::Queued, true));
}

#[test]
fn release_requeues_without_a_retry_or_cancels() {
    for a in ACTIVE_ATTEMPTS {
        let run = if a == A::Cancelling {
            R::Cancelling
        } else {
            R::Running
        };
        let t = release(run, a, false).unwrap();
        let want = if a == A::Cancelling {
            R::Cancelled
        } else {
            R::Queued
        };
        assert_eq!((t.run, Some(t.attempt)), (want, Some(A::Expired)));
        assert!(!t.spends_retry, "a hand-back never spends a retry");
    }
    assert_eq!(
        release(R::Running, A::Running, true).unwrap().run,
        R::Cancelled
    );
    for a in DONE_ATTEMPTS {
        assert_eq!(
            release(R::Failed, a, false),
            Err(TransitionError::LeaseGone)
        );
    }
}

#[test]
fn endings_are_complete_plans() {
    // What the reaper writes is decided here, not in the store.
    let dead = expire(R::Running, A::Running, false, 2, 2, 3).unwrap();
    assert_eq!(dead.attempt_message.as_deref(), Some("lease expired"));
    assert_eq!(
        dead.run_message.as_deref(),
        Some("lease expired; gave up after 3 attempt(s)")
    );
    assert_eq!(dead.exit_code, None);
    let cancelled = expire(R::Cancelling, A::Cancelling, true, 0, 2, 1).unwrap();
    assert_eq!(
        cancelled.run_message.as_deref(),
        Some("cancelled; the runner stopped answering")
    );
    let requeued = expire(R::Running, A::Running, false, 0, 2, 1).unwrap();
    assert_eq!(requeued.run_message, None, "a requeued run has no error");
    let released = release(R::Running, A::Running, false).unwrap();
    assert_eq!(
        released.attempt_message.as_deref(),
        Some("released by the runner (shutting down)")
    );
    // A result's plan carries the reported exit code and message to both rows.
    let t = result(
        R::Running,
        A::Running,
        ResultStatus::Failed,
        Some(3),
        Some("boom"),
        None,
    )
    .unwrap();
    let e = Ending::from_result(t, Some(3), Some("boom"));
    assert_eq!(
        (e.attempt, e.run, e.exit_code, e.spends_retry),
        (A::Failed, R::Failed, Some(3), false)
    );
    assert_eq!(e.attempt_message.as_deref(), Some("boom"));
    assert_eq!(e.run_message.as_deref(), Some("boom"));
}

#[test]
fn terminal_sets_match() {
    for s in RunStatus::ALL {
        let terminal = matches!(s, R::Completed | R::Failed | R::Cancelled | R::Dead);
        assert_eq!(s.is_terminal(), terminal);
    }
    for a in ACTIVE_ATTEMPTS {
        assert!(a.is_active());
    }
    for a in DONE_ATTEMPTS {
        assert!(!a.is_active());
    }
}
