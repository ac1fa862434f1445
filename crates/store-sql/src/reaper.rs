//! Lease expiry and runner staleness: the background sweeps. Every replica
//! runs them; the row locks and compare-and-sets make each expiry happen
//! once however many sweep at the same moment.

use crate::db::{self, get, ms};
use crate::runs::ACTIVE;
use crate::SqlStore;
use chrono::{DateTime, Utc};
use minitower_core::status::{self, AttemptStatus, RunStatus};
use minitower_store::{Finished, Reaped, StoreError, StoreResult};

pub(crate) async fn reap_expired(
    s: &SqlStore,
    now: DateTime<Utc>,
    limit: i64,
) -> StoreResult<Vec<Reaped>> {
    let now = s.now(&s.reader, now).await?;
    // Candidates may be stale by the time they are handled; each one is
    // locked, re-checked and compare-and-set in its own transaction below.
    let candidates: Vec<(i64, i64)> = sqlx::query_as(&format!(
        "SELECT id, run_id FROM run_attempts WHERE status IN {ACTIVE} AND lease_expires_at < $1 \
         ORDER BY lease_expires_at, id LIMIT $2"
    ))
    .bind(now)
    .bind(limit.max(0))
    .fetch_all(&s.reader)
    .await
    .map_err(db::err)?;
    let mut reaped = Vec::with_capacity(candidates.len());
    for (attempt_id, run_id) in candidates {
        if let Some(r) = reap_one(s, attempt_id, run_id, now).await? {
            reaped.push(r);
        }
    }
    Ok(reaped)
}

/// Expires one attempt unless someone else (another reaper, a heartbeat,
/// a result) got to it first; `None` then.
async fn reap_one(
    s: &SqlStore,
    attempt_id: i64,
    run_id: i64,
    now: i64,
) -> StoreResult<Option<Reaped>> {
    let mut tx = s.write().await?;
    // Run first, like every other transition on a run.
    if s.dialect.row_locks && db::lock_run(s, &mut tx, run_id, None).await?.is_none() {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT a.status, a.attempt_no, a.lease_expires_at, \
                r.status AS run_status, r.cancel_requested, r.retry_count, r.max_retries, \
                r.queued_at, r.started_at \
         FROM run_attempts a JOIN runs r ON r.id = a.run_id WHERE a.id = $1",
    )
    .bind(attempt_id)
    .fetch_one(&mut *tx)
    .await
    .map_err(db::err)?;
    let attempt = db::attempt_status(&row, "status")?;
    let attempt_no: i64 = get(&row, "attempt_no")?;
    let run = db::run_status(&row, "run_status")?;
    let expires: i64 = get(&row, "lease_expires_at")?;
    if expires >= now {
        return Ok(None); // a heartbeat extended it meanwhile
    }
    let e = match status::expire(
        run,
        attempt,
        db::flag(&row, "cancel_requested")?,
        get(&row, "retry_count")?,
        get(&row, "max_retries")?,
        attempt_no,
    ) {
        Ok(e) => e,
        Err(_) => return Ok(None), // finished meanwhile
    };
    let t = e.transition;
    let new_attempt = t.attempt.unwrap_or(AttemptStatus::Expired);
    let done = sqlx::query(
        "UPDATE run_attempts SET status = $1, finished_at = $2, error_message = 'lease expired' \
         WHERE id = $3 AND status = $4 AND lease_expires_at < $2",
    )
    .bind(new_attempt.as_str())
    .bind(now)
    .bind(attempt_id)
    .bind(attempt.as_str())
    .execute(&mut *tx)
    .await
    .map_err(db::err)?;
    if done.rows_affected() == 0 {
        return Ok(None); // another reaper won
    }
    let done = match t.run {
        RunStatus::Queued => {
            // The run keeps its original queued_at, hence its place in line.
            sqlx::query(
                "UPDATE runs SET status = 'queued', retry_count = retry_count + $1 \
                 WHERE id = $2 AND status = $3",
            )
            .bind(i64::from(e.spends_retry))
            .bind(run_id)
            .bind(run.as_str())
            .execute(&mut *tx)
            .await
        }
        next => {
            let message = if next == RunStatus::Dead {
                format!("lease expired; gave up after {attempt_no} attempt(s)")
            } else {
                "cancelled; the runner stopped answering".to_string()
            };
            sqlx::query(
                "UPDATE runs SET status = $1, finished_at = $2, error_message = $3 \
                 WHERE id = $4 AND status = $5",
            )
            .bind(next.as_str())
            .bind(now)
            .bind(message)
            .bind(run_id)
            .bind(run.as_str())
            .execute(&mut *tx)
            .await
        }
    }
    .map_err(db::err)?;
    db::cas(done.rows_affected(), "expire run")?;
    let labels = db::labels(&mut tx, run_id).await?;
    tx.commit().await.map_err(db::err)?;
    let finished = if t.run.is_terminal() {
        Some(Finished {
            labels: labels.clone(),
            status: t.run,
            queued_at: db::time(&row, "queued_at")?,
            started_at: db::time_opt(&row, "started_at")?,
            finished_at: db::ts(now)?,
        })
    } else {
        None
    };
    Ok(Some(Reaped {
        labels,
        attempt_no,
        run_status: t.run,
        finished,
    }))
}

pub(crate) async fn mark_stale_runners_offline(
    s: &SqlStore,
    threshold: DateTime<Utc>,
) -> StoreResult<i64> {
    // SKIP LOCKED: a runner whose row is locked is being seen right now (a
    // lease or heartbeat), and two replicas sweeping never wait on, or
    // deadlock over, each other's rows.
    let done = sqlx::query(&s.sql(
        "UPDATE runners SET status = 'offline' WHERE id IN ( \
             SELECT id FROM runners \
             WHERE status = 'online' AND (last_seen_at IS NULL OR last_seen_at < $1) \
             ORDER BY id FOR UPDATE SKIP LOCKED)",
    ))
    .bind(ms(threshold))
    .execute(&s.writer)
    .await
    .map_err(db::err)?;
    i64::try_from(done.rows_affected()).map_err(|e| StoreError::Database(e.to_string()))
}
