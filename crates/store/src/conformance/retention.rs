//! Retention: old finished runs go with everything that refers to them, in
//! bounded batches; live runs, runs with a webhook event still pending for
//! an enabled endpoint and the newest run of each app stay; numbers are never reused; racing
//! purges delete each run once.

use super::*;
use crate::{DeliveryRecord, NewWebhook, PurgeLimits, Purged};
use minitower_core::api::{DeliveryOutcome, WebhookEvents};
use minitower_core::status::{ResultStatus, RunStatus};

const ALL: PurgeLimits = PurgeLimits {
    max_runs: 1000,
    max_log_lines: 1_000_000,
};

/// Queues a run at `t(secs)`, leases, starts and logs `lines` lines, and
/// finishes it with `status` at `t(secs + 5)`. Nothing else may be queued
/// in the default environment meanwhile.
async fn finished(
    f: &Fixture,
    runner: &RunnerIdentity,
    secs: i64,
    lines: i64,
    status: ResultStatus,
) -> i64 {
    let run = f.run(secs).await;
    let h = lease(&f.store, runner, secs + 1).await.unwrap();
    assert_eq!(h.run_id(), run.id);
    h.start(secs + 1).await.unwrap();
    let seqs: Vec<i64> = (1..=lines).collect();
    for chunk in seqs.chunks(100) {
        h.logs(chunk, secs + 2).await.unwrap();
    }
    let code = (status == ResultStatus::Completed).then_some(0).or(Some(1));
    h.finish(status, code, secs + 5).await.unwrap();
    run.id
}

/// An enabled endpoint of the fixture team for `events`.
async fn webhook(f: &Fixture, events: WebhookEvents) -> crate::Webhook {
    f.store
        .create_webhook(NewWebhook {
            team_id: f.team.id,
            app_id: None,
            url: "https://example.com/hook".into(),
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            events,
            enabled: true,
            now: t(0),
        })
        .await
        .unwrap()
}

/// Records a claimed event as delivered (200) at `t(secs)`; whether the
/// claim still held.
async fn delivered(store: &Arc<dyn Store>, e: &crate::ClaimedEvent, secs: i64) -> bool {
    let rec = DeliveryRecord {
        outbox_id: e.outbox_id,
        claim: e.claim,
        status_code: Some(200),
        latency_ms: 3,
        response_excerpt: None,
        error: None,
        outcome: DeliveryOutcome::Delivered,
        next_attempt_at: None,
        now: t(secs),
    };
    store.record_webhook_delivery(rec).await.unwrap()
}

/// Purges before `t(secs)` until a batch deletes nothing; the summed counts.
async fn purge_all(store: &Arc<dyn Store>, secs: i64, limits: PurgeLimits) -> (Purged, usize) {
    let mut total = Purged::default();
    let mut batches = 0;
    loop {
        let p = store.purge_finished_runs(t(secs), limits).await.unwrap();
        if p.runs == 0 {
            assert_eq!(p, Purged::default(), "an empty batch deletes nothing");
            return (total, batches);
        }
        total.add(&p);
        batches += 1;
    }
}

/// The run id in an event's payload.
fn run_of(payload: &str) -> i64 {
    let v: Value = serde_json::from_str(payload).unwrap();
    v["data"]["id"].as_i64().unwrap()
}

async fn exists(f: &Fixture, run_id: i64) -> bool {
    f.store.get_run(f.team.id, run_id).await.unwrap().is_some()
}

