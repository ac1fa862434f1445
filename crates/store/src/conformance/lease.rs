//! Runners, leases and the lease holder's calls.

use super::*;
use minitower_core::api::RunnerStatus;
use minitower_core::status::{AttemptStatus, RunStatus};

/// Registering a known name rotates its token and updates its settings.
pub async fn register_runner_rotates_token(store: Arc<dyn Store>) {
    let id = store
        .register_runner("r1", "default", 1, "tok-a", t(0))
        .await
        .unwrap();
    let who = store.runner_by_token_hash("tok-a").await.unwrap().unwrap();
    assert_eq!(
        (
            who.runner_id,
            who.name.as_str(),
            who.environment.as_str(),
            who.max_concurrency
        ),
        (id, "r1", "default", 1)
    );
    let again = store
        .register_runner("r1", "gpu", 4, "tok-b", t(5))
        .await
        .unwrap();
    assert_eq!(again, id);
    assert!(store.runner_by_token_hash("tok-a").await.unwrap().is_none());
    let who = store.runner_by_token_hash("tok-b").await.unwrap().unwrap();
    assert_eq!((who.environment.as_str(), who.max_concurrency), ("gpu", 4));
    assert_conflict(
        store
            .register_runner("r2", "default", 1, "tok-b", t(6))
            .await,
    );
    let r2 = store
        .register_runner("r2", "default", 2, "tok-c", t(6))
        .await
        .unwrap();
    assert_ne!(r2, id);

    let list = store.list_runners().await.unwrap();
    assert_eq!(list.len(), 2);
    let r1 = list.iter().find(|r| r.id == id).unwrap();
    assert_eq!((r1.name.as_str(), r1.status), ("r1", RunnerStatus::Online));
    assert_eq!(
        (r1.last_seen_at, r1.active_runs, r1.max_concurrency),
        (Some(t(5)), 0, 4)
    );
}

/// The happy path, checking every field a lease and each answer carries.
pub async fn lease_start_heartbeat_complete(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let run = f.run(1).await;
    let runner = f.runner("default", 1).await;
    let h = lease(&store, &runner, 10).await.unwrap();
    let l = &h.leased.lease;
    assert_eq!((l.run_id, l.run_no, l.attempt_no), (run.id, 1, 1));
    assert_eq!(l.lease_expires_at, t(40));
    assert_eq!(
        (l.app.as_str(), l.version_no, l.team.as_str()),
        ("hello", 1, "acme")
    );
    assert_eq!((l.entrypoint.as_str(), l.timeout_seconds), ("main.py", 60));
    assert_eq!(l.artifact_sha256, f.version.version.artifact_sha256);
    assert_eq!(l.input, run.input);
    assert_eq!(l.last_log_seq, 0);
    assert_eq!(l.import_paths, vec!["modules/shared".to_string()]);
    assert_eq!(h.leased.queued_at, t(1));
    let labels = &h.leased.labels;
    assert_eq!(
        (labels.run_id, labels.team.as_str(), labels.app.as_str()),
        (run.id, "acme", "hello")
    );
    assert_eq!(labels.environment, "default");

    let d = f.get(run.id).await;
    assert_eq!(d.run.status, RunStatus::Leased);
    assert_eq!(d.attempts.len(), 1);
    let a = &d.attempts[0];
    assert_eq!(
        (a.attempt_no, a.status, a.started_at, a.finished_at),
        (1, AttemptStatus::Leased, t(10), None)
    );
    assert_eq!(a.runner, runner.name);
    assert_eq!(store.list_runners().await.unwrap()[0].active_runs, 1);

    let (st, labels) = store
        .start_attempt(runner.runner_id, run.id, &h.token_hash, at(12))
        .await
        .unwrap();
    assert_eq!(
        (st.status, st.run_status, st.cancel_requested),
        (AttemptStatus::Running, RunStatus::Running, false)
    );
    assert_eq!(labels.unwrap().run_id, run.id);
    let (st2, labels) = store
        .start_attempt(runner.runner_id, run.id, &h.token_hash, at(13))
        .await
        .unwrap();
    assert!(labels.is_none(), "a repeated start is not a new start");
    assert_eq!(
        (st2.status, st2.run_status),
        (AttemptStatus::Running, RunStatus::Running)
    );
    let d = f.get(run.id).await;
    assert_eq!(
        (d.run.status, d.run.started_at),
        (RunStatus::Running, Some(t(12)))
    );

    let hb = h.heartbeat(30).await.unwrap();
    assert_eq!(hb.lease_expires_at, t(60));
    assert_eq!(
        (hb.status, hb.cancel_requested),
        (AttemptStatus::Running, false)
    );

    let out = h
        .finish(ResultStatus::Completed, Some(0), 50)
        .await
        .unwrap();
    assert_eq!(
        (out.ack.status, out.ack.run_status),
        (AttemptStatus::Completed, RunStatus::Completed)
    );
    let fin = out.finished.unwrap();
    assert_eq!(
        (fin.status, fin.queued_at, fin.started_at, fin.finished_at),
        (RunStatus::Completed, t(1), Some(t(12)), t(50))
    );
    assert_eq!(fin.labels.run_id, run.id);
    let d = f.get(run.id).await;
    assert_eq!(
        (d.run.status, d.run.exit_code, d.run.finished_at),
        (RunStatus::Completed, Some(0), Some(t(50)))
    );
    assert_eq!(
        (d.attempts[0].status, d.attempts[0].exit_code),
        (AttemptStatus::Completed, Some(0))
    );
    assert_eq!(d.attempts[0].finished_at, Some(t(50)));
    assert_eq!(store.list_runners().await.unwrap()[0].active_runs, 0);
}

