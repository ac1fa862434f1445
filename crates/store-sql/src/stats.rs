//! Aggregates for the dashboard and the metrics gauges.
//!
//! Counts come from the dialect's counting queries (SQLite keeps a
//! trigger-maintained `run_counts` table; PostgreSQL, with several replicas
//! writing, counts over indexes instead of making every lease wait on one
//! counter row), and the stats from an index walk of the runs finished in
//! the window, so none of these scan the whole runs table.

use crate::db::{self, get};
use crate::SqlStore;
use chrono::{DateTime, Utc};
use minitower_core::api::{RunStats, StatsBucket};
use minitower_core::status::RunStatus;
use minitower_store::{PendingCount, StoreError, StoreResult};
use std::collections::BTreeMap;

const HOUR_MS: i64 = 3_600_000;
/// Longest stats window served: a year of hourly buckets.
const MAX_HOURS: i64 = 24 * 366;

pub(crate) async fn runs_summary(
    s: &SqlStore,
    team_id: i64,
) -> StoreResult<BTreeMap<RunStatus, i64>> {
    let rows = sqlx::query(s.dialect.status_counts)
        .bind(team_id)
        .fetch_all(&mut s.read_conn().await?)
        .await
        .map_err(db::err)?;
    let mut out: BTreeMap<RunStatus, i64> = RunStatus::ALL.iter().map(|s| (*s, 0)).collect();
    for r in &rows {
        out.insert(db::run_status(r, "status")?, get(r, "n")?);
    }
    Ok(out)
}

pub(crate) async fn run_stats(
    s: &SqlStore,
    team_id: i64,
    hours: i64,
    now: DateTime<Utc>,
) -> StoreResult<RunStats> {
    let hours = hours.clamp(1, MAX_HOURS);
    let now_ms = db::ms(now);
    let first = now_ms.div_euclid(HOUR_MS) * HOUR_MS - (hours - 1) * HOUR_MS;
    let mut buckets = (0..hours)
        .map(|i| {
            Ok(StatsBucket {
                start: db::ts(first + i * HOUR_MS)?,
                completed: 0,
                failed: 0,
                cancelled: 0,
                dead: 0,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;

    let mut tx = s.snapshot().await?;
    let rows = sqlx::query(
        "SELECT (finished_at - $1) / $2 AS bucket, status, COUNT(*) AS n, \
                COUNT(started_at) AS timed FROM runs \
         WHERE team_id = $3 AND finished_at IS NOT NULL AND finished_at >= $1 \
           AND finished_at <= $4 \
         GROUP BY bucket, status",
    )
    .bind(first)
    .bind(HOUR_MS)
    .bind(team_id)
    .bind(now_ms)
    .fetch_all(&mut *tx)
    .await
    .map_err(db::err)?;
    let (mut finished, mut succeeded, mut timed) = (0, 0, 0);
    for r in &rows {
        let bucket: i64 = get(r, "bucket")?;
        let n: i64 = get(r, "n")?;
        timed += get::<i64>(r, "timed")?;
        let b = usize::try_from(bucket)
            .ok()
            .and_then(|i| buckets.get_mut(i))
            .ok_or_else(|| StoreError::Database(format!("stats bucket {bucket} out of range")))?;
        match db::run_status(r, "status")? {
            RunStatus::Completed => {
                b.completed += n;
                succeeded += n;
            }
            RunStatus::Failed => b.failed += n,
            RunStatus::Cancelled => b.cancelled += n,
            RunStatus::Dead => b.dead += n,
            other => {
                return Err(StoreError::Database(format!(
                    "run with status {other} has finished_at"
                )))
            }
        }
        finished += n;
    }

    let window = "FROM runs WHERE team_id = $1 AND finished_at IS NOT NULL \
                  AND finished_at >= $2 AND finished_at <= $3 AND started_at IS NOT NULL";
    let median_duration_seconds = if timed == 0 {
        None
    } else {
        // The middle one (odd count) or the middle two (even count).
        let middle: Vec<i64> = sqlx::query_scalar(&format!(
            "SELECT finished_at - started_at AS d {window} ORDER BY d LIMIT $4 OFFSET $5"
        ))
        .bind(team_id)
        .bind(first)
        .bind(now_ms)
        .bind(if timed % 2 == 1 { 1 } else { 2 })
        .bind((timed - 1) / 2)
        .fetch_all(&mut *tx)
        .await
        .map_err(db::err)?;
        let sum: i64 = middle.iter().sum();
        Some(sum as f64 / middle.len().max(1) as f64 / 1000.0)
    };
    tx.commit().await.map_err(db::err)?;
    Ok(RunStats {
        hours,
        buckets,
        finished,
        succeeded,
        success_rate: (finished > 0).then(|| succeeded as f64 / finished as f64),
        median_duration_seconds,
    })
}

/// Every (team, app, environment) that ever had a run is listed, zero
/// counts included, so a gauge drops to 0 instead of keeping its last value.
pub(crate) async fn pending_counts(s: &SqlStore) -> StoreResult<Vec<PendingCount>> {
    let rows = sqlx::query(s.dialect.pending_counts)
        .fetch_all(&mut s.read_conn().await?)
        .await
        .map_err(db::err)?;
    rows.iter()
        .map(|r| {
            Ok(PendingCount {
                team: get(r, "team")?,
                app: get(r, "app")?,
                environment: get(r, "environment")?,
                count: get(r, "n")?,
            })
        })
        .collect()
}

/// Environments with runners, zero included when all are offline.
pub(crate) async fn runners_online(s: &SqlStore) -> StoreResult<Vec<(String, i64)>> {
    let rows = sqlx::query(&s.sql(
        "SELECT environment, COUNT(CASE WHEN status = 'online' THEN 1 END) AS n FROM runners \
         GROUP BY environment ORDER BY environment COLLATE \"C\"",
    ))
    .fetch_all(&mut s.read_conn().await?)
    .await
    .map_err(db::err)?;
    rows.iter()
        .map(|r| Ok((get(r, "environment")?, get(r, "n")?)))
        .collect()
}
