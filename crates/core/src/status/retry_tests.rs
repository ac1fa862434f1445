//! Failure retries in the ending plan: exhaustive over every plan a result,
//! an expiry or a hand-back can produce, with and without budget and cancel.

use super::*;
use crate::retry::{base_delay, failure_retry_delay};
use AttemptStatus as A;
use RunStatus as R;

const RUN_STATUSES_WITH_AN_ATTEMPT: [R; 3] = [R::Leased, R::Running, R::Cancelling];
const ACTIVE: [A; 3] = [A::Leased, A::Running, A::Cancelling];
const RESULTS: [ResultStatus; 3] = [
    ResultStatus::Completed,
    ResultStatus::Failed,
    ResultStatus::Cancelled,
];

fn budget(allowed: i64, spent: i64) -> FailureRetries {
    FailureRetries {
        run_id: 42,
        allowed,
        spent,
        first_delay: Duration::from_secs(2),
    }
}

/// Every plan `result` makes for an active attempt.
fn result_plans() -> Vec<(R, Ending)> {
    let mut out = Vec::new();
    for run in RUN_STATUSES_WITH_AN_ATTEMPT {
        for attempt in ACTIVE {
            for reported in RESULTS {
                let code = (reported != ResultStatus::Completed).then_some(1);
                let t = result(run, attempt, reported, code, Some("m"), None).unwrap();
                out.push((run, Ending::from_result(t, code, Some("m"))));
            }
        }
    }
    out
}

#[test]
fn only_a_failed_attempt_with_budget_and_no_cancel_is_retried() {
    for (run, plan) in result_plans() {
        for cancel_requested in [false, true] {
            for (allowed, spent) in [(0, 0), (1, 0), (3, 2), (3, 3), (100, 99)] {
                let b = budget(allowed, spent);
                let out = retry_failure(plan.clone(), cancel_requested, &b);
                let retried = plan.run == R::Failed
                    && plan.attempt == A::Failed
                    && !cancel_requested
                    && spent < allowed;
                if retried {
                    assert_eq!(out.run, R::Queued, "{run:?} {plan:?}");
                    // the attempt keeps its outcome; the run is not finished
                    assert_eq!(out.attempt, A::Failed);
                    assert_eq!(out.exit_code, plan.exit_code);
                    assert_eq!(out.attempt_message, plan.attempt_message);
                    assert_eq!(out.run_message, None);
                    assert!(!out.spends_retry, "the lease budget is not spent");
                    let retry = (spent + 1) as u32;
                    assert_eq!(
                        out.retry_after,
                        Some(failure_retry_delay(b.first_delay, retry, b.run_id))
                    );
                } else {
                    assert_eq!(
                        out, plan,
                        "{run:?} cancel={cancel_requested} {allowed}/{spent}"
                    );
                }
            }
        }
    }
}

#[test]
fn expiries_and_hand_backs_never_spend_failure_retries() {
    for run in RUN_STATUSES_WITH_AN_ATTEMPT {
        for attempt in ACTIVE {
            for cancel in [false, true] {
                for (retry_count, max) in [(0, 0), (0, 2), (2, 2)] {
                    for attempt_no in [1, 5, 30] {
                        let e = expire(run, attempt, cancel, retry_count, max, attempt_no).unwrap();
                        assert_eq!(e.retry_after, None);
                        assert_eq!(retry_failure(e.clone(), cancel, &budget(5, 0)), e);
                    }
                }
                let e = release(run, attempt, cancel).unwrap();
                assert_eq!(e.retry_after, None);
                assert_eq!(retry_failure(e.clone(), cancel, &budget(5, 0)), e);
            }
        }
    }
}

#[test]
fn the_delay_grows_within_the_backoff_bounds() {
    let first = Duration::from_secs(2);
    let mut last = Duration::ZERO;
    for spent in 0..12 {
        let t = result(
            R::Running,
            A::Running,
            ResultStatus::Failed,
            Some(1),
            None,
            None,
        )
        .unwrap();
        let plan = Ending::from_result(t, Some(1), None);
        let d = retry_failure(
            plan,
            false,
            &FailureRetries {
                run_id: 7,
                allowed: 100,
                spent,
                first_delay: first,
            },
        )
        .retry_after
        .unwrap();
        let base = base_delay(first, spent as u32 + 1);
        assert!(
            d <= base && d >= base * 3 / 4,
            "retry {}: {d:?} vs {base:?}",
            spent + 1
        );
        assert!(d >= last || base == crate::retry::MAX_RETRY_DELAY);
        last = d;
    }
}
