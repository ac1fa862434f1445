//! Webhooks: endpoints are the team's own; run transitions write outbox
//! events in their own transaction, filtered per endpoint; deliverers claim
//! events once, record attempts only under a current claim, and a claim
//! that runs out makes the event due again.

use super::*;
use crate::{ClaimedEvent, DeliveryRecord, NewWebhook, WebhookUpdate};
use minitower_core::api::{DeliveryOutcome, WebhookEvents};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const CLAIM: Duration = Duration::from_secs(60);

fn hook(f: &Fixture, events: WebhookEvents, app_id: Option<i64>) -> NewWebhook {
    NewWebhook {
        team_id: f.team.id,
        app_id,
        url: "https://example.com/hook".into(),
        secret: SECRET.into(),
        events,
        enabled: true,
        now: t(0),
    }
}

/// Every due event, claimed at `t(secs)`, as (event type, run id) with the
/// run's status in the payload.
async fn claim_all(store: &Arc<dyn Store>, secs: i64) -> Vec<ClaimedEvent> {
    store
        .claim_webhook_events(t(secs), 100, CLAIM)
        .await
        .unwrap()
}

fn types(events: &[ClaimedEvent]) -> Vec<String> {
    events.iter().map(|e| e.event_type.clone()).collect()
}

fn delivered(e: &ClaimedEvent, secs: i64) -> DeliveryRecord {
    DeliveryRecord {
        outbox_id: e.outbox_id,
        claim: e.claim,
        status_code: Some(200),
        latency_ms: 5,
        response_excerpt: Some("ok".into()),
        error: None,
        outcome: DeliveryOutcome::Delivered,
        next_attempt_at: None,
        now: t(secs),
    }
}

pub async fn webhooks_create_list_update_delete_per_team(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let other = Fixture::with_team(store.clone(), "other").await;
    let all = store
        .create_webhook(hook(&f, WebhookEvents::All, None))
        .await
        .unwrap();
    let app = store
        .create_webhook(hook(&f, WebhookEvents::Failures, Some(f.app.id)))
        .await
        .unwrap();
    assert_eq!(
        (all.app.as_deref(), app.app.as_deref()),
        (None, Some("hello"))
    );
    assert_eq!(
        (all.events, all.enabled, all.created_at),
        (WebhookEvents::All, true, t(0))
    );
    // another team's app is not found, nor are its endpoints
    assert_not_found(
        store
            .create_webhook(hook(&f, WebhookEvents::All, Some(other.app.id)))
            .await,
    );
    assert_eq!(
        store.list_webhooks(f.team.id).await.unwrap(),
        vec![all.clone(), app.clone()]
    );
    assert!(store.list_webhooks(other.team.id).await.unwrap().is_empty());
    assert!(store
        .get_webhook(other.team.id, all.id)
        .await
        .unwrap()
        .is_none());
    assert_not_found(
        store
            .update_webhook(other.team.id, all.id, WebhookUpdate::default(), t(1))
            .await,
    );
    assert_not_found(store.delete_webhook(other.team.id, all.id).await);
    assert_not_found(
        store
            .list_webhook_deliveries(other.team.id, all.id, 10)
            .await,
    );
    assert_not_found(store.enqueue_test_event(other.team.id, all.id, t(1)).await);
    let u = WebhookUpdate {
        url: Some("https://example.org/h".into()),
        events: Some(WebhookEvents::Terminal),
        enabled: Some(false),
    };
    let changed = store
        .update_webhook(f.team.id, all.id, u, t(5))
        .await
        .unwrap();
    assert_eq!(
        (
            changed.url.as_str(),
            changed.events,
            changed.enabled,
            changed.updated_at
        ),
        (
            "https://example.org/h",
            WebhookEvents::Terminal,
            false,
            t(5)
        )
    );
    // an empty change keeps everything but the update time
    let same = store
        .update_webhook(f.team.id, all.id, WebhookUpdate::default(), t(6))
        .await
        .unwrap();
    assert_eq!((same.url, same.enabled), (changed.url, false));
    store
        .enqueue_test_event(f.team.id, app.id, t(7))
        .await
        .unwrap();
    store.delete_webhook(f.team.id, app.id).await.unwrap();
    assert!(store
        .get_webhook(f.team.id, app.id)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store.webhook_outbox_depth().await.unwrap(),
        0,
        "its events went with it"
    );
    assert_not_found(store.delete_webhook(f.team.id, app.id).await);
}

