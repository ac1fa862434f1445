//! The lease holder's calls: start, heartbeat, logs, result, artifact.
//!
//! Each one locks the run row, then finds the attempt the (runner, run,
//! lease token) triple names; a token that names nothing, or an attempt that
//! is no longer active, is `LeaseGone` and changes nothing.

use crate::db::{self, get, ms};
use crate::runner::seen;
use crate::Db;
use crate::SqlStore;
use chrono::{DateTime, Utc};
use minitower_core::api::{AttemptState, NewLogLine, ResultAck, ResultRequest, RunEvent};
use minitower_core::status::{self, AttemptStatus, Ending, RecordedResult, RunStatus};
use minitower_store::{
    AttemptEnd, AttemptFinish, Finished, LeaseParams, NextLease, ResultOutcome, Retrying,
    RunLabels, StoreError, StoreResult,
};

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
    failure_retries: i64,
    failure_retry_count: i64,
    retry_delay_ms: i64,
    /// Read with the attempt, so ending it needs no second read.
    labels: RunLabels,
}

/// Locks the run (when `lock`) and reads the attempt the token names. The
/// lock comes first so a racing cancel, result or reaper on the same run
/// is either wholly before or wholly after this call.
async fn held(
    s: &SqlStore,
    conn: &mut Db,
    runner_id: i64,
    run_id: i64,
    lease_token_hash: &str,
    lock: bool,
) -> StoreResult<Held> {
    // Under SQLite's single writer the transaction already excludes every
    // other writer: the lock (one more statement) buys nothing there.
    if lock && s.dialect.row_locks && db::lock_run(s, &mut *conn, run_id, None).await?.is_none() {
        return Err(StoreError::LeaseGone);
    }
    let row = sqlx::query(
        "SELECT a.id, a.attempt_no, a.status, a.exit_code, a.error_message, a.lease_expires_at, \
                r.status AS run_status, r.cancel_requested, r.queued_at, r.started_at, \
                r.failure_retries, r.failure_retry_count, r.retry_delay_ms, \
                r.environment, ap.slug AS app, t.slug AS team \
         FROM run_attempts a JOIN runs r ON r.id = a.run_id \
              JOIN apps ap ON ap.id = r.app_id JOIN teams t ON t.id = r.team_id \
         WHERE a.run_id = $1 AND a.runner_id = $2 AND a.lease_token_hash = $3 \
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
        cancel_requested: db::flag(&row, "cancel_requested")?,
        lease_expires_at: get(&row, "lease_expires_at")?,
        queued_at: get(&row, "queued_at")?,
        started_at: get(&row, "started_at")?,
        failure_retries: get(&row, "failure_retries")?,
        failure_retry_count: get(&row, "failure_retry_count")?,
        retry_delay_ms: get(&row, "retry_delay_ms")?,
        labels: RunLabels {
            run_id,
            team: get(&row, "team")?,
            app: get(&row, "app")?,
            environment: get(&row, "environment")?,
        },
    })
}

/// Log lines per `INSERT`: 6 parameters each, far below SQLite's 32,766
/// and PostgreSQL's 65,535.
const LOG_ROWS_PER_STATEMENT: usize = 500;