/// Nothing to lease: no runs, only other environments', or only finished ones.
pub async fn lease_returns_none_without_work(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let runner = f.runner("default", 5).await;
    assert!(lease(&store, &runner, 1).await.is_none());
    f.run_with(2, |r| r.environment = "gpu".into()).await;
    assert!(lease(&store, &runner, 3).await.is_none());
    let r = f.run(4).await;
    store.cancel_run(f.team.id, r.id, t(5)).await.unwrap();
    assert!(lease(&store, &runner, 6).await.is_none());
}

/// Highest priority first, then oldest `queued_at`, then lowest id.
pub async fn lease_orders_by_priority_then_fifo(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let runner = f.runner("default", 10).await;
    let p0_late = f.run_with(100, |r| r.priority = 0).await;
    let p0_early = f.run_with(50, |r| r.priority = 0).await; // created later, queued earlier
    let p5_a = f.run_with(200, |r| r.priority = 5).await;
    let p5_b = f.run_with(200, |r| r.priority = 5).await; // same instant: id decides
    let p10 = f.run_with(300, |r| r.priority = 10).await;
    let neg = f.run_with(1, |r| r.priority = -1).await;
    let mut order = vec![];
    while let Some(h) = lease(&store, &runner, 400).await {
        order.push(h.run_id());
    }
    assert_eq!(
        order,
        vec![p10.id, p5_a.id, p5_b.id, p0_early.id, p0_late.id, neg.id]
    );
}

/// Runners only take runs of their own environment.
pub async fn lease_matches_environment(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let gpu_run = f.run_with(1, |r| r.environment = "gpu".into()).await;
    let default_run = f.run(2).await;
    let cpu = f.runner("default", 5).await;
    let gpu = f.runner("gpu", 5).await;
    let h = lease(&store, &gpu, 3).await.unwrap();
    assert_eq!(h.run_id(), gpu_run.id);
    assert!(lease(&store, &gpu, 3).await.is_none());
    let h = lease(&store, &cpu, 3).await.unwrap();
    assert_eq!(h.run_id(), default_run.id);
    assert_eq!(h.leased.labels.environment, "default");
}

/// A runner never holds more active attempts than its concurrency.
pub async fn runner_concurrency_limit(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    for i in 0..5 {
        f.run(i).await;
    }
    let one = f.runner("default", 1).await;
    let two = f.runner("default", 2).await;
    let first = lease(&store, &one, 10).await.unwrap();
    assert!(lease(&store, &one, 11).await.is_none(), "max_concurrency 1");
    first.start(12).await.unwrap();
    assert!(lease(&store, &one, 13).await.is_none());
    let a = lease(&store, &two, 14).await.unwrap();
    lease(&store, &two, 14).await.unwrap();
    assert!(lease(&store, &two, 15).await.is_none(), "max_concurrency 2");
    let runners = store.list_runners().await.unwrap();
    let active = |id| runners.iter().find(|r| r.id == id).unwrap().active_runs;
    assert_eq!((active(one.runner_id), active(two.runner_id)), (1, 2));
    first
        .finish(ResultStatus::Failed, Some(3), 16)
        .await
        .unwrap();
    assert!(
        lease(&store, &one, 17).await.is_some(),
        "a finished attempt frees the slot"
    );
    a.finish(ResultStatus::Completed, Some(0), 18)
        .await
        .unwrap();
    assert!(lease(&store, &two, 19).await.is_some());
    assert!(lease(&store, &two, 19).await.is_none());
}

