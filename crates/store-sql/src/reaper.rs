//! Lease expiry and runner staleness: the background sweeps. Every replica
//! runs them; the row locks and compare-and-sets make each expiry happen
//! once however many sweep at the same moment.

use crate::attempts::{end_attempt, Ends};
use crate::db::{self, get, ms};
use crate::runs::ACTIVE;
use crate::SqlStore;
use chrono::{DateTime, Utc};
use minitower_core::status;
use minitower_store::{Reaped, StoreError, StoreResult};

pub(crate) async fn reap_expired(
    s: &SqlStore,
    now: DateTime<Utc>,
    limit: i64,
) -> StoreResult<Vec<Reaped>> {
    let now = s.now(&mut s.read_conn().await?, now).await?;
    // Candidates may be stale by the time they are handled; each one is
    // locked, re-checked and compare-and-set in its own transaction below.
    let candidates: Vec<(i64, i64)> = sqlx::query_as(&format!(
        "SELECT id, run_id FROM run_attempts WHERE status IN {ACTIVE} AND lease_expires_at < $1 \
         ORDER BY lease_expires_at, id LIMIT $2"
    ))
    .bind(now)
    .bind(limit.max(0))
    .fetch_all(&mut s.read_conn().await?)
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
    let ends = Ends {
        run_id,
        attempt_id,
        attempt,
        run,
        queued_at: get(&row, "queued_at")?,
        started_at: get(&row, "started_at")?,
        lease_before: now,
        labels: None,
    };
    match end_attempt(tx, &ends, &e, now).await {
        Ok((outcome, labels)) => Ok(Some(Reaped {
            labels,
            attempt_no,
            run_status: e.run,
            finished: outcome.finished,
        })),
        // Another reaper won, or a heartbeat extended the lease meanwhile.
        Err(StoreError::LeaseGone) => Ok(None),
        Err(err) => Err(err),
    }
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
    .execute(&mut s.write_conn().await?)
    .await
    .map_err(db::err)?;
    i64::try_from(done.rows_affected()).map_err(|e| StoreError::Database(e.to_string()))
}
