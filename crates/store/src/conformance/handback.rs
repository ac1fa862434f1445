//! Handing a run back: the runner's `release`, and expiries of attempts that
//! never started. Neither spends a retry, because no script ran.

use super::*;
use minitower_core::status::{AttemptStatus, RunStatus, FREE_REQUEUES};

/// The lease answer says how long it lasts and which fencing token the
/// attempt holds (the attempt number: it grows with every attempt).
pub async fn lease_answer_carries_ttl_and_fencing_token(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let run = f.run_with(1, |r| r.max_retries = 3).await;
    let runner = f.runner("default", 1).await;
    let h = lease(&store, &runner, 2).await.unwrap();
    assert_eq!(h.leased.lease.ttl_ms, Some(TTL.as_millis() as u64));
    assert_eq!(h.leased.lease.fencing_token, Some(1));
    let s = h.start(3).await.unwrap();
    assert_eq!(s.ttl_ms, Some(TTL.as_millis() as u64));
    let s = h.heartbeat(4).await.unwrap();
    assert_eq!(s.ttl_ms, Some(TTL.as_millis() as u64));
    store.reap_expired(t(100), 10).await.unwrap();
    let h2 = lease(&store, &runner, 101).await.unwrap();
    assert_eq!(h2.run_id(), run.id);
    assert_eq!(h2.leased.lease.fencing_token, Some(2));
}

async fn release(h: &Held, secs: i64) -> StoreResult<crate::ResultOutcome> {
    h.store
        .release_attempt(h.runner_id, h.run_id(), &h.token_hash, t(secs))
        .await
}

/// A released run is queued again in its old place, with its retry count
/// untouched, its runner slot free and its attempt ended.
pub async fn release_requeues_without_spending_a_retry(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let run = f.run_with(1, |r| r.max_retries = 0).await;
    let runner = f.runner("default", 1).await;
    let h = lease(&store, &runner, 2).await.unwrap();
    h.start(3).await.unwrap();
    let out = release(&h, 4).await.unwrap();
    assert_eq!(
        (out.ack.status, out.ack.run_status, out.finished),
        (AttemptStatus::Expired, RunStatus::Queued, None)
    );
    let d = f.get(run.id).await;
    assert_eq!(
        (d.run.status, d.run.retry_count, d.run.queued_at),
        (RunStatus::Queued, 0, t(1))
    );
    assert_eq!(d.attempts[0].status, AttemptStatus::Expired);
    assert_eq!(d.attempts[0].finished_at, Some(t(4)));
    assert!(d.attempts[0].error_message.is_some(), "says why");
    assert_eq!(store.list_runners().await.unwrap()[0].active_runs, 0);
    // The old token is gone for every call, a repeat included.
    assert_gone(release(&h, 5).await);
    assert_gone(h.heartbeat(5).await);
    // Another lease takes it as attempt 2 and can finish it.
    let h2 = lease(&store, &runner, 6).await.unwrap();
    assert_eq!((h2.run_id(), h2.leased.lease.attempt_no), (run.id, 2));
    h2.start(7).await.unwrap();
    h2.finish(ResultStatus::Completed, Some(0), 8)
        .await
        .unwrap();
    assert_eq!(f.get(run.id).await.run.status, RunStatus::Completed);
}

/// A release after a cancel was requested ends the run `cancelled`.
pub async fn release_after_cancel_cancels(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let run = f.run(1).await;
    let runner = f.runner("default", 1).await;
    let h = lease(&store, &runner, 2).await.unwrap();
    h.start(3).await.unwrap();
    store.cancel_run(f.team.id, run.id, t(4)).await.unwrap();
    let out = release(&h, 5).await.unwrap();
    assert_eq!(out.ack.run_status, RunStatus::Cancelled);
    let fin = out.finished.expect("the run finished");
    assert_eq!((fin.status, fin.finished_at), (RunStatus::Cancelled, t(5)));
    let d = f.get(run.id).await;
    assert_eq!(
        (d.run.status, d.run.finished_at),
        (RunStatus::Cancelled, Some(t(5)))
    );
}

/// Only the holder of the active lease may release, and only once.
pub async fn release_needs_the_active_lease(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let run = f.run(1).await;
    let runner = f.runner("default", 1).await;
    let h = lease(&store, &runner, 2).await.unwrap();
    let mut wrong = h.clone();
    wrong.token_hash = "hash-of-nothing".into();
    assert_gone(release(&wrong, 3).await);
    h.start(3).await.unwrap();
    h.finish(ResultStatus::Completed, Some(0), 4).await.unwrap();
    assert_gone(release(&h, 5).await);
    assert_eq!(f.get(run.id).await.run.status, RunStatus::Completed);
}

/// An attempt that expires without ever starting (a lost lease answer)
/// requeues the run without spending a retry, up to `FREE_REQUEUES` times;
/// a started one spends it as before.
pub async fn unstarted_expiry_spends_no_retry(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let run = f.run_with(1, |r| r.max_retries = 0).await;
    let runner = f.runner("default", 1).await;
    let mut now = 2;
    for n in 1..=FREE_REQUEUES {
        let h = lease(&store, &runner, now).await.unwrap();
        assert_eq!(h.leased.lease.attempt_no, n);
        now += 31;
        let reaped = store.reap_expired(t(now), 10).await.unwrap();
        assert_eq!(reaped[0].run_status, RunStatus::Queued, "attempt {n}");
        let d = f.get(run.id).await;
        assert_eq!((d.run.status, d.run.retry_count), (RunStatus::Queued, 0));
        now += 1;
    }
    // The free requeues are used up: with no retries left, the next dies.
    lease(&store, &runner, now).await.unwrap();
    let reaped = store.reap_expired(t(now + 31), 10).await.unwrap();
    assert_eq!(reaped[0].run_status, RunStatus::Dead);
    // A started attempt spends a retry.
    let run2 = f.run_with(now + 40, |r| r.max_retries = 1).await;
    let h = lease(&store, &runner, now + 41).await.unwrap();
    assert_eq!(h.run_id(), run2.id);
    h.start(now + 42).await.unwrap();
    store.reap_expired(t(now + 100), 10).await.unwrap();
    let d = f.get(run2.id).await;
    assert_eq!((d.run.status, d.run.retry_count), (RunStatus::Queued, 1));
}
