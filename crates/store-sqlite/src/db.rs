//! Conversions between rows and domain types, and error mapping, shared by
//! every module of the backend.

use chrono::{DateTime, Utc};
use minitower_core::api::Run;
use minitower_core::status::{AttemptStatus, RunStatus};
use minitower_store::{RunLabels, StoreError, StoreResult};
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::{Decode, Row, Sqlite, SqliteConnection, Type};

/// Timestamps are stored as unix milliseconds.
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
pub(crate) fn expiry(now: DateTime<Utc>, ttl: std::time::Duration) -> i64 {
    let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    ms(now).saturating_add(ttl)
}

/// Maps a driver error: unique violations are the caller's conflict,
/// everything else is the database's fault.
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
pub(crate) fn get<'r, T>(row: &'r SqliteRow, col: &str) -> StoreResult<T>
where
    T: Decode<'r, Sqlite> + Type<Sqlite>,
{
    row.try_get(col)
        .map_err(|e| StoreError::Database(format!("column {col}: {e}")))
}

/// Reads a run status column.
pub(crate) fn run_status(row: &SqliteRow, col: &str) -> StoreResult<RunStatus> {
    get::<String>(row, col)?
        .parse()
        .map_err(|e| StoreError::Database(format!("column {col}: {e}")))
}

/// Reads an attempt status column.
pub(crate) fn attempt_status(row: &SqliteRow, col: &str) -> StoreResult<AttemptStatus> {
    get::<String>(row, col)?
        .parse()
        .map_err(|e| StoreError::Database(format!("column {col}: {e}")))
}

/// Reads a JSON text column.
pub(crate) fn json(row: &SqliteRow, col: &str) -> StoreResult<Value> {
    let text: String = get(row, col)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Database(format!("column {col}: {e}")))
}

/// Fails a compare-and-set that matched no row: the state it was based on
/// changed under us, which the single writer should make impossible.
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
     r.exit_code, r.error_message, r.queued_at, r.started_at, r.finished_at, r.environment \
     FROM runs r JOIN apps a ON a.id = r.app_id JOIN versions v ON v.id = r.version_id";

/// Builds a [`Run`] from a row of [`RUN_SELECT`].
pub(crate) fn run_from_row(row: &SqliteRow) -> StoreResult<Run> {
    Ok(Run {
        id: get(row, "id")?,
        run_no: get(row, "run_no")?,
        app: get(row, "app")?,
        version_no: get(row, "version_no")?,
        status: run_status(row, "status")?,
        input: json(row, "input")?,
        priority: get(row, "priority")?,
        max_retries: get(row, "max_retries")?,
        retry_count: get(row, "retry_count")?,
        cancel_requested: get::<i64>(row, "cancel_requested")? != 0,
        exit_code: get(row, "exit_code")?,
        error_message: get(row, "error_message")?,
        queued_at: ts(get(row, "queued_at")?)?,
        started_at: ts_opt(get(row, "started_at")?)?,
        finished_at: ts_opt(get(row, "finished_at")?)?,
        environment: get(row, "environment")?,
    })
}

/// One run by id (no team check), on any connection.
pub(crate) async fn load_run(conn: &mut SqliteConnection, run_id: i64) -> StoreResult<Run> {
    let row = sqlx::query(&format!("{RUN_SELECT} WHERE r.id = ?"))
        .bind(run_id)
        .fetch_optional(conn)
        .await
        .map_err(err)?
        .ok_or(StoreError::NotFound("run"))?;
    run_from_row(&row)
}

/// Metric labels of a run.
pub(crate) async fn labels(conn: &mut SqliteConnection, run_id: i64) -> StoreResult<RunLabels> {
    let row = sqlx::query(
        "SELECT r.id, t.slug AS team, a.slug AS app, r.environment \
         FROM runs r JOIN apps a ON a.id = r.app_id JOIN teams t ON t.id = r.team_id \
         WHERE r.id = ?",
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
