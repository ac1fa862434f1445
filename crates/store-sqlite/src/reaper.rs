//! Lease expiry and runner staleness: the background sweeps.

use crate::db::{self, get, ms, ts, ts_opt};
use crate::runs::ACTIVE;
use crate::SqliteStore;
use chrono::{DateTime, Utc};
use minitower_core::status::{self, RunStatus};
use minitower_store::{Finished, Reaped, StoreError, StoreResult};

pub(crate) async fn reap_expired(
    s: &SqliteStore,
    now: DateTime<Utc>,
    limit: i64,
) -> StoreResult<Vec<Reaped>> {
    // Candidates come from a possibly stale snapshot; each one is re-checked
    // and compare-and-set in its own write transaction below.
    let candidates: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT id FROM run_attempts WHERE status IN {ACTIVE} AND lease_expires_at < ? \
         ORDER BY lease_expires_at, id LIMIT ?"
    ))
    .bind(ms(now))
    .bind(limit.max(0))
    .fetch_all(&s.reader)
    .await
    .map_err(db::err)?;
    let mut reaped = Vec::with_capacity(candidates.len());
    for attempt_id in candidates {
        if let Some(r) = reap_one(s, attempt_id, now).await? {
            reaped.push(r);
        }
    }
    Ok(reaped)
}

/// Expires one attempt unless someone else (another reaper, a heartbeat,
/// a result) got to it first; `None` then.
async fn reap_one(
    s: &SqliteStore,
    attempt_id: i64,
    now: DateTime<Utc>,
) -> StoreResult<Option<Reaped>> {
    let mut tx = s.write().await?;
    let row = sqlx::query(
        "SELECT a.status, a.attempt_no, a.lease_expires_at, a.run_id, \
                r.status AS run_status, r.cancel_requested, r.retry_count, r.max_retries, \
                r.queued_at, r.started_at \
         FROM run_attempts a JOIN runs r ON r.id = a.run_id WHERE a.id = ?",
    )
    .bind(attempt_id)
    .fetch_one(&mut *tx)
    .await
    .map_err(db::err)?;
    let attempt = db::attempt_status(&row, "status")?;
    let attempt_no: i64 = get(&row, "attempt_no")?;
    let run_id: i64 = get(&row, "run_id")?;
    let run = db::run_status(&row, "run_status")?;
    let expires: i64 = get(&row, "lease_expires_at")?;
    if expires >= ms(now) {
        return Ok(None); // a heartbeat extended it meanwhile
    }
    let e = match status::expire(
        run,
        attempt,
        get::<i64>(&row, "cancel_requested")? != 0,
        get(&row, "retry_count")?,
        get(&row, "max_retries")?,
        attempt_no,
    ) {
        Ok(e) => e,
        Err(_) => return Ok(None), // finished meanwhile
    };
    let t = e.transition;
    let new_attempt = t.attempt.unwrap_or(minitower_core::AttemptStatus::Expired);
    let done = sqlx::query(
        "UPDATE run_attempts SET status = ?, finished_at = ?, error_message = 'lease expired' \
         WHERE id = ? AND status = ? AND lease_expires_at < ?",
    )
    .bind(new_attempt.as_str())
    .bind(ms(now))
    .bind(attempt_id)
    .bind(attempt.as_str())
    .bind(ms(now))
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
                "UPDATE runs SET status = 'queued', retry_count = retry_count + ? \
                 WHERE id = ? AND status = ?",
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
                "UPDATE runs SET status = ?, finished_at = ?, error_message = ? \
                 WHERE id = ? AND status = ?",
            )
            .bind(next.as_str())
            .bind(ms(now))
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
            queued_at: ts(get(&row, "queued_at")?)?,
            started_at: ts_opt(get(&row, "started_at")?)?,
            finished_at: ts(ms(now))?,
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
    s: &SqliteStore,
    threshold: DateTime<Utc>,
) -> StoreResult<i64> {
    let done = sqlx::query(
        "UPDATE runners SET status = 'offline' \
         WHERE status = 'online' AND (last_seen_at IS NULL OR last_seen_at < ?)",
    )
    .bind(ms(threshold))
    .execute(&s.writer)
    .await
    .map_err(db::err)?;
    i64::try_from(done.rows_affected()).map_err(|e| StoreError::Database(e.to_string()))
}
