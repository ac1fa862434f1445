//! Webhooks against a real HTTP receiver on loopback: every event arrives
//! with a valid Standard Webhooks signature and one `webhook-id` across
//! retries, after a 500, after the receiver was down, and across a
//! SIGKILLed control plane. Bad input is a 400 naming the field; another
//! team's endpoints are 404.

mod common;
mod support;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::*;
use minitower_client::Client;
use minitower_core::api::*;
use minitower_core::webhook::{self, Secret};
use minitower_core::ResultStatus;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// One request the receiver saw.
#[derive(Debug, Clone)]
struct Got {
    id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
    answered: u16,
}

/// A webhook receiver: records every request, answers 500 to the first
/// `fail_first` ones and 200 after.
#[derive(Default)]
struct Inbox {
    got: Mutex<Vec<Got>>,
    fail_first: AtomicUsize,
}

impl Inbox {
    fn all(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

async fn hook(State(inbox): State<Arc<Inbox>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let fail = inbox
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let status = if fail {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    inbox.got.lock().unwrap().push(Got {
        id: h("webhook-id"),
        timestamp: h("webhook-timestamp"),
        signature: h("webhook-signature"),
        body: body.to_vec(),
        answered: status.as_u16(),
    });
    status
}

/// Serves `inbox` on `listener` until the task is aborted.
fn serve(listener: TcpListener, inbox: Arc<Inbox>) -> tokio::task::JoinHandle<()> {
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(inbox);
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    })
}

async fn receiver(fail_first: usize) -> (String, Arc<Inbox>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let inbox = Arc::new(Inbox::default());
    inbox.fail_first.store(fail_first, Ordering::SeqCst);
    let task = serve(listener, inbox.clone());
    (url, inbox, task)
}

/// Checks a request as a receiver would, with the endpoint's secret.
fn verified(secret: &str, g: &Got) -> WebhookPayload {
    let key = Secret::parse(secret).unwrap();
    let now = chrono::Utc::now().timestamp();
    webhook::verify(&key, &g.id, &g.timestamp, &g.signature, &g.body, now, 3600)
        .unwrap_or_else(|e| panic!("{}: {e}", g.id));
    serde_json::from_slice(&g.body).unwrap()
}

async fn allowing_loopback() -> TestApp {
    spawn_app_with(|c| {
        c.webhook_allow_private = true;
        c.webhook_retry_base = Duration::from_millis(100);
    })
    .await
}

fn create(url: &str, events: &str) -> CreateWebhookRequest {
    CreateWebhookRequest {
        url: url.into(),
        events: Some(events.into()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_event_arrives_signed_once_per_id_and_a_500_is_retried_with_the_same_id() {
    let app = allowing_loopback().await;
    let (url, inbox, _rx) = receiver(1).await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    let hooked = team.create_webhook(&create(&url, "all")).await.unwrap();
    assert!(hooked.secret.starts_with("whsec_"));
    assert_eq!(hooked.webhook.events, WebhookEvents::All);
    // the secret is shown once: never in lists or reads
    let listed = serde_json::to_string(&team.list_webhooks().await.unwrap()).unwrap();
    assert!(!listed.contains(&hooked.secret));
    let runner = app.runner("r1", None).await;
    let run = queue_run(&team, "hello", None).await;
    let lease = lease_started(&runner).await;
    runner
        .result(
            run.id,
            &lease.lease_token,
            &result_req(ResultStatus::Completed, Some(0)),
        )
        .await
        .unwrap();
    // queued, leased, started, completed: four events; the first answer is
    // a 500, so one of them comes twice. The retry waits 100 ms on the
    // server's (manual) clock.
    let got = eventually("four events delivered", || async {
        app.advance(Duration::from_millis(200));
        let got = inbox.all();
        (got.iter().filter(|g| g.answered == 200).count() == 4).then_some(got)
    })
    .await;
    assert_eq!(got.len(), 5);
    let mut by_id: BTreeMap<String, Vec<&Got>> = BTreeMap::new();
    for g in &got {
        by_id.entry(g.id.clone()).or_default().push(g);
    }
    assert_eq!(by_id.len(), 4, "one webhook-id per event");
    let mut types = Vec::new();
    for (id, tries) in &by_id {
        assert_eq!(
            tries.iter().filter(|g| g.answered == 200).count(),
            1,
            "{id}"
        );
        let p = verified(&hooked.secret, tries[0]);
        // a retry is the same event: same id, same body
        assert!(tries.iter().all(|g| g.body == tries[0].body));
        assert_eq!(p.data["id"], run.id);
        types.push(p.event_type);
    }
    types.sort();
    assert_eq!(
        types,
        ["run.completed", "run.leased", "run.queued", "run.started"]
    );
    let retried = got.iter().find(|g| g.answered == 500).unwrap();
    assert_eq!(by_id[&retried.id].len(), 2);
    // The attempts are recorded: the 500 as a retry, then five deliveries.
    // The receiver saw the last answer before the deliverer recorded it:
    // poll for the record.
    let deliveries = eventually("five deliveries recorded", || async {
        let d = team
            .webhook_deliveries(hooked.webhook.id, None)
            .await
            .unwrap();
        (d.len() >= 5).then_some(d)
    })
    .await;
    assert_eq!(deliveries.len(), 5);
    let failed: Vec<_> = deliveries
        .iter()
        .filter(|d| d.outcome == DeliveryOutcome::Retry)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        (failed[0].status_code, failed[0].attempt_no),
        (Some(500), 1)
    );
    assert_eq!(failed[0].event_id, retried.id);
    let again = deliveries
        .iter()
        .find(|d| d.event_id == retried.id && d.outcome == DeliveryOutcome::Delivered)
        .unwrap();
    assert_eq!((again.attempt_no, again.status_code), (2, Some(200)));
    let text = eventually("delivery metrics", || async {
        let metrics = app
            .anon
            .raw(reqwest::Method::GET, "/metrics")
            .send()
            .await
            .unwrap();
        let text = metrics.text().await.unwrap();
        text.contains("minitower_webhook_deliveries_total{outcome=\"delivered\"} 4")
            .then_some(text)
    })
    .await;
    assert!(text.contains("minitower_webhook_deliveries_total{outcome=\"retry\"} 1"));
    // The signing secret is stored sealed: it is in no database file, yet
    // every delivery above was signed with it.
    let mut db = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let mut p = app.db_path.clone().into_os_string();
        p.push(suffix);
        db.extend(std::fs::read(p).unwrap_or_default());
    }
    let key = hooked.secret.trim_start_matches("whsec_").as_bytes();
    assert!(db.len() > 10_000 && !db.windows(key.len()).any(|w| w == key));
    assert!(text.contains("minitower_webhook_outbox_depth 0"));
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_pick_events_and_the_test_event_is_sent() {
    let app = allowing_loopback().await;
    let (url, inbox, _rx) = receiver(0).await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    let failures = team
        .create_webhook(&create(&url, "failures"))
        .await
        .unwrap();
    let runner = app.runner("r1", None).await;
    for (status, code) in [(ResultStatus::Completed, 0), (ResultStatus::Failed, 3)] {
        let run = queue_run(&team, "hello", None).await;
        let lease = lease_started(&runner).await;
        runner
            .result(run.id, &lease.lease_token, &result_req(status, Some(code)))
            .await
            .unwrap();
    }
    let test = team.test_webhook(failures.webhook.id).await.unwrap();
    assert_eq!(test.event_type, "webhook.test");
    let got = eventually("the failure and the test event", || async {
        let got = inbox.all();
        (got.len() >= 2).then_some(got)
    })
    .await;
    let mut types: Vec<String> = got
        .iter()
        .map(|g| verified(&failures.secret, g).event_type)
        .collect();
    types.sort();
    assert_eq!(types, ["run.failed", "webhook.test"]);
    assert!(got.iter().any(|g| g.id == test.event_id));
    let failed = got
        .iter()
        .map(|g| verified(&failures.secret, g))
        .find(|p| p.event_type == "run.failed")
        .unwrap();
    assert_eq!(
        (
            failed.data["status"].as_str(),
            failed.data["exit_code"].as_i64()
        ),
        (Some("failed"), Some(3))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_that_was_down_gets_the_event_later() {
    let app = allowing_loopback().await;
    // A port nothing listens on (yet).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}/hook");
    let team = app.team("acme").await;
    let w = team.create_webhook(&create(&url, "all")).await.unwrap();
    let sent = team.test_webhook(w.webhook.id).await.unwrap();
    let first = eventually("a refused attempt", || async {
        let d = team.webhook_deliveries(w.webhook.id, None).await.ok()?;
        d.into_iter().next()
    })
    .await;
    assert_eq!(
        (first.status_code, first.outcome),
        (None, DeliveryOutcome::Retry)
    );
    assert!(first.error.is_some(), "says why");
    // The receiver comes up: the next attempt reaches it.
    let inbox = Arc::new(Inbox::default());
    let _rx = serve(TcpListener::bind(addr).await.unwrap(), inbox.clone());
    let got = eventually("the late delivery", || async {
        app.advance(Duration::from_millis(500));
        inbox.all().into_iter().next()
    })
    .await;
    assert_eq!(got.id, sent.event_id);
    assert_eq!(verified(&w.secret, &got).event_type, "webhook.test");
    let d = eventually("the delivery recorded", || async {
        let d = team.webhook_deliveries(w.webhook.id, None).await.ok()?;
        (d[0].outcome == DeliveryOutcome::Delivered).then_some(d)
    })
    .await;
    assert!(d.len() >= 2 && d.iter().all(|x| x.event_id == sent.event_id));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_naming_the_field_and_changes_nothing() {
    let app = spawn_app().await; // private addresses refused
    let team = app.team("acme").await;
    for (req, field) in [
        (create("ftp://example.com/hook", "all"), "url"),
        (create("not a url", "all"), "url"),
        (create("https://93.184.216.34/hook", "sometimes"), "events"),
        (create("http://127.0.0.1:9/hook", "all"), "url"),
        (create("http://[::1]:9/hook", "all"), "url"),
        (create("http://169.254.169.254/latest", "all"), "url"),
        (
            CreateWebhookRequest {
                app: Some("nope".into()),
                ..create("https://93.184.216.34/hook", "all")
            },
            "app",
        ),
    ] {
        let m = expect_api_err(team.create_webhook(&req).await, 400, "invalid_request");
        assert!(m.starts_with(field), "{field}: {m}");
    }
    assert!(team.list_webhooks().await.unwrap().is_empty());
    // An endpoint that passed (the check resolves names; an IP literal of a
    // public host needs no DNS here), then a bad change leaves it as it was.
    let ok = team
        .create_webhook(&create("http://93.184.216.34/hook", "terminal"))
        .await
        .unwrap();
    let bad = UpdateWebhookRequest {
        events: Some("never".into()),
        enabled: Some(false),
        ..Default::default()
    };
    let m = expect_api_err(
        team.update_webhook(ok.webhook.id, &bad).await,
        400,
        "invalid_request",
    );
    assert!(m.starts_with("events"), "{m}");
    let bad = UpdateWebhookRequest {
        url: Some("http://localhost:1/x".into()),
        ..Default::default()
    };
    let m = expect_api_err(
        team.update_webhook(ok.webhook.id, &bad).await,
        400,
        "invalid_request",
    );
    assert!(m.starts_with("url"), "{m}");
    assert_eq!(team.get_webhook(ok.webhook.id).await.unwrap(), ok.webhook);
}

#[tokio::test(flavor = "multi_thread")]
async fn another_teams_endpoints_are_not_found() {
    let app = allowing_loopback().await;
    let acme = app.team("acme").await;
    let other = app.team("other").await;
    let w = acme
        .create_webhook(&create("http://127.0.0.1:9/hook", "all"))
        .await
        .unwrap()
        .webhook;
    expect_api_err(other.get_webhook(w.id).await, 404, "not_found");
    expect_api_err(
        other
            .update_webhook(w.id, &UpdateWebhookRequest::default())
            .await,
        404,
        "not_found",
    );
    expect_api_err(other.webhook_deliveries(w.id, None).await, 404, "not_found");
    expect_api_err(other.test_webhook(w.id).await, 404, "not_found");
    expect_api_err(other.delete_webhook(w.id).await, 404, "not_found");
    assert!(other.list_webhooks().await.unwrap().is_empty());
    acme.delete_webhook(w.id).await.unwrap();
    expect_api_err(acme.get_webhook(w.id).await, 404, "not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sigkilled_control_plane_loses_no_pending_delivery() {
    use support::procs::Minitowerd;
    let dir = tempfile::tempdir().unwrap();
    let env = [
        (
            "MINITOWER_DB_PATH",
            dir.path().join("db.sqlite").display().to_string(),
        ),
        (
            "MINITOWER_OBJECTS_DIR",
            dir.path().join("objects").display().to_string(),
        ),
        ("MINITOWER_WEBHOOK_ALLOW_PRIVATE", "true".to_string()),
        ("MINITOWER_WEBHOOK_RETRY_BASE", "100ms".to_string()),
    ];
    let mut server = Minitowerd::spawn(&env).await;
    let token = support::deploy(&server.base).await;
    let team = |base: &str| Client::new(base, Some(token.clone())).unwrap();
    // The receiver is down: the event stays pending after a refused attempt.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let w = team(&server.base)
        .create_webhook(&create(&format!("http://{addr}/hook"), "all"))
        .await
        .unwrap();
    let run = team(&server.base)
        .create_run("hello", &CreateRunRequest::default(), None)
        .await
        .unwrap()
        .0;
    eventually("a refused attempt", || async {
        let d = team(&server.base)
            .webhook_deliveries(w.webhook.id, None)
            .await
            .ok()?;
        (!d.is_empty()).then_some(())
    })
    .await;
    server.kill();
    // Receiver up, control plane restarted on the same database.
    let inbox = Arc::new(Inbox::default());
    let _rx = serve(TcpListener::bind(addr).await.unwrap(), inbox.clone());
    let server = Minitowerd::spawn(&env).await;
    let got = eventually("the pending event after the restart", || async {
        inbox.all().into_iter().find(|g| g.answered == 200)
    })
    .await;
    let p = verified(&w.secret, &got);
    assert_eq!(
        (p.event_type.as_str(), p.data["id"].as_i64()),
        ("run.queued", Some(run.id))
    );
    let d = eventually("the delivery recorded", || async {
        let d = team(&server.base)
            .webhook_deliveries(w.webhook.id, None)
            .await
            .ok()?;
        (d[0].outcome == DeliveryOutcome::Delivered).then_some(d)
    })
    .await;
    assert!(d.iter().all(|x| x.event_id == got.id), "one event, one id");
    assert_eq!(inbox.all().iter().filter(|g| g.answered == 200).count(), 1);
}
