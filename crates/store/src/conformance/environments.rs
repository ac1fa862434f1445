//! Environments, secrets, and token scopes with their refusal audit.

use super::*;
use crate::{NewSecret, SealedSecret};
use minitower_core::api::{ScopeAction, TokenScope};
use minitower_core::status::RunStatus;

fn names(envs: &[minitower_core::api::Environment]) -> Vec<&str> {
    envs.iter().map(|e| e.name.as_str()).collect()
}

fn secret<'a>(
    team_id: i64,
    env: &'a str,
    name: &'a str,
    version: i64,
    sealed: &'a str,
) -> NewSecret<'a> {
    NewSecret {
        team_id,
        environment: env,
        name,
        version,
        sealed_value: sealed,
        key_id: "k1",
        now: t(version * 10),
    }
}

/// Every team starts with `default`; names are unique within a team, not
/// across teams; one team never sees another's.
pub async fn default_exists_and_names_are_per_team(store: Arc<dyn Store>) {
    let a = Fixture::new(store.clone()).await;
    let b = Fixture::with_team(store.clone(), "beta").await;
    assert_eq!(
        names(&store.list_environments(a.team.id).await.unwrap()),
        ["default"]
    );
    let prod = store
        .create_environment(a.team.id, "prod", t(5))
        .await
        .unwrap();
    assert_eq!((prod.name.as_str(), prod.created_at), ("prod", t(5)));
    assert_eq!((prod.online_runners, prod.runner_names.len()), (0, 0));
    assert_conflict(store.create_environment(a.team.id, "prod", t(6)).await);
    assert_conflict(store.create_environment(a.team.id, "default", t(6)).await);
    store
        .create_environment(a.team.id, "b-env", t(7))
        .await
        .unwrap();
    assert_eq!(
        names(&store.list_environments(a.team.id).await.unwrap()),
        ["b-env", "default", "prod"]
    );
    // The other team: its own default only, and may reuse the name.
    assert_eq!(
        names(&store.list_environments(b.team.id).await.unwrap()),
        ["default"]
    );
    assert!(!store.environment_exists(b.team.id, "prod").await.unwrap());
    assert_not_found(store.delete_environment(b.team.id, "prod").await);
    store
        .create_environment(b.team.id, "prod", t(8))
        .await
        .unwrap();
    assert!(store.environment_exists(a.team.id, "prod").await.unwrap());
    assert!(!store.environment_exists(a.team.id, "nul\0").await.unwrap());
    assert_not_found(store.create_environment(999_999, "x", t(9)).await);
}

/// A run names an environment its team has, or nothing is created.
pub async fn runs_need_an_existing_environment(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let r = store
        .create_run(NewRun {
            environment: "staging".into(),
            ..f.new_run(1)
        })
        .await;
    assert!(
        matches!(r, Err(StoreError::NotFound("environment"))),
        "got {r:?}"
    );
    assert!(f.runs().await.is_empty());
    // Another team's environment does not count.
    let other = Fixture::with_team(store.clone(), "beta").await;
    other.environment("staging").await;
    assert!(store
        .create_run(NewRun {
            environment: "staging".into(),
            ..f.new_run(2)
        })
        .await
        .is_err());
    f.environment("staging").await;
    let run = f.run_with(3, |r| r.environment = "staging".into()).await;
    assert_eq!((run.environment.as_str(), run.run_no), ("staging", 1));
}

/// `default` cannot go; an environment with a queued or running run, a
/// schedule or an online runner cannot go; once they are gone it goes, with
/// its secrets.
pub async fn delete_refused_while_active_or_default(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    assert_conflict(store.delete_environment(f.team.id, "default").await);
    let run = f.run_with(1, |r| r.environment = "prod".into()).await;
    store
        .put_secret(secret(f.team.id, "prod", "DB_PASSWORD", 1, "v1.k1.AAAA"))
        .await
        .unwrap();
    assert_conflict(store.delete_environment(f.team.id, "prod").await);
    let runner = f.runner("prod", 1).await;
    let held = lease(&store, &runner, 2).await.unwrap();
    assert_eq!(held.run_id(), run.id);
    held.start(3).await.unwrap();
    assert_conflict(store.delete_environment(f.team.id, "prod").await);
    held.finish(ResultStatus::Completed, Some(0), 4)
        .await
        .unwrap();
    // A runner online in the environment still works for it.
    let err = store.delete_environment(f.team.id, "prod").await;
    assert!(
        matches!(&err, Err(crate::StoreError::Conflict(m)) if m.contains("online runners")),
        "{err:?}"
    );
    store.runner_offline(runner.runner_id).await.unwrap();
    store.delete_environment(f.team.id, "prod").await.unwrap();
    assert!(!store.environment_exists(f.team.id, "prod").await.unwrap());
    assert_not_found(store.delete_environment(f.team.id, "prod").await);
    // A schedule naming the environment keeps it too.
    f.environment("nightly").await;
    let schedule = store
        .create_schedule(crate::NewSchedule {
            team_id: f.team.id,
            app_id: f.app.id,
            cron: "0 3 * * *".into(),
            timezone: "UTC".into(),
            input: json!({}),
            version_no: None,
            environment: "nightly".into(),
            enabled: false,
            source: minitower_core::api::ScheduleSource::Api,
            now: t(5),
        })
        .await
        .unwrap();
    assert_conflict(store.delete_environment(f.team.id, "nightly").await);
    store.delete_schedule(f.team.id, schedule.id).await.unwrap();
    store
        .delete_environment(f.team.id, "nightly")
        .await
        .unwrap();
    // The finished run keeps its environment name; the secrets are gone.
    assert_eq!(f.get(run.id).await.run.environment, "prod");
    f.environment("prod").await;
    assert!(store
        .list_secrets(f.team.id, "prod")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .secret_version(f.team.id, "prod", "DB_PASSWORD")
            .await
            .unwrap(),
        None
    );
}

