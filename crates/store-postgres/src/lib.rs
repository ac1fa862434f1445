//! PostgreSQL implementation of the MiniTower [`Store`](minitower_store::Store):
//! several control-plane replicas sharing one database.
//!
//! Every transition reads the row it changes under a row lock and writes it
//! with the same compare-and-set updates as the SQLite backend, checked by
//! `rows_affected`. Locks are always taken run row first (then attempt, then
//! runner), so concurrent calls from any number of replicas queue instead of
//! deadlocking; leasing picks the next queued run with `FOR UPDATE SKIP
//! LOCKED`, so replicas never wait on, or hand out, the same run. The schema
//! refuses the states the control plane must never reach (see
//! `migrations/0001_init.sql`) and NOTIFYs other replicas of queued runs and
//! run changes; [`listen`] turns those notifications into [`Event`]s.

mod apps;
mod attempts;
mod db;
mod events;
mod reaper;
mod runner;
mod runs;
mod stats;
mod store_impl;
mod teams;
pub mod testing;

pub use events::{listen, Event, Events};

use chrono::{DateTime, Utc};
use minitower_store::{StoreError, StoreResult};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::Postgres;
use std::str::FromStr;
use std::time::Duration;

/// Migrations embedded in the binary, applied by [`PgStore::open`]. sqlx takes
/// an advisory lock while migrating, so replicas starting together apply
/// each migration once.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connections per replica unless the caller chooses.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;

/// The Postgres store: a connection pool on one database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Take lease, heartbeat and expiry times from the database (`now()`)
    /// instead of the caller's `now`, so replicas with different clocks agree.
    db_clock: bool,
}

/// A transaction on a pooled connection.
pub(crate) type Tx = sqlx::Transaction<'static, Postgres>;

/// Parses a `postgres://` URL, naming the problem without echoing a password.
pub fn connect_options(url: &str) -> StoreResult<PgConnectOptions> {
    PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Database(format!("invalid PostgreSQL URL: {e}")))
}

impl PgStore {
    /// Connects to the database at `url` and applies pending migrations.
    pub async fn open(url: &str) -> StoreResult<PgStore> {
        Self::open_with(connect_options(url)?, DEFAULT_MAX_CONNECTIONS).await
    }

    /// Like [`PgStore::open`] with parsed options and a pool size.
    pub async fn open_with(
        options: PgConnectOptions,
        max_connections: u32,
    ) -> StoreResult<PgStore> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Database(format!("connecting to PostgreSQL: {e}")))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migrating PostgreSQL: {e}")))?;
        Ok(PgStore {
            pool,
            db_clock: false,
        })
    }

    /// Lease expiry decided on the database's clock: the lease, start,
    /// heartbeat and reaper calls ignore the `now` they are given and use
    /// PostgreSQL's `now()`. Every replica of a deployment should use it
    /// (`minitowerd` does); tests that inject time do not.
    pub fn with_database_clock(mut self) -> PgStore {
        self.db_clock = true;
        self
    }

    /// `given`, or the database's time when the store uses its clock.
    pub(crate) async fn now<'c, E>(
        &self,
        conn: E,
        given: DateTime<Utc>,
    ) -> StoreResult<DateTime<Utc>>
    where
        E: sqlx::PgExecutor<'c>,
    {
        if !self.db_clock {
            return Ok(db::ms_ts(given));
        }
        let t: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
            .fetch_one(conn)
            .await
            .map_err(db::err)?;
        Ok(db::ms_ts(t))
    }

    /// The pool, for callers that need raw access (tests, tooling).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes the pool for a graceful shutdown.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a read-write transaction (READ COMMITTED: every statement sees
    /// what committed before it, which the lock-then-read pattern relies on).
    pub(crate) async fn write(&self) -> StoreResult<Tx> {
        self.pool.begin().await.map_err(db::err)
    }

    /// Starts a read-only transaction on one snapshot, for reads that must
    /// agree with each other (a run and its attempts).
    pub(crate) async fn snapshot(&self) -> StoreResult<Tx> {
        self.pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(db::err)
    }
}
