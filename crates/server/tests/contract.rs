//! The HTTP contract as a client reads it from the OpenAPI document: every
//! error an operation can answer is documented, the documented shapes are
//! the accepted ones, and odd keys (a NUL byte) are "not found" on both
//! backends (the PostgreSQL half is skipped without
//! `MINITOWER_TEST_POSTGRES_URL`).

mod support;

use minitower_server::ServerConfig;
use minitower_store_postgres::testing;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use support::{config, deploy, Replica};

async fn sqlite(dir: &std::path::Path) -> Replica {
    let mut c = ServerConfig::for_tests(&dir.join("sqlite"));
    c.expiry_check_interval = Duration::from_secs(3600);
    Replica::start(c).await
}

async fn send(rb: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = rb.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = resp.bytes().await.unwrap();
    let v = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)))
    };
    if status >= 400 {
        assert!(ct.starts_with("application/json"), "{status}: {ct}");
        assert!(v["error"]["code"].is_string(), "envelope: {v}");
    }
    (status, v)
}

#[tokio::test]
async fn openapi_documents_the_errors_each_operation_answers() {
    let dir = tempfile::tempdir().unwrap();
    let app = sqlite(dir.path()).await;
    let (status, doc) = send(app.client(None).raw(Method::GET, "/api/v1/openapi.json")).await;
    assert_eq!(status, 200);
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let what = format!("{} {path}", method.to_uppercase());
            let responses = op["responses"].as_object().unwrap();
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            if secured {
                assert!(responses.contains_key("401"), "{what}: no 401");
                checked += 1;
            }
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            for p in &params {
                let name = p["name"].as_str().unwrap();
                let location = p["in"].as_str().unwrap();
                let in_path = path.contains(&format!("{{{name}}}"));
                assert_eq!(
                    location,
                    if in_path { "path" } else { "query" },
                    "{what}: parameter {name}"
                );
                if location == "query" {
                    assert!(responses.contains_key("400"), "{what}: no 400");
                } else {
                    assert!(responses.contains_key("404"), "{what}: no 404");
                }
            }
            if op.get("requestBody").is_some() {
                assert!(responses.contains_key("400"), "{what}: no 400");
            }
        }
    }
    assert!(checked >= 25, "only {checked} secured operations");
    let metrics = &doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"];
    assert!(
        metrics
            .as_object()
            .unwrap()
            .contains_key("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{metrics}"
    );
    let resp = app
        .client(None)
        .raw(Method::GET, "/metrics")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let tokens = &doc["paths"]["/api/v1/tokens"]["post"]["requestBody"];
    assert_eq!(tokens["required"], true, "{tokens}");
    let runs = &doc["paths"]["/api/v1/apps/{app}/runs"]["post"]["requestBody"];
    assert_ne!(runs["required"], true, "{runs}");
    // A number within the documented range, or one of the three names.
    let priority = &doc["components"]["schemas"]["PriorityInput"]["oneOf"];
    assert_eq!(priority[0]["maximum"], 1_000_000, "{priority}");
    assert_eq!(priority[0]["minimum"], -1_000_000, "{priority}");
    assert_eq!(
        priority[1]["enum"],
        json!(["foreground", "background", "best_effort"]),
        "{priority}"
    );
    app.stop().await;
}

#[tokio::test]
async fn token_creation_needs_a_body() {
    let dir = tempfile::tempdir().unwrap();
    let app = sqlite(dir.path()).await;
    let admin = app.client(Some(&deploy(&app.base).await));
    let (status, v) = send(admin.raw(Method::POST, "/api/v1/tokens")).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (400, &json!("invalid_request"))
    );
    let (status, v) = send(
        admin
            .raw(Method::POST, "/api/v1/tokens")
            .header("content-type", "application/json")
            .body("{}"),
    )
    .await;
    assert_eq!((status, &v["role"]), (201, &json!("member")), "{v}");
    app.stop().await;
}

#[tokio::test]
async fn integers_may_be_written_as_integral_floats() {
    let dir = tempfile::tempdir().unwrap();
    let app = sqlite(dir.path()).await;
    let admin = app.client(Some(&deploy(&app.base).await));
    let post = |body: Value| {
        admin
            .raw(Method::POST, "/api/v1/apps/hello/runs")
            .json(&body)
    };
    let (status, run) = send(post(json!({"priority": 78251.0, "max_retries": 1.0}))).await;
    assert_eq!(status, 201, "{run}");
    assert_eq!(
        (&run["priority"], &run["max_retries"]),
        (&json!(78251), &json!(1))
    );
    let (status, run) = send(post(json!({"version_no": 1.0}))).await;
    assert_eq!((status, &run["version_no"]), (201, &json!(1)), "{run}");
    for bad in [
        json!({"priority": 1.5}),
        json!({"priority": 1e300}),
        json!({"priority": "1"}),
    ] {
        let (status, v) = send(post(bad.clone())).await;
        assert_eq!(status, 400, "{bad}: {v}");
    }
    let (status, _) = send(post(json!({"priority": 2_000_000}))).await;
    assert_eq!(status, 400, "out of the documented range");
    // A body may be left out: all its fields are optional.
    let (status, _) = send(admin.raw(Method::POST, "/api/v1/apps/hello/runs")).await;
    assert_eq!(status, 201);
    app.stop().await;
}

/// `a%00b` as an app slug, an app filter or a login slug names nothing:
/// 404, an empty list and 401, as on SQLite, never a 500.
async fn nul_keys_are_not_found(app: &Replica) {
    let admin = app.client(Some(&deploy(&app.base).await));
    for path in [
        "/api/v1/apps/a%00b",
        "/api/v1/apps/a%00b/versions",
        "/api/v1/apps/a%00b/runs",
        "/api/v1/apps/hello%00",
    ] {
        let (status, v) = send(admin.raw(Method::GET, path)).await;
        assert_eq!(
            (status, &v["error"]["code"]),
            (404, &json!("not_found")),
            "{path}"
        );
    }
    let (status, v) = send(
        admin
            .raw(Method::POST, "/api/v1/apps/a%00b/runs")
            .json(&json!({})),
    )
    .await;
    assert_eq!(status, 404, "{v}");
    let (status, v) = send(admin.raw(Method::GET, "/api/v1/runs?app=a%00b")).await;
    assert_eq!((status, &v["runs"]), (200, &json!([])));
    let (status, v) = send(
        app.client(None)
            .raw(Method::POST, "/api/v1/teams/login")
            .json(&json!({"slug": "ac\u{0}me", "password": "whatever-long"})),
    )
    .await;
    assert_eq!((status, &v["error"]["code"]), (401, &json!("unauthorized")));
}

#[tokio::test]
async fn nul_in_a_key_is_not_found_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let app = sqlite(dir.path()).await;
    nul_keys_are_not_found(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn nul_in_a_key_is_not_found_on_postgres() {
    let Some(db) = testing::test_db().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let app = Replica::start(config(&db.url, dir.path(), "pg")).await;
    nul_keys_are_not_found(&app).await;
    app.stop().await;
}
