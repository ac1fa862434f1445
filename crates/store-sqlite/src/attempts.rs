//! The lease holder's calls: start, heartbeat, logs, result, artifact.
//!
//! Each one first finds the attempt the (runner, run, lease token) triple
//! names; a token that names nothing, or an attempt that is no longer active,
//! is `LeaseGone` and changes nothing.

use crate::db::{self, get, ms, ts, ts_opt};
use crate::runner::seen;
use crate::SqliteStore;
use chrono::{DateTime, Utc};
use minitower_core::api::{AttemptState, NewLogLine, ResultAck, ResultRequest};
use minitower_core::status::{self, AttemptStatus, RecordedResult, RunStatus};
use minitower_store::{Finished, LeaseParams, ResultOutcome, RunLabels, StoreError, StoreResult};
use sqlx::SqliteConnection;

/// The attempt a lease token names, with the run state transitions need.
struct Held {
    attempt_id: i64,
    attempt_no: i64,
    attempt: AttemptStatus,
    exit_code: Option<i32>,
    error_message: Option<String>,
    run: RunStatus,
    cancel_requested: bool,
    lease_expires_at: i64,
    queued_at: i64,
    started_at: Option<i64>,
}

async fn held(
    conn: &mut SqliteConnection,
    runner_id: i64,
    run_id: i64,
    lease_token_hash: &str,
) -> StoreResult<Held> {
    let row = sqlx::query(
        "SELECT a.id, a.attempt_no, a.status, a.exit_code, a.error_message, a.lease_expires_at, \
                r.status AS run_status, r.cancel_requested, r.queued_at, r.started_at \
         FROM run_attempts a JOIN runs r ON r.id = a.run_id \
         WHERE a.run_id = ? AND a.runner_id = ? AND a.lease_token_hash = ? \
         ORDER BY a.attempt_no DESC LIMIT 1",
    )
    .bind(run_id)
    .bind(runner_id)
    .bind(lease_token_hash)
    .fetch_optional(conn)
    .await
    .map_err(db::err)?
    .ok_or(StoreError::LeaseGone)?;
    Ok(Held {
        attempt_id: get(&row, "id")?,
        attempt_no: get(&row, "attempt_no")?,
        attempt: db::attempt_status(&row, "status")?,
        exit_code: get(&row, "exit_code")?,
        error_message: get(&row, "error_message")?,
        run: db::run_status(&row, "run_status")?,
        cancel_requested: get::<i64>(&row, "cancel_requested")? != 0,
        lease_expires_at: get(&row, "lease_expires_at")?,
        queued_at: get(&row, "queued_at")?,
        started_at: get(&row, "started_at")?,
    })
}

/// A compare-and-set on the attempt that matched nothing means the lease was
/// lost in between.
fn lease_cas(rows: u64) -> StoreResult<()> {
    if rows == 1 {
        Ok(())
    } else {
        Err(StoreError::LeaseGone)
    }
}

pub(crate) async fn start_attempt(
    s: &SqliteStore,
    runner_id: i64,
    run_id: i64,
    lease_token_hash: &str,
    params: LeaseParams,
) -> StoreResult<(AttemptState, Option<RunLabels>)> {
    let mut tx = s.write().await?;
    let h = held(&mut tx, runner_id, run_id, lease_token_hash).await?;
    let t = status::start(h.run, h.attempt)?;
    let attempt = t.attempt.unwrap_or(h.attempt);
    let expires = db::expiry(params.now, params.ttl).max(h.lease_expires_at);
    // Starting is proof of life: it extends the lease like a heartbeat.
    let done = sqlx::query(
        "UPDATE run_attempts SET status = ?, lease_expires_at = ? WHERE id = ? AND status = ?",
    )
    .bind(attempt.as_str())
    .bind(expires)
    .bind(h.attempt_id)
    .bind(h.attempt.as_str())
    .execute(&mut *tx)
    .await
    .map_err(db::err)?;
    lease_cas(done.rows_affected())?;
    let mut labels = None;
    if t.changed {
        let done = sqlx::query(
            "UPDATE runs SET status = ?, started_at = COALESCE(started_at, ?) \
             WHERE id = ? AND status = ?",
        )
        .bind(t.run.as_str())
        .bind(ms(params.now))
        .bind(run_id)
        .bind(h.run.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db::err)?;
        db::cas(done.rows_affected(), "start run")?;
        labels = Some(db::labels(&mut tx, run_id).await?);
    }
    seen(&mut tx, runner_id, params.now).await?;
    tx.commit().await.map_err(db::err)?;
    Ok((
        AttemptState {
            status: attempt,
            run_status: t.run,
            cancel_requested: h.cancel_requested,
            lease_expires_at: ts(expires)?,
            ttl_ms: Some(params.ttl.as_millis() as u64),
        },
        labels,
    ))
}

