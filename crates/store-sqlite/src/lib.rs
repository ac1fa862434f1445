//! SQLite for the MiniTower [`Store`](minitower_store::Store): the embedded,
//! single-machine default.
//!
//! The statements themselves live in `minitower-store-sql`, shared with
//! PostgreSQL; this crate opens the file, migrates it and says how SQLite
//! differs ([`DIALECT`]).
//!
//! One file in WAL mode. Every write transaction goes through a single writer
//! connection, run in place on the caller's thread (see
//! `minitower_store_sql::Lite`), and begins with `BEGIN IMMEDIATE`, so
//! writers queue for the connection instead of fighting over SQLite's lock
//! (no `SQLITE_BUSY` among ourselves) and no read-then-write transaction can
//! fail half-way, while a small read-only pool serves lists and lookups
//! concurrently. The schema itself
//! refuses the states the control plane must never reach (see
//! `migrations/0001_init.sql`).

use minitower_store::{StoreError, StoreResult};
use minitower_store_sql::{open_error, Dialect, SqlStore};
use sqlx::any::AnyPoolOptions;
use sqlx::sqlite::{SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::Executor;
use std::path::Path;
use std::time::Duration;

/// The store type this backend opens.
pub type SqliteStore = SqlStore;

/// Migrations embedded in the binary, applied by [`open`].
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long a connection waits for a lock held by another process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Concurrent readers; reads never block the writer in WAL mode.
const READERS: u32 = 4;
/// How long a caller waits for a pooled connection before the store
/// answers `Unavailable` (503).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// How SQLite differs from the shared SQL.
pub static DIALECT: Dialect = Dialect {
    name: "sqlite",
    begin_write: Some("BEGIN IMMEDIATE"),
    begin_snapshot: None,
    // one writer: a transaction already excludes every other writer
    row_locks: false,
    writable_ctes: false,
    now_ms: None,
    status_counts: "SELECT status, SUM(n) AS n FROM run_counts WHERE team_id = $1 GROUP BY status",
    pending_counts: "SELECT t.slug AS team, a.slug AS app, c.environment, c.n FROM run_counts c \
         JOIN apps a ON a.id = c.app_id JOIN teams t ON t.id = c.team_id \
         WHERE c.status = 'queued' ORDER BY t.slug, a.slug, c.environment",
    // the database file alone is complete even if a straggling reader keeps
    // SQLite from deleting the WAL
    on_close: Some("PRAGMA wal_checkpoint(TRUNCATE)"),
    text_holds_nul: true,
    // Incremental auto-vacuum (set when the file is created, see `open`):
    // deleted rows' pages go back to the file system a bounded number at a
    // time, each step a short write. 2048 pages: 8 MiB at 4 KiB pages.
    reclaim_step: Some("PRAGMA incremental_vacuum(2048)"),
    // 0 unless the file was created with incremental auto-vacuum: an older
    // file reuses its free pages but cannot shrink without a `VACUUM`.
    reclaimable: Some(
        "SELECT CASE WHEN a.auto_vacuum = 2 THEN f.freelist_count ELSE 0 END \
         FROM pragma_auto_vacuum a, pragma_freelist_count f",
    ),
};

/// Per-connection settings (sqlx's `Any` driver connects from a URL, which
/// carries none of them). `temp_store = MEMORY` keeps each write unit's
/// savepoint journal (the pages it changed, to undo it alone; see
/// `minitower_store_sql::group`) in memory: by default a journal past 64 KiB
/// spills to a temporary file, which a result that also leases the next
/// run reached, doubling the bytes written per run.
const PRAGMAS: &str = "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
     PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY;";

/// Opens (creating the file and its parent folder when missing) and
/// migrates the database at `path`.
pub async fn open(path: &Path) -> StoreResult<SqliteStore> {
    minitower_store_sql::Lite::configure_library();
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            StoreError::Database(format!("cannot create {}: {e}", parent.display()))
        })?;
    }
    // Create, switch to WAL and migrate with the native driver, then serve
    // through the shared SQL on `Any` connections to the same file.
    let native = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(path)
                .foreign_keys(true)
                .busy_timeout(BUSY_TIMEOUT)
                .create_if_missing(true)
                // Only takes effect in a new file (before its first table):
                // lets retention give deleted runs' space back (see
                // `DIALECT.reclaim_step`).
                .auto_vacuum(SqliteAutoVacuum::Incremental)
                .journal_mode(SqliteJournalMode::Wal),
        )
        .await
        .map_err(|e| open_error(&format!("opening {}", path.display()), e))?;
    MIGRATOR
        .run(&native)
        .await
        .map_err(|e| open_error(&format!("migrating {}", path.display()), e))?;
    native.close().await;

    minitower_store_sql::install_drivers();
    let url = file_url(path)?;
    let lite = |write| {
        minitower_store_sql::Lite::open(path, write, PRAGMAS)
            .map_err(|e| open_error(&format!("opening {}", path.display()), e))
    };
    let writer = lite(true)?;
    let readers = (0..READERS)
        .map(|_| lite(false))
        .collect::<Result<Vec<_>, _>>()?;
    // Only for `SqlStore::pool` (tooling): connects when first used.
    let pool = AnyPoolOptions::new()
        .max_connections(READERS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_connect(|conn, _| Box::pin(async move { conn.execute(PRAGMAS).await.map(|_| ()) }))
        .connect_lazy(&format!("{url}?mode=ro"))
        .map_err(|e| open_error(&format!("opening {}", path.display()), e))?;
    Ok(SqlStore::with_lite(writer, readers, pool, &DIALECT))
}

/// `sqlite://` URL of `path`, percent-encoded so `?`, `#` and `%` in a file
/// name stay part of it.
fn file_url(path: &Path) -> StoreResult<String> {
    let abs = std::path::absolute(path)
        .map_err(|e| StoreError::Database(format!("cannot resolve {}: {e}", path.display())))?;
    let s = abs
        .to_str()
        .ok_or_else(|| StoreError::Database(format!("{} is not UTF-8", abs.display())))?;
    let mut out = String::from("sqlite://");
    for b in s.bytes() {
        match b {
            b'%' | b'?' | b'#' => out.push_str(&format!("%{b:02X}")),
            _ => out.push(b as char),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls_keep_odd_names() {
        let u = file_url(Path::new("/tmp/a?b#c%d.db")).unwrap();
        assert_eq!(u, "sqlite:///tmp/a%3Fb%23c%25d.db");
    }
}
