//! Queueing, reading, listing, counting and cancelling runs.

use super::*;
use crate::RunFilter;
use minitower_core::status::{AttemptStatus, RunStatus};

/// A new run is queued with every field as given and numbered per app.
pub async fn create_run_fields_and_numbering(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let (other, other_v) = f.app("other").await;
    f.environment("gpu").await;
    let (run, created) = store
        .create_run(NewRun {
            input: json!({"name": "x", "n": [1, 2]}),
            priority: 7,
            max_retries: 3,
            environment: "gpu".into(),
            ..f.new_run(10)
        })
        .await
        .unwrap();
    assert!(created);
    assert_eq!(run.run_no, 1);
    assert_eq!(run.app, "hello");
    assert_eq!(run.version_no, 1);
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(run.input, json!({"name": "x", "n": [1, 2]}));
    assert_eq!((run.priority, run.max_retries, run.retry_count), (7, 3, 0));
    assert!(!run.cancel_requested);
    assert_eq!((run.exit_code, run.error_message.clone()), (None, None));
    assert_eq!(run.queued_at, t(10));
    assert_eq!((run.started_at, run.finished_at), (None, None));
    assert_eq!(run.environment, "gpu");

    assert_eq!(f.run(11).await.run_no, 2);
    let first_other = f
        .run_with(12, |r| {
            r.app_id = other.id;
            r.version_id = other_v.id;
        })
        .await;
    assert_eq!((first_other.run_no, first_other.app.as_str()), (1, "other"));
    assert_eq!(f.run(13).await.run_no, 3);

    let detail = f.get(run.id).await;
    assert_eq!(detail.run, run);
    assert!(detail.attempts.is_empty());
    assert_eq!(
        store.run_status(run.id).await.unwrap(),
        Some(RunStatus::Queued)
    );
    assert_eq!(store.run_status(999_999).await.unwrap(), None);
}

/// A repeated idempotency key returns the first run of that app.
pub async fn idempotency_key_returns_first_run(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let (other, other_v) = f.app("other").await;
    let keyed = |secs, name: &str| NewRun {
        idempotency_key: Some("k1".into()),
        input: input(name),
        ..f.new_run(secs)
    };
    let (first, created) = store.create_run(keyed(1, "a")).await.unwrap();
    assert!(created);
    let (again, created) = store.create_run(keyed(2, "b")).await.unwrap();
    assert!(!created);
    assert_eq!(again, first);
    let (elsewhere, created) = store
        .create_run(NewRun {
            app_id: other.id,
            version_id: other_v.id,
            ..keyed(3, "c")
        })
        .await
        .unwrap();
    assert!(created, "keys are per app");
    assert_ne!(elsewhere.id, first.id);
    let a = f.run(4).await;
    let b = f.run(5).await;
    assert_ne!(a.id, b.id);
    assert_eq!(
        store
            .list_runs(f.team.id, &RunFilter::default())
            .await
            .unwrap()
            .len(),
        4
    );
}

/// Lists are newest first and filter by status and app, with paging.
pub async fn list_runs_filters_and_pages(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let (other, other_v) = f.app("other").await;
    let mut hello = vec![];
    for i in 0..5 {
        hello.push(f.run(i).await.id);
    }
    let mut others = vec![];
    for i in 0..3 {
        let r = f
            .run_with(10 + i, |r| {
                r.app_id = other.id;
                r.version_id = other_v.id;
            })
            .await;
        others.push(r.id);
    }
    for id in [hello[1], hello[3], others[0]] {
        store.cancel_run(f.team.id, id, t(20)).await.unwrap();
    }
    let ids = |runs: Vec<Run>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let list = |filter: RunFilter| {
        let store = store.clone();
        let team = f.team.id;
        async move { ids(store.list_runs(team, &filter).await.unwrap()) }
    };

    let mut all: Vec<i64> = hello.iter().chain(others.iter()).copied().collect();
    all.reverse();
    assert_eq!(
        list(RunFilter::default()).await,
        all,
        "limit 0 means the default page"
    );
    assert_eq!(
        list(RunFilter {
            limit: 3,
            ..Default::default()
        })
        .await,
        all[..3].to_vec()
    );
    assert_eq!(
        list(RunFilter {
            limit: 3,
            offset: 3,
            ..Default::default()
        })
        .await,
        all[3..6].to_vec()
    );
    assert_eq!(
        list(RunFilter {
            status: Some(RunStatus::Cancelled),
            limit: 50,
            ..Default::default()
        })
        .await,
        vec![others[0], hello[3], hello[1]]
    );
    assert_eq!(
        list(RunFilter {
            app_id: Some(f.app.id),
            limit: 50,
            ..Default::default()
        })
        .await,
        hello.iter().rev().copied().collect::<Vec<_>>()
    );
    assert_eq!(
        list(RunFilter {
            app_id: Some(f.app.id),
            status: Some(RunStatus::Queued),
            limit: 2,
            offset: 1,
        })
        .await,
        vec![hello[2], hello[0]]
    );
    assert!(list(RunFilter {
        status: Some(RunStatus::Dead),
        ..Default::default()
    })
    .await
    .is_empty());
}

