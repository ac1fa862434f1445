//! Conversions between rows and domain types, and error mapping, shared by
//! every module.

use crate::Db;
use crate::SqlStore;
use chrono::{DateTime, Utc};
use minitower_core::api::Run;
use minitower_core::status::{AttemptStatus, RunStatus};
use minitower_store::{RunLabels, StoreError, StoreResult};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{Any, Decode, Row, Type};

/// Latest instant stored: far past any lease, inside chrono's range and
/// PostgreSQL's, so `now + huge ttl` saturates instead of failing.
const MAX_MS: i64 = 253_402_300_799_000; // 9999-12-31T23:59:59Z

/// Timestamps are stored as unix milliseconds, in both schemas.
pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Inverse of [`ms`].
pub(crate) fn ts(ms: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Database(format!("timestamp out of range: {ms}")))
}

/// Optional timestamp column.
pub(crate) fn ts_opt(ms: Option<i64>) -> StoreResult<Option<DateTime<Utc>>> {
    ms.map(ts).transpose()
}

/// `now + ttl` in milliseconds, saturating instead of overflowing.
pub(crate) fn expiry(now_ms: i64, ttl: std::time::Duration) -> i64 {
    let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    now_ms.saturating_add(ttl).min(MAX_MS)
}

/// Maps a driver error (see `impl From<sqlx::Error> for StoreError`).
pub(crate) fn err(e: sqlx::Error) -> StoreError {
    StoreError::from(e)
}

/// Like [`err`] but with a message naming what was duplicated.
pub(crate) fn unique(what: impl FnOnce() -> String) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(what()),
        _ => err(e),
    }
}

/// Reads a column, mapping decode errors.
pub(crate) fn get<'r, T>(row: &'r AnyRow, col: &str) -> StoreResult<T>
where
    T: Decode<'r, Any> + Type<Any>,
{
    row.try_get(col)
        .map_err(|e| StoreError::Database(format!("column {col}: {e}")))
}

/// Reads a timestamp column.
pub(crate) fn time(row: &AnyRow, col: &str) -> StoreResult<DateTime<Utc>> {
    ts(get(row, col)?)
}

/// Reads an optional timestamp column.
pub(crate) fn time_opt(row: &AnyRow, col: &str) -> StoreResult<Option<DateTime<Utc>>> {
    ts_opt(get(row, col)?)
}

/// Reads a boolean column: PostgreSQL's `BOOLEAN` or SQLite's 0/1 integer.
pub(crate) fn flag(row: &AnyRow, col: &str) -> StoreResult<bool> {
    match row.try_get::<bool, _>(col) {
        Ok(b) => Ok(b),
        Err(_) => Ok(get::<i64>(row, col)? != 0),
    }
}

/// Reads a run status column.
pub(crate) fn run_status(row: &AnyRow, col: &str) -> StoreResult<RunStatus> {
    get::<String>(row, col)?
        .parse()
        .map_err(|e| StoreError::Database(format!("column {col}: {e}")))
}

/// Reads an attempt status column.
pub(crate) fn attempt_status(row: &AnyRow, col: &str) -> StoreResult<AttemptStatus> {
    get::<String>(row, col)?
        .parse()
        .map_err(|e| StoreError::Database(format!("column {col}: {e}")))
}

/// Reads a JSON text column, keeping key order.
pub(crate) fn json(row: &AnyRow, col: &str) -> StoreResult<Value> {
    let text: String = get(row, col)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Database(format!("column {col}: {e}")))
}

/// Fails a compare-and-set that matched no row: the state it was based on
/// changed under us, which the row locks (or the single writer) should make
/// impossible.
pub(crate) fn cas(rows: u64, what: &str) -> StoreResult<()> {
    if rows == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "{what}: the row changed concurrently"
        )))
    }
}

/// Columns of a run as users see it; pair with [`run_from_row`].
pub(crate) const RUN_SELECT: &str = "SELECT r.id, r.run_no, a.slug AS app, v.version_no, \
     r.status, r.input, r.priority, r.max_retries, r.retry_count, r.cancel_requested, \
     r.exit_code, r.error_message, r.queued_at, r.started_at, r.finished_at, r.environment, \
     r.schedule_id, r.scheduled_for, r.timeout_seconds, \
     r.failure_retries, r.failure_retry_count, r.retry_delay_ms, r.not_before, \
     r.job_overrides AS job_overrides \
     FROM runs r JOIN apps a ON a.id = r.app_id JOIN versions v ON v.id = r.version_id";