/// An environment lists the online runners labelled with it; a queued run
/// waits for a runner when none of them is online.
pub async fn online_runners_and_waiting_runs(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let run = f.run_with(1, |r| r.environment = "gpu".into()).await;
    assert!(f.get(run.id).await.waiting_for_runner);
    let plain = f.run(2).await;
    assert!(f.get(plain.id).await.waiting_for_runner, "no runner at all");
    register(&store, "zeta", "gpu", 1).await;
    let alpha = register(&store, "alpha", "gpu", 1).await;
    register(&store, "other", "default", 1).await;
    let envs = store.list_environments(f.team.id).await.unwrap();
    let gpu = envs.iter().find(|e| e.name == "gpu").unwrap();
    assert_eq!(
        (gpu.online_runners, gpu.runner_names.clone()),
        (2, vec!["alpha".to_string(), "zeta".to_string()])
    );
    let default = envs.iter().find(|e| e.name == "default").unwrap();
    assert_eq!(default.runner_names, vec!["other".to_string()]);
    assert!(!f.get(run.id).await.waiting_for_runner);
    assert!(!f.get(plain.id).await.waiting_for_runner);
    store.runner_offline(alpha.runner_id).await.unwrap();
    let envs = store.list_environments(f.team.id).await.unwrap();
    let gpu = envs.iter().find(|e| e.name == "gpu").unwrap();
    assert_eq!(gpu.runner_names, vec!["zeta".to_string()]);
    // Only queued runs wait: a leased one is not reported as waiting.
    let held = lease(&store, &alpha, 3).await.unwrap();
    assert_eq!(held.run_id(), run.id);
    let detail = f.get(run.id).await;
    assert_eq!(detail.run.status, RunStatus::Leased);
    assert!(!detail.waiting_for_runner);
}

/// Secrets: version 1 then +1 per write, a stale version is a conflict,
/// lists show names and versions of one environment of one team, delete
/// is per environment, an unknown environment is `NotFound`.
pub async fn secrets_versions_and_isolation(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let other = Fixture::with_team(store.clone(), "beta").await;
    f.environment("prod").await;
    f.environment("staging").await;
    let id = f.team.id;
    let first = store
        .put_secret(secret(id, "prod", "DB_PASSWORD", 1, "v1.k1.one"))
        .await
        .unwrap();
    assert_eq!(
        (
            first.name.as_str(),
            first.environment.as_str(),
            first.version
        ),
        ("DB_PASSWORD", "prod", 1)
    );
    assert_eq!((first.created_at, first.updated_at), (t(10), t(10)));
    assert_conflict(
        store
            .put_secret(secret(id, "prod", "DB_PASSWORD", 1, "v1.k1.x"))
            .await,
    );
    assert_conflict(
        store
            .put_secret(secret(id, "prod", "DB_PASSWORD", 3, "v1.k1.x"))
            .await,
    );
    let second = store
        .put_secret(secret(id, "prod", "DB_PASSWORD", 2, "v1.k1.two"))
        .await
        .unwrap();
    assert_eq!(
        (second.version, second.created_at, second.updated_at),
        (2, t(10), t(20))
    );
    assert_eq!(
        store
            .secret_version(id, "prod", "DB_PASSWORD")
            .await
            .unwrap(),
        Some(2)
    );
    store
        .put_secret(secret(id, "staging", "DB_PASSWORD", 1, "v1.k1.stg"))
        .await
        .unwrap();
    store
        .put_secret(secret(id, "prod", "API_KEY", 1, "v1.k1.api"))
        .await
        .unwrap();
    let listed: Vec<(String, i64)> = store
        .list_secrets(id, "prod")
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.name, s.version))
        .collect();
    assert_eq!(
        listed,
        vec![("API_KEY".into(), 1), ("DB_PASSWORD".into(), 2)]
    );
    assert_not_found(store.list_secrets(id, "nowhere").await);
    assert_not_found(
        store
            .put_secret(secret(id, "nowhere", "X_KEY", 1, "v1.k1.x"))
            .await,
    );
    // The other team sees none of it and cannot delete it.
    assert_not_found(store.list_secrets(other.team.id, "prod").await);
    assert!(store
        .list_secrets(other.team.id, "default")
        .await
        .unwrap()
        .is_empty());
    assert_not_found(
        store
            .delete_secret(other.team.id, "prod", "DB_PASSWORD")
            .await,
    );
    assert_eq!(
        store
            .secret_version(other.team.id, "prod", "DB_PASSWORD")
            .await
            .unwrap(),
        None
    );
    // Delete is per environment.
    store
        .delete_secret(id, "staging", "DB_PASSWORD")
        .await
        .unwrap();
    assert_not_found(store.delete_secret(id, "staging", "DB_PASSWORD").await);
    assert_eq!(
        store
            .secret_version(id, "prod", "DB_PASSWORD")
            .await
            .unwrap(),
        Some(2)
    );
    // Set again after delete: a new secret, version 1.
    let again = store
        .put_secret(secret(id, "staging", "DB_PASSWORD", 1, "v1.k1.new"))
        .await
        .unwrap();
    assert_eq!(again.version, 1);
}