/// The summary has every status, zeros included, and counts each run once.
pub async fn summary_counts_every_status(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let empty = store.runs_summary(f.team.id).await.unwrap();
    assert_eq!(empty.len(), RunStatus::ALL.len());
    assert!(empty.values().all(|n| *n == 0));

    // Leased first (FIFO), so each run lands in the status it is set up for.
    let runner = f.runner("default", 10).await;
    for i in 0..6 {
        f.run_with(i, |r| r.max_retries = 0).await;
    }
    let mut held = vec![];
    for i in 0..6 {
        held.push(lease(&store, &runner, 10 + i).await.unwrap());
    }
    f.run(20).await;
    f.run(21).await; // two queued
    let cancelled = f.run(22).await;
    store
        .cancel_run(f.team.id, cancelled.id, t(23))
        .await
        .unwrap();
    // held[0]'s lease ends at 40, held[1] and held[2] at 60 (all started:
    // an attempt that never started would be requeued for free)
    held[0].start(10).await.unwrap();
    held[1].start(30).await.unwrap();
    held[2].start(30).await.unwrap();
    store
        .cancel_run(f.team.id, held[2].run_id(), t(31))
        .await
        .unwrap();
    held[3]
        .finish(ResultStatus::Completed, Some(0), 32)
        .await
        .unwrap();
    held[4]
        .finish(ResultStatus::Failed, Some(1), 32)
        .await
        .unwrap();
    held[5].heartbeat(40).await.unwrap(); // lives to 70
    let reaped = store.reap_expired(t(65), 100).await.unwrap();
    assert_eq!(reaped.len(), 3); // 0 and 1 dead (no retries left), 2 cancelled

    let s = store.runs_summary(f.team.id).await.unwrap();
    let want = [
        (RunStatus::Queued, 2),
        (RunStatus::Leased, 1),
        (RunStatus::Running, 0),
        (RunStatus::Cancelling, 0),
        (RunStatus::Completed, 1),
        (RunStatus::Failed, 1),
        (RunStatus::Cancelled, 2),
        (RunStatus::Dead, 2),
    ];
    for (status, n) in want {
        assert_eq!(s[&status], n, "{status}");
    }
    assert_eq!(s.len(), RunStatus::ALL.len());
}

/// Hourly buckets, oldest first, count runs by the hour they finished in;
/// success rate and median duration cover the window only.
pub async fn run_stats_hourly_buckets(store: Arc<dyn Store>) {
    const H: i64 = 3600;
    let f = Fixture::new(store.clone()).await;
    let other = Fixture::with_team(store.clone(), "beta").await;
    let runner = f.runner("default", 10).await;
    // (queued, started, finished, result)
    let plan = [
        (5 * H, 5 * H + 10, 5 * H + 20, ResultStatus::Completed), // outside a 3h window
        (8 * H, 8 * H + 100, 8 * H + 200, ResultStatus::Completed), // 100 s
        (9 * H, 9 * H + 600, 9 * H + 1200, ResultStatus::Failed), // 600 s
        (10 * H, 10 * H + 60, 10 * H + 360, ResultStatus::Completed), // 300 s
    ];
    for (queued, started, finished, result) in plan {
        f.run(queued).await;
        let h = lease(&store, &runner, queued).await.unwrap();
        h.start(started).await.unwrap();
        h.finish(result, Some(0), finished).await.unwrap();
    }
    let c = f.run(10 * H + 500).await;
    store
        .cancel_run(f.team.id, c.id, t(10 * H + 600))
        .await
        .unwrap();
    // another team's run does not count
    other.run(10 * H).await;
    let r2 = other.runner("default", 1).await;
    let h = lease(&store, &r2, 10 * H).await.unwrap();
    h.finish(ResultStatus::Failed, Some(1), 10 * H + 5)
        .await
        .unwrap();

    let now = t(10 * H + 1800);
    let s = store.run_stats(f.team.id, 3, now).await.unwrap();
    assert_eq!(s.hours, 3);
    let starts: Vec<_> = s.buckets.iter().map(|b| b.start).collect();
    assert_eq!(starts, vec![t(8 * H), t(9 * H), t(10 * H)]);
    let counts: Vec<_> = s
        .buckets
        .iter()
        .map(|b| (b.completed, b.failed, b.cancelled, b.dead))
        .collect();
    assert_eq!(counts, vec![(1, 0, 0, 0), (0, 1, 0, 0), (1, 0, 1, 0)]);
    assert_eq!((s.finished, s.succeeded), (4, 2));
    assert_eq!(s.success_rate, Some(0.5));
    assert_eq!(s.median_duration_seconds, Some(300.0));

    let quiet = store.run_stats(f.team.id, 2, t(20 * H)).await.unwrap();
    assert_eq!(quiet.buckets.len(), 2);
    assert_eq!(
        (
            quiet.finished,
            quiet.success_rate,
            quiet.median_duration_seconds
        ),
        (0, None, None)
    );
    let all = store.run_stats(f.team.id, 6, now).await.unwrap();
    assert_eq!(all.finished, 5);
    // durations 10, 100, 600, 300 -> middle two 100 and 300
    assert_eq!(all.median_duration_seconds, Some(200.0));
}