/// Builds a [`Run`] from a row of [`RUN_SELECT`].
pub(crate) fn run_from_row(row: &AnyRow) -> StoreResult<Run> {
    let priority: i64 = get(row, "priority")?;
    let job_overrides = match get::<Option<String>>(row, "job_overrides")? {
        None => None,
        Some(t) => Some(
            serde_json::from_str(&t)
                .map_err(|e| StoreError::Database(format!("job_overrides: {e}")))?,
        ),
    };
    Ok(Run {
        priority_name: minitower_core::job::priority_name(priority).map(str::to_string),
        job_overrides,
        id: get(row, "id")?,
        run_no: get(row, "run_no")?,
        app: get(row, "app")?,
        version_no: get(row, "version_no")?,
        status: run_status(row, "status")?,
        input: json(row, "input")?,
        priority,
        max_retries: get(row, "max_retries")?,
        retry_count: get(row, "retry_count")?,
        cancel_requested: flag(row, "cancel_requested")?,
        exit_code: get(row, "exit_code")?,
        error_message: get(row, "error_message")?,
        queued_at: time(row, "queued_at")?,
        started_at: time_opt(row, "started_at")?,
        finished_at: time_opt(row, "finished_at")?,
        environment: get(row, "environment")?,
        schedule_id: get(row, "schedule_id")?,
        scheduled_for: time_opt(row, "scheduled_for")?,
        timeout_seconds: get(row, "timeout_seconds")?,
        failure_retries: get(row, "failure_retries")?,
        failure_retry_count: get(row, "failure_retry_count")?,
        retry_delay_ms: get(row, "retry_delay_ms")?,
        not_before: time_opt(row, "not_before")?,
    })
}

/// One run by id (no team check), on any connection.
pub(crate) async fn load_run(conn: &mut Db, run_id: i64) -> StoreResult<Run> {
    let row = sqlx::query(&format!("{RUN_SELECT} WHERE r.id = $1"))
        .bind(run_id)
        .fetch_optional(conn)
        .await
        .map_err(err)?
        .ok_or(StoreError::NotFound("run"))?;
    run_from_row(&row)
}

/// Locks a run row for the rest of the transaction and returns its status.
/// Every transition locks the run first, so callers racing on one run queue
/// up here instead of deadlocking on the attempt or runner rows.
pub(crate) async fn lock_run(
    s: &SqlStore,
    conn: &mut Db,
    run_id: i64,
    team_id: Option<i64>,
) -> StoreResult<Option<RunStatus>> {
    let st: Option<String> = sqlx::query_scalar(&s.sql(
        "SELECT status FROM runs WHERE id = $1 AND (CAST($2 AS BIGINT) IS NULL OR team_id = $2) \
         FOR UPDATE",
    ))
    .bind(run_id)
    .bind(team_id)
    .fetch_optional(conn)
    .await
    .map_err(err)?;
    st.map(|s| {
        s.parse()
            .map_err(|e| StoreError::Database(format!("runs.status: {e}")))
    })
    .transpose()
}

/// Metric labels of a run.
pub(crate) async fn labels(conn: &mut Db, run_id: i64) -> StoreResult<RunLabels> {
    let row = sqlx::query(
        "SELECT r.id, t.slug AS team, a.slug AS app, r.environment \
         FROM runs r JOIN apps a ON a.id = r.app_id JOIN teams t ON t.id = r.team_id \
         WHERE r.id = $1",
    )
    .bind(run_id)
    .fetch_optional(conn)
    .await
    .map_err(err)?
    .ok_or(StoreError::NotFound("run"))?;
    Ok(RunLabels {
        run_id: get(&row, "id")?,
        team: get(&row, "team")?,
        app: get(&row, "app")?,
        environment: get(&row, "environment")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_saturates() {
        assert_eq!(expiry(1_000, std::time::Duration::from_millis(5)), 1_005);
        assert_eq!(
            expiry(1_000, std::time::Duration::from_secs(u64::MAX)),
            MAX_MS
        );
        assert!(ts(MAX_MS).is_ok());
    }
}