pub(crate) async fn heartbeat(
    s: &SqliteStore,
    runner_id: i64,
    run_id: i64,
    lease_token_hash: &str,
    params: LeaseParams,
) -> StoreResult<AttemptState> {
    let mut tx = s.write().await?;
    let h = held(&mut tx, runner_id, run_id, lease_token_hash).await?;
    let t = status::heartbeat(h.run, h.attempt)?;
    let expires = db::expiry(params.now, params.ttl).max(h.lease_expires_at);
    let done =
        sqlx::query("UPDATE run_attempts SET lease_expires_at = ? WHERE id = ? AND status = ?")
            .bind(expires)
            .bind(h.attempt_id)
            .bind(h.attempt.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db::err)?;
    lease_cas(done.rows_affected())?;
    seen(&mut tx, runner_id, params.now).await?;
    tx.commit().await.map_err(db::err)?;
    Ok(AttemptState {
        status: t.attempt.unwrap_or(h.attempt),
        run_status: t.run,
        cancel_requested: h.cancel_requested,
        lease_expires_at: ts(expires)?,
        ttl_ms: Some(params.ttl.as_millis() as u64),
    })
}

pub(crate) async fn append_logs(
    s: &SqliteStore,
    runner_id: i64,
    run_id: i64,
    lease_token_hash: &str,
    lines: &[NewLogLine],
    now: DateTime<Utc>,
) -> StoreResult<(i64, bool)> {
    let mut tx = s.write().await?;
    let h = held(&mut tx, runner_id, run_id, lease_token_hash).await?;
    // Logs are accepted exactly while a heartbeat would be.
    status::heartbeat(h.run, h.attempt)?;
    let mut stored = 0;
    for l in lines {
        // A seq already stored (a resent batch) is ignored, not an error.
        let done = sqlx::query(
            "INSERT OR IGNORE INTO run_logs (run_id, seq, attempt_no, stream, line, logged_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(run_id)
        .bind(l.seq)
        .bind(h.attempt_no)
        .bind(&l.stream)
        .bind(&l.line)
        .bind(ms(l.logged_at.unwrap_or(now)))
        .execute(&mut *tx)
        .await
        .map_err(db::err)?;
        stored += done.rows_affected() as i64;
    }
    tx.commit().await.map_err(db::err)?;
    Ok((stored, h.cancel_requested))
}

pub(crate) async fn complete_attempt(
    s: &SqliteStore,
    runner_id: i64,
    run_id: i64,
    lease_token_hash: &str,
    result: &ResultRequest,
    now: DateTime<Utc>,
) -> StoreResult<ResultOutcome> {
    let mut tx = s.write().await?;
    let h = held(&mut tx, runner_id, run_id, lease_token_hash).await?;
    let recorded = (!h.attempt.is_active()).then(|| RecordedResult {
        status: h.attempt,
        exit_code: h.exit_code,
        error_message: h.error_message.clone(),
    });
    let t = status::result(
        h.run,
        h.attempt,
        result.status,
        result.exit_code,
        result.error_message.as_deref(),
        recorded.as_ref(),
    )?;
    let attempt = t.attempt.unwrap_or(h.attempt);
    if !t.changed {
        tx.commit().await.map_err(db::err)?;
        return Ok(ResultOutcome {
            ack: ResultAck {
                status: attempt,
                run_status: t.run,
            },
            finished: None,
        });
    }
    let done = sqlx::query(
        "UPDATE run_attempts SET status = ?, exit_code = ?, error_message = ?, finished_at = ? \
         WHERE id = ? AND status = ?",
    )
    .bind(attempt.as_str())
    .bind(result.exit_code)
    .bind(&result.error_message)
    .bind(ms(now))
    .bind(h.attempt_id)
    .bind(h.attempt.as_str())
    .execute(&mut *tx)
    .await
    .map_err(db::err)?;
    lease_cas(done.rows_affected())?;
    let done = sqlx::query(
        "UPDATE runs SET status = ?, exit_code = ?, error_message = ?, finished_at = ? \
         WHERE id = ? AND status = ?",
    )
    .bind(t.run.as_str())
    .bind(result.exit_code)
    .bind(&result.error_message)
    .bind(ms(now))
    .bind(run_id)
    .bind(h.run.as_str())
    .execute(&mut *tx)
    .await
    .map_err(db::err)?;
    db::cas(done.rows_affected(), "finish run")?;
    let labels = db::labels(&mut tx, run_id).await?;
    tx.commit().await.map_err(db::err)?;
    Ok(ResultOutcome {
        ack: ResultAck {
            status: attempt,
            run_status: t.run,
        },
        finished: Some(Finished {
            labels,
            status: t.run,
            queued_at: ts(h.queued_at)?,
            started_at: ts_opt(h.started_at)?,
            finished_at: ts(ms(now))?,
        }),
    })
}

/// The runner hands its attempt back (see `status::release`): no retry is
/// spent; the run is queued again keeping its place in line.
pub(crate) async fn release_attempt(
    s: &SqliteStore,
    runner_id: i64,
    run_id: i64,
    lease_token_hash: &str,
    now: DateTime<Utc>,
) -> StoreResult<ResultOutcome> {
    let mut tx = s.write().await?;
    let h = held(&mut tx, runner_id, run_id, lease_token_hash).await?;
    let t = status::release(h.run, h.attempt, h.cancel_requested)?;
    let attempt = t.attempt.unwrap_or(AttemptStatus::Expired);
    let done = sqlx::query(
        "UPDATE run_attempts SET status = ?, finished_at = ?, \
         error_message = 'released by the runner (shutting down)' WHERE id = ? AND status = ?",
    )
    .bind(attempt.as_str())
    .bind(ms(now))
    .bind(h.attempt_id)
    .bind(h.attempt.as_str())
    .execute(&mut *tx)
    .await
    .map_err(db::err)?;
    lease_cas(done.rows_affected())?;
    let done = if t.run == RunStatus::Queued {
        sqlx::query("UPDATE runs SET status = 'queued' WHERE id = ? AND status = ?")
            .bind(run_id)
            .bind(h.run.as_str())
            .execute(&mut *tx)
            .await
    } else {
        sqlx::query(
            "UPDATE runs SET status = ?, finished_at = ?, \
             error_message = 'cancelled; the runner shut down' WHERE id = ? AND status = ?",
        )
        .bind(t.run.as_str())
        .bind(ms(now))
        .bind(run_id)
        .bind(h.run.as_str())
        .execute(&mut *tx)
        .await
    }
    .map_err(db::err)?;
    db::cas(done.rows_affected(), "release run")?;
    let labels = db::labels(&mut tx, run_id).await?;
    tx.commit().await.map_err(db::err)?;
    let finished = if t.run.is_terminal() {
        Some(Finished {
            labels,
            status: t.run,
            queued_at: ts(h.queued_at)?,
            started_at: ts_opt(h.started_at)?,
            finished_at: ts(ms(now))?,
        })
    } else {
        None
    };
    Ok(ResultOutcome {
        ack: ResultAck {
            status: attempt,
            run_status: t.run,
        },
        finished,
    })
}

pub(crate) async fn leased_artifact(
    s: &SqliteStore,
    runner_id: i64,
    run_id: i64,
    lease_token_hash: &str,
) -> StoreResult<String> {
    let mut tx = s.reader.begin().await.map_err(db::err)?;
    let h = held(&mut tx, runner_id, run_id, lease_token_hash).await?;
    status::heartbeat(h.run, h.attempt)?;
    let sha: String = sqlx::query_scalar(
        "SELECT v.artifact_sha256 FROM runs r JOIN versions v ON v.id = r.version_id \
         WHERE r.id = ?",
    )
    .bind(run_id)
    .fetch_one(&mut *tx)
    .await
    .map_err(db::err)?;
    tx.commit().await.map_err(db::err)?;
    Ok(sha)
}
