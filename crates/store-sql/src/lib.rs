//! The MiniTower [`Store`](minitower_store::Store) written once, in SQL that
//! SQLite and PostgreSQL both run, through sqlx's `Any` API: on PostgreSQL
//! with sqlx's driver, on SQLite in place on the calling thread ([`lite`],
//! one writer with group commit in [`group`], a few readers), so a SQLite
//! transaction costs no thread hop per statement.
//!
//! Every statement and transaction script lives here exactly once; the
//! backend crates (`minitower-store-sqlite`, `minitower-store-postgres`) only
//! open connections, apply their migrations and pick a [`Dialect`]. The two
//! schemas store the same values the same way (times as unix milliseconds in
//! a 64-bit integer, JSON as text), so a row reads back identically from
//! either.
//!
//! What truly differs is the [`Dialect`]: how a write transaction begins
//! (SQLite takes the one write lock up front with `BEGIN IMMEDIATE`;
//! PostgreSQL locks rows), the row-locking clauses (`FOR UPDATE`,
//! `SKIP LOCKED`: kept on PostgreSQL, dropped on SQLite where the single
//! writer already serializes every transaction), whose clock leases use,
//! and the two counting queries each schema keeps an index or a table for.
//!
//! Invariant: each transition is a compare-and-set checked by
//! `rows_affected`, after the run row is locked (a no-op under SQLite's
//! single writer). The conformance suite in `minitower-store` runs unchanged
//! against both backends and proves it, races included.

mod apps;
mod attempts;
mod conn;
mod db;
mod dialect;
mod environments;
mod group;
mod lite;
mod reaper;
mod retention;
mod runner;
mod runs;
mod schedules;
mod stats;
mod store_impl;
mod teams;
mod webhooks;

pub use dialect::Dialect;
pub use lite::Lite;

use minitower_store::{StoreError, StoreResult};
use sqlx::Any;
use sqlx::AnyPool;

pub(crate) use conn::{Db, Tx};

/// Makes sqlx's `Any` driver able to open SQLite and PostgreSQL URLs.
/// Idempotent; the backend crates call it before building their pools.
pub fn install_drivers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(sqlx::any::install_default_drivers);
}

/// How long a caller waits for a SQLite connection before the store
/// answers `Unavailable`, as sqlx pools do with their acquire timeout.
const LITE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Where writes go.
#[derive(Clone)]
enum Writer {
    /// A sqlx pool (PostgreSQL).
    Pool(AnyPool),
    /// SQLite's one writer connection, run in place (see [`lite`]).
    Lite(lite::LiteSlot),
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Writer::Pool(p) => p.fmt(f),
            Writer::Lite(_) => f.write_str("Writer::Lite"),
        }
    }
}

/// The store: a writer (a pool on PostgreSQL, one connection run in place
/// on SQLite), where reads go (the same pool on PostgreSQL, a few read-only
/// connections run in place on SQLite) and the dialect of the database
/// behind them.
#[derive(Debug, Clone)]
pub struct SqlStore {
    writer: Writer,
    reader: AnyPool,
    /// SQLite's read-only connections run in place; reads use `reader`
    /// when empty.
    lite_readers: std::sync::Arc<[lite::LiteSlot]>,
    dialect: &'static Dialect,
    /// Take lease, heartbeat and expiry times from the database instead of
    /// the caller's `now`, so replicas with different clocks agree.
    db_clock: bool,
}

impl SqlStore {
    /// A store on a pool the backend opened and migrated, for reads and
    /// writes alike.
    pub fn new(pool: AnyPool, dialect: &'static Dialect) -> SqlStore {
        SqlStore {
            writer: Writer::Pool(pool.clone()),
            reader: pool,
            lite_readers: std::sync::Arc::new([]),
            dialect,
            db_clock: false,
        }
    }

    /// A store on SQLite connections run in place: one writer and a few
    /// readers. `pool` (connected lazily) only serves [`SqlStore::pool`].
    pub fn with_lite(
        writer: Lite,
        readers: Vec<Lite>,
        pool: AnyPool,
        dialect: &'static Dialect,
    ) -> SqlStore {
        let slot = |c| std::sync::Arc::new(tokio::sync::Mutex::new(Some(c)));
        SqlStore {
            writer: Writer::Lite(slot(writer)),
            lite_readers: readers.into_iter().map(slot).collect(),
            reader: pool,
            dialect,
            db_clock: false,
        }
    }

    /// Lease expiry decided on the database's clock: the lease, start,
    /// heartbeat, release and reaper calls ignore the `now` they are given
    /// and use the database's. Every replica of a PostgreSQL deployment
    /// should use it (`minitowerd` does); tests that inject time do not.
    /// Refused (a no-op) by dialects without a shared clock.
    pub fn with_database_clock(mut self) -> SqlStore {
        self.db_clock = self.dialect.now_ms.is_some();
        self
    }

