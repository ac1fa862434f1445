//! Conversions between rows and domain types, and error mapping, shared by
//! every module of the backend.

use chrono::{DateTime, Utc};
use minitower_core::api::Run;
use minitower_core::status::{AttemptStatus, RunStatus};
use minitower_store::{RunLabels, StoreError, StoreResult};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{Decode, PgConnection, Postgres, Row, Type};

/// Latest instant stored: far past any lease, well inside both chrono's and
/// PostgreSQL's ranges, so `now + huge ttl` saturates instead of failing.
const MAX_MS: i64 = 253_402_300_799_000; // 9999-12-31T23:59:59Z

/// Timestamps are stored with millisecond precision, like SQLite's integers,
/// so a value written and read back is exactly what the caller computed.
pub(crate) fn ms_ts(t: DateTime<Utc>) -> DateTime<Utc> {
    from_ms(t.timestamp_millis())
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms.clamp(0, MAX_MS)).unwrap_or_default()
}

/// `now + ttl` in milliseconds, saturating instead of overflowing.
pub(crate) fn expiry(now: DateTime<Utc>, ttl: std::time::Duration) -> DateTime<Utc> {
    let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    from_ms(now.timestamp_millis().saturating_add(ttl).min(MAX_MS))
}

/// PostgreSQL text cannot hold NUL; a NUL in a log line or message would
/// fail the whole batch, so it is stored as U+FFFD instead.
pub(crate) fn text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}").into()
    } else {
        s.into()
    }
}

/// [`text`] for optional values.
pub(crate) fn text_opt(s: Option<&str>) -> Option<String> {
    s.map(|s| text(s).into_owned())
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
pub(crate) fn get<'r, T>(row: &'r PgRow, col: &str) -> StoreResult<T>
where
    T: Decode<'r, Postgres> + Type<Postgres>,
{
    row.try_get(col)
        .map_err(|e| StoreError::Database(format!("column {col}: {e}")))
}

/// Reads a run status column.
pub(crate) fn run_status(row: &PgRow, col: &str) -> StoreResult<RunStatus> {
    get::<String>(row, col)?
        .parse()
        .map_err(|e| StoreError::Database(format!("column {col}: {e}")))
}

/// Reads an attempt status column.
pub(crate) fn attempt_status(row: &PgRow, col: &str) -> StoreResult<AttemptStatus> {
    get::<String>(row, col)?
        .parse()
        .map_err(|e| StoreError::Database(format!("column {col}: {e}")))
}

/// Reads a JSON column selected as text (`col::text`), keeping key order.
pub(crate) fn json(row: &PgRow, col: &str) -> StoreResult<Value> {
    let text: String = get(row, col)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Database(format!("column {col}: {e}")))
}

/// Fails a compare-and-set that matched no row: the state it was based on
/// changed under us, which the row locks should make impossible.
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
     r.status, r.input::text AS input, r.priority, r.max_retries, r.retry_count, \
     r.cancel_requested, r.exit_code, r.error_message, r.queued_at, r.started_at, \
     r.finished_at, r.environment \
     FROM runs r JOIN apps a ON a.id = r.app_id JOIN versions v ON v.id = r.version_id";

/// Builds a [`Run`] from a row of [`RUN_SELECT`].
pub(crate) fn run_from_row(row: &PgRow) -> StoreResult<Run> {
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
        cancel_requested: get(row, "cancel_requested")?,
        exit_code: get(row, "exit_code")?,
        error_message: get(row, "error_message")?,
        queued_at: get(row, "queued_at")?,
        started_at: get(row, "started_at")?,
        finished_at: get(row, "finished_at")?,
        environment: get(row, "environment")?,
    })
}

/// One run by id (no team check), on any connection.
pub(crate) async fn load_run(conn: &mut PgConnection, run_id: i64) -> StoreResult<Run> {
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
    conn: &mut PgConnection,
    run_id: i64,
    team_id: Option<i64>,
) -> StoreResult<Option<RunStatus>> {
    let st: Option<String> = sqlx::query_scalar(
        "SELECT status FROM runs WHERE id = $1 AND ($2::bigint IS NULL OR team_id = $2) \
         FOR UPDATE",
    )
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
pub(crate) async fn labels(conn: &mut PgConnection, run_id: i64) -> StoreResult<RunLabels> {
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
    fn timestamps_keep_milliseconds_and_saturate() {
        let t = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        assert_eq!(ms_ts(t).timestamp_subsec_nanos(), 123_000_000);
        let far = expiry(t, std::time::Duration::from_secs(u64::MAX));
        assert_eq!(far.timestamp_millis(), MAX_MS);
    }

    #[test]
    fn nul_is_replaced() {
        assert_eq!(text("a\0b"), "a\u{FFFD}b");
        assert_eq!(text("plain"), "plain");
    }
}
