//! `--pg-statements N`: which statements PostgreSQL spends a dispatched
//! run's time on, from `pg_stat_statements` (loaded into the private
//! instance only when asked, so the plain figures carry no tracking cost).
//! The counters are reset after the warm-up and read after the measured
//! runs, so they cover exactly the runs the throughput is computed over.

use crate::report::ScenarioReport;
use anyhow::{Context, Result};
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{Connection, Row};

/// A connection to the private instance with the counters just reset.
pub async fn reset(url: &str) -> Result<PgConnection> {
    let mut db = PgConnection::connect(url)
        .await
        .context("connecting to the private PostgreSQL for pg_stat_statements")?;
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&mut db)
        .await?;
    sqlx::query("SELECT pg_stat_statements_reset()")
        .execute(&mut db)
        .await?;
    Ok(db)
}

/// Adds the `top` statements by total execution time as notes (calls per
/// run, mean time, share of the total) and all of them as a detail.
pub async fn report(
    db: &mut PgConnection,
    r: &mut ScenarioReport,
    top: usize,
    runs: usize,
) -> Result<()> {
    let rows: Vec<PgRow> = sqlx::query(
        "SELECT query, calls, total_exec_time, rows FROM pg_stat_statements \
         WHERE query NOT LIKE '%pg_stat_statements%' ORDER BY total_exec_time DESC",
    )
    .fetch_all(&mut *db)
    .await?;
    let runs = runs.max(1) as f64;
    let total_ms: f64 = rows
        .iter()
        .map(|r| r.get::<f64, _>("total_exec_time"))
        .sum();
    let calls: i64 = rows.iter().map(|r| r.get::<i64, _>("calls")).sum();
    r.note(format!(
        "pg_stat_statements: {:.1} statements and {:.0} µs of execution per run over {} distinct \
         statements; the costliest:",
        calls as f64 / runs,
        total_ms * 1e3 / runs,
        rows.len()
    ));
    let mut all = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let query: String = row.get("query");
        let n: i64 = row.get("calls");
        let t: f64 = row.get("total_exec_time");
        let shown: String = query.split_whitespace().collect::<Vec<_>>().join(" ");
        if i < top {
            r.note(format!(
                "  {:>5.1}% {:>5.2}/run {:>7.1} µs mean  {}",
                100.0 * t / total_ms.max(1e-9),
                n as f64 / runs,
                1e3 * t / n.max(1) as f64,
                shown.chars().take(160).collect::<String>()
            ));
        }
        all.push(serde_json::json!({
            "query": shown,
            "calls": n,
            "total_exec_ms": t,
            "rows": row.get::<i64, _>("rows"),
        }));
    }
    r.detail("pg_statements", all);
    Ok(())
}