/// `?` for a result inside a transaction that holds the run's row lock: on
/// an error the transaction is rolled back *now*. A transaction that is
/// merely dropped is rolled back only when sqlx next pings its connection,
/// in a task of its own, and until then the run row stays locked: a lease
/// right after a refused call (a 410) would skip the run.
macro_rules! tx_try {
    ($tx:ident, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => {
                let _ = $tx.rollback().await;
                return Err(e.into());
            }
        }
    };
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
    s: &SqlStore,
    runner_id: i64,
    run_id: i64,
    lease_token_hash: &str,
    params: LeaseParams,
) -> StoreResult<(AttemptState, Option<RunLabels>)> {
    let mut tx = s.write().await?;
    let now = s.now(&mut *tx, params.now).await?;
    let h = tx_try!(
        tx,
        held(s, &mut tx, runner_id, run_id, lease_token_hash, true).await
    );
    let t = tx_try!(tx, status::start(h.run, h.attempt));
    let attempt = t.attempt.unwrap_or(h.attempt);
    let expires = db::expiry(now, params.ttl).max(h.lease_expires_at);
    // Starting is proof of life: it extends the lease like a heartbeat.
    let done = sqlx::query(
        "UPDATE run_attempts SET status = $1, lease_expires_at = $2 WHERE id = $3 AND status = $4",
    )
    .bind(attempt.as_str())
    .bind(expires)
    .bind(h.attempt_id)
    .bind(h.attempt.as_str())
    .execute(&mut *tx)
    .await
    .map_err(db::err)?;
    tx_try!(tx, lease_cas(done.rows_affected()));
    let mut labels = None;
    if t.changed {
        let done = sqlx::query(
            "UPDATE runs SET status = $1, started_at = COALESCE(started_at, $2) \
             WHERE id = $3 AND status = $4",
        )
        .bind(t.run.as_str())
        .bind(now)
        .bind(run_id)
        .bind(h.run.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db::err)?;
        db::cas(done.rows_affected(), "start run")?;
        crate::webhooks::run_event(&mut tx, run_id, RunEvent::Started, now).await?;
        labels = Some(db::labels(&mut tx, run_id).await?);
    }
    seen(&mut tx, runner_id, now).await?;
    tx.commit().await.map_err(db::err)?;
    Ok((
        AttemptState {
            status: attempt,
            run_status: t.run,
            cancel_requested: h.cancel_requested,
            lease_expires_at: db::ts(expires)?,
            ttl_ms: Some(params.ttl.as_millis() as u64),
        },
        labels,
    ))
}

pub(crate) async fn heartbeat(
    s: &SqlStore,
    runner_id: i64,
    run_id: i64,
    lease_token_hash: &str,
    params: LeaseParams,
) -> StoreResult<AttemptState> {
    let mut tx = s.write().await?;
    let now = s.now(&mut *tx, params.now).await?;
    let h = tx_try!(
        tx,
        held(s, &mut tx, runner_id, run_id, lease_token_hash, true).await
    );
    let t = tx_try!(tx, status::heartbeat(h.run, h.attempt));
    let expires = db::expiry(now, params.ttl).max(h.lease_expires_at);
    let done =
        sqlx::query("UPDATE run_attempts SET lease_expires_at = $1 WHERE id = $2 AND status = $3")
            .bind(expires)
            .bind(h.attempt_id)
            .bind(h.attempt.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db::err)?;
    tx_try!(tx, lease_cas(done.rows_affected()));
    seen(&mut tx, runner_id, now).await?;
    tx.commit().await.map_err(db::err)?;
    Ok(AttemptState {
        status: t.attempt.unwrap_or(h.attempt),
        run_status: t.run,
        cancel_requested: h.cancel_requested,
        lease_expires_at: db::ts(expires)?,
        ttl_ms: Some(params.ttl.as_millis() as u64),
    })
}

pub(crate) async fn append_logs(
    s: &SqlStore,
    runner_id: i64,
    run_id: i64,
    lease_token_hash: &str,
    lines: &[NewLogLine],
    now: DateTime<Utc>,
) -> StoreResult<(i64, bool)> {
    let mut tx = s.write().await?;
    let h = tx_try!(
        tx,
        held(s, &mut tx, runner_id, run_id, lease_token_hash, true).await
    );
    // Logs are accepted exactly while a heartbeat would be.
    tx_try!(tx, status::heartbeat(h.run, h.attempt));
    let stored = tx_try!(
        tx,
        insert_lines(s, &mut tx, run_id, h.attempt_no, lines, now).await
    );
    tx.commit().await.map_err(db::err)?;
    Ok((stored, h.cancel_requested))
}

