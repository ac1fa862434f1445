//! Runners: registration, presence, and handing out leases.

use crate::db::{self, get, ms, ts, ts_opt};
use crate::SqliteStore;
use chrono::{DateTime, Utc};
use minitower_core::api::{Lease, RunnerInfo, RunnerStatus};
use minitower_core::status::{self, RunStatus};
use minitower_store::{LeaseParams, Leased, RunLabels, RunnerIdentity, StoreError, StoreResult};
use sqlx::SqliteConnection;

pub(crate) async fn register_runner(
    s: &SqliteStore,
    name: &str,
    environment: &str,
    max_concurrency: i64,
    token_hash: &str,
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    let mut tx = s.write().await?;
    let existing = sqlx::query("SELECT id, active_attempts FROM runners WHERE name = ?")
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db::err)?;
    let taken = || "runner token hash already in use".to_string();
    let id = match existing {
        Some(row) => {
            let id: i64 = get(&row, "id")?;
            let active: i64 = get(&row, "active_attempts")?;
            if active > max_concurrency {
                return Err(StoreError::Conflict(format!(
                    "runner {name:?} still holds {active} active attempts, more than the \
                     requested concurrency {max_concurrency}; retry once they finish or expire"
                )));
            }
            sqlx::query(
                "UPDATE runners SET environment = ?, max_concurrency = ?, token_hash = ?, \
                 status = 'online', last_seen_at = ? WHERE id = ?",
            )
            .bind(environment)
            .bind(max_concurrency)
            .bind(token_hash)
            .bind(ms(now))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db::unique(taken))?;
            id
        }
        None => sqlx::query_scalar(
            "INSERT INTO runners (name, environment, max_concurrency, token_hash, status, \
             last_seen_at, created_at) VALUES (?, ?, ?, ?, 'online', ?, ?) RETURNING id",
        )
        .bind(name)
        .bind(environment)
        .bind(max_concurrency)
        .bind(token_hash)
        .bind(ms(now))
        .bind(ms(now))
        .fetch_one(&mut *tx)
        .await
        .map_err(db::unique(taken))?,
    };
    tx.commit().await.map_err(db::err)?;
    Ok(id)
}

pub(crate) async fn runner_by_token_hash(
    s: &SqliteStore,
    token_hash: &str,
) -> StoreResult<Option<RunnerIdentity>> {
    let row = sqlx::query(
        "SELECT id, name, environment, max_concurrency FROM runners WHERE token_hash = ?",
    )
    .bind(token_hash)
    .fetch_optional(&s.reader)
    .await
    .map_err(db::err)?;
    row.map(|r| {
        Ok(RunnerIdentity {
            runner_id: get(&r, "id")?,
            name: get(&r, "name")?,
            environment: get(&r, "environment")?,
            max_concurrency: get(&r, "max_concurrency")?,
        })
    })
    .transpose()
}

/// Marks a runner online and seen at `now`, inside the caller's transaction.
pub(crate) async fn seen(
    conn: &mut SqliteConnection,
    runner_id: i64,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let done = sqlx::query("UPDATE runners SET last_seen_at = ?, status = 'online' WHERE id = ?")
        .bind(ms(now))
        .bind(runner_id)
        .execute(conn)
        .await
        .map_err(db::err)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("runner"));
    }
    Ok(())
}

pub(crate) async fn runner_seen(
    s: &SqliteStore,
    runner_id: i64,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let mut conn = s.writer.acquire().await.map_err(db::err)?;
    seen(&mut conn, runner_id, now).await
}

/// A runner that stops cleanly says so: offline now, not after three TTLs.
pub(crate) async fn runner_offline(s: &SqliteStore, runner_id: i64) -> StoreResult<()> {
    sqlx::query("UPDATE runners SET status = 'offline' WHERE id = ?")
        .bind(runner_id)
        .execute(&s.writer)
        .await
        .map_err(db::err)?;
    Ok(())
}