/// A token that does not name the active attempt is `LeaseGone` for every
/// holder call, and changes nothing.
pub async fn stale_lease_token_is_gone(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let run = f.run(1).await;
    let runner = f.runner("default", 1).await;
    let intruder = f.runner("default", 1).await;
    let h = lease(&store, &runner, 2).await.unwrap();
    let forged = [
        Held {
            token_hash: "wrong".into(),
            ..h.clone()
        },
        Held {
            runner_id: intruder.runner_id,
            ..h.clone()
        },
    ];
    for bad in &forged {
        assert_gone(bad.start(3).await);
        assert_gone(bad.heartbeat(3).await);
        assert_gone(bad.logs(&[1], 3).await);
        assert_gone(bad.finish(ResultStatus::Completed, Some(0), 3).await);
        assert_gone(
            store
                .leased_artifact(bad.runner_id, run.id, &bad.token_hash)
                .await,
        );
    }
    assert_gone(
        store
            .start_attempt(runner.runner_id, 999_999, &h.token_hash, at(3))
            .await,
    );
    let d = f.get(run.id).await;
    assert_eq!(d.run.status, RunStatus::Leased);
    assert_eq!(d.attempts[0].status, AttemptStatus::Leased);
    assert!(store
        .get_logs(None, run.id, 0, 10)
        .await
        .unwrap()
        .is_empty());

    h.finish(ResultStatus::Completed, Some(0), 4).await.unwrap();
    assert_gone(h.start(5).await);
    assert_gone(h.heartbeat(5).await);
    assert_gone(h.logs(&[1], 5).await);
    assert_gone(
        store
            .leased_artifact(runner.runner_id, run.id, &h.token_hash)
            .await,
    );
}

/// The same result twice is accepted once; a different one is a conflict.
pub async fn result_repeat_and_conflict(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    f.run(1).await;
    let runner = f.runner("default", 1).await;
    let h = lease(&store, &runner, 2).await.unwrap();
    h.start(3).await.unwrap();
    let req = ResultRequest {
        status: ResultStatus::Failed,
        exit_code: Some(1),
        error_message: Some("boom".into()),
    };
    let first = store
        .complete_attempt(runner.runner_id, h.run_id(), &h.token_hash, &req, t(4))
        .await
        .unwrap();
    assert!(first.finished.is_some());
    let again = store
        .complete_attempt(runner.runner_id, h.run_id(), &h.token_hash, &req, t(5))
        .await
        .unwrap();
    assert!(
        again.finished.is_none(),
        "a repeat does not finish the run twice"
    );
    assert_eq!(
        (again.ack.status, again.ack.run_status),
        (AttemptStatus::Failed, RunStatus::Failed)
    );
    for other in [
        ResultRequest {
            status: ResultStatus::Completed,
            exit_code: Some(0),
            error_message: None,
        },
        ResultRequest {
            exit_code: Some(2),
            ..req.clone()
        },
        ResultRequest {
            error_message: None,
            ..req.clone()
        },
    ] {
        let r = store
            .complete_attempt(runner.runner_id, h.run_id(), &h.token_hash, &other, t(6))
            .await;
        assert_conflict(r);
    }
    let d = f.get(h.run_id()).await;
    assert_eq!(
        (d.run.status, d.run.exit_code),
        (RunStatus::Failed, Some(1))
    );
    assert_eq!(
        (d.run.error_message.as_deref(), d.run.finished_at),
        (Some("boom"), Some(t(4)))
    );
    assert_eq!(d.attempts[0].error_message.as_deref(), Some("boom"));
}