/// Stores an attempt's log lines; returns how many were new.
async fn insert_lines(
    s: &SqlStore,
    conn: &mut Db,
    run_id: i64,
    attempt_no: i64,
    lines: &[NewLogLine],
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    // A seq already stored (a resent batch) is ignored, not an error; within
    // a batch the first line of a seq wins, as with one insert per line.
    let mut seen_seqs = std::collections::HashSet::with_capacity(lines.len());
    let fresh: Vec<&NewLogLine> = lines.iter().filter(|l| seen_seqs.insert(l.seq)).collect();
    let mut stored = 0;
    // A few statements per batch, each well under both databases' limit on
    // bound parameters.
    for chunk in fresh.chunks(LOG_ROWS_PER_STATEMENT) {
        let mut sql = String::from(
            "INSERT INTO run_logs (run_id, seq, attempt_no, stream, line, logged_at) VALUES ",
        );
        for i in 0..chunk.len() {
            let b = i * 6;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6
            ));
        }
        sql.push_str(" ON CONFLICT (run_id, seq) DO NOTHING");
        let mut q = sqlx::query(&sql);
        for l in chunk {
            q = q
                .bind(run_id)
                .bind(l.seq)
                .bind(attempt_no)
                .bind(s.dialect.text(&l.stream).into_owned())
                .bind(s.dialect.text(&l.line).into_owned())
                .bind(ms(l.logged_at.unwrap_or(now)));
        }
        let done = q.execute(&mut *conn).await.map_err(db::err)?;
        stored += done.rows_affected() as i64;
    }
    Ok(stored)
}

/// Records the commit a git source resolved to on the attempt.
async fn store_commit(conn: &mut Db, attempt_id: i64, commit: &str) -> StoreResult<()> {
    sqlx::query("UPDATE run_attempts SET source_commit = $1 WHERE id = $2")
        .bind(commit)
        .bind(attempt_id)
        .execute(conn)
        .await
        .map_err(db::err)?;
    Ok(())
}

pub(crate) async fn complete_attempt(
    s: &SqlStore,
    runner_id: i64,
    run_id: i64,
    lease_token_hash: &str,
    result: &ResultRequest,
    now: DateTime<Utc>,
) -> StoreResult<ResultOutcome> {
    let mut tx = s.write().await?;
    let h = tx_try!(
        tx,
        held(s, &mut tx, runner_id, run_id, lease_token_hash, true).await
    );
    complete_held(s, tx, h, run_id, result, ms(now)).await
}

/// The fast path's end of an attempt in one transaction: its last log lines
/// and the commit its git source resolved to (both stored only while the
/// attempt is active, as `append_logs` stores lines), then its result as
/// `complete_attempt` records it, then (with `next`) the runner's next
/// lease as `lease` takes it. A repeated result stores nothing new and gets
/// the same answer.
pub(crate) async fn finish_attempt(
    s: &SqlStore,
    end: AttemptEnd<'_>,
    next: Option<NextLease<'_>>,
) -> StoreResult<AttemptFinish> {
    let mut tx = s.write().await?;
    let done = finish_in(s, &mut tx, &end, next.as_ref()).await;
    let (outcome, stored, picked) = settle(tx, done).await?;
    // The result is committed: a lease that cannot be read back is left to
    // expire (as a lease whose answer was lost), not reported as the
    // result's failure.
    let next = match (picked, next) {
        (Some(p), Some(n)) => p
            .into_leased(n.lease_token, &n.params)
            .inspect_err(|e| tracing::error!(run_id = end.run_id, error = %e, "reading the next lease back failed"))
            .ok(),
        _ => None,
    };
    Ok(AttemptFinish {
        outcome,
        stored,
        next,
    })
}

/// `finish_attempt`'s statements, inside its transaction.
async fn finish_in(
    s: &SqlStore,
    tx: &mut crate::Tx,
    end: &AttemptEnd<'_>,
    next: Option<&NextLease<'_>>,
) -> StoreResult<(ResultOutcome, i64, Option<crate::runner::Picked>)> {
    let h = held(s, tx, end.runner_id, end.run_id, end.lease_token_hash, true).await?;
    let mut stored = 0;
    if status::heartbeat(h.run, h.attempt).is_ok() {
        stored = insert_lines(s, tx, end.run_id, h.attempt_no, end.lines, end.now).await?;
        if let Some(c) = end.commit {
            store_commit(tx, h.attempt_id, c).await?;
        }
    }
    let outcome = complete_held_in(s, tx, h, end.run_id, end.result, ms(end.now)).await?;
    let picked = match next {
        Some(n) => {
            crate::runner::lease_in(s, tx, end.runner_id, n.lease_token_hash, &n.params).await?
        }
        None => None,
    };
    Ok((outcome, stored, picked))
}