    /// The dialect this store speaks.
    pub fn dialect(&self) -> &'static Dialect {
        self.dialect
    }

    /// The read pool (on PostgreSQL also the write pool), for callers that
    /// need raw access (tests, tooling).
    pub fn pool(&self) -> &AnyPool {
        &self.reader
    }

    /// Closes the connections for a graceful shutdown (SQLite's open group
    /// commits first), after the dialect's closing statement (SQLite
    /// checkpoints its WAL into the main file, so the database file alone is
    /// complete).
    pub async fn close(&self) {
        self.reader.close().await;
        match &self.writer {
            Writer::Pool(pool) => {
                if let Some(sql) = self.dialect.on_close {
                    if !pool.is_closed() {
                        if let Err(e) = sqlx::query(sql).execute(pool).await {
                            tracing::warn!(error = %e, "closing statement failed");
                        }
                    }
                }
                pool.close().await;
            }
            Writer::Lite(lite) => {
                for reader in self.lite_readers.iter() {
                    reader.lock().await.take();
                }
                // Taken out, so later writes answer `Unavailable` like a
                // closed pool; dropping it closes the connection.
                if let Some(mut conn) = lite.lock().await.take() {
                    conn.commit_group();
                    if let Some(sql) = self.dialect.on_close {
                        if let Err(e) = conn.batch(sql) {
                            tracing::warn!(error = %e, "closing statement failed");
                        }
                    }
                }
            }
        }
    }

    /// The writer with no transaction open (each statement commits alone;
    /// on SQLite, an open group commits first).
    pub(crate) async fn write_conn(&self) -> StoreResult<Db> {
        match &self.writer {
            Writer::Pool(pool) => Ok(Db::Conn(pool.acquire().await.map_err(db::err)?)),
            Writer::Lite(lite) => {
                let mut db = Self::hold(Self::wait(lite.clone().lock_owned()).await?)?;
                if let Db::Lite(guard) = &mut db {
                    guard.conn.commit_group();
                }
                Ok(db)
            }
        }
    }

    /// Waits for a SQLite connection like a pool would: at most
    /// [`LITE_WAIT`], then `Unavailable` (503).
    async fn wait<T>(lock: impl std::future::Future<Output = T>) -> StoreResult<T> {
        tokio::time::timeout(LITE_WAIT, lock)
            .await
            .map_err(|_| db::err(sqlx::Error::PoolTimedOut))
    }

    /// A held SQLite connection, or `Unavailable` once the store is closed.
    fn hold(guard: tokio::sync::OwnedMutexGuard<Option<Lite>>) -> StoreResult<Db> {
        let guard = tokio::sync::OwnedMutexGuard::try_map(guard, Option::as_mut)
            .map_err(|_| db::err(sqlx::Error::PoolClosed))?;
        Ok(Db::Lite(conn::LiteGuard {
            conn: guard,
            mode: conn::LiteMode::Plain,
        }))
    }

    /// A connection to read on: a free SQLite reader (waiting for one in
    /// turn when all are busy), or one from the read pool.
    pub(crate) async fn read_conn(&self) -> StoreResult<Db> {
        if self.lite_readers.is_empty() {
            return Ok(Db::Conn(self.reader.acquire().await.map_err(db::err)?));
        }
        for reader in self.lite_readers.iter() {
            if let Ok(guard) = reader.clone().try_lock_owned() {
                return Self::hold(guard);
            }
        }
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.lite_readers.len();
        Self::hold(Self::wait(self.lite_readers[n].clone().lock_owned()).await?)
    }

    /// Starts a write transaction in the dialect's way.
    pub(crate) async fn write(&self) -> StoreResult<Tx> {
        match &self.writer {
            Writer::Pool(pool) => Ok(Tx(Db::Tx(
                match self.dialect.begin_write {
                    Some(sql) => pool.begin_with(sql).await,
                    None => pool.begin().await,
                }
                .map_err(db::err)?,
            ))),
            Writer::Lite(lite) => {
                // A unit of the writer's group (see `group`).
                let mut db = Self::hold(Self::wait(lite.clone().lock_owned()).await?)?;
                if let Db::Lite(guard) = &mut db {
                    guard
                        .conn
                        .begin_unit(self.dialect.begin_write.unwrap_or("BEGIN"))
                        .map_err(db::err)?;
                    guard.mode = conn::LiteMode::Unit(lite.clone());
                }
                Ok(Tx(db))
            }
        }
    }

    /// Starts a read-only transaction on one snapshot, for reads that must
    /// agree with each other (a run and its attempts).
    pub(crate) async fn snapshot(&self) -> StoreResult<Tx> {
        if !self.lite_readers.is_empty() {
            let mut db = self.read_conn().await?;
            if let Db::Lite(guard) = &mut db {
                guard.conn.batch("BEGIN").map_err(db::err)?;
            }
            return Ok(Tx(db));
        }
        Ok(Tx(Db::Tx(
            match self.dialect.begin_snapshot {
                Some(sql) => self.reader.begin_with(sql).await,
                None => self.reader.begin().await,
            }
            .map_err(db::err)?,
        )))
    }

    /// `sql` as this dialect runs it (see [`Dialect::sql`]).
    pub(crate) fn sql<'a>(&self, sql: &'a str) -> std::borrow::Cow<'a, str> {
        self.dialect.sql(sql)
    }

    /// `given` in milliseconds, or the database's time when the store uses
    /// its clock.
    pub(crate) async fn now<'c, E>(
        &self,
        conn: E,
        given: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<i64>
    where
        E: sqlx::Executor<'c, Database = Any>,
    {
        match (self.db_clock, self.dialect.now_ms) {
            (true, Some(expr)) => sqlx::query_scalar(&format!("SELECT {expr}"))
                .fetch_one(conn)
                .await
                .map_err(db::err),
            _ => Ok(db::ms(given)),
        }
    }

    /// What a statement writes for "now": the parameter `given` (the
    /// caller's time, bound by the caller), or the database's time when the
    /// store uses its clock, so a statement can take the time it also
    /// returns without a round trip of its own.
    pub(crate) fn now_sql<'a>(&self, given: &'a str) -> &'a str {
        match (self.db_clock, self.dialect.now_ms) {
            (true, Some(expr)) => expr,
            _ => given,
        }
    }
}

/// Used by backends to report a failure to open or migrate.
pub fn open_error(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(format!("{what}: {e}"))
}
