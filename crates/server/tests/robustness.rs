//! Garbage in, 4xx envelope out: no input may produce a 5xx.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

/// Every JSON endpoint with the token kind it needs and bodies that are
/// well-formed JSON but wrong for it.
#[derive(Clone, Copy)]
enum Who {
    Bootstrap,
    Anon,
    Team,
    Registration,
    Runner,
}

fn endpoints() -> Vec<(Who, &'static str, Vec<String>)> {
    let deep_input = format!(
        "{{\"input\": {{\"a\": {}1{}}}}}",
        "[".repeat(300),
        "]".repeat(300)
    );
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![
        (
            Who::Bootstrap,
            "/api/v1/bootstrap/team",
            s(&[
                r#"{"slug": 5, "name": "x"}"#,
                r#"{"slug": "acme", "name": "A", "password": 12345678}"#,
                r#"{"slug": "h\u00e9llo", "name": "x"}"#,
                r#"{"slug": "\u0430cme", "name": "homoglyph"}"#,
                r#"{"slug": "acme\u0000", "name": "nul"}"#,
                r#"{"slug": "fine", "name": ""}"#,
                r#"{"slug": "fine", "name": "x", "password": "short"}"#,
                r#"{"slug": "fine"}"#,
            ]),
        ),
        (
            Who::Anon,
            "/api/v1/teams/login",
            s(&[
                r#"{"slug": 5, "password": "x"}"#,
                r#"{"slug": "acme"}"#,
                r#"{"slug": "acme", "password": null}"#,
            ]),
        ),
        (
            Who::Team,
            "/api/v1/tokens",
            s(&[r#"{"name": 7}"#, r#"{"role": "owner"}"#, r#"{"role": 1}"#]),
        ),
        (
            Who::Team,
            "/api/v1/apps",
            s(&[
                r#"{"slug": 5}"#,
                r#"{"slug": "h\u00e9llo"}"#,
                r#"{"slug": "\ud83d\ude00"}"#,
                r#"{"slug": "fine", "description": 5}"#,
            ]),
        ),
        (Who::Team, "/api/v1/apps/hello/runs", {
            let mut v = s(&[
                r#"{"input": 1e999}"#,
                r#"{"input": [1, 2, 3]}"#,
                r#"{"priority": 99999999999999999999999}"#,
                r#"{"priority": 1e10}"#,
                r#"{"max_retries": "two"}"#,
                r#"{"version_no": 1.5}"#,
                r#"{"version_no": 99999999999999999999}"#,
                r#"{"environment": "\u00e9t\u00e9"}"#,
            ]);
            v.push(deep_input);
            v
        }),
        (
            Who::Registration,
            "/api/v1/runners/register",
            s(&[
                r#"{"name": 5}"#,
                r#"{"name": "x", "max_concurrency": 99999999999999999999}"#,
                r#"{"name": "x", "environment": 5}"#,
                r#"{"name": "\ud83d\ude00"}"#,
            ]),
        ),
        (
            Who::Runner,
            "/api/v1/runs/lease",
            s(&[
                r#"{"wait_seconds": -1}"#,
                r#"{"wait_seconds": 1e999}"#,
                r#"{"wait_seconds": "soon"}"#,
            ]),
        ),
        (
            Who::Runner,
            "/api/v1/runs/{run}/logs",
            s(&[
                r#"{"logs": [{"seq": 18446744073709551616, "stream": "stdout", "line": "x"}]}"#,
                r#"{"logs": [{"seq": 1, "stream": "stdout", "line": 5}]}"#,
                r#"{"logs": [{"seq": 1}]}"#,
                r#"{"logs": null}"#,
                r#"{"logs": [{"seq": 1, "stream": "stdout", "line": "x", "logged_at": "yesterday"}]}"#,
            ]),
        ),
        (
            Who::Runner,
            "/api/v1/runs/{run}/result",
            s(&[
                r#"{"status": "exploded"}"#,
                r#"{"status": "completed", "exit_code": 99999999999}"#,
                r#"{"status": "completed", "error_message": 5}"#,
            ]),
        ),
    ]
}

/// Not a JSON object at all: wrong for every endpoint.
fn universal_garbage() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        "{",
        "{\"slug\":",
        "not json",
        "null",
        "[]",
        "[\"acme\", \"Acme\"]",
        "\"a string\"",
        "42",
        "{} {}",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    v.push(vec![0xff, 0xfe, 0x00, 0x7b]);
    v.push("[".repeat(10_000).into_bytes());
    v.push(format!("{}{}", "{\"a\":".repeat(5_000), "}".repeat(5_000)).into_bytes());
    v
}

#[tokio::test]
async fn garbage_json_is_a_4xx_envelope_everywhere() {
    let app = spawn_app().await;
    let l = leased_run(&app).await;
    let team_token = l.team.token().unwrap().to_string();
    let runner_token = l.runner.token().unwrap().to_string();
    let runs_before = l.team.list_runs(&Default::default()).await.unwrap();
    let apps_before = l.team.list_apps().await.unwrap();
    for (who, path, specific) in endpoints() {
        let method = "POST";
        let path = path.replace("{run}", &l.run.id.to_string());
        let token = match who {
            Who::Bootstrap => Some(BOOTSTRAP),
            Who::Anon => None,
            Who::Team => Some(team_token.as_str()),
            Who::Registration => Some(REGISTRATION),
            Who::Runner => Some(runner_token.as_str()),
        };
        let bodies = universal_garbage()
            .into_iter()
            .chain(specific.into_iter().map(String::into_bytes));
        for body in bodies {
            let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
            let resp = app
                .raw(token, Method::from_bytes(method.as_bytes()).unwrap(), &path)
                .header("Content-Type", "application/json")
                .header(
                    minitower_core::api::LEASE_TOKEN_HEADER,
                    &l.lease.lease_token,
                )
                .body(body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            assert!(
                (400..500).contains(&status),
                "{method} {path} with {shown:?} got {status}: {}",
                resp.text().await.unwrap_or_default()
            );
            let (code, _) = envelope(resp, status).await;
            assert!(
                status != 400 || code.starts_with("invalid_"),
                "{method} {path} {shown:?}: {code}"
            );
        }
    }
    // None of that changed anything.
    assert_eq!(
        l.team.list_runs(&Default::default()).await.unwrap(),
        runs_before
    );
    assert_eq!(l.team.list_apps().await.unwrap().len(), apps_before.len());
    let d = l.team.get_run(l.run.id).await.unwrap();
    assert_eq!(d.run.status, minitower_core::RunStatus::Leased);
    assert!(l.team.logs(l.run.id, 0).await.unwrap().is_empty());
    let resp = app
        .raw(Some(BOOTSTRAP), Method::POST, "/api/v1/bootstrap/team")
        .json(&json!({"slug": "acme2", "name": "fine"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201, "the server is still healthy");
}

#[tokio::test]
async fn empty_bodies_where_fields_are_required() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    for (token, path) in [
        (Some(BOOTSTRAP), "/api/v1/bootstrap/team"),
        (None, "/api/v1/teams/login"),
        (team.token(), "/api/v1/apps"),
        (Some(REGISTRATION), "/api/v1/runners/register"),
    ] {
        let resp = app.raw(token, Method::POST, path).send().await.unwrap();
        let (code, msg) = envelope(resp, 400).await;
        assert_eq!(code, "invalid_request", "{path}");
        assert!(msg.contains("missing field"), "{path}: {msg}");
    }
}

#[tokio::test]
async fn odd_path_parameters_are_404() {
    let app = spawn_app().await;
    let l = leased_run(&app).await;
    let t = l.team.token().unwrap();
    let r = l.runner.token().unwrap();
    let ids = [
        "abc",
        "0",
        "-1",
        "1.5",
        "99999999999999999999999",
        "%F0%9F%98%80",
        "1%20",
    ];
    for id in ids {
        for (token, method, path) in [
            (t, Method::GET, format!("/api/v1/runs/{id}")),
            (t, Method::POST, format!("/api/v1/runs/{id}/cancel")),
            (t, Method::GET, format!("/api/v1/runs/{id}/logs")),
            (t, Method::GET, format!("/api/v1/runs/{id}/logs/stream")),
            (t, Method::DELETE, format!("/api/v1/tokens/{id}")),
            (r, Method::POST, format!("/api/v1/runs/{id}/start")),
            (r, Method::POST, format!("/api/v1/runs/{id}/heartbeat")),
            (r, Method::GET, format!("/api/v1/runs/{id}/artifact")),
        ] {
            let resp = app
                .raw(Some(token), method.clone(), &path)
                .header(
                    minitower_core::api::LEASE_TOKEN_HEADER,
                    &l.lease.lease_token,
                )
                .send()
                .await
                .unwrap();
            let (code, _) = envelope(resp, 404).await;
            assert_eq!(code, "not_found", "{method} {path}");
        }
    }
    for slug in ["h%C3%A9llo", "%F0%9F%98%80", "UPPER", "a%2Fb", "%00"] {
        for (method, path) in [
            (Method::GET, format!("/api/v1/apps/{slug}")),
            (Method::GET, format!("/api/v1/apps/{slug}/versions")),
            (Method::GET, format!("/api/v1/apps/{slug}/runs")),
            (Method::POST, format!("/api/v1/apps/{slug}/runs")),
        ] {
            let resp = app
                .raw(Some(t), method.clone(), &path)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            assert!((400..500).contains(&status), "{method} {path}: {status}");
            envelope(resp, status).await;
        }
    }
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    for (m, p) in [
        (Method::GET, "/api/v1/nope"),
        (Method::POST, "/api/v1/nope"),
        (Method::GET, "/api/v2/apps"),
        (Method::GET, "/api/v1/apps/hello/versions/1/extra"),
        (Method::DELETE, "/nope"),
    ] {
        let resp = team.raw(m.clone(), p).send().await.unwrap();
        let (code, _) = envelope(resp, 404).await;
        assert_eq!(code, "not_found", "{m} {p}");
    }
    for (m, p) in [
        (Method::PUT, "/api/v1/apps"),
        (Method::DELETE, "/api/v1/apps/hello"),
        (Method::GET, "/api/v1/runs/lease"),
        (Method::POST, "/api/v1/me"),
        (Method::PATCH, "/api/v1/runs/1"),
        (Method::GET, "/api/v1/bootstrap/team"),
        (Method::POST, "/health"),
    ] {
        let resp = team.raw(m.clone(), p).send().await.unwrap();
        let (code, _) = envelope(resp, 405).await;
        assert_eq!(code, "method_not_allowed", "{m} {p}");
    }
}

#[tokio::test]
async fn wrong_content_type_and_bad_headers() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    // Idempotency keys must be reasonable.
    for key in ["", &"k".repeat(300)] {
        let resp = team
            .raw(Method::POST, "/api/v1/apps/hello/runs")
            .header("Idempotency-Key", key)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        envelope(resp, 400).await;
    }
    let resp = team
        .raw(Method::POST, "/api/v1/apps/hello/runs")
        .header(
            "Idempotency-Key",
            reqwest::header::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        )
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    envelope(resp, 400).await;
    // Authorization headers that are not Bearer tokens.
    for auth in ["Bearer", "Bearer ", "Token abc", "bearer", ""] {
        let resp = app
            .raw(None, Method::GET, "/api/v1/me")
            .header("Authorization", auth)
            .send()
            .await
            .unwrap();
        envelope(resp, 401).await;
    }
    let resp = app
        .raw(None, Method::GET, "/api/v1/me")
        .header(
            "Authorization",
            reqwest::header::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
        )
        .send()
        .await
        .unwrap();
    envelope(resp, 401).await;
    let v: Value = team
        .runs_summary()
        .await
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, json!(v)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    assert_eq!(v["queued"], 0);
}
