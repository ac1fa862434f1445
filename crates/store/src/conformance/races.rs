//! Concurrency: many tasks racing on the same rows must never break an
//! invariant. These spawn real tasks on a multi-threaded runtime.

use super::*;
use minitower_core::status::{AttemptStatus, RunStatus};
use std::collections::HashSet;

/// 32 tasks lease 500 runs through 8 runners: every run is leased exactly
/// once and no runner exceeds its concurrency.
pub async fn concurrent_leases_never_double_lease(store: Arc<dyn Store>) {
    const RUNS: usize = 500;
    const RUNNERS: usize = 8;
    const CAP: i64 = 64; // 8 x 64 = 512 slots >= 500 runs
    let f = Fixture::new(store.clone()).await;
    for i in 0..RUNS {
        f.run(i as i64 % 7).await;
    }
    let mut runners = vec![];
    for _ in 0..RUNNERS {
        runners.push(f.runner("default", CAP).await);
    }
    let mut tasks = vec![];
    for task in 0..32 {
        let store = store.clone();
        let runner = runners[task % RUNNERS].clone();
        tasks.push(tokio::spawn(async move {
            let mut got = vec![];
            while let Some(h) = lease(&store, &runner, 100).await {
                got.push(h.run_id());
            }
            got
        }));
    }
    let mut leased = vec![];
    for t in futures::future::join_all(tasks).await {
        leased.extend(t.unwrap());
    }
    assert_eq!(leased.len(), RUNS, "every run leased once");
    let distinct: HashSet<i64> = leased.iter().copied().collect();
    assert_eq!(distinct.len(), RUNS, "no run leased twice");
    for id in &distinct {
        let d = f.get(*id).await;
        assert_eq!(d.attempts.len(), 1, "run {id} has one attempt");
        assert_eq!(d.run.status, RunStatus::Leased);
    }
    let list = store.list_runners().await.unwrap();
    assert!(list.iter().all(|r| r.active_runs <= CAP));
    assert_eq!(list.iter().map(|r| r.active_runs).sum::<i64>(), RUNS as i64);
    assert_eq!(
        store.runs_summary(f.team.id).await.unwrap()[&RunStatus::Leased],
        RUNS as i64
    );
}

/// A user cancel racing the runner's result: the run ends in exactly one
/// terminal state, the one its attempt recorded, whichever call wins.
pub async fn cancel_racing_result_converges(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let runner = f.runner("default", 1).await;
    for i in 0..40 {
        f.run(i).await;
        let h = lease(&store, &runner, 100 + i).await.unwrap();
        if i % 2 == 0 {
            h.start(100 + i).await.unwrap();
        }
        let reported = if i % 3 == 0 {
            ResultStatus::Failed
        } else {
            ResultStatus::Completed
        };
        let (s2, team, run_id) = (store.clone(), f.team.id, h.run_id());
        let cancel = tokio::spawn(async move { s2.cancel_run(team, run_id, t(200)).await });
        let h2 = h.clone();
        let result =
            tokio::spawn(async move { h2.finish(reported, Some(i as i32 % 2), 200).await });
        let (cancel, result) = (cancel.await.unwrap(), result.await.unwrap());
        let out = result.expect("the runner's result always lands");
        match cancel {
            Ok(run) => assert_eq!(run.status, RunStatus::Cancelling, "cancel won the race"),
            Err(StoreError::Conflict(_)) => {} // the result won
            Err(e) => panic!("unexpected cancel error {e:?}"),
        }
        let d = f.get(run_id).await;
        assert_eq!(d.run.status, reported.run_status());
        assert_eq!(out.ack.run_status, d.run.status);
        assert_eq!(d.attempts.len(), 1);
        assert_eq!(d.attempts[0].status, reported.attempt_status());
        assert_eq!(d.run.finished_at, Some(t(200)));
        // a late cancel is a conflict and changes nothing
        assert_conflict(store.cancel_run(f.team.id, run_id, t(201)).await);
        assert_eq!(f.get(run_id).await.run, d.run);
    }
    assert_eq!(store.list_runners().await.unwrap()[0].active_runs, 0);
}

