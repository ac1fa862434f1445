//! Apps and the tenancy boundary around them.

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn create_get_and_list_apps() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    let (status, body) = send_json(
        team.raw(Method::POST, "/api/v1/apps")
            .json(&json!({"slug": "hello", "description": "Hello world app"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert!(body["id"].as_i64().unwrap() > 0);
    assert_eq!(body["slug"], "hello");
    assert_eq!(body["description"], "Hello world app");
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(body.get("latest_version").is_none_or(|v| v.is_null()));

    team.create_app("world", None).await.unwrap();
    let got = team.get_app("hello").await.unwrap().unwrap();
    assert_eq!(got.description.as_deref(), Some("Hello world app"));
    assert_eq!(got.latest_version, None);
    let slugs: Vec<String> = team
        .list_apps()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.slug)
        .collect();
    assert_eq!(slugs, ["hello", "world"]);

    upload(&team, "hello", hello_targz(), Some("main.py"), None)
        .await
        .unwrap();
    upload(
        &team,
        "hello",
        targz(&[Entry::File("main.py", b"print(2)")]),
        Some("main.py"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        team.get_app("hello").await.unwrap().unwrap().latest_version,
        Some(2)
    );
    let resp = team
        .raw(Method::GET, "/api/v1/apps/nope")
        .send()
        .await
        .unwrap();
    let (code, _) = envelope(resp, 404).await;
    assert_eq!(code, "not_found");
}

#[tokio::test]
async fn app_slug_rules() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    team.create_app("hello", None).await.unwrap();
    expect_api_err(team.create_app("hello", None).await, 409, "conflict");
    for bad in [
        "Hello",
        "1x",
        "-x",
        "x_y",
        "x y",
        "",
        "héllo",
        "x/y",
        &"a".repeat(64),
    ] {
        expect_api_err(team.create_app(bad, None).await, 400, "invalid_request");
    }
    for reserved in ["admin", "api", "runs", "new", "metrics"] {
        let m = expect_api_err(
            team.create_app(reserved, None).await,
            400,
            "invalid_request",
        );
        assert!(m.contains("reserved"), "{m}");
    }
    // The same slug in another team is fine.
    let other = app.team("globex").await;
    other.create_app("hello", None).await.unwrap();
    // Only the good apps exist.
    assert_eq!(team.list_apps().await.unwrap().len(), 1);
}

#[tokio::test]
async fn apps_need_a_team_token() {
    let app = spawn_app().await;
    expect_api_err(app.anon.list_apps().await, 401, "unauthorized");
    expect_api_err(app.anon.create_app("x", None).await, 401, "unauthorized");
    let runner = app.runner("r1", None).await;
    expect_api_err(runner.list_apps().await, 401, "unauthorized");
    expect_api_err(
        app.client(REGISTRATION).list_apps().await,
        401,
        "unauthorized",
    );
}

#[tokio::test]
async fn another_teams_app_is_404_everywhere() {
    let app = spawn_app().await;
    let acme = app.team("acme").await;
    let globex = app.team("globex").await;
    app_with_version(&acme, "secret").await;
    let run = queue_run(&acme, "secret", None).await;

    for path in [
        "/api/v1/apps/secret",
        "/api/v1/apps/secret/versions",
        "/api/v1/apps/secret/runs",
        &format!("/api/v1/runs/{}", run.id),
        &format!("/api/v1/runs/{}/logs", run.id),
        &format!("/api/v1/runs/{}/logs/stream", run.id),
    ] {
        let resp = globex.raw(Method::GET, path).send().await.unwrap();
        let (code, _) = envelope(resp, 404).await;
        assert_eq!(code, "not_found", "{path}");
    }
    let resp = globex
        .raw(Method::POST, "/api/v1/apps/secret/runs")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    envelope(resp, 404).await;
    let resp = globex
        .raw(Method::POST, &format!("/api/v1/runs/{}/cancel", run.id))
        .send()
        .await
        .unwrap();
    envelope(resp, 404).await;
    expect_api_err(
        upload(&globex, "secret", hello_targz(), Some("main.py"), None).await,
        404,
        "not_found",
    );
    // Cross-team lists are empty, and nothing changed on acme's side.
    assert!(globex.list_apps().await.unwrap().is_empty());
    let runs = globex
        .list_runs(&minitower_client::RunQuery {
            app: Some("secret".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(runs.is_empty());
    assert!(globex
        .list_runs(&Default::default())
        .await
        .unwrap()
        .is_empty());
    assert_eq!(globex.runs_summary().await.unwrap()["queued"], 0);
    let r = acme.get_run(run.id).await.unwrap();
    assert_eq!(r.run.status, minitower_core::RunStatus::Queued);
    assert_eq!(acme.list_versions("secret").await.unwrap().len(), 1);
}