/// Cancelling a queued run ends it at once; it is never leased.
pub async fn cancel_queued_run_is_immediate(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let run = f.run(1).await;
    let runner = f.runner("default", 1).await;
    let c = store.cancel_run(f.team.id, run.id, t(5)).await.unwrap();
    assert_eq!(c.status, RunStatus::Cancelled);
    assert_eq!(c.finished_at, Some(t(5)));
    assert!(c.cancel_requested);
    assert!(lease(&store, &runner, 6).await.is_none());
    assert_conflict(store.cancel_run(f.team.id, run.id, t(7)).await);
    assert_not_found(store.cancel_run(f.team.id, 999_999, t(7)).await);
    assert_eq!(f.get(run.id).await.run, c);
}

/// Leased and running runs move to cancelling; the runner learns it from
/// heartbeat, start and log answers; a second cancel changes nothing.
pub async fn cancel_leased_and_running_runs(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let runner = f.runner("default", 2).await;
    f.run(1).await;
    f.run(2).await;
    let leased = lease(&store, &runner, 3).await.unwrap();
    let running = lease(&store, &runner, 3).await.unwrap();
    running.start(4).await.unwrap();

    let c = store
        .cancel_run(f.team.id, leased.run_id(), t(5))
        .await
        .unwrap();
    assert_eq!(
        (c.status, c.cancel_requested, c.finished_at),
        (RunStatus::Cancelling, true, None)
    );
    let d = f.get(leased.run_id()).await;
    assert_eq!(d.attempts[0].status, AttemptStatus::Cancelling);
    let hb = leased.heartbeat(6).await.unwrap();
    assert!(hb.cancel_requested);
    assert_eq!(
        (hb.status, hb.run_status),
        (AttemptStatus::Cancelling, RunStatus::Cancelling)
    );
    let st = leased.start(7).await.unwrap();
    assert!(st.cancel_requested);
    assert_eq!(
        st.run_status,
        RunStatus::Cancelling,
        "a late start keeps the cancel"
    );
    assert_eq!(leased.logs(&[1], 8).await.unwrap(), (1, true));
    let again = store
        .cancel_run(f.team.id, leased.run_id(), t(9))
        .await
        .unwrap();
    assert_eq!(again, c);
    let out = leased
        .finish(ResultStatus::Cancelled, None, 10)
        .await
        .unwrap();
    assert_eq!(
        (out.ack.status, out.ack.run_status),
        (AttemptStatus::Cancelled, RunStatus::Cancelled)
    );
    let done = f.get(leased.run_id()).await;
    assert_eq!(
        (done.run.status, done.run.finished_at),
        (RunStatus::Cancelled, Some(t(10)))
    );
    assert_eq!(done.attempts[0].status, AttemptStatus::Cancelled);

    let c = store
        .cancel_run(f.team.id, running.run_id(), t(11))
        .await
        .unwrap();
    assert_eq!(c.status, RunStatus::Cancelling);
    assert!(running.heartbeat(12).await.unwrap().cancel_requested);
    // The runner finished before it saw the cancel: the first terminal fact wins.
    let out = running
        .finish(ResultStatus::Completed, Some(0), 13)
        .await
        .unwrap();
    assert_eq!(out.ack.run_status, RunStatus::Completed);
    let done = f.get(running.run_id()).await;
    assert_eq!(done.run.status, RunStatus::Completed);
    assert!(done.run.cancel_requested);
}

/// Cancelling a finished run is a conflict and changes nothing.
pub async fn cancel_finished_run_conflicts(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let runner = f.runner("default", 3).await;
    for i in 0..3 {
        f.run_with(i, |r| r.max_retries = 0).await;
    }
    let a = lease(&store, &runner, 10).await.unwrap();
    let b = lease(&store, &runner, 10).await.unwrap();
    let c = lease(&store, &runner, 10).await.unwrap();
    a.finish(ResultStatus::Completed, Some(0), 11)
        .await
        .unwrap();
    b.finish(ResultStatus::Failed, Some(2), 11).await.unwrap();
    c.start(10).await.unwrap();
    c.heartbeat(30).await.unwrap();
    assert!(store.reap_expired(t(50), 10).await.unwrap().is_empty()); // c lives to 60
    store.reap_expired(t(61), 10).await.unwrap();
    for (h, status) in [
        (a, RunStatus::Completed),
        (b, RunStatus::Failed),
        (c, RunStatus::Dead),
    ] {
        let before = f.get(h.run_id()).await.run;
        assert_eq!(before.status, status);
        assert_conflict(store.cancel_run(f.team.id, h.run_id(), t(70)).await);
        assert_eq!(f.get(h.run_id()).await.run, before);
    }
}