/// Several reapers sweeping the same expired attempts apply each expiry
/// exactly once.
pub async fn racing_reapers_expire_once(store: Arc<dyn Store>) {
    const RUNS: i64 = 60;
    let f = Fixture::new(store.clone()).await;
    let runner = f.runner("default", RUNS).await;
    for i in 0..RUNS {
        f.run_with(i, |r| r.max_retries = 3).await;
    }
    while let Some(h) = lease(&store, &runner, 100).await {
        h.start(100).await.unwrap(); // started: each expiry spends a retry
    }
    let mut tasks = vec![];
    for _ in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.reap_expired(t(500), 1000).await.unwrap()
        }));
    }
    let mut reaped = vec![];
    for t in futures::future::join_all(tasks).await {
        reaped.extend(t.unwrap());
    }
    assert_eq!(reaped.len() as i64, RUNS, "each expiry reported once");
    let ids: HashSet<i64> = reaped.iter().map(|r| r.labels.run_id).collect();
    assert_eq!(ids.len() as i64, RUNS);
    for r in &reaped {
        let d = f.get(r.labels.run_id).await;
        assert_eq!((d.run.status, d.run.retry_count), (RunStatus::Queued, 1));
        assert_eq!(d.attempts.len(), 1);
        assert_eq!(d.attempts[0].status, AttemptStatus::Expired);
    }
    assert_eq!(store.list_runners().await.unwrap()[0].active_runs, 0);
}

/// A heartbeat racing the reaper on a just-expired lease: either the
/// heartbeat wins (the lease lives on, nothing reaped) or the reaper wins
/// (the heartbeat is `LeaseGone`), never both or neither.
pub async fn heartbeat_racing_reaper_has_one_winner(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let runner = f.runner("default", 1).await;
    for i in 0..30 {
        let base = i * 1000;
        let run = f.run_with(base, |r| r.max_retries = 0).await;
        let h = lease(&store, &runner, base).await.unwrap(); // ends at base + 30
        h.start(base).await.unwrap();
        let h2 = h.clone();
        let beat = tokio::spawn(async move { h2.heartbeat(base + 31).await });
        let s2 = store.clone();
        let reap = tokio::spawn(async move { s2.reap_expired(t(base + 31), 10).await.unwrap() });
        let (beat, reaped) = (beat.await.unwrap(), reap.await.unwrap());
        let d = f.get(run.id).await;
        match beat {
            Ok(st) => {
                assert!(reaped.is_empty(), "heartbeat won, nothing reaped");
                assert_eq!(st.lease_expires_at, t(base + 61));
                assert_eq!(d.run.status, RunStatus::Running);
                h.finish(ResultStatus::Completed, Some(0), base + 40)
                    .await
                    .unwrap();
            }
            Err(StoreError::LeaseGone) => {
                assert_eq!(reaped.len(), 1, "reaper won");
                assert_eq!(d.run.status, RunStatus::Dead);
            }
            Err(e) => panic!("unexpected heartbeat error {e:?}"),
        }
    }
}

/// A create refused after it took its run number (here by the database's
/// own CHECK on `max_retries`) gives the number back: the next run of the
/// app gets it, so numbers stay gap-free.
pub async fn a_failed_create_gives_its_number_back(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    assert_eq!(f.run(1).await.run_no, 1);
    let refused = store
        .create_run(NewRun {
            max_retries: -1,
            ..f.new_run(2)
        })
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(f.run(3).await.run_no, 2);
    assert_eq!(f.runs().await.len(), 2, "the refused create left no row");
    // Refused for what it names (on PostgreSQL the one-statement create
    // checks these in the statement that takes the number): no number.
    let nowhere = store
        .create_run(NewRun {
            environment: "nowhere".into(),
            ..f.new_run(4)
        })
        .await;
    assert!(
        matches!(nowhere, Err(StoreError::NotFound("environment"))),
        "{nowhere:?}"
    );
    let unknown = store
        .create_run(NewRun {
            version_id: f.version.id + 1_000,
            ..f.new_run(5)
        })
        .await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound("version"))),
        "{unknown:?}"
    );
    assert_eq!(f.run(6).await.run_no, 3);
    assert_eq!(f.runs().await.len(), 3);
}