/// Each transition writes one event per matching endpoint, with the run as
/// it was right after; filters and app scoping pick which endpoints.
pub async fn run_transitions_write_filtered_events(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let all = store
        .create_webhook(hook(&f, WebhookEvents::All, None))
        .await
        .unwrap();
    let term = store
        .create_webhook(hook(&f, WebhookEvents::Terminal, None))
        .await
        .unwrap();
    let fail = store
        .create_webhook(hook(&f, WebhookEvents::Failures, None))
        .await
        .unwrap();
    let (other_app, other_v) = f.app("other").await;
    let scoped = store
        .create_webhook(hook(&f, WebhookEvents::All, Some(other_app.id)))
        .await
        .unwrap();
    let off = store
        .create_webhook(hook(&f, WebhookEvents::All, None))
        .await
        .unwrap();
    store
        .update_webhook(
            f.team.id,
            off.id,
            WebhookUpdate {
                enabled: Some(false),
                ..Default::default()
            },
            t(0),
        )
        .await
        .unwrap();
    let runner = f.runner("default", 1).await;
    // completed, with one failure retry before it
    let run = f.run_with(1, |r| r.failure_retries = Some(1)).await;
    let h = lease(&store, &runner, 2).await.unwrap();
    h.start(2).await.unwrap();
    h.finish(ResultStatus::Failed, Some(1), 3).await.unwrap();
    let h = lease(&store, &runner, 20).await.unwrap();
    h.start(20).await.unwrap();
    h.finish(ResultStatus::Failed, Some(1), 21).await.unwrap();
    let events = claim_all(&store, 30).await;
    let of = |id: i64| -> Vec<String> {
        events
            .iter()
            .filter(|e| e.webhook_id == id)
            .map(|e| e.event_type.clone())
            .collect()
    };
    assert_eq!(
        of(all.id),
        [
            "run.queued",
            "run.leased",
            "run.started",
            "run.retrying",
            "run.leased",
            "run.started",
            "run.failed"
        ]
    );
    assert_eq!(of(term.id), ["run.failed"]);
    assert_eq!(of(fail.id), ["run.failed"]);
    assert!(of(scoped.id).is_empty() && of(off.id).is_empty());
    // the payload carries the run right after the event
    let last = events.iter().find(|e| e.webhook_id == fail.id).unwrap();
    let p: Value = serde_json::from_str(&last.payload).unwrap();
    assert_eq!(p["type"], "run.failed");
    assert_eq!(p["data"]["id"], run.id);
    assert_eq!(p["data"]["status"], "failed");
    assert_eq!(p["data"]["failure_retry_count"], 1);
    assert_eq!(p["timestamp"], "2026-01-01T00:00:21.000Z");
    assert_eq!(
        (last.url.as_str(), last.secret.as_str(), last.attempts),
        ("https://example.com/hook", SECRET, 0)
    );
    // the other app's run reaches the scoped endpoint; a cancel is an event
    let r = f
        .run_with(40, |r| {
            r.app_id = other_app.id;
            r.version_id = other_v.id;
        })
        .await;
    store.cancel_run(f.team.id, r.id, t(41)).await.unwrap();
    let events = claim_all(&store, 42).await;
    let scoped_types: Vec<_> = events
        .iter()
        .filter(|e| e.webhook_id == scoped.id)
        .map(|e| e.event_type.as_str())
        .collect();
    assert_eq!(scoped_types, ["run.queued", "run.cancelled"]);
    assert_eq!(
        types(&events)
            .iter()
            .filter(|t| *t == "run.cancelled")
            .count(),
        3
    );
    // a lost runner: requeued (all), then dead (all, terminal, failures)
    let r = f.run_with(50, |r| r.max_retries = 0).await;
    let h = lease(&store, &runner, 51).await.unwrap();
    assert_eq!(h.run_id(), r.id);
    h.start(51).await.unwrap();
    store.reap_expired(t(200), 10).await.unwrap();
    let dead: Vec<_> = claim_all(&store, 201)
        .await
        .into_iter()
        .filter(|e| e.event_type == "run.dead")
        .map(|e| e.webhook_id)
        .collect();
    assert_eq!(dead, [all.id, term.id, fail.id]);
}

