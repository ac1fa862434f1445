//! Failure retries: a failed attempt with budget left queues its run again
//! with a not-before time the lease respects; the budget is the run's own
//! (from the version, or the trigger), separate from the lease-expiry one.

use super::*;
use minitower_core::retry::failure_retry_delay;
use minitower_core::status::{AttemptStatus, RunStatus};

/// Milliseconds of a delay, as `not_before` is stored.
fn delay_ms(first_ms: i64, retry: u32, run_id: i64) -> i64 {
    failure_retry_delay(Duration::from_millis(first_ms as u64), retry, run_id).as_millis() as i64
}

/// Two failures then a success: the run is requeued twice with growing
/// delays, skipped by the lease until each not-before, and completes on
/// attempt 3; attempts keep their order and exit codes.
pub async fn failed_attempt_requeues_until_the_budget_is_spent(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let run = f
        .run_with(1, |r| {
            r.failure_retries = Some(2);
            r.retry_delay_ms = Some(10_000);
        })
        .await;
    assert_eq!(
        (
            run.failure_retries,
            run.failure_retry_count,
            run.retry_delay_ms,
            run.not_before
        ),
        (2, 0, 10_000, None)
    );
    let runner = f.runner("default", 1).await;
    let mut now = 2;
    for retry in 1..=2u32 {
        let h = lease(&store, &runner, now).await.unwrap();
        assert_eq!(h.leased.lease.attempt_no, i64::from(retry));
        h.start(now).await.unwrap();
        let out = h
            .finish(ResultStatus::Failed, Some(3), now + 1)
            .await
            .unwrap();
        assert_eq!(
            (out.ack.status, out.ack.run_status, out.finished.is_none()),
            (AttemptStatus::Failed, RunStatus::Queued, true)
        );
        let not_before =
            t(now + 1) + chrono::Duration::milliseconds(delay_ms(10_000, retry, run.id));
        let r = out.retry.expect("a failure retry");
        assert_eq!((r.not_before, r.labels.run_id), (not_before, run.id));
        let d = f.get(run.id).await;
        assert_eq!(
            (d.run.status, d.run.failure_retry_count, d.run.not_before),
            (RunStatus::Queued, i64::from(retry), Some(not_before))
        );
        // the lease budget is untouched; the run is not finished
        assert_eq!(
            (d.run.retry_count, d.run.exit_code, d.run.finished_at),
            (0, None, None)
        );
        // Not before its time: nothing to lease, and the wake-up time is known.
        let early = (not_before - chrono::Duration::milliseconds(1) - t(0)).num_seconds();
        assert!(lease(&store, &runner, early).await.is_none());
        assert_eq!(
            store.queue_state("default", t(early)).await.unwrap(),
            QueueState {
                leasable_now: false,
                next_retry_at: Some(not_before)
            }
        );
        let other = store.queue_state("other", t(early)).await.unwrap();
        assert_eq!(other.next_retry_at, None);
        now = (not_before - t(0)).num_seconds() + 1;
        assert_eq!(
            store.queue_state("default", t(now)).await.unwrap(),
            QueueState {
                leasable_now: true,
                next_retry_at: None
            }
        );
    }
    let h = lease(&store, &runner, now).await.unwrap();
    assert_eq!(h.leased.lease.attempt_no, 3);
    h.start(now).await.unwrap();
    let out = h
        .finish(ResultStatus::Completed, Some(0), now + 1)
        .await
        .unwrap();
    assert_eq!(out.ack.run_status, RunStatus::Completed);
    assert!(out.retry.is_none());
    let d = f.get(run.id).await;
    assert_eq!(
        (d.run.status, d.run.failure_retry_count, d.run.exit_code),
        (RunStatus::Completed, 2, Some(0))
    );
    let attempts: Vec<_> = d
        .attempts
        .iter()
        .map(|a| (a.attempt_no, a.status, a.exit_code))
        .collect();
    assert_eq!(
        attempts,
        vec![
            (1, AttemptStatus::Failed, Some(3)),
            (2, AttemptStatus::Failed, Some(3)),
            (3, AttemptStatus::Completed, Some(0)),
        ]
    );
    // the delays grew: attempt 3 started later after attempt 2 than 2 after 1
    let gap = |a: usize| d.attempts[a + 1].started_at - d.attempts[a].finished_at.unwrap();
    assert!(gap(1) > gap(0));
}

/// With the budget spent (or none), a failure finishes the run at once.
pub async fn no_budget_fails_at_once(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    // the fixture version has retries = 0
    let run = f.run(1).await;
    assert_eq!((run.failure_retries, run.retry_delay_ms), (0, 2000));
    let runner = f.runner("default", 1).await;
    let h = lease(&store, &runner, 2).await.unwrap();
    h.start(2).await.unwrap();
    let out = h.finish(ResultStatus::Failed, Some(1), 3).await.unwrap();
    assert_eq!(out.ack.run_status, RunStatus::Failed);
    assert!(out.retry.is_none() && out.finished.is_some());
    let d = f.get(run.id).await;
    assert_eq!(
        (d.run.status, d.run.exit_code, d.run.failure_retry_count),
        (RunStatus::Failed, Some(1), 0)
    );
    assert_eq!(d.attempts.len(), 1);
}

