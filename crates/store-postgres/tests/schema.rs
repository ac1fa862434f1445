//! PostgreSQL-specific checks: the schema refuses illegal states even to raw
//! SQL, and migrations apply once however many replicas start together.

use minitower_store_postgres::testing;

use minitower_core::status::{ResultStatus, RunStatus};
use minitower_store::conformance::{lease, t, Fixture};
use minitower_store::Store;
use minitower_store_postgres::{PgStore, MIGRATOR};
use sqlx::AnyPool;
use std::sync::Arc;

/// Runs one statement and returns the database's refusal, if any.
async fn refused(pool: &AnyPool, sql: &str) -> Option<String> {
    match sqlx::query(sql).execute(pool).await {
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    }
}

#[tokio::test]
async fn schema_rejects_unknown_statuses() {
    let Some(db) = testing::test_db().await else {
        return;
    };
    let store = Arc::new(db.open().await);
    let pool = store.pool().clone();
    let f = Fixture::new(store.clone()).await;
    let run = f.run(1).await;
    let runner = f.runner("default", 1).await;
    lease(&f.store, &runner, 2).await.unwrap();
    let q = format!("UPDATE runs SET status = 'bogus' WHERE id = {}", run.id);
    assert!(refused(&pool, &q).await.unwrap().contains("check"));
    let q = format!(
        "UPDATE run_attempts SET status = 'paused' WHERE run_id = {}",
        run.id
    );
    assert!(refused(&pool, &q).await.is_some());
    let q = format!(
        "UPDATE tokens SET role = 'root' WHERE team_id = {}",
        f.team.id
    );
    assert!(refused(&pool, &q).await.is_some());
    let q = format!(
        "UPDATE runners SET status = 'sleeping' WHERE id = {}",
        runner.runner_id
    );
    assert!(refused(&pool, &q).await.is_some());
    // terminal exactly when finished
    let q = format!("UPDATE runs SET finished_at = 1000 WHERE id = {}", run.id);
    assert!(refused(&pool, &q).await.is_some());
    assert_eq!(
        store.run_status(run.id).await.unwrap(),
        Some(RunStatus::Leased)
    );
}

#[tokio::test]
async fn schema_rejects_a_second_active_attempt() {
    let Some(db) = testing::test_db().await else {
        return;
    };
    let store = Arc::new(db.open().await);
    let pool = store.pool().clone();
    let f = Fixture::new(store.clone()).await;
    let run = f.run(1).await;
    let runner = f.runner("default", 1).await;
    let other = f.runner("default", 5).await;
    lease(&f.store, &runner, 2).await.unwrap();
    let insert = |no: i64, status: &str| {
        format!(
            "INSERT INTO run_attempts (run_id, attempt_no, runner_id, status, lease_token_hash, \
             lease_expires_at, started_at) VALUES ({}, {no}, {}, '{status}', 'x', 1000, 1000)",
            run.id, other.runner_id
        )
    };
    let err = refused(&pool, &insert(2, "leased")).await.unwrap();
    assert!(err.contains("run_attempts_one_active"), "{err}");
    assert!(refused(&pool, &insert(2, "running")).await.is_some());
    // a finished attempt next to the active one is fine
    let done = format!(
        "INSERT INTO run_attempts (run_id, attempt_no, runner_id, status, lease_token_hash, \
         lease_expires_at, started_at, finished_at) \
         VALUES ({}, 7, {}, 'failed', 'x', 1000, 1000, 1000)",
        run.id, other.runner_id
    );
    assert_eq!(refused(&pool, &done).await, None);
}

#[tokio::test]
async fn schema_caps_runner_concurrency() {
    let Some(db) = testing::test_db().await else {
        return;
    };
    let store = Arc::new(db.open().await);
    let pool = store.pool().clone();
    let f = Fixture::new(store.clone()).await;
    f.run(1).await;
    let second = f.run(2).await;
    let runner = f.runner("default", 1).await;
    lease(&f.store, &runner, 3).await.unwrap();
    let q = format!(
        "INSERT INTO run_attempts (run_id, attempt_no, runner_id, status, lease_token_hash, \
         lease_expires_at, started_at) VALUES ({}, 1, {}, 'leased', 'x', 1000, 1000)",
        second.id, runner.runner_id
    );
    let err = refused(&pool, &q).await.unwrap();
    assert!(err.contains("runners_check"), "{err}");
    let q = format!(
        "UPDATE runners SET max_concurrency = 0 WHERE id = {}",
        runner.runner_id
    );
    assert!(refused(&pool, &q).await.is_some());
    // re-registering below the active count is a clear conflict, not a
    // CHECK failure
    let two = f.runner("default", 2).await;
    f.run(5).await;
    lease(&f.store, &two, 6).await.unwrap();
    lease(&f.store, &two, 6).await.unwrap();
    let lower = store
        .register_runner(&two.name, "default", 1, "new-token", t(7))
        .await;
    assert!(
        matches!(lower, Err(minitower_store::StoreError::Conflict(_))),
        "{lower:?}"
    );
    let same = store
        .register_runner(&two.name, "default", 2, "new-token", t(7))
        .await;
    assert_eq!(same.unwrap(), two.runner_id);
}