pub(crate) async fn lease(
    s: &SqliteStore,
    runner: &RunnerIdentity,
    lease_token: &str,
    lease_token_hash: &str,
    params: LeaseParams,
) -> StoreResult<Option<Leased>> {
    let mut tx = s.write().await?;
    // The stored row, not the caller's copy, is the truth: a re-registration
    // may have changed environment or concurrency since the token was read.
    let row = sqlx::query(
        "SELECT environment, max_concurrency, active_attempts FROM runners WHERE id = ?",
    )
    .bind(runner.runner_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db::err)?
    .ok_or(StoreError::NotFound("runner"))?;
    let environment: String = get(&row, "environment")?;
    let max_concurrency: i64 = get(&row, "max_concurrency")?;
    let active: i64 = get(&row, "active_attempts")?;
    seen(&mut tx, runner.runner_id, params.now).await?;
    if active >= max_concurrency {
        tx.commit().await.map_err(db::err)?;
        return Ok(None);
    }
    let next: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM runs WHERE status = 'queued' AND environment = ? \
         ORDER BY priority DESC, queued_at ASC, id ASC LIMIT 1",
    )
    .bind(&environment)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db::err)?;
    let Some(run_id) = next else {
        tx.commit().await.map_err(db::err)?;
        return Ok(None);
    };
    let t = status::lease(RunStatus::Queued)?;
    let done = sqlx::query("UPDATE runs SET status = ? WHERE id = ? AND status = 'queued'")
        .bind(t.run.as_str())
        .bind(run_id)
        .execute(&mut *tx)
        .await
        .map_err(db::err)?;
    db::cas(done.rows_affected(), "lease run")?;
    let attempt_status = t.attempt.unwrap_or(minitower_core::AttemptStatus::Leased);
    let expires = db::expiry(params.now, params.ttl);
    let attempt_no: i64 = sqlx::query_scalar(
        "INSERT INTO run_attempts (run_id, attempt_no, runner_id, status, lease_token_hash, \
         lease_expires_at, started_at) \
         SELECT ?, COALESCE(MAX(attempt_no), 0) + 1, ?, ?, ?, ?, ? \
         FROM run_attempts WHERE run_id = ? RETURNING attempt_no",
    )
    .bind(run_id)
    .bind(runner.runner_id)
    .bind(attempt_status.as_str())
    .bind(lease_token_hash)
    .bind(expires)
    .bind(ms(params.now))
    .bind(run_id)
    .fetch_one(&mut *tx)
    .await
    .map_err(db::err)?;
    let row = sqlx::query(
        "SELECT r.run_no, r.input, r.queued_at, r.environment, a.slug AS app, t.slug AS team, \
                v.version_no, v.entrypoint, v.timeout_seconds, v.artifact_sha256, v.import_paths, \
                (SELECT MAX(seq) FROM run_logs l WHERE l.run_id = r.id) AS last_log_seq \
         FROM runs r JOIN apps a ON a.id = r.app_id JOIN teams t ON t.id = r.team_id \
              JOIN versions v ON v.id = r.version_id \
         WHERE r.id = ?",
    )
    .bind(run_id)
    .fetch_one(&mut *tx)
    .await
    .map_err(db::err)?;
    tx.commit().await.map_err(db::err)?;

    let import_paths: String = get(&row, "import_paths")?;
    let import_paths = serde_json::from_str(&import_paths)
        .map_err(|e| StoreError::Database(format!("import_paths: {e}")))?;
    let app: String = get(&row, "app")?;
    let team: String = get(&row, "team")?;
    let lease = Lease {
        run_id,
        run_no: get(&row, "run_no")?,
        attempt_no,
        lease_token: lease_token.to_string(),
        lease_expires_at: ts(expires)?,
        app: app.clone(),
        version_no: get(&row, "version_no")?,
        entrypoint: get(&row, "entrypoint")?,
        timeout_seconds: get(&row, "timeout_seconds")?,
        artifact_sha256: get(&row, "artifact_sha256")?,
        input: db::json(&row, "input")?,
        team: team.clone(),
        last_log_seq: get::<Option<i64>>(&row, "last_log_seq")?.unwrap_or(0),
        import_paths,
        ttl_ms: Some(params.ttl.as_millis() as u64),
        fencing_token: Some(attempt_no),
    };
    Ok(Some(Leased {
        lease,
        labels: RunLabels {
            run_id,
            team,
            app,
            environment: get(&row, "environment")?,
        },
        queued_at: ts(get(&row, "queued_at")?)?,
    }))
}

pub(crate) async fn list_runners(s: &SqliteStore) -> StoreResult<Vec<RunnerInfo>> {
    let rows = sqlx::query(
        "SELECT id, name, environment, status, last_seen_at, active_attempts, max_concurrency \
         FROM runners ORDER BY name",
    )
    .fetch_all(&s.reader)
    .await
    .map_err(db::err)?;
    rows.iter()
        .map(|r| {
            let st: String = get(r, "status")?;
            Ok(RunnerInfo {
                id: get(r, "id")?,
                name: get(r, "name")?,
                environment: get(r, "environment")?,
                status: if st == "online" {
                    RunnerStatus::Online
                } else {
                    RunnerStatus::Offline
                },
                last_seen_at: ts_opt(get(r, "last_seen_at")?)?,
                active_runs: get(r, "active_attempts")?,
                max_concurrency: get(r, "max_concurrency")?,
            })
        })
        .collect()
}
