//! Teams, tokens, apps, versions and the walls between teams.

use super::*;
use minitower_core::status::RunStatus;

/// A team comes with its first admin token; a duplicate slug is a conflict
/// and leaves nothing behind.
pub async fn team_create_and_duplicate_slug(store: Arc<dyn Store>) {
    let (team, token_id) = store
        .create_team("acme", "Acme Corp", None, "bootstrap", "hash-1", t(0))
        .await
        .unwrap();
    assert_eq!(
        (team.slug.as_str(), team.name.as_str()),
        ("acme", "Acme Corp")
    );
    let who = store.token_by_hash("hash-1").await.unwrap().unwrap();
    assert_eq!(who.token_id, token_id);
    assert_eq!(who.team, team);
    assert_eq!(who.role, Role::Admin);
    assert_eq!(who.last_used_at, None);

    let dup = store
        .create_team("acme", "Other", None, "bootstrap", "hash-2", t(1))
        .await;
    assert_conflict(dup);
    assert!(
        store.token_by_hash("hash-2").await.unwrap().is_none(),
        "no orphan token"
    );

    let (other, _) = store
        .create_team("beta", "Beta", None, "bootstrap", "hash-3", t(2))
        .await
        .unwrap();
    assert_ne!(other.id, team.id);
    assert!(store.token_by_hash("unknown").await.unwrap().is_none());
}

/// Login looks a team up by slug with its password hash, if any.
pub async fn team_login_info_and_password(store: Arc<dyn Store>) {
    let (team, _) = store
        .create_team("acme", "Acme", Some("argon2-hash"), "admin", "h1", t(0))
        .await
        .unwrap();
    let (found, pw) = store.team_login_info("acme").await.unwrap().unwrap();
    assert_eq!(found, team);
    assert_eq!(pw.as_deref(), Some("argon2-hash"));
    store
        .create_team("nopw", "No password", None, "admin", "h2", t(0))
        .await
        .unwrap();
    let (_, pw) = store.team_login_info("nopw").await.unwrap().unwrap();
    assert_eq!(pw, None);
    assert!(store.team_login_info("ghost").await.unwrap().is_none());
}

