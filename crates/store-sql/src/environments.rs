//! Environments (a team's named places to run) and their secrets.
//!
//! Design note. The invariants: (1) a run is only ever created in an
//! environment its team has, and an environment is never deleted under a
//! run that is still active in it: run creation holds the environment row
//! with `FOR KEY SHARE` and deletion locks it `FOR UPDATE` before counting
//! active runs (SQLite's single writer serializes both anyway), and it is
//! refused while a schedule names the environment; (2) secret
//! values are stored only sealed, and each write names the version it was
//! sealed for, so two racing writes cannot both win (`Conflict`, the caller
//! seals again). Conformance `environments` proves both on each backend.

use crate::db::{self, get, ms};
use crate::Db;
use crate::{SqlStore, Tx};
use chrono::{DateTime, Utc};
use minitower_core::api::{Environment, SecretInfo};
use minitower_store::{NewSecret, RunSecrets, SealedSecret, StoreError, StoreResult};
use sqlx::any::AnyRow;

/// The environment every team has and cannot delete.
pub(crate) const DEFAULT_ENVIRONMENT: &str = "default";

/// Run statuses that still need their environment (queued included).
const ACTIVE_RUN: &str = "('queued', 'leased', 'running', 'cancelling')";

/// Fails with `NotFound("environment")` unless the team has `name`, and
/// keeps the row from being deleted until the transaction ends.
pub(crate) async fn hold_environment(
    s: &SqlStore,
    tx: &mut Tx,
    team_id: i64,
    name: &str,
) -> StoreResult<()> {
    let found: Option<i64> = sqlx::query_scalar(
        &s.sql("SELECT id FROM environments WHERE team_id = $1 AND name = $2 FOR KEY SHARE"),
    )
    .bind(team_id)
    .bind(s.dialect.text(name).as_ref())
    .fetch_optional(&mut **tx)
    .await
    .map_err(db::err)?;
    found.map(|_| ()).ok_or(StoreError::NotFound("environment"))
}

/// Whether an online runner carries the label `environment`.
pub(crate) async fn served(conn: &mut Db, environment: &str) -> StoreResult<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM runners WHERE status = 'online' AND environment = $1",
    )
    .bind(environment)
    .fetch_one(conn)
    .await
    .map_err(db::err)?;
    Ok(n > 0)
}

pub(crate) async fn create_environment(
    s: &SqlStore,
    team_id: i64,
    name: &str,
    now: DateTime<Utc>,
) -> StoreResult<Environment> {
    let mut tx = s.write().await?;
    let team: Option<i64> = sqlx::query_scalar("SELECT id FROM teams WHERE id = $1")
        .bind(team_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db::err)?;
    if team.is_none() {
        return Err(StoreError::NotFound("team"));
    }
    insert_environment(s, &mut tx, team_id, name, ms(now)).await?;
    tx.commit().await.map_err(db::err)?;
    let mut list = list_environments(s, team_id).await?;
    list.retain(|e| e.name == name);
    list.pop().ok_or(StoreError::NotFound("environment"))
}

/// Inserts an environment row; a duplicate is a `Conflict` naming it.
pub(crate) async fn insert_environment(
    s: &SqlStore,
    conn: &mut Db,
    team_id: i64,
    name: &str,
    now_ms: i64,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO environments (team_id, name, created_at) VALUES ($1, $2, $3)")
        .bind(team_id)
        .bind(s.dialect.text(name).as_ref())
        .bind(now_ms)
        .execute(conn)
        .await
        .map_err(db::unique(|| {
            format!("environment {name:?} already exists")
        }))?;
    Ok(())
}

pub(crate) async fn list_environments(s: &SqlStore, team_id: i64) -> StoreResult<Vec<Environment>> {
    let mut conn = s.read_conn().await?;
    let rows = sqlx::query(&s.sql(
        "SELECT name, created_at FROM environments WHERE team_id = $1 \
         ORDER BY name COLLATE \"C\"",
    ))
    .bind(team_id)
    .fetch_all(&mut conn)
    .await
    .map_err(db::err)?;
    let runners: Vec<(String, String)> = sqlx::query_as(&s.sql(
        "SELECT environment, name FROM runners WHERE status = 'online' \
         ORDER BY name COLLATE \"C\"",
    ))
    .fetch_all(&mut conn)
    .await
    .map_err(db::err)?;
    rows.iter()
        .map(|r| {
            let name: String = get(r, "name")?;
            let runner_names: Vec<String> = runners
                .iter()
                .filter(|(env, _)| *env == name)
                .map(|(_, n)| n.clone())
                .collect();
            Ok(Environment {
                online_runners: runner_names.len() as i64,
                runner_names,
                created_at: db::time(r, "created_at")?,
                name,
            })
        })
        .collect()
}