/// Commits `tx` when `done` is `Ok`, else rolls it back at once (see
/// `tx_try!`: a merely dropped transaction keeps its row locks until sqlx
/// next pings the connection).
pub(crate) async fn settle<T>(tx: crate::Tx, done: StoreResult<T>) -> StoreResult<T> {
    match done {
        Ok(v) => {
            tx.commit().await.map_err(db::err)?;
            Ok(v)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

/// `complete_attempt` once the attempt is held.
async fn complete_held(
    s: &SqlStore,
    mut tx: crate::Tx,
    h: Held,
    run_id: i64,
    result: &ResultRequest,
    now: i64,
) -> StoreResult<ResultOutcome> {
    let done = complete_held_in(s, &mut tx, h, run_id, result, now).await;
    settle(tx, done).await
}

/// `complete_held`'s statements, inside the caller's transaction.
async fn complete_held_in(
    s: &SqlStore,
    tx: &mut crate::Tx,
    h: Held,
    run_id: i64,
    result: &ResultRequest,
    now: i64,
) -> StoreResult<ResultOutcome> {
    let message = s.dialect.text_opt(result.error_message.as_deref());
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
        message.as_deref(),
        recorded.as_ref(),
    )?;
    let attempt = t.attempt.unwrap_or(h.attempt);
    if !t.changed {
        return Ok(ResultOutcome {
            ack: ResultAck {
                status: attempt,
                run_status: t.run,
                next: None,
            },
            finished: None,
            retry: None,
        });
    }
    // A failed attempt with failure-retry budget left requeues the run.
    let budget = status::FailureRetries {
        run_id,
        allowed: h.failure_retries,
        spent: h.failure_retry_count,
        first_delay: std::time::Duration::from_millis(h.retry_delay_ms.max(1) as u64),
    };
    let ending = status::retry_failure(
        Ending::from_result(t, result.exit_code, message.as_deref()),
        h.cancel_requested,
        &budget,
    );
    Ok(end_attempt_in(tx, &h.ends(run_id), &ending, now).await?.0)
}

/// The runner hands its attempt back (see `status::release`): no retry is
/// spent; the run is queued again keeping its place in line.
pub(crate) async fn release_attempt(
    s: &SqlStore,
    runner_id: i64,
    run_id: i64,
    lease_token_hash: &str,
    now: DateTime<Utc>,
) -> StoreResult<ResultOutcome> {
    let mut tx = s.write().await?;
    let now = s.now(&mut *tx, now).await?;
    let h = tx_try!(
        tx,
        held(s, &mut tx, runner_id, run_id, lease_token_hash, true).await
    );
    let ending = tx_try!(tx, status::release(h.run, h.attempt, h.cancel_requested));
    Ok(end_attempt(tx, &h.ends(run_id), &ending, now).await?.0)
}

/// The attempt being ended and what was read of it and its run: the
/// statuses the compare-and-sets expect, and the times its outcome reports.
pub(crate) struct Ends {
    pub run_id: i64,
    pub attempt_id: i64,
    pub attempt: AttemptStatus,
    pub run: RunStatus,
    pub queued_at: i64,
    pub started_at: Option<i64>,
    /// Only an attempt whose lease ends before this may be ended (the reaper
    /// passes its `now`, so a heartbeat that won the race keeps the attempt
    /// alive; a runner holding the lease token passes `i64::MAX`).
    pub lease_before: i64,
    /// The run's labels when already read (else `end_attempt` reads them).
    pub labels: Option<RunLabels>,
}

impl Held {
    fn ends(&self, run_id: i64) -> Ends {
        Ends {
            run_id,
            attempt_id: self.attempt_id,
            attempt: self.attempt,
            run: self.run,
            queued_at: self.queued_at,
            started_at: self.started_at,
            lease_before: i64::MAX,
            labels: Some(self.labels.clone()),
        }
    }
}

/// Applies a core [`Ending`] plan to the attempt and its run, commits, and
/// returns the outcome the server turns into metrics and wake-ups, with the
/// run's labels. Results,
/// hand-backs and the reaper all end attempts here, so the two writes, the
/// compare-and-sets and the outcome are one piece of code.
pub(crate) async fn end_attempt(
    mut tx: crate::Tx,
    h: &Ends,
    e: &Ending,
    now: i64,
) -> StoreResult<(ResultOutcome, RunLabels)> {
    let done = end_attempt_in(&mut tx, h, e, now).await;
    settle(tx, done).await
}

/// `end_attempt`'s statements, inside the caller's transaction.
pub(crate) async fn end_attempt_in(
    tx: &mut crate::Tx,
    h: &Ends,
    e: &Ending,
    now: i64,
) -> StoreResult<(ResultOutcome, RunLabels)> {
    let run_id = h.run_id;
    let done = sqlx::query(
        "UPDATE run_attempts SET status = $1, exit_code = $2, error_message = $3, \
         finished_at = $4 WHERE id = $5 AND status = $6 AND lease_expires_at < $7",
    )
    .bind(e.attempt.as_str())
    .bind(e.exit_code)
    .bind(e.attempt_message.as_deref())
    .bind(now)
    .bind(h.attempt_id)
    .bind(h.attempt.as_str())
    .bind(h.lease_before)
    .execute(&mut **tx)
    .await
    .map_err(db::err)?;
    lease_cas(done.rows_affected())?;
    // A failure retry waits: the lease skips the run before `not_before`.
    let retry_at = e.retry_after.map(|d| db::expiry(now, d));
    let done = if e.run == RunStatus::Queued {
        // The run keeps its original queued_at, hence its place in line.
        sqlx::query(
            "UPDATE runs SET status = 'queued', retry_count = retry_count + $1, \
             failure_retry_count = failure_retry_count + $2, \
             not_before = COALESCE($3, not_before) WHERE id = $4 AND status = $5",
        )
        .bind(i64::from(e.spends_retry))
        .bind(i64::from(retry_at.is_some()))
        .bind(retry_at)
        .bind(run_id)
        .bind(h.run.as_str())
        .execute(&mut **tx)
        .await
    } else {
        sqlx::query(
            "UPDATE runs SET status = $1, exit_code = $2, error_message = $3, finished_at = $4 \
             WHERE id = $5 AND status = $6",
        )
        .bind(e.run.as_str())
        .bind(e.exit_code)
        .bind(e.run_message.as_deref())
        .bind(now)
        .bind(run_id)
        .bind(h.run.as_str())
        .execute(&mut **tx)
        .await
    }
    .map_err(db::err)?;
    db::cas(done.rows_affected(), "end attempt")?;
    let event = match e.run {
        RunStatus::Queued if e.retry_after.is_some() => RunEvent::Retrying,
        RunStatus::Queued => RunEvent::Requeued,
        other => RunEvent::of(other),
    };
    crate::webhooks::run_event(tx, run_id, event, now).await?;
    let labels = match &h.labels {
        Some(l) => l.clone(),
        None => db::labels(tx, run_id).await?,
    };
    let finished = if e.run.is_terminal() {
        Some(Finished {
            labels: labels.clone(),
            status: e.run,
            queued_at: db::ts(h.queued_at)?,
            started_at: db::ts_opt(h.started_at)?,
            finished_at: db::ts(now)?,
        })
    } else {
        None
    };
    let outcome = ResultOutcome {
        ack: ResultAck {
            status: e.attempt,
            run_status: e.run,
            next: None,
        },
        retry: match retry_at {
            Some(at) => Some(Retrying {
                labels: labels.clone(),
                not_before: db::ts(at)?,
            }),
            None => None,
        },
        finished,
    };
    Ok((outcome, labels))
}

pub(crate) async fn leased_artifact(
    s: &SqlStore,
    runner_id: i64,
    run_id: i64,
    lease_token_hash: &str,
) -> StoreResult<String> {
    let mut tx = s.snapshot().await?;
    let h = tx_try!(
        tx,
        held(s, &mut tx, runner_id, run_id, lease_token_hash, false).await
    );
    tx_try!(tx, status::heartbeat(h.run, h.attempt));
    let sha: String = sqlx::query_scalar(
        "SELECT v.artifact_sha256 FROM runs r JOIN versions v ON v.id = r.version_id \
         WHERE r.id = $1",
    )
    .bind(run_id)
    .fetch_one(&mut *tx)
    .await
    .map_err(db::err)?;
    tx.commit().await.map_err(db::err)?;
    Ok(sha)
}