/// Tokens are listed oldest first without revoked ones; a revoked token
/// stops resolving at once; another team cannot revoke it.
pub async fn tokens_create_list_touch_revoke(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let other = Fixture::with_team(store.clone(), "beta").await;
    let member = store
        .create_token(
            f.team.id,
            "ci",
            MEMBER,
            "ci-hash",
            t(5),
            TokenOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!((member.name.as_str(), member.role), ("ci", Role::Member));
    assert_eq!(member.created_at, t(5));
    assert_conflict(
        store
            .create_token(
                f.team.id,
                "dup",
                MEMBER,
                "ci-hash",
                t(5),
                TokenOptions::default(),
            )
            .await,
    );

    let list = store.list_tokens(f.team.id).await.unwrap();
    let ids: Vec<i64> = list.iter().map(|k| k.id).collect();
    assert_eq!(ids, vec![f.admin_token_id, member.id]);
    assert_eq!(list[0].role, Role::Admin);
    assert_eq!((list[0].expires_at, list[1].expires_at), (None, None));

    store.touch_token(member.id, t(60)).await.unwrap();
    let who = store.token_by_hash("ci-hash").await.unwrap().unwrap();
    assert_eq!((who.role, who.last_used_at), (Role::Member, Some(t(60))));
    let listed = store.list_tokens(f.team.id).await.unwrap();
    assert_eq!(listed[1].last_used_at, Some(t(60)));

    assert_not_found(store.revoke_token(other.team.id, member.id, t(70)).await);
    assert!(store.token_by_hash("ci-hash").await.unwrap().is_some());
    store
        .revoke_token(f.team.id, member.id, t(70))
        .await
        .unwrap();
    assert!(store.token_by_hash("ci-hash").await.unwrap().is_none());
    let ids: Vec<i64> = store
        .list_tokens(f.team.id)
        .await
        .unwrap()
        .iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(ids, vec![f.admin_token_id]);
    assert_not_found(store.revoke_token(f.team.id, member.id, t(71)).await);
    assert_not_found(store.revoke_token(f.team.id, 999_999, t(71)).await);
}

/// A token with an expiry keeps it (listed, and on lookup so the caller can
/// refuse it as expired); revoking still works; tokens without one have none.
pub async fn tokens_expire(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let login = store
        .create_token(
            f.team.id,
            "login",
            Role::Admin,
            "login-hash",
            t(10),
            TokenOptions {
                expires_at: Some(t(3600)),
                scope: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(login.expires_at, Some(t(3600)));
    let who = store.token_by_hash("login-hash").await.unwrap().unwrap();
    assert_eq!((who.token_id, who.expires_at), (login.id, Some(t(3600))));
    let listed = store.list_tokens(f.team.id).await.unwrap();
    let got: Vec<_> = listed.iter().map(|k| (k.id, k.expires_at)).collect();
    assert_eq!(
        got,
        vec![(f.admin_token_id, None), (login.id, Some(t(3600)))]
    );
    // Milliseconds survive the round trip on every backend.
    let precise = t(0) + chrono::Duration::milliseconds(1_234_567);
    store
        .create_token(
            f.team.id,
            "ms",
            MEMBER,
            "ms-hash",
            t(11),
            TokenOptions {
                expires_at: Some(precise),
                scope: None,
            },
        )
        .await
        .unwrap();
    let who = store.token_by_hash("ms-hash").await.unwrap().unwrap();
    assert_eq!(who.expires_at, Some(precise));
    store
        .revoke_token(f.team.id, login.id, t(20))
        .await
        .unwrap();
    assert!(store.token_by_hash("login-hash").await.unwrap().is_none());
}

/// App slugs are unique per team, not globally.
pub async fn apps_and_duplicate_slugs(store: Arc<dyn Store>) {
    let (a, _) = store
        .create_team("acme", "A", None, "admin", "ha", t(0))
        .await
        .unwrap();
    let (b, _) = store
        .create_team("beta", "B", None, "admin", "hb", t(0))
        .await
        .unwrap();
    let hello = store
        .create_app(a.id, "hello", Some("says hi"), t(1))
        .await
        .unwrap();
    assert_eq!(hello.app.slug, "hello");
    assert_eq!(hello.app.description.as_deref(), Some("says hi"));
    assert_eq!(hello.app.created_at, t(1));
    assert_eq!(hello.id, hello.app.id);
    assert_conflict(store.create_app(a.id, "hello", None, t(2)).await);
    store.create_app(b.id, "hello", None, t(2)).await.unwrap();
    store.create_app(a.id, "alpha", None, t(3)).await.unwrap();

    let slugs: Vec<String> = store
        .list_apps(a.id)
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.slug)
        .collect();
    assert_eq!(slugs, vec!["alpha", "hello"]);
    let got = store.get_app(a.id, "hello").await.unwrap().unwrap();
    assert_eq!((got.id, got.app.latest_version), (hello.id, None));
    store
        .create_version(a.id, hello.id, new_version("s1"), t(4))
        .await
        .unwrap();
    let got = store.get_app(a.id, "hello").await.unwrap().unwrap();
    assert_eq!(got.app.latest_version, Some(1));
    assert!(store.get_app(a.id, "nope").await.unwrap().is_none());
}

/// Versions are numbered 1, 2, 3 per app and keep every field.
pub async fn versions_are_numbered_per_app(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let (other_app, _) = f.app("other").await;
    for sha in ["s2", "s3"] {
        store
            .create_version(f.team.id, f.app.id, new_version(sha), t(10))
            .await
            .unwrap();
    }
    let mut v = new_version("s4");
    v.params_schema = None;
    v.import_paths = vec![];
    v.towerfile = None;
    let v4 = store
        .create_version(f.team.id, other_app.id, v, t(11))
        .await
        .unwrap();
    assert_eq!(v4.version_no, 2, "the other app has its own numbering");

    let list = store.list_versions(f.team.id, f.app.id).await.unwrap();
    let nos: Vec<i64> = list.iter().map(|v| v.version_no).collect();
    assert_eq!(nos, vec![3, 2, 1]);
    let latest = store
        .get_version(f.team.id, f.app.id, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((latest.version.version_no, latest.app_id), (3, f.app.id));
    assert_eq!(latest.version.artifact_sha256, "s3");
    let two = store
        .get_version(f.team.id, f.app.id, Some(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(two.version.artifact_sha256, "s2");
    assert_eq!(two.version.entrypoint, "main.py");
    assert_eq!(two.version.timeout_seconds, 60);
    assert_eq!(two.version.params_schema, Some(json!({"type": "object"})));
    assert_eq!(two.version.import_paths, vec!["modules/shared".to_string()]);
    assert_eq!(two.version.created_at, t(10));
    let bare = store
        .get_version(f.team.id, other_app.id, Some(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bare.version.params_schema, None);
    assert!(bare.version.import_paths.is_empty());
    assert!(store
        .get_version(f.team.id, f.app.id, Some(9))
        .await
        .unwrap()
        .is_none());
}

/// Another team's objects do not exist for a team.
pub async fn team_isolation(store: Arc<dyn Store>) {
    let a = Fixture::new(store.clone()).await;
    let b = Fixture::with_team(store.clone(), "beta").await;
    let run = a.run(1).await;
    let runner = a.runner("default", 1).await;
    let held = lease(&store, &runner, 2).await.unwrap();
    held.logs(&[1], 3).await.unwrap();

    assert!(store.get_app(b.team.id, "hello").await.unwrap().unwrap().id != a.app.id);
    assert!(store
        .get_version(b.team.id, a.app.id, None)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .list_versions(b.team.id, a.app.id)
        .await
        .unwrap()
        .is_empty());
    assert_not_found(
        store
            .create_version(b.team.id, a.app.id, new_version("x"), t(4))
            .await,
    );
    assert!(store.get_run(b.team.id, run.id).await.unwrap().is_none());
    assert!(store
        .list_runs(b.team.id, &Default::default())
        .await
        .unwrap()
        .is_empty());
    let filter = crate::RunFilter {
        app_id: Some(a.app.id),
        ..Default::default()
    };
    assert!(store
        .list_runs(b.team.id, &filter)
        .await
        .unwrap()
        .is_empty());
    assert_not_found(store.cancel_run(b.team.id, run.id, t(5)).await);
    assert_not_found(store.get_logs(Some(b.team.id), run.id, 0, 100).await);
    assert_eq!(
        store
            .get_logs(Some(a.team.id), run.id, 0, 100)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store
        .runs_summary(b.team.id)
        .await
        .unwrap()
        .values()
        .all(|n| *n == 0));
    assert_not_found(store.revoke_token(b.team.id, a.admin_token_id, t(5)).await);

    // A run cannot be queued with another team's app or version.
    let mut cross = a.new_run(6);
    cross.team_id = b.team.id;
    assert_not_found(store.create_run(cross).await);
    let mut cross = b.new_run(6);
    cross.version_id = a.version.id;
    assert_not_found(store.create_run(cross).await);
    assert_eq!(a.get(run.id).await.run.status, RunStatus::Leased);
}

/// A key holding NUL (`/api/v1/apps/a%00b`, a login slug) names nothing on
/// every backend: it is not found, never a database error.
pub async fn nul_in_a_looked_up_key_is_not_found(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    assert!(store.get_app(f.team.id, "a\0b").await.unwrap().is_none());
    assert!(store.get_app(f.team.id, "hello\0").await.unwrap().is_none());
    assert!(store.team_login_info("ac\0me").await.unwrap().is_none());
    assert!(store.token_by_hash("h\0").await.unwrap().is_none());
    assert!(store.runner_by_token_hash("h\0").await.unwrap().is_none());
    // The real keys still resolve.
    assert!(store.get_app(f.team.id, "hello").await.unwrap().is_some());
    assert!(store.team_login_info("acme").await.unwrap().is_some());
}

/// A team's count of active attempts per runner leaves other teams' out.
pub async fn team_active_attempts_are_the_teams_own(store: Arc<dyn Store>) {
    let a = Fixture::new(store.clone()).await;
    let b = Fixture::with_team(store.clone(), "beta").await;
    let runner = a.runner("default", 4).await;
    a.run(1).await;
    b.run(2).await;
    b.run(3).await;
    let mut held = Vec::new();
    for i in 0..3 {
        held.push(lease(&store, &runner, 10 + i).await.expect("a lease"));
    }
    assert_eq!(store.list_runners().await.unwrap()[0].active_runs, 3);
    let id = runner.runner_id;
    assert_eq!(
        store.team_active_attempts(a.team.id).await.unwrap(),
        vec![(id, 1)]
    );
    assert_eq!(
        store.team_active_attempts(b.team.id).await.unwrap(),
        vec![(id, 2)]
    );
    let (c, _) = store
        .create_team("gamma", "G", None, "admin", "hg", t(0))
        .await
        .unwrap();
    assert!(store.team_active_attempts(c.id).await.unwrap().is_empty());
}