/// Claims hand an event to one deliverer; records need the current claim;
/// retries keep the event (same outbox id, so the same webhook-id) and
/// count attempts; a claim that runs out is claimed again.
pub async fn claims_records_and_retries(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let w = store
        .create_webhook(hook(&f, WebhookEvents::All, None))
        .await
        .unwrap();
    let id = store
        .enqueue_test_event(f.team.id, w.id, t(1))
        .await
        .unwrap();
    assert_eq!(store.webhook_outbox_depth().await.unwrap(), 1);
    assert_eq!(store.next_webhook_due().await.unwrap(), Some(t(1)));
    assert!(claim_all(&store, 0).await.is_empty(), "not due yet");
    let first = claim_all(&store, 1).await;
    assert_eq!(
        (
            first.len(),
            first[0].outbox_id,
            first[0].event_type.as_str()
        ),
        (1, id, "webhook.test")
    );
    assert!(
        claim_all(&store, 2).await.is_empty(),
        "claimed: not handed out twice"
    );
    // the first attempt fails: due again at t(10)
    let retry = DeliveryRecord {
        status_code: Some(500),
        response_excerpt: Some("boom".into()),
        outcome: DeliveryOutcome::Retry,
        next_attempt_at: Some(t(10)),
        ..delivered(&first[0], 3)
    };
    assert!(store.record_webhook_delivery(retry.clone()).await.unwrap());
    assert!(
        !store.record_webhook_delivery(retry).await.unwrap(),
        "a claim records once"
    );
    assert_eq!(store.next_webhook_due().await.unwrap(), Some(t(10)));
    assert!(claim_all(&store, 9).await.is_empty());
    let second = claim_all(&store, 10).await;
    assert_eq!((second[0].outbox_id, second[0].attempts), (id, 1));
    // its deliverer dies: after the claim TTL the event is claimed again and
    // the dead claim can no longer record
    let later = 10 + CLAIM.as_secs() as i64;
    assert!(claim_all(&store, later - 1).await.is_empty());
    let third = claim_all(&store, later).await;
    assert_eq!(third[0].outbox_id, id);
    assert!(!store
        .record_webhook_delivery(delivered(&second[0], later))
        .await
        .unwrap());
    assert!(store
        .record_webhook_delivery(delivered(&third[0], later + 1))
        .await
        .unwrap());
    assert_eq!(store.webhook_outbox_depth().await.unwrap(), 0);
    assert_eq!(store.next_webhook_due().await.unwrap(), None);
    assert!(claim_all(&store, later + 1000).await.is_empty());
    let d = store
        .list_webhook_deliveries(f.team.id, w.id, 10)
        .await
        .unwrap();
    let seen: Vec<_> = d
        .iter()
        .map(|d| (d.attempt_no, d.status_code, d.outcome))
        .collect();
    assert_eq!(
        seen,
        [
            (2, Some(200), DeliveryOutcome::Delivered),
            (1, Some(500), DeliveryOutcome::Retry)
        ]
    );
    assert!(d
        .iter()
        .all(|d| d.event_id == format!("msg_{id}") && d.run_id.is_none()));
    assert_eq!(d[1].response_excerpt.as_deref(), Some("boom"));
    // giving up ends the event as failed
    let id2 = store
        .enqueue_test_event(f.team.id, w.id, t(2000))
        .await
        .unwrap();
    let c = claim_all(&store, 2000).await;
    let failed = DeliveryRecord {
        status_code: None,
        response_excerpt: None,
        error: Some("connection refused".into()),
        outcome: DeliveryOutcome::Failed,
        ..delivered(&c[0], 2001)
    };
    assert!(store.record_webhook_delivery(failed).await.unwrap());
    assert!(claim_all(&store, 9999).await.is_empty());
    let d = store
        .list_webhook_deliveries(f.team.id, w.id, 1)
        .await
        .unwrap();
    assert_eq!(
        (d.len(), d[0].event_id.clone(), d[0].outcome),
        (1, format!("msg_{id2}"), DeliveryOutcome::Failed)
    );
    // a disabled endpoint's events wait
    store
        .enqueue_test_event(f.team.id, w.id, t(3000))
        .await
        .unwrap();
    store
        .update_webhook(
            f.team.id,
            w.id,
            WebhookUpdate {
                enabled: Some(false),
                ..Default::default()
            },
            t(3000),
        )
        .await
        .unwrap();
    assert!(claim_all(&store, 3001).await.is_empty());
    assert_eq!(store.next_webhook_due().await.unwrap(), None);
    assert_eq!(store.webhook_outbox_depth().await.unwrap(), 1);
}

/// Concurrent claimers never take the same event.
pub async fn racing_claims_take_each_event_once(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let w = store
        .create_webhook(hook(&f, WebhookEvents::All, None))
        .await
        .unwrap();
    for i in 0..40 {
        store
            .enqueue_test_event(f.team.id, w.id, t(i))
            .await
            .unwrap();
    }
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let c = store.claim_webhook_events(t(100), 3, CLAIM).await.unwrap();
                    if c.is_empty() {
                        return got;
                    }
                    got.extend(c.into_iter().map(|e| e.outbox_id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!((n, all.len()), (40, 40));
}
