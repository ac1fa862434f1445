//! A result that leases the runner's next run in its own transaction
//! (`finish_attempt` with `next`).

use super::*;
use minitower_core::status::{AttemptStatus, RunStatus};

/// The run's status and its attempts' statuses, oldest first.
async fn states(f: &Fixture, run_id: i64) -> (RunStatus, Vec<AttemptStatus>) {
    let d = f.get(run_id).await;
    (d.run.status, d.attempts.iter().map(|a| a.status).collect())
}

/// The runner's active attempt count as the store keeps it.
async fn active(store: &Arc<dyn Store>, runner_id: i64) -> i64 {
    let runners = store.list_runners().await.unwrap();
    runners
        .iter()
        .find(|r| r.id == runner_id)
        .unwrap()
        .active_runs
}

/// The result is recorded and the next run, in queue order, is leased to
/// the same runner in the same call: started when asked, merely leased
/// otherwise, its token as good as any lease's. With the queue empty the
/// result is still recorded and nothing is leased. The runner's count of
/// active attempts stays exact all the way (it is at its concurrency of 1
/// throughout).
pub async fn result_leases_the_next_run(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let (a, b, c) = (f.run(1).await, f.run(2).await, f.run(3).await);
    let runner = f.runner("default", 1).await;
    let first = lease(&store, &runner, 5).await.unwrap();
    assert_eq!(first.run_id(), a.id);
    first.start(6).await.unwrap();

    let (outcome, second) = first.finish_and_lease(7, true).await.unwrap();
    assert_eq!(outcome.ack.run_status, RunStatus::Completed);
    assert!(outcome.finished.is_some(), "this call finished the run");
    let second = second.expect("the next queued run is leased");
    assert_eq!(second.run_id(), b.id, "queue order");
    let started = second.leased.lease.started.clone().expect("started");
    assert_eq!(started.status, AttemptStatus::Running);
    assert_eq!(states(&f, a.id).await.0, RunStatus::Completed);
    assert_eq!(
        states(&f, b.id).await,
        (RunStatus::Running, vec![AttemptStatus::Running])
    );
    assert_eq!(active(&store, runner.runner_id).await, 1);
    second
        .heartbeat(8)
        .await
        .expect("the carried lease's token holds it");

    // Without `start`, the next run is leased and waits for its start.
    let (_, third) = second.finish_and_lease(9, false).await.unwrap();
    let third = third.expect("the last queued run");
    assert_eq!(third.run_id(), c.id);
    assert!(third.leased.lease.started.is_none());
    assert_eq!(
        states(&f, c.id).await,
        (RunStatus::Leased, vec![AttemptStatus::Leased])
    );
    third.start(10).await.unwrap();

    // The queue is empty: the result alone.
    let (outcome, none) = third.finish_and_lease(11, true).await.unwrap();
    assert!(none.is_none());
    assert_eq!(outcome.ack.run_status, RunStatus::Completed);
    assert_eq!(active(&store, runner.runner_id).await, 0);
}

/// A result the store refuses (a token that holds nothing, a result that
/// contradicts the recorded one) leases nothing: the queued run stays
/// queued and the runner's count does not move.
pub async fn refused_result_leases_nothing(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let (a, b) = (f.run(1).await, f.run(2).await);
    let runner = f.runner("default", 2).await;
    let held = lease(&store, &runner, 5).await.unwrap();
    assert_eq!(held.run_id(), a.id);
    held.start(6).await.unwrap();

    let forged = Held {
        token_hash: "forged".into(),
        ..held.clone()
    };
    assert_gone(forged.finish_and_lease(7, true).await.map(|(o, _)| o));
    assert_eq!(states(&f, b.id).await, (RunStatus::Queued, vec![]));
    assert_eq!(active(&store, runner.runner_id).await, 1);

    // The run failed; a later "completed" for it is a conflict.
    held.finish(ResultStatus::Failed, Some(1), 8).await.unwrap();
    assert_conflict(held.finish_and_lease(9, true).await.map(|(o, _)| o));
    assert_eq!(states(&f, b.id).await, (RunStatus::Queued, vec![]));
    assert_eq!(active(&store, runner.runner_id).await, 0);
}

/// A result sent again (its answer was lost) gets the same answer and may
/// lease again, but never past the runner's concurrency: at 1, with the
/// first answer's run still held, it leases nothing more.
pub async fn repeated_result_never_leases_past_concurrency(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    for i in 1..=3 {
        f.run(i).await;
    }
    let runner = f.runner("default", 1).await;
    let first = lease(&store, &runner, 5).await.unwrap();
    first.start(6).await.unwrap();
    let (outcome, next) = first.finish_and_lease(7, true).await.unwrap();
    let next = next.expect("the second run");

    let (again, more) = first.finish_and_lease(8, true).await.unwrap();
    assert_eq!(
        (again.ack.status, again.ack.run_status),
        (outcome.ack.status, outcome.ack.run_status)
    );
    assert!(again.finished.is_none(), "the repeat finished nothing");
    assert!(more.is_none(), "the runner is at its concurrency");
    assert_eq!(active(&store, runner.runner_id).await, 1);
    let queued = f.runs().await;
    let queued = queued.iter().filter(|r| r.status == RunStatus::Queued);
    assert_eq!(queued.count(), 1, "the third run still waits");
    next.finish(ResultStatus::Completed, Some(0), 9)
        .await
        .unwrap();
}
