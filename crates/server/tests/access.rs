//! Environments, secrets (bad input, isolation, never a value out) and
//! token lifetimes and scopes with their refusal audit (issue 13).

mod common;

use common::*;
use minitower_core::api::*;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn environments_create_list_delete() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    let names = |envs: Vec<Environment>| envs.into_iter().map(|e| e.name).collect::<Vec<_>>();
    assert_eq!(names(team.list_environments().await.unwrap()), ["default"]);
    let prod = team.create_environment("prod").await.unwrap();
    assert_eq!((prod.name.as_str(), prod.online_runners), ("prod", 0));
    expect_api_err(team.create_environment("prod").await, 409, "conflict");
    let msg = expect_api_err(
        team.create_environment("Not Valid").await,
        400,
        "invalid_request",
    );
    assert!(msg.starts_with("environment:"), "{msg}");
    // A runner labelled prod shows up under prod.
    let (status, registered) = send_json(
        app.raw(Some(REGISTRATION), Method::POST, "/api/v1/runners/register")
            .json(&json!({"name": "p1", "environment": "prod"})),
    )
    .await;
    assert_eq!(status, 201);
    let runner = app.client(registered["token"].as_str().unwrap());
    let envs = team.list_environments().await.unwrap();
    let prod = envs.iter().find(|e| e.name == "prod").unwrap();
    assert_eq!(
        (prod.online_runners, prod.runner_names.clone()),
        (1, vec!["p1".to_string()])
    );
    // Another team does not see it, and cannot delete it.
    let other = app.team("beta").await;
    assert_eq!(names(other.list_environments().await.unwrap()), ["default"]);
    expect_api_err(other.delete_environment("prod").await, 404, "not_found");
    // default stays; an active run keeps its environment.
    expect_api_err(team.delete_environment("default").await, 409, "conflict");
    team.create_app("hello", None).await.unwrap();
    upload_hello(&app, &team).await;
    let run = team
        .create_run(
            "hello",
            &CreateRunRequest {
                environment: Some("prod".into()),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap()
        .0;
    let msg = expect_api_err(team.delete_environment("prod").await, 409, "conflict");
    assert!(msg.contains("active run"), "{msg}");
    team.cancel_run(run.id).await.unwrap();
    // Runners serve every team: one online in prod still works for it.
    let msg = expect_api_err(team.delete_environment("prod").await, 409, "conflict");
    assert!(msg.contains("online runners (p1)"), "{msg}");
    runner.runner_offline().await.unwrap();
    team.delete_environment("prod").await.unwrap();
    assert_eq!(names(team.list_environments().await.unwrap()), ["default"]);
    expect_api_err(team.delete_environment("prod").await, 404, "not_found");
}

async fn upload_hello(app: &TestApp, team: &minitower_client::Client) {
    let _ = app;
    let bytes = hello_targz();
    team.upload_version(
        "hello",
        minitower_client::VersionUpload {
            artifact_len: Some(bytes.len() as u64),
            artifact: bytes.into(),
            entrypoint: Some("main.py".into()),
            timeout_seconds: None,
            params_schema: None,
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_run_in_an_unknown_environment_is_refused_naming_the_field() {
    let app = spawn_app().await;
    let team = team_with_app(&app).await;
    upload_hello(&app, &team).await;
    let req = CreateRunRequest {
        environment: Some("staging".into()),
        ..Default::default()
    };
    let msg = expect_api_err(
        team.create_run("hello", &req, None).await,
        400,
        "invalid_request",
    );
    assert!(
        msg.starts_with("environment:") && msg.contains("staging"),
        "{msg}"
    );
    assert!(team
        .list_runs(&Default::default())
        .await
        .unwrap()
        .is_empty());
    team.create_environment("staging").await.unwrap();
    let run = team.create_run("hello", &req, None).await.unwrap().0;
    assert_eq!(run.environment, "staging");
    let detail = team.get_run(run.id).await.unwrap();
    assert!(detail.waiting_for_runner, "no runner serves staging");
}

#[tokio::test]
async fn secrets_bad_input_changes_nothing() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    let token = team.token().unwrap().to_string();
    let put = |name: &str, env: &str, body: serde_json::Value| {
        app.raw(
            Some(&token),
            Method::PUT,
            &format!("/api/v1/secrets/{name}?environment={env}"),
        )
        .json(&body)
    };
    let cases: Vec<(reqwest::RequestBuilder, &str)> = vec![
        (put("1BAD", "default", json!({"value": "x-value"})), "name:"),
        (
            put("MINITOWER_X", "default", json!({"value": "x-value"})),
            "name:",
        ),
        (put("PATH", "default", json!({"value": "x-value"})), "name:"),
        (
            put("DB_PASSWORD", "default", json!({"value": ""})),
            "value:",
        ),
        (
            put("DB_PASSWORD", "default", json!({"value": "a\u{0}b"})),
            "value:",
        ),
        (
            put(
                "DB_PASSWORD",
                "default",
                json!({"value": "x".repeat(64 * 1024 + 1)}),
            ),
            "value:",
        ),
        (
            put("DB_PASSWORD", "nowhere", json!({"value": "x-value"})),
            "environment:",
        ),
        (
            put("DB_PASSWORD", "Bad%20Env", json!({"value": "x-value"})),
            "environment:",
        ),
        (
            put("DB_PASSWORD", "default", json!({"val": "x"})),
            "invalid JSON body",
        ),
    ];
    for (rb, field) in cases {
        let (code, msg) = envelope(rb.send().await.unwrap(), 400).await;
        assert_eq!(code, "invalid_request");
        assert!(msg.contains(field), "{field}: {msg}");
    }
    // A body far above the bound is refused before it is parsed.
    let (code, _) = envelope(
        put(
            "DB_PASSWORD",
            "default",
            json!({"value": "x".repeat(600 * 1024)}),
        )
        .send()
        .await
        .unwrap(),
        413,
    )
    .await;
    assert_eq!(code, "payload_too_large");
    assert!(team
        .list_secrets("default")
        .await
        .unwrap()
        .secrets
        .is_empty());
    // Exactly 64 KiB is fine.
    let big = "y".repeat(64 * 1024);
    let info = team.put_secret("BIG_ONE", "default", &big).await.unwrap();
    assert_eq!(info.version, 1);
}

#[tokio::test]
async fn secrets_list_versions_never_values_and_stay_in_their_team() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    team.create_environment("prod").await.unwrap();
    let token = team.token().unwrap().to_string();
    let (status, body) = send_json(
        app.raw(
            Some(&token),
            Method::PUT,
            "/api/v1/secrets/DB_PASSWORD?environment=prod",
        )
        .json(&json!({"value": "first-value-123"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert!(!body.to_string().contains("first-value-123"));
    app.advance(Duration::from_secs(5));
    let (status, body) = send_json(
        app.raw(
            Some(&token),
            Method::PUT,
            "/api/v1/secrets/DB_PASSWORD?environment=prod",
        )
        .json(&json!({"value": "second-value-456"})),
    )
    .await;
    assert_eq!((status, body["version"].as_i64()), (200, Some(2)), "{body}");
    let list = team.list_secrets("prod").await.unwrap();
    assert_eq!(list.environment, "prod");
    let s = &list.secrets[0];
    assert_eq!((s.name.as_str(), s.version), ("DB_PASSWORD", 2));
    assert!(s.updated_at > s.created_at);
    let (_, raw) = send_json(app.raw(
        Some(&token),
        Method::GET,
        "/api/v1/secrets?environment=prod",
    ))
    .await;
    let text = raw.to_string();
    assert!(
        !text.contains("second-value-456") && !text.contains("v1."),
        "{text}"
    );
    // Default environment when none is named; other team sees nothing.
    assert!(team
        .list_secrets("default")
        .await
        .unwrap()
        .secrets
        .is_empty());
    let other = app.team("beta").await;
    expect_api_err(other.list_secrets("prod").await, 400, "invalid_request");
    expect_api_err(
        other.delete_secret("DB_PASSWORD", "prod").await,
        404,
        "not_found",
    );
    expect_api_err(
        team.delete_secret("DB_PASSWORD", "default").await,
        404,
        "not_found",
    );
    team.delete_secret("DB_PASSWORD", "prod").await.unwrap();
    assert!(team.list_secrets("prod").await.unwrap().secrets.is_empty());
    // What is stored is sealed: neither value is in the database files.
    let mut db = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let mut p = app.db_path.clone().into_os_string();
        p.push(suffix);
        db.extend(std::fs::read(p).unwrap_or_default());
    }
    assert!(db.len() > 10_000);
    for v in ["first-value-123", "second-value-456"] {
        assert!(
            !db.windows(v.len()).any(|w| w == v.as_bytes()),
            "{v} stored in the clear"
        );
    }
}

#[tokio::test]
async fn token_expiry_and_scope_are_enforced_and_audited() {
    let app = spawn_app().await;
    let admin = team_with_app(&app).await;
    upload_hello(&app, &admin).await;
    admin.create_app("other", None).await.unwrap();
    // Bad requests name the field.
    for (body, field) in [
        (json!({"name": "x", "expires_in": "soon"}), "expires_in"),
        (json!({"name": "x", "expires_in": "1s"}), "expires_in"),
        (
            json!({"name": "x", "expires_in": "30d", "expires_at": "2030-01-01T00:00:00Z"}),
            "expires_in",
        ),
        (
            json!({"name": "x", "scope": {"actions": []}}),
            "scope.actions",
        ),
        (
            json!({"name": "x", "scope": {"app": "Bad App", "actions": ["read"]}}),
            "scope.app",
        ),
        (
            json!({"name": "x", "scope": {"actions": ["admin"]}}),
            "invalid JSON body",
        ),
        (
            json!({"name": "x", "role": "admin", "scope": {"actions": ["read"]}}),
            "scope:",
        ),
    ] {
        let (status, v) = send_json(
            app.raw(admin.token(), Method::POST, "/api/v1/tokens")
                .json(&body),
        )
        .await;
        assert_eq!(status, 400, "{body}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(field),
            "{field}: {v}"
        );
    }
    let ci = admin
        .create_token_with(&CreateTokenRequest {
            name: Some("ci".into()),
            role: None,
            expires_in: Some("30d".into()),
            expires_at: None,
            scope: Some(TokenScope {
                app: Some("hello".into()),
                actions: vec![ScopeAction::Trigger, ScopeAction::Read],
            }),
        })
        .await
        .unwrap();
    assert_eq!(ci.role, Role::Member);
    let ttl = ci.expires_at.unwrap() - app.state.now();
    assert!(
        (ttl - chrono::Duration::days(30)).num_seconds().abs() < 2,
        "{ttl}"
    );
    let ci_client = app.client(&ci.token);
    // In scope: trigger and read its app's runs.
    let run = ci_client
        .create_run("hello", &CreateRunRequest::default(), None)
        .await
        .unwrap()
        .0;
    ci_client.get_run(run.id).await.unwrap();
    ci_client.logs(run.id, 0).await.unwrap();
    ci_client.me().await.unwrap();
    // Out of scope: another app, cancel, tokens, secrets; 403 saying why.
    let msg = expect_api_err(
        ci_client
            .create_run("other", &CreateRunRequest::default(), None)
            .await,
        403,
        "forbidden",
    );
    assert!(
        msg.contains("out of scope") && msg.contains("\"other\""),
        "{msg}"
    );
    let msg = expect_api_err(ci_client.cancel_run(run.id).await, 403, "forbidden");
    assert!(msg.contains("cancel"), "{msg}");
    expect_api_err(ci_client.list_tokens().await, 403, "forbidden");
    expect_api_err(ci_client.list_secrets("default").await, 403, "forbidden");
    expect_api_err(ci_client.create_environment("x").await, 403, "forbidden");
    let msg = expect_api_err(
        ci_client.list_runs(&Default::default()).await,
        403,
        "forbidden",
    );
    assert!(msg.contains("not about one app"), "{msg}");
    // The audit shows the last use and the last refusal with its reason.
    let listed = admin.list_tokens().await.unwrap();
    let audit = listed.iter().find(|t| t.id == ci.id).unwrap();
    assert!(audit.last_used_at.is_some());
    assert!(audit.last_refused_at.is_some());
    assert!(
        audit
            .last_refusal
            .as_deref()
            .unwrap()
            .contains("not about one app"),
        "{audit:?}"
    );
    assert_eq!(audit.scope.as_ref().unwrap().app.as_deref(), Some("hello"));
    assert_eq!(audit.expires_at, ci.expires_at);
    // Expired: 401 saying so, and audited.
    app.advance(Duration::from_secs(31 * 24 * 3600));
    let msg = expect_api_err(ci_client.get_run(run.id).await, 401, "unauthorized");
    assert!(msg.contains("expired"), "{msg}");
    let audit = admin.list_tokens().await.unwrap();
    let audit = audit.iter().find(|t| t.id == ci.id).unwrap();
    assert!(
        audit
            .last_refusal
            .as_deref()
            .unwrap()
            .starts_with("expired at"),
        "{audit:?}"
    );
    assert!(audit.last_refused_at > audit.last_used_at);
}
