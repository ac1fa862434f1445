//! SQLite implementation of the MiniTower [`Store`](minitower_store::Store):
//! the embedded, single-machine default.
//!
//! One file in WAL mode. Every write transaction goes through a single writer
//! connection, so writers queue in the pool instead of fighting over SQLite's
//! lock (no `SQLITE_BUSY` among ourselves), while a small read-only pool
//! serves lists and lookups concurrently. Transitions are still written as
//! compare-and-set updates checked by `rows_affected`, and the schema itself
//! refuses the states the control plane must never reach (see
//! `migrations/0001_init.sql`).

mod apps;
mod attempts;
mod db;
mod reaper;
mod runner;
mod runs;
mod stats;
mod store_impl;
mod teams;

use minitower_store::{StoreError, StoreResult};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Sqlite;
use std::path::Path;
use std::time::Duration;

/// Migrations embedded in the binary, applied by [`SqliteStore::open`].
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long a connection waits for a lock held by another process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Concurrent readers; reads never block the writer in WAL mode.
const READERS: u32 = 4;

/// The SQLite store: one writer connection and a read-only pool on one file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

/// A write transaction on the writer connection.
pub(crate) type Tx = sqlx::Transaction<'static, Sqlite>;

impl SqliteStore {
    /// Opens (creating the file and its parent folder when missing) and
    /// migrates the database at `path`.
    pub async fn open(path: &Path) -> StoreResult<SqliteStore> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Database(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let base = SqliteConnectOptions::new()
            .filename(path)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .synchronous(SqliteSynchronous::Normal);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            // an idle writer must stay: reconnecting costs nothing, but a
            // reaped writer mid-burst would only add latency
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(
                base.clone()
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal),
            )
            .await
            .map_err(db::err)?;
        MIGRATOR
            .run(&writer)
            .await
            .map_err(|e| StoreError::Database(format!("migrating {}: {e}", path.display())))?;
        // Opened after the writer created the file and switched it to WAL.
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(base.read_only(true))
            .await
            .map_err(db::err)?;
        Ok(SqliteStore { writer, reader })
    }

    /// Closes both pools for a graceful shutdown. The WAL is checkpointed
    /// into the main file first, so the database file alone is complete
    /// even if a straggling reader keeps SQLite from deleting the WAL.
    pub async fn close(&self) {
        self.reader.close().await;
        if !self.writer.is_closed() {
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.writer)
                .await
            {
                tracing::warn!(error = %e, "WAL checkpoint at close failed");
            }
        }
        self.writer.close().await;
    }

    /// Starts a write transaction. `BEGIN IMMEDIATE` takes the write lock up
    /// front, so even another process on the same file cannot make a
    /// read-then-write transaction fail half-way.
    pub(crate) async fn write(&self) -> StoreResult<Tx> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db::err)
    }
}
