//! Teams, login, identity and tokens.

mod common;

use common::*;
use minitower_core::api::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn bootstrap_creates_a_team_and_an_admin_token() {
    let app = spawn_app().await;
    let (status, body) = send_json(
        app.raw(Some(BOOTSTRAP), Method::POST, "/api/v1/bootstrap/team")
            .json(&json!({"slug": "acme", "name": "Acme Corp"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert!(body["team"]["id"].as_i64().unwrap() > 0);
    assert_eq!(body["team"]["slug"], "acme");
    assert_eq!(body["team"]["name"], "Acme Corp");
    let token = body["token"].as_str().unwrap();
    assert!(token.len() >= 32);

    let me = app.client(token).me().await.unwrap();
    assert_eq!(me.team.slug, "acme");
    assert_eq!(me.team.id, body["team"]["id"].as_i64().unwrap());
    assert_eq!(me.role, Role::Admin);
    assert!(me.token_id > 0);
}

#[tokio::test]
async fn bootstrap_needs_the_bootstrap_token() {
    let app = spawn_app().await;
    let req = BootstrapTeamRequest {
        slug: "acme".into(),
        name: "Acme".into(),
        password: None,
    };
    expect_api_err(
        app.anon.bootstrap_team("wrong", &req).await,
        401,
        "unauthorized",
    );
    let resp = app
        .raw(None, Method::POST, "/api/v1/bootstrap/team")
        .json(&req)
        .send()
        .await
        .unwrap();
    envelope(resp, 401).await;
    // A team token is the wrong kind of token.
    let team = app.team("other").await;
    expect_api_err(
        app.anon.bootstrap_team(team.token().unwrap(), &req).await,
        401,
        "unauthorized",
    );
    // Nothing was created: the slug is still free.
    app.anon.bootstrap_team(BOOTSTRAP, &req).await.unwrap();
}

#[tokio::test]
async fn bootstrap_rejects_duplicate_and_bad_slugs() {
    let app = spawn_app().await;
    app.team("acme").await;
    let req = |slug: &str| BootstrapTeamRequest {
        slug: slug.into(),
        name: "x".into(),
        password: None,
    };
    expect_api_err(
        app.anon.bootstrap_team(BOOTSTRAP, &req("acme")).await,
        409,
        "conflict",
    );
    for bad in ["Acme", "1acme", "a_b", "", "café", "admin", &"a".repeat(64)] {
        expect_api_err(
            app.anon.bootstrap_team(BOOTSTRAP, &req(bad)).await,
            400,
            "invalid_request",
        );
    }
}

#[tokio::test]
async fn login_with_password() {
    let app = spawn_app().await;
    let created = app
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
    let t = app.anon.login("acme", "correct horse").await.unwrap();
    assert_eq!(t.team, created.team);
    assert_ne!(t.token, created.token);
    let me = app.client(&t.token).me().await.unwrap();
    assert_eq!(me.role, Role::Admin);
    assert_eq!(me.team.slug, "acme");
}

#[tokio::test]
async fn login_failures_are_401_with_one_message() {
    let app = spawn_app().await;
    app.anon
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
    app.team("nopass").await;
    let wrong = expect_api_err(
        app.anon.login("acme", "wrong password").await,
        401,
        "unauthorized",
    );
    let nopass = expect_api_err(
        app.anon.login("nopass", "anything1").await,
        401,
        "unauthorized",
    );
    let empty = expect_api_err(app.anon.login("nopass", "").await, 401, "unauthorized");
    let missing = expect_api_err(
        app.anon.login("ghost", "anything1").await,
        401,
        "unauthorized",
    );
    assert_eq!(wrong, nopass);
    assert_eq!(wrong, empty);
    assert_eq!(wrong, missing);
}

#[tokio::test]
async fn me_needs_a_team_token() {
    let app = spawn_app().await;
    expect_api_err(app.anon.me().await, 401, "unauthorized");
    expect_api_err(app.client("mtt_nope").me().await, 401, "unauthorized");
    expect_api_err(app.client(BOOTSTRAP).me().await, 401, "unauthorized");
    let resp = app
        .raw(None, Method::GET, "/api/v1/me")
        .header("Authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    envelope(resp, 401).await;
}

#[tokio::test]
async fn tokens_create_list_and_member_downgrade() {
    let app = spawn_app().await;
    let admin = app.team("acme").await;
    let admin_id = admin.me().await.unwrap().token_id;

    let (status, body) = send_json(
        admin
            .raw(Method::POST, "/api/v1/tokens")
            .json(&json!({"name": "ci", "role": "member"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], "ci");
    assert_eq!(body["role"], "member");
    let member_secret = body["token"].as_str().unwrap().to_string();
    let member_id = body["id"].as_i64().unwrap();
    let member = app.client(&member_secret);
    let me = member.me().await.unwrap();
    assert_eq!((me.role, me.token_id), (Role::Member, member_id));

    let second_admin = admin.create_token("ops", Some(Role::Admin)).await.unwrap();
    assert_eq!(second_admin.role, Role::Admin);

    // A member asking for admin gets member.
    let sneaky = member
        .create_token("sneaky", Some(Role::Admin))
        .await
        .unwrap();
    assert_eq!(sneaky.role, Role::Member);
    assert_eq!(
        app.client(&sneaky.token).me().await.unwrap().role,
        Role::Member
    );
    // Members cannot reach admin endpoints.
    expect_api_err(member.list_runners().await, 403, "forbidden");

    // The list shows every token, never a secret.
    let resp = admin
        .raw(Method::GET, "/api/v1/tokens")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.unwrap();
    for secret in [
        admin.token().unwrap(),
        &member_secret,
        &second_admin.token,
        &sneaky.token,
    ] {
        assert!(!text.contains(secret), "secret leaked in {text}");
    }
    let list: TokenList = serde_json::from_str(&text).unwrap();
    let mut ids: Vec<i64> = list.tokens.iter().map(|t| t.id).collect();
    ids.sort();
    let mut want = vec![admin_id, member_id, second_admin.id, sneaky.id];
    want.sort();
    assert_eq!(ids, want);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for t in v["tokens"].as_array().unwrap() {
        let keys: Vec<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
        for k in ["id", "name", "role", "created_at", "last_used_at"] {
            assert!(keys.contains(&k), "{k} missing in {t}");
        }
        assert!(
            !keys.contains(&"token") && !keys.contains(&"token_hash"),
            "{t}"
        );
    }
}

#[tokio::test]
async fn revoked_token_stops_working_at_once() {
    let app = spawn_app().await;
    let admin = app.team("acme").await;
    let ci = admin.create_token("ci", None).await.unwrap();
    let ci_client = app.client(&ci.token);
    // Used once (and cached as "recently used") before revocation.
    ci_client.me().await.unwrap();
    let resp = admin
        .raw(Method::DELETE, &format!("/api/v1/tokens/{}", ci.id))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert!(resp.bytes().await.unwrap().is_empty());
    expect_api_err(ci_client.me().await, 401, "unauthorized");
    expect_api_err(ci_client.list_apps().await, 401, "unauthorized");
    assert!(admin
        .list_tokens()
        .await
        .unwrap()
        .iter()
        .all(|t| t.id != ci.id));
    // Revoking again: it is gone.
    expect_api_err(admin.revoke_token(ci.id).await, 404, "not_found");
}

#[tokio::test]
async fn token_use_is_recorded() {
    let app = spawn_app().await;
    let admin = app.team("acme").await;
    let ci = admin.create_token("ci", None).await.unwrap();
    let listed = admin.list_tokens().await.unwrap();
    let info = listed.iter().find(|t| t.id == ci.id).unwrap();
    assert_eq!(info.last_used_at, None);
    assert_eq!(info.name, "ci");
    app.client(&ci.token).me().await.unwrap();
    let listed = admin.list_tokens().await.unwrap();
    let info = listed.iter().find(|t| t.id == ci.id).unwrap();
    assert_eq!(
        info.last_used_at.map(|t| t.timestamp_millis()),
        Some(app.state.now().timestamp_millis())
    );
}

#[tokio::test]
async fn a_token_can_revoke_itself() {
    let app = spawn_app().await;
    let admin = app.team("acme").await;
    let me = admin.me().await.unwrap();
    admin.revoke_token(me.token_id).await.unwrap();
    expect_api_err(admin.me().await, 401, "unauthorized");
}

#[tokio::test]
async fn revoking_another_teams_token_is_404_and_harmless() {
    let app = spawn_app().await;
    let acme = app.team("acme").await;
    let globex = app.team("globex").await;
    let gid = globex.me().await.unwrap().token_id;
    expect_api_err(acme.revoke_token(gid).await, 404, "not_found");
    expect_api_err(acme.revoke_token(999_999).await, 404, "not_found");
    globex.me().await.unwrap();
    assert!(acme
        .list_tokens()
        .await
        .unwrap()
        .iter()
        .all(|t| t.id != gid));
}

#[tokio::test]
async fn team_tokens_do_not_see_other_teams() {
    let app = spawn_app().await;
    let acme = app.team("acme").await;
    let globex = app.team("globex").await;
    acme.create_token("a", None).await.unwrap();
    let g = globex.list_tokens().await.unwrap();
    assert_eq!(g.len(), 1);
    assert_eq!(globex.me().await.unwrap().team.slug, "globex");
}