#[tokio::test]
async fn schema_keeps_terminal_states_terminal() {
    let Some(db) = testing::test_db().await else {
        return;
    };
    let store = Arc::new(db.open().await);
    let pool = store.pool().clone();
    let f = Fixture::new(store.clone()).await;
    let runner = f.runner("default", 2).await;
    let done = f.run(1).await;
    let expired = f.run(2).await;
    let h = lease(&f.store, &runner, 3).await.unwrap();
    lease(&f.store, &runner, 3).await.unwrap();
    h.finish(ResultStatus::Completed, Some(0), 4).await.unwrap();
    f.store.reap_expired(t(100), 10).await.unwrap();
    let q = format!(
        "UPDATE runs SET status = 'queued', finished_at = NULL WHERE id = {}",
        done.id
    );
    assert!(refused(&pool, &q).await.unwrap().contains("terminal"));
    let q = format!(
        "UPDATE run_attempts SET status = 'running', finished_at = NULL WHERE run_id = {}",
        expired.id
    );
    assert!(refused(&pool, &q).await.unwrap().contains("finished"));
    let q = format!("UPDATE runs SET app_id = app_id + 1 WHERE id = {}", done.id);
    assert!(refused(&pool, &q).await.is_some());
    let q = format!("UPDATE runs SET environment = 'gpu' WHERE id = {}", done.id);
    assert!(refused(&pool, &q).await.unwrap().contains("cannot change"));
}

#[tokio::test]
async fn schema_scopes_foreign_keys_to_the_team() {
    let Some(db) = testing::test_db().await else {
        return;
    };
    let store = Arc::new(db.open().await);
    let pool = store.pool().clone();
    let a = Fixture::new(store.clone()).await;
    let b = Fixture::with_team(store.clone(), "beta").await;
    // a version claiming team b for team a's app
    let q = format!(
        "INSERT INTO versions (app_id, team_id, version_no, artifact_sha256, artifact_size, \
         entrypoint, timeout_seconds, created_at) \
         VALUES ({}, {}, 9, 'x', 1, 'main.py', 1, 1000)",
        a.app.id, b.team.id
    );
    assert!(refused(&pool, &q).await.unwrap().contains("foreign key"));
    // a run of team a's app with team b's version
    let q = format!(
        "INSERT INTO runs (team_id, app_id, version_id, run_no, environment, status, queued_at) \
         VALUES ({}, {}, {}, 99, 'default', 'queued', 1000)",
        a.team.id, a.app.id, b.version.id
    );
    assert!(refused(&pool, &q).await.unwrap().contains("foreign key"));
}

#[tokio::test]
async fn replicas_starting_together_migrate_once() {
    let Some(db) = testing::test_db().await else {
        return;
    };
    // Four replicas open the empty database at the same moment.
    let opens = (0..4).map(|_| db.open());
    let stores: Vec<PgStore> = futures::future::join_all(opens).await;
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(stores[0].pool())
        .await
        .unwrap();
    assert_eq!(applied, MIGRATOR.iter().count() as i64);
    // and a later start, or running the migrator by hand, changes nothing
    Fixture::new(Arc::new(stores[1].clone())).await;
    MIGRATOR.run(stores[2].pool()).await.unwrap();
    let again = db.open().await;
    assert!(again.team_login_info("acme").await.unwrap().is_some());
    for s in &stores {
        s.close().await;
    }
    again.close().await;
}

#[tokio::test]
async fn text_with_nul_is_stored() {
    let Some(db) = testing::test_db().await else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(db.open().await);
    let f = Fixture::new(store.clone()).await;
    f.run(1).await;
    let runner = f.runner("default", 1).await;
    let h = lease(&store, &runner, 2).await.unwrap();
    let line = minitower_core::api::NewLogLine {
        seq: 1,
        stream: "stdout".into(),
        line: "a\0b".into(),
        logged_at: None,
    };
    let (n, _) = store
        .append_logs(runner.runner_id, h.run_id(), &h.token_hash, &[line], t(3))
        .await
        .unwrap();
    assert_eq!(n, 1);
    let logs = store.get_logs(None, h.run_id(), 0, 10).await.unwrap();
    assert_eq!(logs[0].line, "a\u{FFFD}b");
}

#[tokio::test]
async fn close_through_the_trait_refuses_later_work() {
    let Some(db) = testing::test_db().await else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(db.open().await);
    store.ping().await.unwrap();
    store.close().await;
    assert!(store.ping().await.is_err(), "closed pools refuse work");
    store.close().await; // twice is harmless
}
