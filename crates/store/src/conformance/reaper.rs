//! Lease expiry, stale runners and the metrics gauges.

use super::*;
use minitower_core::api::RunnerStatus;
use minitower_core::status::{AttemptStatus, RunStatus};

/// An expired attempt requeues its run while retries remain, keeping its
/// place in line; the last one kills it.
pub async fn reaper_requeues_then_kills(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let run = f.run_with(1, |r| r.max_retries = 1).await;
    let runner = f.runner("default", 1).await;
    let h = lease(&store, &runner, 10).await.unwrap(); // lease ends at 40
    h.start(10).await.unwrap();
    assert!(store.reap_expired(t(39), 10).await.unwrap().is_empty());
    assert!(
        store.reap_expired(t(40), 10).await.unwrap().is_empty(),
        "expiry is strict"
    );

    let reaped = store.reap_expired(t(41), 10).await.unwrap();
    assert_eq!(reaped.len(), 1);
    let r = &reaped[0];
    assert_eq!(
        (r.labels.run_id, r.attempt_no, r.run_status),
        (run.id, 1, RunStatus::Queued)
    );
    assert_eq!(r.finished, None);
    assert_eq!(
        (r.labels.team.as_str(), r.labels.app.as_str()),
        ("acme", "hello")
    );
    let d = f.get(run.id).await;
    assert_eq!(
        (d.run.status, d.run.retry_count, d.run.queued_at),
        (RunStatus::Queued, 1, t(1))
    );
    assert_eq!(d.run.finished_at, None);
    assert_eq!(
        (d.attempts[0].status, d.attempts[0].finished_at),
        (AttemptStatus::Expired, Some(t(41)))
    );
    assert_eq!(store.list_runners().await.unwrap()[0].active_runs, 0);
    assert!(
        store.reap_expired(t(42), 10).await.unwrap().is_empty(),
        "reaped once"
    );

    let h2 = lease(&store, &runner, 50).await.unwrap();
    assert_eq!(h2.leased.lease.attempt_no, 2);
    // Started: its script ran, so its expiry spends the (last) retry.
    h2.start(50).await.unwrap();
    let reaped = store.reap_expired(t(81), 10).await.unwrap();
    assert_eq!(
        (reaped[0].attempt_no, reaped[0].run_status),
        (2, RunStatus::Dead)
    );
    let fin = reaped[0].finished.clone().unwrap();
    assert_eq!(
        (fin.status, fin.queued_at, fin.started_at, fin.finished_at),
        (RunStatus::Dead, t(1), Some(t(10)), t(81))
    );
    let d = f.get(run.id).await;
    assert_eq!(
        (d.run.status, d.run.retry_count, d.run.finished_at),
        (RunStatus::Dead, 1, Some(t(81)))
    );
    assert!(d.run.error_message.is_some(), "a dead run says why");
    let statuses: Vec<_> = d.attempts.iter().map(|a| a.status).collect();
    assert_eq!(
        statuses,
        vec![AttemptStatus::Expired, AttemptStatus::Expired]
    );
    assert!(lease(&store, &runner, 90).await.is_none());
}

/// An expired attempt of a run with a pending cancel cancels the run.
pub async fn reaper_cancels_when_cancel_requested(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let run = f.run_with(1, |r| r.max_retries = 5).await;
    let runner = f.runner("default", 1).await;
    let h = lease(&store, &runner, 2).await.unwrap();
    h.start(3).await.unwrap(); // lease ends at 33
    store.cancel_run(f.team.id, run.id, t(4)).await.unwrap();
    let reaped = store.reap_expired(t(34), 10).await.unwrap();
    assert_eq!(reaped.len(), 1);
    assert_eq!(reaped[0].run_status, RunStatus::Cancelled);
    assert_eq!(
        reaped[0].finished.as_ref().map(|f| f.status),
        Some(RunStatus::Cancelled)
    );
    let d = f.get(run.id).await;
    assert_eq!(
        (d.run.status, d.run.finished_at, d.run.retry_count),
        (RunStatus::Cancelled, Some(t(34)), 0)
    );
    assert_eq!(d.attempts[0].status, AttemptStatus::Expired);
}

/// A heartbeat keeps the lease alive past its first deadline.
pub async fn reaper_spares_heartbeating_leases(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    f.run(1).await;
    let runner = f.runner("default", 1).await;
    let h = lease(&store, &runner, 0).await.unwrap(); // ends at 30
    h.start(1).await.unwrap(); // ends at 31
    assert_eq!(h.heartbeat(25).await.unwrap().lease_expires_at, t(55));
    assert!(store.reap_expired(t(40), 10).await.unwrap().is_empty());
    assert_eq!(f.get(h.run_id()).await.run.status, RunStatus::Running);
    assert_eq!(store.reap_expired(t(56), 10).await.unwrap().len(), 1);
    assert_gone(h.heartbeat(57).await);
}

