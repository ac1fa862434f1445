//! Aggregates for the dashboard and the metrics gauges.
//!
//! Counts are index scans over the runs of one team (or the queued runs),
//! not a trigger-maintained counter table as in SQLite: with several
//! replicas writing, one counter row per status would make every lease of
//! an app wait on the same row.

use crate::db::{self, get, ms_ts};
use crate::PgStore;
use chrono::{DateTime, Utc};
use minitower_core::api::{RunStats, StatsBucket};
use minitower_core::status::RunStatus;
use minitower_store::{PendingCount, StoreError, StoreResult};
use std::collections::BTreeMap;

const HOUR_MS: i64 = 3_600_000;
/// Longest stats window served: a year of hourly buckets.
const MAX_HOURS: i64 = 24 * 366;

pub(crate) async fn runs_summary(
    s: &PgStore,
    team_id: i64,
) -> StoreResult<BTreeMap<RunStatus, i64>> {
    let rows =
        sqlx::query("SELECT status, COUNT(*) AS n FROM runs WHERE team_id = $1 GROUP BY status")
            .bind(team_id)
            .fetch_all(&s.pool)
            .await
            .map_err(db::err)?;
    let mut out: BTreeMap<RunStatus, i64> = RunStatus::ALL.iter().map(|s| (*s, 0)).collect();
    for r in &rows {
        out.insert(db::run_status(r, "status")?, get(r, "n")?);
    }
    Ok(out)
}

pub(crate) async fn run_stats(
    s: &PgStore,
    team_id: i64,
    hours: i64,
    now: DateTime<Utc>,
) -> StoreResult<RunStats> {
    let hours = hours.clamp(1, MAX_HOURS);
    let now = ms_ts(now);
    let now_ms = now.timestamp_millis();
    let first_ms = now_ms.div_euclid(HOUR_MS) * HOUR_MS - (hours - 1) * HOUR_MS;
    let ts = |ms: i64| {
        DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| StoreError::Database(format!("timestamp out of range: {ms}")))
    };
    let first = ts(first_ms)?;
    let mut buckets = (0..hours)
        .map(|i| {
            Ok(StatsBucket {
                start: ts(first_ms + i * HOUR_MS)?,
                completed: 0,
                failed: 0,
                cancelled: 0,
                dead: 0,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;

    // The bucket is whole hours since the window's first hour; the median
    // is over runs that started, like SQLite's middle-one-or-two.
    let mut tx = s.snapshot().await?;
    let rows = sqlx::query(
        "SELECT FLOOR(EXTRACT(EPOCH FROM finished_at - $1) / 3600)::bigint AS bucket, status, \
                COUNT(*) AS n FROM runs \
         WHERE team_id = $2 AND finished_at IS NOT NULL AND finished_at >= $1 \
           AND finished_at <= $3 \
         GROUP BY bucket, status",
    )
    .bind(first)
    .bind(team_id)
    .bind(now)
    .fetch_all(&mut *tx)
    .await
    .map_err(db::err)?;
    let (mut finished, mut succeeded) = (0, 0);
    for r in &rows {
        let bucket: i64 = get(r, "bucket")?;
        let n: i64 = get(r, "n")?;
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
    let median_ms: Option<f64> = sqlx::query_scalar(
        "SELECT PERCENTILE_CONT(0.5) WITHIN GROUP \
                (ORDER BY EXTRACT(EPOCH FROM finished_at - started_at) * 1000) \
         FROM runs WHERE team_id = $1 AND finished_at IS NOT NULL AND finished_at >= $2 \
           AND finished_at <= $3 AND started_at IS NOT NULL",
    )
    .bind(team_id)
    .bind(first)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(db::err)?;
    tx.commit().await.map_err(db::err)?;
    Ok(RunStats {
        hours,
        buckets,
        finished,
        succeeded,
        success_rate: (finished > 0).then(|| succeeded as f64 / finished as f64),
        // timestamps are whole milliseconds, so the rounding only removes
        // floating-point noise from the epoch arithmetic
        median_duration_seconds: median_ms.map(|ms| (ms * 2.0).round() / 2.0 / 1000.0),
    })
}

/// Every (team, app, environment) that ever had a run is listed, zero
/// counts included, so a gauge drops to 0 instead of keeping its last value.
/// Only queued runs are counted (through the partial queue index).
pub(crate) async fn pending_counts(s: &PgStore) -> StoreResult<Vec<PendingCount>> {
    let rows = sqlx::query(
        "SELECT t.slug AS team, a.slug AS app, p.environment, COALESCE(q.n, 0) AS n \
         FROM run_placements p \
         JOIN apps a ON a.id = p.app_id JOIN teams t ON t.id = p.team_id \
         LEFT JOIN (SELECT team_id, app_id, environment, COUNT(*) AS n FROM runs \
                    WHERE status = 'queued' GROUP BY team_id, app_id, environment) q \
           ON q.team_id = p.team_id AND q.app_id = p.app_id AND q.environment = p.environment \
         ORDER BY t.slug COLLATE \"C\", a.slug COLLATE \"C\", p.environment COLLATE \"C\"",
    )
    .fetch_all(&s.pool)
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
pub(crate) async fn runners_online(s: &PgStore) -> StoreResult<Vec<(String, i64)>> {
    let rows = sqlx::query(
        "SELECT environment, COUNT(*) FILTER (WHERE status = 'online') AS n FROM runners \
         GROUP BY environment ORDER BY environment COLLATE \"C\"",
    )
    .fetch_all(&s.pool)
    .await
    .map_err(db::err)?;
    rows.iter()
        .map(|r| Ok((get(r, "environment")?, get(r, "n")?)))
        .collect()
}
