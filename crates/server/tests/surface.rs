//! The non-API surface: health, readiness, metrics, OpenAPI and the UI.

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn health_ready_and_ui() {
    let app = spawn_app().await;
    let (status, body) = send_json(app.anon.raw(Method::GET, "/health")).await;
    assert_eq!((status, &body["status"]), (200, &json!("ok")));
    let resp = app.anon.raw(Method::GET, "/ready").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    for p in ["/", "/runs/12", "/apps/hello"] {
        let resp = app.anon.raw(Method::GET, p).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{p}");
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/html"), "{p}: {ct}");
        let text = resp.text().await.unwrap().to_lowercase();
        assert!(
            text.contains("<html") || text.contains("<!doctype html"),
            "{p}"
        );
    }
}

#[tokio::test]
async fn openapi_document_lists_the_api() {
    let app = spawn_app().await;
    let (status, doc) = send_json(app.anon.raw(Method::GET, "/api/v1/openapi.json")).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/health",
        "/api/v1/bootstrap/team",
        "/api/v1/apps",
        "/api/v1/apps/{app}/versions",
        "/api/v1/apps/{app}/versions/{version}",
        "/api/v1/apps/{app}/runs",
        "/api/v1/runs/{run}",
        "/api/v1/runs/{run}/cancel",
        "/api/v1/runs/{run}/logs/stream",
        "/api/v1/runs/lease",
        "/api/v1/runs/{run}/result",
        "/api/v1/runners/register",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["Run"].is_object());
}

fn metric_lines<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .collect()
}

#[tokio::test]
async fn metrics_are_exposed_with_normalized_paths() {
    let app = spawn_app().await;
    let l = leased_run(&app).await;
    let id = l.run.id;
    l.team.get_run(id).await.unwrap();
    l.team.get_run(id).await.unwrap();
    l.team.get_app("hello").await.unwrap();
    let _ = l.team.raw(Method::GET, "/api/v1/whatever/123").send().await;
    let resp = app.anon.raw(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.unwrap();
    for name in [
        "minitower_http_requests_total",
        "minitower_http_request_duration_seconds",
        "minitower_runs_created_total",
        "minitower_runs_leased_total",
        "minitower_runners_registered_total",
        "minitower_runners_online",
        "minitower_runs_pending",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    let runs_get: Vec<&str> = metric_lines(&text, "minitower_http_requests_total{")
        .into_iter()
        .filter(|l| l.contains("path=\"/api/v1/runs/{run}\"") && l.contains("method=\"GET\""))
        .collect();
    assert_eq!(runs_get.len(), 1, "{text}");
    assert!(
        runs_get[0].contains("status=\"200\"") && runs_get[0].ends_with(" 2"),
        "{}",
        runs_get[0]
    );
    assert!(text.contains("path=\"/api/v1/apps/{app}\""), "{text}");
    // Unknown API paths share one bounded label.
    assert!(text.contains("path=\"unmatched\""), "{text}");
    // No raw ids or slugs in labels.
    for raw in [
        format!("/api/v1/runs/{id}\""),
        "/api/v1/apps/hello\"".into(),
        "/api/v1/whatever".into(),
    ] {
        assert!(!text.contains(&raw), "raw path {raw} in metrics");
    }
    let created = metric_lines(&text, "minitower_runs_created_total{");
    assert_eq!(created.len(), 1, "{created:?}");
    assert!(
        created[0].contains("team=\"acme\"")
            && created[0].contains("app=\"hello\"")
            && created[0].ends_with(" 1")
    );
    let online = metric_lines(&text, "minitower_runners_online{");
    assert!(
        online
            .iter()
            .any(|l| l.contains("environment=\"default\"") && l.ends_with(" 1")),
        "{online:?}"
    );
}

/// The value of the one sample of `name` whose labels contain all of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let found: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?} matches {found:?}");
    found.first().copied()
}

#[tokio::test]
async fn domain_metrics_follow_the_runs() {
    use minitower_core::ResultStatus;
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    let runner = app.runner("r1", Some(5)).await;
    // One completed after 3 s of execution, one retried, one still queued.
    let done = queue_run(&team, "hello", None).await;
    let l = lease_now(&runner).await;
    runner.start(done.id, &l.lease_token).await.unwrap();
    app.advance(std::time::Duration::from_secs(3));
    runner
        .result(
            done.id,
            &l.lease_token,
            &result_req(ResultStatus::Completed, Some(0)),
        )
        .await
        .unwrap();
    // A repeated result is not a second completion.
    runner
        .result(
            done.id,
            &l.lease_token,
            &result_req(ResultStatus::Completed, Some(0)),
        )
        .await
        .unwrap();
    // A run that dies on its only attempt.
    let (doomed, _) = team
        .create_run(
            "hello",
            &minitower_core::api::CreateRunRequest {
                max_retries: Some(0),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(lease_started(&runner).await.run_id, doomed.id);
    let retried = queue_run(&team, "hello", None).await;
    let l2 = lease_now(&runner).await;
    assert_eq!(l2.run_id, retried.id);
    app.advance(app.lease_ttl() + std::time::Duration::from_secs(1));
    let report = app.reap().await;
    assert_eq!((report.retried, report.dead), (1, 1));
    queue_run(&team, "hello", None).await;
    let cancelled = queue_run(&team, "hello", None).await;
    team.cancel_run(cancelled.id).await.unwrap();

    let text = app
        .anon
        .raw(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ta = ["team=\"acme\"", "app=\"hello\""];
    assert_eq!(
        sample(&text, "minitower_runs_created_total", &ta),
        Some(5.0)
    );
    let with = |extra: &'static str| [ta[0], ta[1], extra];
    assert_eq!(
        sample(
            &text,
            "minitower_runs_completed_total",
            &with("status=\"completed\"")
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "minitower_runs_completed_total",
            &with("status=\"cancelled\"")
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "minitower_runs_retried_total", &ta),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "minitower_runs_leased_total",
            &["environment=\"default\""]
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &text,
            "minitower_runners_registered_total",
            &["environment=\"default\""]
        ),
        Some(1.0)
    );
    // Two queued: the retried run and the fresh one.
    assert_eq!(
        sample(
            &text,
            "minitower_runs_pending",
            &with("environment=\"default\"")
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            "minitower_run_execution_seconds_sum",
            &with("status=\"completed\"")
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &text,
            "minitower_run_execution_seconds_count",
            &with("status=\"completed\"")
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "minitower_run_total_seconds_count",
            &with("status=\"completed\"")
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "minitower_run_queue_wait_seconds_count", &ta),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &text,
            "minitower_runs_completed_total",
            &with("status=\"dead\"")
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn database_down_is_503_on_ready_and_an_envelope_elsewhere() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app.state.store.close().await;
    let resp = app.anon.raw(Method::GET, "/ready").send().await.unwrap();
    let (code, _) = envelope(resp, 503).await;
    assert_eq!(code, "unavailable");
    // Liveness does not depend on the database.
    let resp = app.anon.raw(Method::GET, "/health").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // A database that cannot be reached is worth a retry: 503, not 500.
    let resp = team.raw(Method::GET, "/api/v1/apps").send().await.unwrap();
    let (code, message) = envelope(resp, 503).await;
    assert_eq!(code, "unavailable");
    assert!(
        !message.to_lowercase().contains("sql"),
        "details leak: {message}"
    );
}