/// Resent seqs are stored once; lines come back ascending by seq.
pub async fn logs_dedupe_and_order(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let run = f.run(1).await;
    let runner = f.runner("default", 1).await;
    let h = lease(&store, &runner, 2).await.unwrap();
    assert_eq!(h.logs(&[1, 2, 3], 3).await.unwrap(), (3, false));
    assert_eq!(h.logs(&[2, 3, 4], 4).await.unwrap(), (1, false));
    assert_eq!(h.logs(&[6, 5], 5).await.unwrap(), (2, false));
    let stamped = NewLogLine {
        seq: 7,
        stream: "stderr".into(),
        line: "oops".into(),
        logged_at: Some(t(1)),
    };
    let n = store
        .append_logs(runner.runner_id, run.id, &h.token_hash, &[stamped], t(6))
        .await
        .unwrap();
    assert_eq!(n, (1, false));
    assert_eq!(h.logs(&[], 6).await.unwrap(), (0, false));

    let all = store
        .get_logs(Some(f.team.id), run.id, 0, 100)
        .await
        .unwrap();
    let seqs: Vec<i64> = all.iter().map(|l| l.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(
        (all[0].line.as_str(), all[0].stream.as_str()),
        ("line 1", "stdout")
    );
    assert_eq!(
        all[0].logged_at,
        t(3),
        "missing logged_at is filled with now"
    );
    assert_eq!(all[3].logged_at, t(4), "the first copy of a seq is kept");
    assert_eq!(
        (
            all[6].stream.as_str(),
            all[6].line.as_str(),
            all[6].logged_at
        ),
        ("stderr", "oops", t(1))
    );
    assert!(all.iter().all(|l| l.attempt_no == 1));
    let tail = store.get_logs(None, run.id, 4, 100).await.unwrap();
    assert_eq!(
        tail.iter().map(|l| l.seq).collect::<Vec<_>>(),
        vec![5, 6, 7]
    );
    let page = store.get_logs(Some(f.team.id), run.id, 0, 2).await.unwrap();
    assert_eq!(page.iter().map(|l| l.seq).collect::<Vec<_>>(), vec![1, 2]);
    assert!(store
        .get_logs(None, run.id, 7, 100)
        .await
        .unwrap()
        .is_empty());
}

/// A retried run's next attempt is told the last stored seq and continues.
pub async fn log_seq_continues_across_attempts(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let run = f.run(1).await;
    let runner = f.runner("default", 1).await;
    let first = lease(&store, &runner, 2).await.unwrap();
    first.logs(&[1, 2, 3], 3).await.unwrap();
    let reaped = store.reap_expired(t(100), 10).await.unwrap();
    assert_eq!(reaped[0].run_status, RunStatus::Queued);
    let second = lease(&store, &runner, 101).await.unwrap();
    assert_eq!(second.leased.lease.attempt_no, 2);
    assert_eq!(second.leased.lease.last_log_seq, 3);
    assert_gone(first.logs(&[4], 102).await);
    assert_eq!(second.logs(&[3, 4, 5], 102).await.unwrap(), (2, false));
    let logs = store.get_logs(None, run.id, 0, 100).await.unwrap();
    let by_attempt: Vec<(i64, i64)> = logs.iter().map(|l| (l.seq, l.attempt_no)).collect();
    assert_eq!(by_attempt, vec![(1, 1), (2, 1), (3, 1), (4, 2), (5, 2)]);
}

/// The artifact is only handed to the active lease holder.
pub async fn leased_artifact_needs_active_lease(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let run = f.run(1).await;
    let runner = f.runner("default", 1).await;
    let h = lease(&store, &runner, 2).await.unwrap();
    let sha = store
        .leased_artifact(runner.runner_id, run.id, &h.token_hash)
        .await
        .unwrap();
    assert_eq!(sha, f.version.version.artifact_sha256);
    h.start(3).await.unwrap();
    store.cancel_run(f.team.id, run.id, t(4)).await.unwrap();
    // still the holder while cancelling: it may need the artifact to clean up
    assert!(store
        .leased_artifact(runner.runner_id, run.id, &h.token_hash)
        .await
        .is_ok());
    h.finish(ResultStatus::Cancelled, None, 5).await.unwrap();
    assert_gone(
        store
            .leased_artifact(runner.runner_id, run.id, &h.token_hash)
            .await,
    );
}

/// The fast path: a lease asked to start leaves the attempt and the run
/// running in its one transaction, answers what `start` would have, and a
/// later `start` (a runner that calls it anyway) changes nothing.
pub async fn lease_that_starts_is_one_transaction(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let run = f.run(1).await;
    let runner = f.runner("default", 1).await;
    let token = unique("lease");
    let hash = format!("hash-of-{token}");
    let leased = store
        .lease(
            &runner,
            &token,
            &hash,
            LeaseParams {
                start: true,
                ..at(10)
            },
        )
        .await
        .unwrap()
        .unwrap();
    let started = leased.lease.started.clone().expect("started in the answer");
    assert_eq!(
        (started.status, started.run_status, started.cancel_requested),
        (AttemptStatus::Running, RunStatus::Running, false)
    );
    assert_eq!(started.lease_expires_at, leased.lease.lease_expires_at);
    let d = f.get(run.id).await;
    assert_eq!(d.run.status, RunStatus::Running);
    assert_eq!(d.run.started_at, Some(t(10)));
    assert_eq!(d.attempts[0].status, AttemptStatus::Running);
    let (again, labels) = store
        .start_attempt(runner.runner_id, run.id, &hash, at(11))
        .await
        .unwrap();
    assert_eq!(
        (again.status, again.run_status),
        (AttemptStatus::Running, RunStatus::Running)
    );
    assert!(labels.is_none(), "nothing changed");
    assert_eq!(f.get(run.id).await.run.started_at, Some(t(10)));
    // A plain lease still leaves the attempt leased and says nothing.
    let second = f.run(20).await;
    let other = f.runner("default", 1).await;
    let h = lease(&store, &other, 21).await.unwrap();
    assert_eq!(h.run_id(), second.id);
    assert!(h.leased.lease.started.is_none());
    assert_eq!(f.get(second.id).await.run.status, RunStatus::Leased);
}