/// A leased run gets the sealed secrets of its own team and environment,
/// and its version's Towerfile.
pub async fn run_secrets_of_the_runs_environment(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let other = Fixture::with_team(store.clone(), "beta").await;
    f.environment("staging").await;
    let id = f.team.id;
    assert_not_found(
        store
            .put_secret(secret(id, "prod", "DB_PASSWORD", 1, "v1.k1.prod"))
            .await,
    );
    f.environment("prod").await;
    store
        .put_secret(secret(id, "prod", "DB_PASSWORD", 1, "v1.k1.prod"))
        .await
        .unwrap();
    store
        .put_secret(secret(id, "staging", "DB_PASSWORD", 1, "v1.k1.stg"))
        .await
        .unwrap();
    other.environment("prod").await;
    store
        .put_secret(secret(
            other.team.id,
            "prod",
            "DB_PASSWORD",
            1,
            "v1.k1.beta",
        ))
        .await
        .unwrap();
    let run = f.run_with(1, |r| r.environment = "prod".into()).await;
    let got = store.run_secrets(run.id).await.unwrap();
    assert_eq!((got.team_id, got.environment.as_str()), (id, "prod"));
    assert_eq!(got.towerfile.as_deref(), Some("[app]\nname = \"hello\"\n"));
    let sealed: Vec<(&str, &str, &str)> = got
        .secrets
        .iter()
        .map(
            |SealedSecret {
                 info,
                 sealed_value,
                 key_id,
             }| { (info.name.as_str(), sealed_value.as_str(), key_id.as_str()) },
        )
        .collect();
    assert_eq!(sealed, vec![("DB_PASSWORD", "v1.k1.prod", "k1")]);
    assert_not_found(store.run_secrets(999_999).await);
    // A lease reads the same in its own transaction.
    let runner = f.runner("prod", 1).await;
    let held = lease(&store, &runner, 2).await.unwrap();
    assert_eq!(held.run_id(), run.id);
    assert_eq!(held.leased.secrets, got);
}

/// A scoped token keeps its scope; a refusal is recorded with its reason
/// and listed, next to the last use.
pub async fn token_scope_and_refusal_audit(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let scope = TokenScope {
        app: Some("etl".into()),
        actions: vec![ScopeAction::Trigger, ScopeAction::Read],
    };
    let ci = store
        .create_token(
            f.team.id,
            "ci",
            MEMBER,
            "ci-hash",
            t(1),
            TokenOptions {
                expires_at: Some(t(100)),
                scope: Some(scope.clone()),
            },
        )
        .await
        .unwrap();
    assert_eq!(ci.scope.as_ref(), Some(&scope));
    let who = store.token_by_hash("ci-hash").await.unwrap().unwrap();
    assert_eq!(
        (who.scope.as_ref(), who.expires_at),
        (Some(&scope), Some(t(100)))
    );
    store.touch_token(ci.id, t(5)).await.unwrap();
    store
        .refuse_token(ci.id, "out of scope: deploy", t(6))
        .await
        .unwrap();
    store
        .refuse_token(ci.id, &format!("expired {}", "é".repeat(400)), t(7))
        .await
        .unwrap();
    let listed = store.list_tokens(f.team.id).await.unwrap();
    let ci = listed.iter().find(|k| k.id == ci.id).unwrap();
    assert_eq!(ci.last_used_at, Some(t(5)));
    assert_eq!(ci.last_refused_at, Some(t(7)));
    let why = ci.last_refusal.clone().unwrap();
    assert!(why.starts_with("expired ") && why.len() <= 500, "{why}");
    let admin = listed.iter().find(|k| k.id == f.admin_token_id).unwrap();
    assert_eq!((admin.scope.clone(), admin.last_refused_at), (None, None));
}
