//! Server-side hardening: login tokens expire, `/metrics` behind an
//! optional token, a team's runner listing shows no other team's work, and
//! `minitowerd` without a bootstrap token makes a random one.

mod common;

use common::*;
use minitower_core::api::BootstrapTeamRequest;
use reqwest::Method;
use std::time::Duration;

#[tokio::test]
async fn login_tokens_expire_and_say_so() {
    let app = spawn_app_with(|c| c.login_token_ttl = Duration::from_secs(3600)).await;
    let boot = app
        .anon
        .bootstrap_team(
            BOOTSTRAP,
            &BootstrapTeamRequest {
                slug: "acme".into(),
                name: "Acme".into(),
                password: Some("correct horse".into()),
            },
        )
        .await
        .unwrap();
    let admin = app.client(&boot.token);
    let login = app.anon.login("acme", "correct horse").await.unwrap();
    let session = app.client(&login.token);
    session.me().await.unwrap();
    let ci = admin.create_token("ci", None).await.unwrap();

    let tokens = admin.list_tokens().await.unwrap();
    let login_info = tokens.iter().find(|t| t.name == "login").unwrap();
    let expires = login_info.expires_at.expect("login token has an expiry");
    assert_eq!(
        (expires - login_info.created_at).num_seconds(),
        3600,
        "{tokens:?}"
    );
    assert!(tokens
        .iter()
        .filter(|t| t.name != "login")
        .all(|t| t.expires_at.is_none()));
    // The raw answer carries the field (null when there is none).
    let (status, raw) = send_json(admin.raw(Method::GET, "/api/v1/tokens")).await;
    assert_eq!(status, 200);
    assert!(raw["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t.as_object().unwrap().contains_key("expires_at")));

    app.advance(Duration::from_secs(3599));
    session.me().await.unwrap();
    app.advance(Duration::from_secs(1));
    let msg = expect_api_err(session.me().await, 401, "unauthorized");
    assert!(msg.contains("expired"), "{msg}");
    // Tokens without an expiry keep working.
    admin.me().await.unwrap();
    app.client(&ci.token).me().await.unwrap();
    // A fresh login works again.
    let again = app.anon.login("acme", "correct horse").await.unwrap();
    app.client(&again.token).me().await.unwrap();
}

#[tokio::test]
async fn metrics_need_the_token_when_one_is_set() {
    let open = spawn_app().await;
    let resp = open
        .raw(None, Method::GET, "/metrics")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    let app = spawn_app_with(|c| c.metrics_token = Some("scrape-secret".into())).await;
    app.team("acme").await;
    for token in [None, Some("wrong"), Some(BOOTSTRAP)] {
        let resp = app
            .raw(token, Method::GET, "/metrics")
            .send()
            .await
            .unwrap();
        let (code, msg) = envelope(resp, 401).await;
        assert_eq!(code, "unauthorized");
        assert!(msg.contains("MINITOWER_METRICS_TOKEN"), "{msg}");
    }
    let resp = app
        .raw(Some("scrape-secret"), Method::GET, "/metrics")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("minitower_"), "{text}");
}

#[tokio::test]
async fn runner_listing_shows_no_other_teams_work() {
    let app = spawn_app().await;
    let acme = app.team("acme").await;
    let beta = app.team("beta").await;
    app_with_version(&acme, "hello").await;
    app_with_version(&beta, "hello").await;
    let runner = app.runner("shared-1", Some(4)).await;
    queue_run(&beta, "hello", None).await;
    queue_run(&beta, "hello", None).await;
    queue_run(&acme, "hello", None).await;
    for _ in 0..3 {
        lease_started(&runner).await;
    }
    let seen = |list: Vec<minitower_core::api::RunnerInfo>| {
        assert_eq!(list.len(), 1);
        (
            list[0].name.clone(),
            list[0].active_runs,
            list[0].max_concurrency,
        )
    };
    assert_eq!(
        seen(acme.list_runners().await.unwrap()),
        ("shared-1".into(), 1, 4)
    );
    assert_eq!(
        seen(beta.list_runners().await.unwrap()),
        ("shared-1".into(), 2, 4)
    );
    let gamma = app.team("gamma").await;
    assert_eq!(
        seen(gamma.list_runners().await.unwrap()),
        ("shared-1".into(), 0, 4)
    );
    // The platform-wide count is still kept (dispatch relies on it).
    assert_eq!(
        app.state.store.list_runners().await.unwrap()[0].active_runs,
        3
    );
}

/// The real binary, with no bootstrap token set, prints a random one once
/// to stderr; it works, and `dev` does not.
#[tokio::test]
async fn minitowerd_without_a_bootstrap_token_prints_a_random_one() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_minitowerd"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MINITOWER_RUNNER_REGISTRATION_TOKEN", "reg")
        .env("MINITOWER_LISTEN_ADDR", "127.0.0.1:0")
        .env("MINITOWER_DB_PATH", dir.path().join("db.sqlite"))
        .env("MINITOWER_OBJECTS_DIR", dir.path().join("objects"))
        .env("MINITOWER_LOG_FORMAT", "json")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut token = None;
    let mut addr = None;
    let deadline = tokio::time::Instant::now() + HANG;
    while token.is_none() || addr.is_none() {
        let line = tokio::time::timeout_at(deadline, async {
            tokio::select! {
                l = stderr.next_line() => l,
                l = stdout.next_line() => l,
            }
        })
        .await
        .expect("minitowerd printed its token and address")
        .unwrap()
        .expect("minitowerd is running");
        let t = line.trim();
        if t.starts_with("mtb_") {
            token = Some(t.to_string());
        }
        if line.contains("minitowerd listening") {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            let a = v["fields"]["addr"].as_str().or(v["addr"].as_str());
            addr = a.map(str::to_string);
        }
    }
    let (token, addr) = (token.unwrap(), addr.unwrap());
    assert_eq!(token.len(), 52, "{token}");
    let client = minitower_client::Client::new(&format!("http://{addr}"), None).unwrap();
    let req = BootstrapTeamRequest {
        slug: "acme".into(),
        name: "Acme".into(),
        password: None,
    };
    expect_api_err(
        client.bootstrap_team("dev", &req).await,
        401,
        "unauthorized",
    );
    client.bootstrap_team(&token, &req).await.unwrap();
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}