/// A version's `retries` and `retry_delay_ms` are its runs' defaults; a
/// run's own values win.
pub async fn version_defaults_and_run_overrides(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let mut nv = new_version(&unique("sha"));
    nv.retries = 4;
    nv.retry_delay_ms = 1500;
    let v = store
        .create_version(f.team.id, f.app.id, nv, t(0))
        .await
        .unwrap();
    assert_eq!((v.retries, v.retry_delay_ms), (4, 1500));
    let rec = store
        .get_version(f.team.id, f.app.id, Some(v.version_no))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((rec.version.retries, rec.version.retry_delay_ms), (4, 1500));
    let listed = store.list_versions(f.team.id, f.app.id).await.unwrap();
    assert_eq!((listed[0].retries, listed[0].retry_delay_ms), (4, 1500));
    let inherited = f.run_with(1, |r| r.version_id = rec.id).await;
    assert_eq!(
        (inherited.failure_retries, inherited.retry_delay_ms),
        (4, 1500)
    );
    let own = f
        .run_with(2, |r| {
            r.version_id = rec.id;
            r.failure_retries = Some(0);
            r.retry_delay_ms = Some(250);
        })
        .await;
    assert_eq!((own.failure_retries, own.retry_delay_ms), (0, 250));
}

/// Cancelled attempts, cancel-requested runs and lost runners never spend
/// failure retries; a cancel during the retry delay ends the run at once
/// and no attempt follows.
pub async fn cancels_and_expiries_are_not_failure_retries(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let runner = f.runner("default", 1).await;
    let budget = |r: &mut NewRun| {
        r.failure_retries = Some(3);
        r.retry_delay_ms = Some(60_000);
    };
    // A cancel requested while running: a failed result finishes the run.
    let a = f.run_with(1, budget).await;
    let h = lease(&store, &runner, 2).await.unwrap();
    h.start(2).await.unwrap();
    store.cancel_run(f.team.id, a.id, t(3)).await.unwrap();
    let out = h.finish(ResultStatus::Failed, Some(1), 4).await.unwrap();
    assert_eq!(out.ack.run_status, RunStatus::Failed);
    assert!(out.retry.is_none());
    // A cancelled attempt is not a failure.
    let b = f.run_with(5, budget).await;
    let h = lease(&store, &runner, 6).await.unwrap();
    h.start(6).await.unwrap();
    store.cancel_run(f.team.id, b.id, t(7)).await.unwrap();
    let out = h.finish(ResultStatus::Cancelled, None, 8).await.unwrap();
    assert_eq!(out.ack.run_status, RunStatus::Cancelled);
    // A lost runner spends the lease budget, not the failure one.
    let c = f
        .run_with(9, |r| {
            budget(r);
            r.max_retries = 1;
        })
        .await;
    let h = lease(&store, &runner, 10).await.unwrap();
    h.start(10).await.unwrap();
    store.reap_expired(t(100), 10).await.unwrap();
    let d = f.get(c.id).await;
    assert_eq!(
        (
            d.run.status,
            d.run.retry_count,
            d.run.failure_retry_count,
            d.run.not_before
        ),
        (RunStatus::Queued, 1, 0, None)
    );
    // It fails on its next attempt: a failure retry, waiting 45 to 60 s.
    let h = lease(&store, &runner, 101).await.unwrap();
    assert_eq!(h.run_id(), c.id);
    h.start(101).await.unwrap();
    let out = h.finish(ResultStatus::Failed, Some(2), 102).await.unwrap();
    let at = out.retry.unwrap().not_before;
    assert!(at >= t(102 + 45) && at <= t(102 + 60), "{at}");
    // Cancelled during the delay: cancelled at once, never leased again.
    let run = store.cancel_run(f.team.id, c.id, t(103)).await.unwrap();
    assert_eq!(run.status, RunStatus::Cancelled);
    assert!(lease(&store, &runner, 200).await.is_none());
    assert_eq!(
        store.queue_state("default", t(103)).await.unwrap(),
        QueueState {
            leasable_now: false,
            next_retry_at: None
        }
    );
    let d = f.get(c.id).await;
    assert_eq!(d.attempts.len(), 2);
    assert_eq!(d.run.failure_retry_count, 1);
}

/// A waiting run does not hold up the runs behind it in line.
pub async fn waiting_run_lets_others_pass(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let runner = f.runner("default", 1).await;
    let first = f
        .run_with(1, |r| {
            r.failure_retries = Some(1);
            r.retry_delay_ms = Some(3_600_000);
        })
        .await;
    let second = f.run(2).await;
    let h = lease(&store, &runner, 3).await.unwrap();
    assert_eq!(h.run_id(), first.id);
    h.start(3).await.unwrap();
    h.finish(ResultStatus::Failed, Some(1), 4).await.unwrap();
    // first is queued again ahead of second, but waits: second goes.
    let h = lease(&store, &runner, 5).await.unwrap();
    assert_eq!(h.run_id(), second.id);
    h.finish(ResultStatus::Completed, Some(0), 6).await.unwrap();
    assert!(lease(&store, &runner, 7).await.is_none());
    // past the (at most one hour) delay it is leased again.
    let h = lease(&store, &runner, 4 + 3601).await.unwrap();
    assert_eq!((h.run_id(), h.leased.lease.attempt_no), (first.id, 2));
}
