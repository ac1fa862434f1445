//! Runners: registration, presence, and handing out leases.

use crate::db::{self, get, ms};
use crate::Db;
use crate::SqlStore;
use chrono::{DateTime, Utc};
use minitower_core::api::{AttemptState, Lease, RunEvent, RunnerInfo, RunnerStatus};
use minitower_core::job::{JobOverrides, JobSpec};
use minitower_core::status::{self, AttemptStatus, RunStatus};
use minitower_store::{
    LeaseParams, Leased, QueueState, RunLabels, RunSecrets, RunnerIdentity, SealedSecret,
    StoreError, StoreResult,
};
use sqlx::any::AnyRow;

pub(crate) async fn register_runner(
    s: &SqlStore,
    name: &str,
    environment: &str,
    max_concurrency: i64,
    token_hash: &str,
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    let now = ms(now);
    let taken = || "runner token hash already in use".to_string();
    let mut tx = s.write().await?;
    // Insert-or-lock: two replicas registering one new name at once end up
    // with one row, the loser updating it like a re-registration.
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO runners (name, environment, max_concurrency, token_hash, status, \
         last_seen_at, created_at) VALUES ($1, $2, $3, $4, 'online', $5, $5) \
         ON CONFLICT (name) DO NOTHING RETURNING id",
    )
    .bind(name)
    .bind(environment)
    .bind(max_concurrency)
    .bind(token_hash)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db::unique(taken))?;
    let id = match inserted {
        Some(id) => id,
        None => {
            let row = sqlx::query(
                &s.sql("SELECT id, active_attempts FROM runners WHERE name = $1 FOR UPDATE"),
            )
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(db::err)?;
            let id: i64 = get(&row, "id")?;
            let active: i64 = get(&row, "active_attempts")?;
            if active > max_concurrency {
                return Err(StoreError::Conflict(format!(
                    "runner {name:?} still holds {active} active attempts, more than the \
                     requested concurrency {max_concurrency}; retry once they finish or expire"
                )));
            }
            sqlx::query(
                "UPDATE runners SET environment = $1, max_concurrency = $2, token_hash = $3, \
                 status = 'online', last_seen_at = $4 WHERE id = $5",
            )
            .bind(environment)
            .bind(max_concurrency)
            .bind(token_hash)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db::unique(taken))?;
            id
        }
    };
    tx.commit().await.map_err(db::err)?;
    Ok(id)
}