/// Old finished runs of every terminal kind go with their attempts, log
/// lines, webhook events and deliveries; the counts say so. Live runs (even
/// older ones), recent runs, a run whose event is still pending and the
/// app's newest run stay, logs and all; the summary counts follow.
pub async fn purge_deletes_old_finished_runs_and_what_they_own(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let runner = f.runner("default", 4).await;
    let hook = webhook(&f, WebhookEvents::Terminal).await;
    // A live run queued before everything else, in its own environment so
    // the leases below do not take it.
    let queued = f.run_with(1, |r| r.environment = "later".into()).await;
    let completed = finished(&f, &runner, 10, 30, ResultStatus::Completed).await;
    let failed = finished(&f, &runner, 20, 5, ResultStatus::Failed).await;
    let cancelled = f.run(30).await;
    store
        .cancel_run(f.team.id, cancelled.id, t(31))
        .await
        .unwrap();
    // Every event so far delivered: none blocks the purge.
    let events = store.claim_webhook_events(t(40), 100, TTL).await.unwrap();
    assert_eq!(events.len(), 3, "one terminal event per finished run");
    for e in &events {
        assert!(delivered(&store, e, 41).await);
    }
    // Old too, but its event is still pending.
    let pending = finished(&f, &runner, 50, 3, ResultStatus::Completed).await;
    // A running run, and a run that finished after the cutoff.
    let running = f.run(60).await.id;
    let h = lease(&store, &runner, 61).await.unwrap();
    h.start(61).await.unwrap();
    h.logs(&[1, 2], 62).await.unwrap();
    let recent = finished(&f, &runner, 200, 4, ResultStatus::Completed).await;
    // The app's newest run: old, delivered, and kept anyway.
    let newest = finished(&f, &runner, 70, 2, ResultStatus::Completed).await;
    assert!(newest > recent);
    for e in store
        .claim_webhook_events(t(300), 100, TTL)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| run_of(&e.payload) == newest)
    {
        assert!(delivered(&store, &e, 301).await);
    }

    let (purged, _) = purge_all(&store, 150, ALL).await;
    assert_eq!(
        purged,
        Purged {
            runs: 3,
            attempts: 2,
            log_lines: 35,
            webhook_events: 3,
            webhook_deliveries: 3,
        }
    );
    for gone in [completed, failed, cancelled.id] {
        assert!(!exists(&f, gone).await, "run {gone} purged");
        assert!(store
            .get_logs(None, gone, 0, 100)
            .await
            .unwrap_or_default()
            .is_empty());
    }
    for kept in [queued.id, pending, running, recent, newest] {
        assert!(exists(&f, kept).await, "run {kept} kept");
    }
    assert_eq!(f.get(queued.id).await.run.status, RunStatus::Queued);
    assert_eq!(f.get(running).await.run.status, RunStatus::Running);
    assert_eq!(
        store.get_logs(None, running, 0, 100).await.unwrap().len(),
        2
    );
    assert_eq!(
        store.get_logs(None, pending, 0, 100).await.unwrap().len(),
        3
    );
    assert_eq!(f.get(pending).await.attempts.len(), 1);
    // The running attempt still works: its lease, logs and result.
    h.logs(&[3], 63).await.unwrap();
    h.finish(ResultStatus::Completed, Some(0), 64)
        .await
        .unwrap();
    let history = store
        .list_webhook_deliveries(f.team.id, hook.id, 100)
        .await
        .unwrap();
    assert!(
        history.iter().all(|d| d.run_id == Some(newest)),
        "deliveries of purged runs went: {history:?}"
    );
    let summary = store.runs_summary(f.team.id).await.unwrap();
    assert_eq!(summary[&RunStatus::Cancelled], 0);
    assert_eq!(summary[&RunStatus::Failed], 0);
    assert_eq!(summary[&RunStatus::Completed], 4); // pending, recent, newest, running
    assert_eq!(summary[&RunStatus::Queued], 1);

    // Once its event is delivered, the pending run goes too.
    for e in store.claim_webhook_events(t(400), 100, TTL).await.unwrap() {
        assert!(delivered(&store, &e, 401).await);
    }
    let (purged, _) = purge_all(&store, 150, ALL).await;
    assert_eq!(
        (purged.runs, purged.log_lines),
        (2, 6),
        "pending and running"
    );
    assert!(!exists(&f, pending).await);
    assert!(exists(&f, newest).await && exists(&f, recent).await);
    // Nothing left to return, or returned in bounded steps until nothing is.
    let mut left = store.reclaim_space().await.unwrap();
    for _ in 0..10_000 {
        if left == 0 {
            break;
        }
        left = store.reclaim_space().await.unwrap();
    }
    assert_eq!(left, 0, "space reclaimed");
}

/// A pending event keeps its run only while its endpoint is enabled (and
/// so still delivering it): a disabled endpoint's backlog does not keep
/// runs forever, and goes with them.
pub async fn a_disabled_endpoint_keeps_no_run(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let runner = f.runner("default", 1).await;
    let hook = webhook(&f, WebhookEvents::All).await;
    let old = finished(&f, &runner, 10, 2, ResultStatus::Failed).await;
    let newest = finished(&f, &runner, 20, 2, ResultStatus::Completed).await;
    let p = store.purge_finished_runs(t(100), ALL).await.unwrap();
    assert_eq!(p, Purged::default(), "its events are being delivered");
    let off = crate::WebhookUpdate {
        enabled: Some(false),
        ..Default::default()
    };
    store
        .update_webhook(f.team.id, hook.id, off, t(50))
        .await
        .unwrap();
    let p = store.purge_finished_runs(t(100), ALL).await.unwrap();
    assert_eq!(p.runs, 1);
    assert!(p.webhook_events >= 2, "queued, started, failed: {p:?}");
    assert!(!exists(&f, old).await && exists(&f, newest).await);
}

