//! PostgreSQL for the MiniTower [`Store`](minitower_store::Store): several
//! control-plane replicas sharing one database.
//!
//! The statements themselves live in `minitower-store-sql`, shared with
//! SQLite; this crate connects, migrates and says how PostgreSQL differs
//! ([`DIALECT`]): transitions lock the run row first (then attempt, then
//! runner), so concurrent calls from any number of replicas queue instead
//! of deadlocking, and leasing picks the next queued run with `FOR UPDATE
//! SKIP LOCKED`, so replicas never wait on, or hand out, the same run. The
//! schema refuses the states the control plane must never reach (see
//! `migrations/0001_init.sql`) and NOTIFYs other replicas of queued runs
//! and run changes; [`listen`] turns those notifications into [`Event`]s.

mod events;
pub mod testing;

pub use events::{listen, Event, Events};

use minitower_store::{StoreError, StoreResult};
use minitower_store_sql::{open_error, Dialect, SqlStore};
use sqlx::any::AnyPoolOptions;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::ConnectOptions;
use std::str::FromStr;
use std::time::Duration;

/// The store type this backend opens.
pub type PgStore = SqlStore;

/// Migrations embedded in the binary, applied by [`open`]. sqlx takes an
/// advisory lock while migrating, so replicas starting together apply each
/// migration once.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connections per replica unless the caller chooses.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;

/// How long a caller waits for a pooled connection before the store
/// answers `Unavailable` (503).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// How PostgreSQL differs from the shared SQL.
pub static DIALECT: Dialect = Dialect {
    name: "postgres",
    // READ COMMITTED: every statement sees what committed before it, which
    // the lock-then-read pattern relies on
    begin_write: None,
    begin_snapshot: Some("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"),
    row_locks: true,
    writable_ctes: true,
    now_ms: Some("CAST(FLOOR(EXTRACT(EPOCH FROM now()) * 1000) AS BIGINT)"),
    // Index scans over one team's runs, not a trigger-maintained counter
    // table as in SQLite: with several replicas writing, one counter row per
    // status would make every lease of an app wait on the same row.
    status_counts: "SELECT status, COUNT(*) AS n FROM runs WHERE team_id = $1 GROUP BY status",
    pending_counts: "SELECT t.slug AS team, a.slug AS app, p.environment, COALESCE(q.n, 0) AS n \
         FROM run_placements p \
         JOIN apps a ON a.id = p.app_id JOIN teams t ON t.id = p.team_id \
         LEFT JOIN (SELECT team_id, app_id, environment, COUNT(*) AS n FROM runs \
                    WHERE status = 'queued' GROUP BY team_id, app_id, environment) q \
           ON q.team_id = p.team_id AND q.app_id = p.app_id AND q.environment = p.environment \
         ORDER BY t.slug COLLATE \"C\", a.slug COLLATE \"C\", p.environment COLLATE \"C\"",
    on_close: None,
    text_holds_nul: false,
    // autovacuum makes freed space reusable; the files need no help
    reclaim_step: None,
    reclaimable: None,
};

/// Parses a `postgres://` URL, naming the problem without echoing a password.
pub fn connect_options(url: &str) -> StoreResult<PgConnectOptions> {
    PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Database(format!("invalid PostgreSQL URL: {e}")))
}

/// Connects to the database at `url` and applies pending migrations.
pub async fn open(url: &str) -> StoreResult<PgStore> {
    open_with(connect_options(url)?, DEFAULT_MAX_CONNECTIONS).await
}

/// Like [`open`] with parsed options and a pool size.
pub async fn open_with(options: PgConnectOptions, max_connections: u32) -> StoreResult<PgStore> {
    let native = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options.clone())
        .await
        .map_err(|e| open_error("connecting to PostgreSQL", e))?;
    MIGRATOR
        .run(&native)
        .await
        .map_err(|e| open_error("migrating PostgreSQL", e))?;
    native.close().await;

    minitower_store_sql::install_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(max_connections.max(2))
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect(options.to_url_lossy().as_str())
        .await
        .map_err(|e| open_error("connecting to PostgreSQL", e))?;
    Ok(SqlStore::new(pool, &DIALECT))
}