/// A result after the lease was reaped is `LeaseGone` and does not bring
/// the run back: it stays queued (retry) or dead.
pub async fn late_result_after_expiry_is_gone(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let retried = f.run_with(1, |r| r.max_retries = 1).await;
    let doomed = f.run_with(2, |r| r.max_retries = 0).await;
    let runner = f.runner("default", 2).await;
    let a = lease(&store, &runner, 3).await.unwrap();
    let b = lease(&store, &runner, 3).await.unwrap();
    assert_eq!((a.run_id(), b.run_id()), (retried.id, doomed.id));
    a.start(4).await.unwrap();
    b.start(4).await.unwrap();
    a.logs(&[1], 5).await.unwrap();
    assert_eq!(store.reap_expired(t(100), 10).await.unwrap().len(), 2);

    for h in [&a, &b] {
        assert_gone(h.finish(ResultStatus::Completed, Some(0), 101).await);
        assert_gone(h.finish(ResultStatus::Failed, Some(1), 101).await);
        assert_gone(h.heartbeat(101).await);
        assert_gone(h.start(101).await);
        assert_gone(h.logs(&[2], 101).await);
    }
    let d = f.get(retried.id).await;
    assert_eq!(
        (d.run.status, d.run.exit_code, d.run.finished_at),
        (RunStatus::Queued, None, None)
    );
    assert_eq!(d.attempts[0].status, AttemptStatus::Expired);
    let d = f.get(doomed.id).await;
    assert_eq!(d.run.status, RunStatus::Dead);
    assert_eq!(d.attempts[0].status, AttemptStatus::Expired);
    assert_eq!(
        store.get_logs(None, retried.id, 0, 10).await.unwrap().len(),
        1
    );
}

/// One sweep handles at most `limit` expiries; the next takes the rest.
pub async fn reaper_respects_limit(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let runner = f.runner("default", 5).await;
    for i in 0..5 {
        f.run(i).await;
        lease(&store, &runner, 10).await.unwrap();
    }
    assert_eq!(store.reap_expired(t(100), 2).await.unwrap().len(), 2);
    assert_eq!(store.reap_expired(t(100), 10).await.unwrap().len(), 3);
    assert!(store.reap_expired(t(100), 10).await.unwrap().is_empty());
    let s = store.runs_summary(f.team.id).await.unwrap();
    assert_eq!(s[&RunStatus::Queued], 5);
}

/// Runners not seen since the threshold go offline; being seen (directly,
/// by leasing or by heartbeating) brings them back.
pub async fn stale_runners_go_offline(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let old = register(&store, "old", "default", 1).await; // seen at 0
    let fresh = register(&store, "fresh", "default", 1).await;
    let gpu = register(&store, "gpu", "gpu", 1).await;
    store.runner_seen(fresh.runner_id, t(100)).await.unwrap();
    assert_eq!(store.mark_stale_runners_offline(t(50)).await.unwrap(), 2);
    assert_eq!(store.mark_stale_runners_offline(t(50)).await.unwrap(), 0);
    let list = store.list_runners().await.unwrap();
    let status = |id| list.iter().find(|r| r.id == id).unwrap().status;
    assert_eq!(status(old.runner_id), RunnerStatus::Offline);
    assert_eq!(status(fresh.runner_id), RunnerStatus::Online);
    assert_eq!(status(gpu.runner_id), RunnerStatus::Offline);
    let online = |v: Vec<(String, i64)>| v.into_iter().filter(|(_, n)| *n > 0).collect::<Vec<_>>();
    assert_eq!(
        online(store.runners_online().await.unwrap()),
        vec![("default".to_string(), 1)]
    );

    assert!(lease(&store, &gpu, 120).await.is_none());
    f.run(121).await;
    let h = lease(&store, &old, 122).await.unwrap();
    let mut now = online(store.runners_online().await.unwrap());
    now.sort();
    assert_eq!(
        now,
        vec![("default".to_string(), 2), ("gpu".to_string(), 1)]
    );
    assert_eq!(store.mark_stale_runners_offline(t(200)).await.unwrap(), 3);
    h.heartbeat(201).await.unwrap();
    let list = store.list_runners().await.unwrap();
    let r = list.iter().find(|r| r.id == old.runner_id).unwrap();
    assert_eq!(
        (r.status, r.last_seen_at, r.active_runs),
        (RunnerStatus::Online, Some(t(201)), 1)
    );
    assert_not_found(store.runner_seen(999_999, t(300)).await);
}

/// Queued runs per team, app and environment (zero rows may be listed).
pub async fn pending_counts_per_team_app_environment(store: Arc<dyn Store>) {
    let a = Fixture::new(store.clone()).await;
    let b = Fixture::with_team(store.clone(), "beta").await;
    let (tool, tool_v) = a.app("tool").await;
    for i in 0..3 {
        a.run(i).await;
    }
    a.run_with(3, |r| r.environment = "gpu".into()).await;
    a.run_with(4, |r| {
        r.app_id = tool.id;
        r.version_id = tool_v.id;
    })
    .await;
    b.run(5).await;
    let runner = a.runner("default", 1).await;
    lease(&store, &runner, 6).await.unwrap(); // takes acme/hello's first run
    let cancel_me = b.run(7).await;
    b.store
        .cancel_run(b.team.id, cancel_me.id, t(8))
        .await
        .unwrap();

    let mut got: Vec<(String, String, String, i64)> = store
        .pending_counts()
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.count > 0)
        .map(|p| (p.team, p.app, p.environment, p.count))
        .collect();
    got.sort();
    let row = |t: &str, a: &str, e: &str, n| (t.to_string(), a.to_string(), e.to_string(), n);
    assert_eq!(
        got,
        vec![
            row("acme", "hello", "default", 2),
            row("acme", "hello", "gpu", 1),
            row("acme", "tool", "default", 1),
            row("beta", "hello", "default", 1),
        ]
    );
}