pub(crate) async fn environment_exists(
    s: &SqlStore,
    team_id: i64,
    name: &str,
) -> StoreResult<bool> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT id FROM environments WHERE team_id = $1 AND name = $2")
            .bind(team_id)
            .bind(name)
            .fetch_optional(&mut s.read_conn().await?)
            .await
            .map_err(db::err)?;
    Ok(found.is_some())
}

pub(crate) async fn delete_environment(s: &SqlStore, team_id: i64, name: &str) -> StoreResult<()> {
    let mut tx = s.write().await?;
    let id: Option<i64> = sqlx::query_scalar(
        &s.sql("SELECT id FROM environments WHERE team_id = $1 AND name = $2 FOR UPDATE"),
    )
    .bind(team_id)
    .bind(name)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db::err)?;
    let id = id.ok_or(StoreError::NotFound("environment"))?;
    if name == DEFAULT_ENVIRONMENT {
        return Err(StoreError::Conflict(
            "the default environment cannot be deleted".into(),
        ));
    }
    let active: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM runs WHERE team_id = $1 AND environment = $2 \
         AND status IN {ACTIVE_RUN}"
    ))
    .bind(team_id)
    .bind(name)
    .fetch_one(&mut *tx)
    .await
    .map_err(db::err)?;
    if active > 0 {
        return Err(StoreError::Conflict(format!(
            "environment {name:?} has {active} active run(s); cancel them or wait until they finish"
        )));
    }
    let schedules: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM schedules WHERE team_id = $1 AND environment = $2",
    )
    .bind(team_id)
    .bind(name)
    .fetch_one(&mut *tx)
    .await
    .map_err(db::err)?;
    if schedules > 0 {
        return Err(StoreError::Conflict(format!(
            "environment {name:?} is used by {schedules} schedule(s); delete them or move them \
             to another environment first"
        )));
    }
    // Runners serve every team; one online in this environment is still
    // working for it (its leases would wait forever for a deleted name).
    let runners: Vec<String> = sqlx::query_scalar(&s.sql(
        "SELECT name FROM runners WHERE environment = $1 AND status = 'online' \
         ORDER BY name COLLATE \"C\" LIMIT 5",
    ))
    .bind(name)
    .fetch_all(&mut *tx)
    .await
    .map_err(db::err)?;
    if !runners.is_empty() {
        return Err(StoreError::Conflict(format!(
            "environment {name:?} has online runners ({}); stop them or register them elsewhere first",
            runners.join(", ")
        )));
    }
    sqlx::query("DELETE FROM secrets WHERE team_id = $1 AND environment = $2")
        .bind(team_id)
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(db::err)?;
    sqlx::query("DELETE FROM environments WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db::err)?;
    tx.commit().await.map_err(db::err)?;
    Ok(())
}

fn secret_info(row: &AnyRow) -> StoreResult<SecretInfo> {
    Ok(SecretInfo {
        name: get(row, "name")?,
        environment: get(row, "environment")?,
        version: get(row, "version")?,
        created_at: db::time(row, "created_at")?,
        updated_at: db::time(row, "updated_at")?,
    })
}

const SECRET_COLUMNS: &str =
    "name, environment, version, created_at, updated_at, sealed_value, key_id";

pub(crate) async fn secret_version(
    s: &SqlStore,
    team_id: i64,
    environment: &str,
    name: &str,
) -> StoreResult<Option<i64>> {
    sqlx::query_scalar(
        "SELECT version FROM secrets WHERE team_id = $1 AND environment = $2 AND name = $3",
    )
    .bind(team_id)
    .bind(environment)
    .bind(name)
    .fetch_optional(&mut s.write_conn().await?)
    .await
    .map_err(db::err)
}