/// Concurrent creates get distinct, gap-free run numbers, and one
/// idempotency key yields one run however many callers race.
pub async fn concurrent_creates_number_runs_uniquely(store: Arc<dyn Store>) {
    let f = Arc::new(Fixture::new(store.clone()).await);
    let mut tasks = vec![];
    for i in 0..40 {
        let f = f.clone();
        tasks.push(tokio::spawn(async move { f.run(i).await.run_no }));
    }
    let mut nos: Vec<i64> = vec![];
    for t in futures::future::join_all(tasks).await {
        nos.push(t.unwrap());
    }
    nos.sort();
    assert_eq!(nos, (1..=40).collect::<Vec<_>>());

    let mut tasks = vec![];
    for i in 0..20 {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let r = NewRun {
                idempotency_key: Some("once".into()),
                ..f.new_run(100 + i)
            };
            f.store.create_run(r).await.unwrap()
        }));
    }
    let mut created = 0;
    let mut ids = HashSet::new();
    for t in futures::future::join_all(tasks).await {
        let (run, new) = t.unwrap();
        created += new as i32;
        ids.insert(run.id);
    }
    assert_eq!((created, ids.len()), (1, 1));
    let filter = crate::RunFilter {
        limit: 500,
        ..Default::default()
    };
    assert_eq!(store.list_runs(f.team.id, &filter).await.unwrap().len(), 41);
}

/// Creates racing the deletion of their environment, round after round (the
/// deleter starts a little later each round, so the interleavings vary): a
/// delete that succeeds leaves no run in the environment (no create slips
/// in between its check for runs and its delete), a refused delete leaves
/// the environment and every create's run, and a create either made its
/// run or was refused as `NotFound("environment")`. On PostgreSQL a create
/// is one statement that takes the environment's `FOR KEY SHARE` itself.
pub async fn creates_racing_environment_delete(store: Arc<dyn Store>) {
    let f = Arc::new(Fixture::new(store.clone()).await);
    let mut made = 0;
    for round in 0..16 {
        let env = format!("race{round}");
        f.environment(&env).await;
        let mut creates = vec![];
        for i in 0..6 {
            let (f, env) = (f.clone(), env.clone());
            creates.push(tokio::spawn(async move {
                let run = NewRun {
                    environment: env,
                    ..f.new_run(i)
                };
                f.store.create_run(run).await
            }));
        }
        let deleter = {
            let (store, team, env) = (store.clone(), f.team.id, env.clone());
            tokio::spawn(async move {
                for _ in 0..round % 8 {
                    tokio::task::yield_now().await;
                }
                store.delete_environment(team, &env).await
            })
        };
        let mut created = 0;
        let mut refused = 0;
        for c in futures::future::join_all(creates).await {
            match c.unwrap() {
                Ok((run, true)) => {
                    assert_eq!(run.environment, env);
                    created += 1;
                }
                Err(StoreError::NotFound("environment")) => refused += 1,
                other => panic!("round {round}: create gave {other:?}"),
            }
        }
        let deleted = deleter.await.unwrap();
        let exists = store.environment_exists(f.team.id, &env).await.unwrap();
        // At most 96 runs in all: `runs()` (the newest 100) holds them.
        let stored = f
            .runs()
            .await
            .into_iter()
            .filter(|r| r.environment == env)
            .count();
        match deleted {
            Ok(()) => {
                assert!(!exists, "round {round}");
                assert_eq!(
                    (stored, created),
                    (0, 0),
                    "round {round}: runs in a deleted environment"
                );
            }
            Err(e) => {
                assert!(matches!(e, StoreError::Conflict(_)), "round {round}: {e:?}");
                assert!(exists, "round {round}");
                assert_eq!((stored, created, refused), (6, 6, 0), "round {round}");
            }
        }
        made += created;
    }
    assert_eq!(f.runs().await.len(), made);
}