/// The cutoff is strict, batches take the oldest first within both
/// limits, and a run with more lines than the line budget goes alone.
pub async fn purge_batches_are_bounded_and_oldest_first(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let runner = f.runner("default", 1).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        // finished at t(10 * i + 5)
        ids.push(finished(&f, &runner, 10 * i, 4, ResultStatus::Completed).await);
    }
    let big = finished(&f, &runner, 100, 50, ResultStatus::Completed).await;
    let newest = finished(&f, &runner, 200, 1, ResultStatus::Completed).await;
    let by_runs = PurgeLimits {
        max_runs: 3,
        max_log_lines: 1000,
    };
    // finished_at < t(25): the runs finished at 5 and 15, not the one at 25
    let p = store.purge_finished_runs(t(25), by_runs).await.unwrap();
    assert_eq!((p.runs, p.log_lines), (2, 8));
    assert!(!exists(&f, ids[0]).await && !exists(&f, ids[1]).await);
    assert!(exists(&f, ids[2]).await, "the cutoff is strict");
    let p = store.purge_finished_runs(t(1000), by_runs).await.unwrap();
    assert_eq!(p.runs, 3);
    assert!(
        !exists(&f, ids[4]).await && exists(&f, ids[5]).await,
        "oldest first"
    );
    let by_lines = PurgeLimits {
        max_runs: 100,
        max_log_lines: 6,
    };
    let p = store.purge_finished_runs(t(1000), by_lines).await.unwrap();
    assert_eq!((p.runs, p.log_lines), (1, 4), "4 + 4 lines pass the budget");
    let p = store.purge_finished_runs(t(1000), by_lines).await.unwrap();
    assert_eq!((p.runs, p.log_lines), (1, 4));
    let p = store.purge_finished_runs(t(1000), by_lines).await.unwrap();
    assert_eq!((p.runs, p.log_lines), (1, 50), "a big run goes alone");
    assert!(!exists(&f, big).await);
    let p = store.purge_finished_runs(t(1000), by_lines).await.unwrap();
    assert_eq!(p, Purged::default(), "the newest run stays");
    assert!(exists(&f, newest).await);
}

/// After a purge, new runs get numbers and ids past every purged one, in
/// every app; other teams' runs are purged by the same pass (retention is
/// platform-wide) but their newest stays too.
pub async fn purged_numbers_are_never_reused(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let other = Fixture::with_team(store.clone(), "other").await;
    let runner = f.runner("default", 1).await;
    let mut last = None;
    for i in 0..5 {
        last = Some(
            f.get(finished(&f, &runner, i * 10, 1, ResultStatus::Completed).await)
                .await,
        );
    }
    let last = last.unwrap().run;
    let mine = finished(&other, &runner, 100, 1, ResultStatus::Completed).await;
    let theirs_newest = finished(&other, &runner, 110, 1, ResultStatus::Completed).await;
    let (purged, _) = purge_all(&store, 1000, ALL).await;
    assert_eq!(purged.runs, 5, "4 of one app, 1 of the other team's");
    assert!(!exists(&other, mine).await);
    assert!(exists(&other, theirs_newest).await);
    let next = f.run(2000).await;
    assert_eq!(next.run_no, last.run_no + 1);
    assert!(
        next.id > theirs_newest,
        "ids move on: {} after {theirs_newest}",
        next.id
    );
}

/// Two purges at once delete every eligible run exactly once, without
/// errors; the sum of their counts is the total.
pub async fn racing_purges_delete_each_run_once(store: Arc<dyn Store>) {
    const RUNS: i64 = 60;
    let f = Fixture::new(store.clone()).await;
    let runner = f.runner("default", 1).await;
    for i in 0..RUNS {
        finished(&f, &runner, i * 10, 3, ResultStatus::Completed).await;
    }
    let limits = PurgeLimits {
        max_runs: 7,
        max_log_lines: 1000,
    };
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { purge_all(&store, 100_000, limits).await.0 })
        })
        .collect();
    let mut total = Purged::default();
    for t in futures::future::join_all(tasks).await {
        total.add(&t.unwrap());
    }
    assert_eq!(
        (total.runs, total.log_lines),
        ((RUNS - 1) as u64, 3 * (RUNS - 1) as u64)
    );
    assert_eq!(f.runs().await.len(), 1, "only the newest run is left");
}

/// The artifact collector's question: which of these hashes does a
/// version use.
pub async fn referenced_artifacts_are_the_versions_hashes(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let used = f.version.version.artifact_sha256.clone();
    let (_, v2) = f.app("second").await;
    let asked: Vec<String> = vec![
        used.clone(),
        "0".repeat(64),
        v2.version.artifact_sha256.clone(),
    ];
    let found = store.referenced_artifacts(&asked).await.unwrap();
    assert_eq!(
        found,
        [used, v2.version.artifact_sha256.clone()]
            .into_iter()
            .collect()
    );
    assert!(store.referenced_artifacts(&[]).await.unwrap().is_empty());
    // More hashes than one statement binds.
    let many: Vec<String> = (0..1200)
        .map(|i| format!("{i:064x}"))
        .chain([v2.version.artifact_sha256.clone()])
        .collect();
    assert_eq!(store.referenced_artifacts(&many).await.unwrap().len(), 1);
}
