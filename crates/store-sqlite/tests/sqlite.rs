//! SQLite-specific checks: the schema refuses illegal states even to raw
//! SQL, data survives a reopen, and migrations apply once.

use minitower_core::api::ResultRequest;
use minitower_core::status::{ResultStatus, RunStatus};
use minitower_store::conformance::{at, lease, register, t, Fixture};
use minitower_store::Store;
use minitower_store_sqlite::{SqliteStore, MIGRATOR};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tempfile::TempDir;

struct Db {
    _dir: TempDir,
    path: PathBuf,
    store: Arc<SqliteStore>,
}

async fn db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mt.db");
    let store = Arc::new(minitower_store_sqlite::open(&path).await.unwrap());
    Db {
        _dir: dir,
        path,
        store,
    }
}

/// A raw connection next to the store's, with foreign keys on like the store's.
async fn raw(path: &Path) -> SqliteConnection {
    SqliteConnectOptions::new()
        .filename(path)
        .foreign_keys(true)
        .connect()
        .await
        .unwrap()
}

/// Runs one statement and returns the database's refusal, if any.
async fn refused(conn: &mut SqliteConnection, sql: &str) -> Option<String> {
    match sqlx::query(sql).execute(&mut *conn).await {
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    }
}

#[tokio::test]
async fn schema_rejects_unknown_statuses() {
    let d = db().await;
    let f = Fixture::new(d.store.clone()).await;
    let run = f.run(1).await;
    let runner = f.runner("default", 1).await;
    lease(&f.store, &runner, 2).await.unwrap();
    let mut c = raw(&d.path).await;
    let q = format!("UPDATE runs SET status = 'bogus' WHERE id = {}", run.id);
    assert!(refused(&mut c, &q).await.unwrap().contains("CHECK"));
    let q = format!(
        "UPDATE run_attempts SET status = 'paused' WHERE run_id = {}",
        run.id
    );
    assert!(refused(&mut c, &q).await.is_some());
    let q = format!(
        "UPDATE tokens SET role = 'root' WHERE team_id = {}",
        f.team.id
    );
    assert!(refused(&mut c, &q).await.is_some());
    let q = format!(
        "UPDATE runners SET status = 'sleeping' WHERE id = {}",
        runner.runner_id
    );
    assert!(refused(&mut c, &q).await.is_some());
    // terminal exactly when finished
    let q = format!("UPDATE runs SET finished_at = 5 WHERE id = {}", run.id);
    assert!(refused(&mut c, &q).await.is_some());
    assert_eq!(
        d.store.run_status(run.id).await.unwrap(),
        Some(RunStatus::Leased)
    );
}

#[tokio::test]
async fn schema_rejects_a_second_active_attempt() {
    let d = db().await;
    let f = Fixture::new(d.store.clone()).await;
    let run = f.run(1).await;
    let runner = f.runner("default", 1).await;
    let other = f.runner("default", 5).await;
    lease(&f.store, &runner, 2).await.unwrap();
    let mut c = raw(&d.path).await;
    let insert = |no: i64, status: &str| {
        format!(
            "INSERT INTO run_attempts (run_id, attempt_no, runner_id, status, lease_token_hash, \
             lease_expires_at, started_at) VALUES ({}, {no}, {}, '{status}', 'x', 0, 0)",
            run.id, other.runner_id
        )
    };
    let err = refused(&mut c, &insert(2, "leased")).await.unwrap();
    assert!(err.contains("UNIQUE"), "{err}");
    assert!(refused(&mut c, &insert(2, "running")).await.is_some());
    // a finished attempt next to the active one is fine
    let done = format!(
        "INSERT INTO run_attempts (run_id, attempt_no, runner_id, status, lease_token_hash, \
         lease_expires_at, started_at, finished_at) VALUES ({}, 7, {}, 'failed', 'x', 0, 0, 1)",
        run.id, other.runner_id
    );
    assert_eq!(refused(&mut c, &done).await, None);
}

#[tokio::test]
async fn schema_caps_runner_concurrency() {
    let d = db().await;
    let f = Fixture::new(d.store.clone()).await;
    f.run(1).await;
    let second = f.run(2).await;
    let runner = f.runner("default", 1).await;
    lease(&f.store, &runner, 3).await.unwrap();
    let mut c = raw(&d.path).await;
    let q = format!(
        "INSERT INTO run_attempts (run_id, attempt_no, runner_id, status, lease_token_hash, \
         lease_expires_at, started_at) VALUES ({}, 1, {}, 'leased', 'x', 0, 0)",
        second.id, runner.runner_id
    );
    let err = refused(&mut c, &q).await.unwrap();
    assert!(err.contains("CHECK"), "{err}");
    let q = format!(
        "UPDATE runners SET max_concurrency = 0 WHERE id = {}",
        runner.runner_id
    );
    assert!(refused(&mut c, &q).await.is_some());
    // re-registering below the active count is a clear conflict, not a
    // CHECK failure
    let two = f.runner("default", 2).await;
    f.run(5).await;
    lease(&f.store, &two, 6).await.unwrap();
    lease(&f.store, &two, 6).await.unwrap();
    let lower = d
        .store
        .register_runner(&two.name, "default", 1, "new-token", t(7))
        .await;
    assert!(
        matches!(lower, Err(minitower_store::StoreError::Conflict(_))),
        "{lower:?}"
    );
    let same = d
        .store
        .register_runner(&two.name, "default", 2, "new-token", t(7))
        .await;
    assert_eq!(same.unwrap(), two.runner_id);
}