pub(crate) async fn runner_by_token_hash(
    s: &SqlStore,
    token_hash: &str,
) -> StoreResult<Option<RunnerIdentity>> {
    let row = sqlx::query(
        "SELECT id, name, environment, max_concurrency FROM runners WHERE token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(&mut s.read_conn().await?)
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
pub(crate) async fn seen(conn: &mut Db, runner_id: i64, now_ms: i64) -> StoreResult<()> {
    let done = sqlx::query("UPDATE runners SET last_seen_at = $1, status = 'online' WHERE id = $2")
        .bind(now_ms)
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
    s: &SqlStore,
    runner_id: i64,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let mut conn = s.write_conn().await?;
    seen(&mut conn, runner_id, ms(now)).await
}

/// A runner that stops cleanly says so: offline now, not after three TTLs.
pub(crate) async fn runner_offline(s: &SqlStore, runner_id: i64) -> StoreResult<()> {
    sqlx::query("UPDATE runners SET status = 'offline' WHERE id = $1")
        .bind(runner_id)
        .execute(&mut s.write_conn().await?)
        .await
        .map_err(db::err)?;
    Ok(())
}

pub(crate) async fn lease(
    s: &SqlStore,
    runner: &RunnerIdentity,
    lease_token: &str,
    lease_token_hash: &str,
    params: LeaseParams,
) -> StoreResult<Option<Leased>> {
    let mut tx = s.write().await?;
    let done = lease_in(s, &mut tx, runner.runner_id, lease_token_hash, &params).await;
    match crate::attempts::settle(tx, done).await? {
        Some(p) => Ok(Some(p.into_leased(lease_token, &params)?)),
        None => Ok(None),
    }
}

/// A run `lease_in` leased: what its transaction read, turned into a
/// [`Leased`] once committed (the parsing waits until the writer is free).
pub(crate) struct Picked {
    row: AnyRow,
    run_id: i64,
    attempt_no: i64,
    expires: i64,
    run_status: RunStatus,
    attempt_status: AttemptStatus,
    team_id: i64,
    run_env: String,
    sealed: Vec<SealedSecret>,
}

/// `lease`'s statements, inside the caller's transaction (a lease of its
/// own, or the one a result takes for the runner's next run): the runner's
/// next run, or `None` when it is at its concurrency or nothing is
/// leasable now.
pub(crate) async fn lease_in(
    s: &SqlStore,
    tx: &mut crate::Tx,
    runner_id: i64,
    lease_token_hash: &str,
    params: &LeaseParams,
) -> StoreResult<Option<Picked>> {
    // The runner row lock makes this runner's leases (on any replica) take
    // turns, so the count read here is the count the insert below changes.
    // The stored row, not the caller's copy, is the truth: a re-registration
    // may have changed environment or concurrency since the token was read.
    // Marking it seen takes that lock (an UPDATE locks its row as FOR
    // UPDATE would) and reads the row in the same statement.
    // The time of the lease is the one this statement writes (the
    // database's when the store uses its clock): no round trip of its own.
    let row = sqlx::query(&format!(
        "UPDATE runners SET last_seen_at = {}, status = 'online' WHERE id = $2 \
         RETURNING last_seen_at, environment, max_concurrency, active_attempts",
        s.now_sql("$1")
    ))
    .bind(db::ms(params.now))
    .bind(runner_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db::err)?
    .ok_or(StoreError::NotFound("runner"))?;
    let now: i64 = get(&row, "last_seen_at")?;
    let environment: String = get(&row, "environment")?;
    let max_concurrency: i64 = get(&row, "max_concurrency")?;
    let active: i64 = get(&row, "active_attempts")?;
    if active >= max_concurrency {
        return Ok(None);
    }
    // SKIP LOCKED: a run another replica is leasing right now is passed
    // over instead of waited for, so no run is handed out twice and leases
    // never queue behind each other.
    let next: Option<i64> = sqlx::query_scalar(&s.sql(
        "SELECT id FROM runs WHERE status = 'queued' AND environment = $1 \
         AND (not_before IS NULL OR not_before <= $2) \
         ORDER BY priority DESC, queued_at ASC, id ASC LIMIT 1 FOR UPDATE SKIP LOCKED",
    ))
    .bind(&environment)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db::err)?;
    let Some(run_id) = next else {
        return Ok(None);
    };
    let t = status::lease(RunStatus::Queued)?;
    let leased_attempt = t.attempt.unwrap_or(AttemptStatus::Leased);
    // The fast path starts it too: the plan `start` makes of a leased
    // attempt, applied in this transaction.
    let (run_status, attempt_status) = if params.start {
        let s = status::start(t.run, leased_attempt)?;
        (s.run, s.attempt.unwrap_or(leased_attempt))
    } else {
        (t.run, leased_attempt)
    };
    let done = sqlx::query(
        "UPDATE runs SET status = $1, \
         started_at = CASE WHEN $2 THEN COALESCE(started_at, $3) ELSE started_at END \
         WHERE id = $4 AND status = 'queued'",
    )
    .bind(run_status.as_str())
    .bind(params.start)
    .bind(now)
    .bind(run_id)
    .execute(&mut **tx)
    .await
    .map_err(db::err)?;
    db::cas(done.rows_affected(), "lease run")?;
    let events: &[RunEvent] = if params.start {
        &[RunEvent::Leased, RunEvent::Started]
    } else {
        &[RunEvent::Leased]
    };
    crate::webhooks::run_events(tx, run_id, events, now).await?;
    let expires = db::expiry(now, params.ttl);
    let attempt_no: i64 = sqlx::query_scalar(
        "INSERT INTO run_attempts (run_id, attempt_no, runner_id, status, lease_token_hash, \
         lease_expires_at, started_at) \
         SELECT $1, COALESCE(MAX(attempt_no), 0) + 1, $2, $3, $4, $5, $6 \
         FROM run_attempts WHERE run_id = $1 RETURNING attempt_no",
    )
    .bind(run_id)
    .bind(runner_id)
    .bind(attempt_status.as_str())
    .bind(lease_token_hash)
    .bind(expires)
    .bind(now)
    .fetch_one(&mut **tx)
    .await
    .map_err(db::err)?;
    let row = sqlx::query(
        "SELECT r.run_no, r.input AS input, r.queued_at, r.environment, a.slug AS app, \
                t.slug AS team, v.version_no, v.entrypoint, \
                COALESCE(r.timeout_seconds, v.timeout_seconds) AS timeout_seconds, \
                v.artifact_sha256, v.import_paths AS import_paths, v.job AS job, \
                r.job_overrides AS job_overrides, r.team_id, v.towerfile, \
                (SELECT MAX(seq) FROM run_logs l WHERE l.run_id = r.id) AS last_log_seq \
         FROM runs r JOIN apps a ON a.id = r.app_id JOIN teams t ON t.id = r.team_id \
              JOIN versions v ON v.id = r.version_id \
         WHERE r.id = $1",
    )
    .bind(run_id)
    .fetch_one(&mut **tx)
    .await
    .map_err(db::err)?;
    let team_id: i64 = get(&row, "team_id")?;
    let run_env: String = get(&row, "environment")?;
    let sealed = crate::environments::sealed_secrets(s, tx, team_id, &run_env).await?;
    Ok(Some(Picked {
        row,
        run_id,
        attempt_no,
        expires,
        run_status,
        attempt_status,
        team_id,
        run_env,
        sealed,
    }))
}

impl Picked {
    /// The lease the runner gets, holding `lease_token`.
    pub(crate) fn into_leased(
        self,
        lease_token: &str,
        params: &LeaseParams,
    ) -> StoreResult<Leased> {
        let (row, run_id, attempt_no, expires) =
            (&self.row, self.run_id, self.attempt_no, self.expires);
        let (run_status, attempt_status) = (self.run_status, self.attempt_status);
        let import_paths = serde_json::from_value(db::json(row, "import_paths")?)
            .map_err(|e| StoreError::Database(format!("import_paths: {e}")))?;
        let app: String = get(row, "app")?;
        let team: String = get(row, "team")?;
        let entrypoint: String = get(row, "entrypoint")?;
        let job = lease_job(row, &entrypoint)?;
        let lease = Lease {
            job,
            run_id,
            run_no: get(row, "run_no")?,
            attempt_no,
            lease_token: lease_token.to_string(),
            lease_expires_at: db::ts(expires)?,
            app: app.clone(),
            version_no: get(row, "version_no")?,
            entrypoint,
            timeout_seconds: get(row, "timeout_seconds")?,
            artifact_sha256: get(row, "artifact_sha256")?,
            input: db::json(row, "input")?,
            team: team.clone(),
            last_log_seq: get::<Option<i64>>(row, "last_log_seq")?.unwrap_or(0),
            import_paths,
            ttl_ms: Some(params.ttl.as_millis() as u64),
            fencing_token: Some(attempt_no),
            // Filled by the server, which holds the key (see routes/runner.rs).
            secrets: Default::default(),
            // What `start` would have answered (a queued run has no cancel
            // pending: cancelling one ends it at once).
            started: params.start.then_some(AttemptState {
                status: attempt_status,
                run_status,
                cancel_requested: false,
                lease_expires_at: db::ts(expires)?,
                ttl_ms: Some(params.ttl.as_millis() as u64),
            }),
        };
        Ok(Leased {
            lease,
            labels: RunLabels {
                run_id,
                team,
                app,
                environment: get(row, "environment")?,
            },
            queued_at: db::time(row, "queued_at")?,
            secrets: RunSecrets {
                team_id: self.team_id,
                towerfile: get(row, "towerfile")?,
                environment: self.run_env,
                secrets: self.sealed,
            },
        })
    }
}

/// The job of a lease: the version's with the run's overrides, or `None`
/// for a plain archive script (which `entrypoint` describes to any runner).
fn lease_job(row: &AnyRow, entrypoint: &str) -> StoreResult<Option<JobSpec>> {
    let base = crate::apps::job_of(row, "job", entrypoint)?;
    let spec = match get::<Option<String>>(row, "job_overrides")? {
        None => base,
        Some(t) => {
            let o: JobOverrides = serde_json::from_str(&t)
                .map_err(|e| StoreError::Database(format!("job_overrides: {e}")))?;
            // Checked when the run was created against this same version.
            base.with_overrides(&o)
                .map_err(|e| StoreError::Database(format!("job_overrides: {e}")))?
        }
    };
    Ok((!spec.is_plain_script()).then_some(spec))
}

pub(crate) async fn list_runners(s: &SqlStore) -> StoreResult<Vec<RunnerInfo>> {
    let rows = sqlx::query(&s.sql(
        "SELECT id, name, environment, status, last_seen_at, active_attempts, max_concurrency \
         FROM runners ORDER BY name COLLATE \"C\"",
    ))
    .fetch_all(&mut s.read_conn().await?)
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
                last_seen_at: db::time_opt(r, "last_seen_at")?,
                active_runs: get(r, "active_attempts")?,
                max_concurrency: get(r, "max_concurrency")?,
            })
        })
        .collect()
}

/// See `Store::queue_state`: two seeks, on the `runs_queue` and
/// `runs_retry_due` indexes, in one statement on the read pool.
pub(crate) async fn queue_state(
    s: &SqlStore,
    environment: &str,
    now: DateTime<Utc>,
) -> StoreResult<QueueState> {
    let row = sqlx::query(
        "SELECT EXISTS (SELECT 1 FROM runs WHERE status = 'queued' AND environment = $1 \
                AND (not_before IS NULL OR not_before <= $2)) AS leasable, \
                (SELECT MIN(not_before) FROM runs WHERE status = 'queued' AND environment = $1 \
                AND not_before IS NOT NULL AND not_before > $2) AS next_retry_at",
    )
    .bind(environment)
    .bind(ms(now))
    .fetch_one(&mut s.read_conn().await?)
    .await
    .map_err(db::err)?;
    Ok(QueueState {
        leasable_now: db::flag(&row, "leasable")?,
        next_retry_at: db::time_opt(&row, "next_retry_at")?,
    })
}