pub(crate) async fn put_secret(s: &SqlStore, n: NewSecret<'_>) -> StoreResult<SecretInfo> {
    let now = ms(n.now);
    let raced = || {
        StoreError::Conflict(format!(
            "secret {:?} changed concurrently; set it again",
            n.name
        ))
    };
    let mut tx = s.write().await?;
    hold_environment(s, &mut tx, n.team_id, n.environment).await?;
    let stored: Option<i64> = sqlx::query_scalar(&s.sql(
        "SELECT version FROM secrets WHERE team_id = $1 AND environment = $2 AND name = $3 \
         FOR UPDATE",
    ))
    .bind(n.team_id)
    .bind(n.environment)
    .bind(n.name)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db::err)?;
    match stored {
        None if n.version == 1 => {
            sqlx::query(
                "INSERT INTO secrets (team_id, environment, name, version, sealed_value, \
                 key_id, created_at, updated_at) VALUES ($1, $2, $3, 1, $4, $5, $6, $6)",
            )
            .bind(n.team_id)
            .bind(n.environment)
            .bind(n.name)
            .bind(n.sealed_value)
            .bind(n.key_id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(d) if d.is_unique_violation() => raced(),
                _ => db::err(e),
            })?;
        }
        Some(v) if n.version == v + 1 => {
            let done = sqlx::query(
                "UPDATE secrets SET version = $1, sealed_value = $2, key_id = $3, \
                 updated_at = $4 \
                 WHERE team_id = $5 AND environment = $6 AND name = $7 AND version = $8",
            )
            .bind(n.version)
            .bind(n.sealed_value)
            .bind(n.key_id)
            .bind(now)
            .bind(n.team_id)
            .bind(n.environment)
            .bind(n.name)
            .bind(v)
            .execute(&mut *tx)
            .await
            .map_err(db::err)?;
            if done.rows_affected() != 1 {
                return Err(raced());
            }
        }
        _ => return Err(raced()),
    }
    let row = sqlx::query(&format!(
        "SELECT {SECRET_COLUMNS} FROM secrets \
         WHERE team_id = $1 AND environment = $2 AND name = $3"
    ))
    .bind(n.team_id)
    .bind(n.environment)
    .bind(n.name)
    .fetch_one(&mut *tx)
    .await
    .map_err(db::err)?;
    tx.commit().await.map_err(db::err)?;
    secret_info(&row)
}

pub(crate) async fn list_secrets(
    s: &SqlStore,
    team_id: i64,
    environment: &str,
) -> StoreResult<Vec<SecretInfo>> {
    if !environment_exists(s, team_id, environment).await? {
        return Err(StoreError::NotFound("environment"));
    }
    let rows = sqlx::query(&s.sql(
        "SELECT name, environment, version, created_at, updated_at FROM secrets \
         WHERE team_id = $1 AND environment = $2 ORDER BY name COLLATE \"C\"",
    ))
    .bind(team_id)
    .bind(environment)
    .fetch_all(&mut s.read_conn().await?)
    .await
    .map_err(db::err)?;
    rows.iter().map(secret_info).collect()
}

pub(crate) async fn delete_secret(
    s: &SqlStore,
    team_id: i64,
    environment: &str,
    name: &str,
) -> StoreResult<()> {
    let done =
        sqlx::query("DELETE FROM secrets WHERE team_id = $1 AND environment = $2 AND name = $3")
            .bind(team_id)
            .bind(environment)
            .bind(name)
            .execute(&mut s.write_conn().await?)
            .await
            .map_err(db::err)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("secret"));
    }
    Ok(())
}

pub(crate) async fn run_secrets(s: &SqlStore, run_id: i64) -> StoreResult<RunSecrets> {
    let mut tx = s.snapshot().await?;
    let row = sqlx::query(
        "SELECT r.team_id, r.environment, v.towerfile FROM runs r \
         JOIN versions v ON v.id = r.version_id WHERE r.id = $1",
    )
    .bind(run_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db::err)?
    .ok_or(StoreError::NotFound("run"))?;
    let team_id: i64 = get(&row, "team_id")?;
    let environment: String = get(&row, "environment")?;
    let secrets = sealed_secrets(s, &mut tx, team_id, &environment).await?;
    tx.commit().await.map_err(db::err)?;
    Ok(RunSecrets {
        team_id,
        environment,
        towerfile: get(&row, "towerfile")?,
        secrets,
    })
}

/// Every secret of a team in one environment, sealed.
pub(crate) async fn sealed_secrets(
    s: &SqlStore,
    conn: &mut crate::Db,
    team_id: i64,
    environment: &str,
) -> StoreResult<Vec<SealedSecret>> {
    let rows = sqlx::query(&s.sql(&format!(
        "SELECT {SECRET_COLUMNS} FROM secrets WHERE team_id = $1 AND environment = $2 \
         ORDER BY name COLLATE \"C\""
    )))
    .bind(team_id)
    .bind(environment)
    .fetch_all(conn)
    .await
    .map_err(db::err)?;
    rows.iter()
        .map(|r| {
            Ok(SealedSecret {
                info: secret_info(r)?,
                sealed_value: get(r, "sealed_value")?,
                key_id: get(r, "key_id")?,
            })
        })
        .collect()
}