#[tokio::test]
async fn schema_keeps_terminal_states_terminal() {
    let d = db().await;
    let f = Fixture::new(d.store.clone()).await;
    let runner = f.runner("default", 2).await;
    let done = f.run(1).await;
    let expired = f.run(2).await;
    let h = lease(&f.store, &runner, 3).await.unwrap();
    lease(&f.store, &runner, 3).await.unwrap();
    h.finish(ResultStatus::Completed, Some(0), 4).await.unwrap();
    f.store.reap_expired(t(100), 10).await.unwrap();
    let mut c = raw(&d.path).await;
    let q = format!(
        "UPDATE runs SET status = 'queued', finished_at = NULL WHERE id = {}",
        done.id
    );
    assert!(refused(&mut c, &q).await.unwrap().contains("terminal"));
    let q = format!(
        "UPDATE run_attempts SET status = 'running', finished_at = NULL WHERE run_id = {}",
        expired.id
    );
    assert!(refused(&mut c, &q).await.is_some());
    let q = format!("UPDATE runs SET app_id = app_id + 1 WHERE id = {}", done.id);
    assert!(refused(&mut c, &q).await.is_some());
}

#[tokio::test]
async fn schema_scopes_foreign_keys_to_the_team() {
    let d = db().await;
    let a = Fixture::new(d.store.clone()).await;
    let b = Fixture::with_team(d.store.clone(), "beta").await;
    let mut c = raw(&d.path).await;
    // a version claiming team b for team a's app
    let q = format!(
        "INSERT INTO versions (app_id, team_id, version_no, artifact_sha256, artifact_size, \
         entrypoint, timeout_seconds, created_at) VALUES ({}, {}, 9, 'x', 1, 'main.py', 1, 0)",
        a.app.id, b.team.id
    );
    assert!(refused(&mut c, &q).await.unwrap().contains("FOREIGN KEY"));
    // a run of team a's app with team b's version
    let q = format!(
        "INSERT INTO runs (team_id, app_id, version_id, run_no, environment, status, queued_at) \
         VALUES ({}, {}, {}, 99, 'default', 'queued', 0)",
        a.team.id, a.app.id, b.version.id
    );
    assert!(refused(&mut c, &q).await.unwrap().contains("FOREIGN KEY"));
}

#[tokio::test]
async fn reopening_keeps_data() {
    let d = db().await;
    let (run_id, team_id) = {
        let f = Fixture::new(d.store.clone()).await;
        let run = f.run(1).await;
        let runner = register(&f.store, "r1", "default", 1).await;
        let h = lease(&f.store, &runner, 2).await.unwrap();
        h.logs(&[1, 2], 3).await.unwrap();
        let req = ResultRequest {
            status: ResultStatus::Completed,
            exit_code: Some(0),
            error_message: None,
        };
        f.store
            .complete_attempt(runner.runner_id, run.id, &h.token_hash, &req, t(4))
            .await
            .unwrap();
        (run.id, f.team.id)
    };
    d.store.close().await;
    drop(d.store);

    let store = minitower_store_sqlite::open(&d.path).await.unwrap();
    let run = store.get_run(team_id, run_id).await.unwrap().unwrap();
    assert_eq!(run.run.status, RunStatus::Completed);
    assert_eq!(run.attempts.len(), 1);
    assert_eq!(store.get_logs(None, run_id, 0, 10).await.unwrap().len(), 2);
    assert!(store.team_login_info("acme").await.unwrap().is_some());
    assert_eq!(store.list_runners().await.unwrap()[0].name, "r1");
    store.close().await;
}

#[tokio::test]
async fn migrations_apply_once() {
    let d = db().await;
    Fixture::new(d.store.clone()).await;
    d.store.close().await;
    // opening again, and running the migrator by hand, change nothing
    let again = minitower_store_sqlite::open(&d.path).await.unwrap();
    again.close().await;
    let mut c = raw(&d.path).await;
    MIGRATOR.run(&mut c).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(applied, MIGRATOR.iter().count() as i64);
    let teams: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM teams")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(teams, 1);
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    c.close().await.unwrap();
}

#[tokio::test]
async fn open_creates_parent_folders() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("mt.db");
    let store = minitower_store_sqlite::open(&path).await.unwrap();
    store.ping().await.unwrap();
    assert!(path.exists());
    store.close().await;
}

#[tokio::test]
async fn heartbeat_never_shortens_a_lease() {
    let d = db().await;
    let f = Fixture::new(d.store.clone()).await;
    f.run(1).await;
    let runner = f.runner("default", 1).await;
    let h = lease(&f.store, &runner, 100).await.unwrap(); // ends at 130
    let st = f
        .store
        .heartbeat(runner.runner_id, h.run_id(), &h.token_hash, at(50))
        .await
        .unwrap();
    assert_eq!(st.lease_expires_at, t(130));
}

#[tokio::test]
async fn close_through_the_trait_releases_the_file() {
    let d = db().await;
    Fixture::new(d.store.clone()).await;
    let store: Arc<dyn Store> = d.store.clone();
    store.close().await;
    assert!(store.ping().await.is_err(), "closed pools refuse work");
    // everything is in the main file: the WAL is gone or empty
    let wal = d.path.with_extension("db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal_len, 0, "WAL left with {wal_len} bytes");
    store.close().await; // twice is harmless
}
