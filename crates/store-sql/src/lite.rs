//! SQLite's single writer connection, run in place: every statement of a
//! write transaction executes on the calling task's thread, straight into
//! SQLite, instead of being handed to sqlx's per-connection worker thread
//! and its answer handed back (two thread wake-ups per statement, which is
//! where a run's control-plane time went: 38 statements, 129 context
//! switches per run, with SQLite itself 3% of the CPU).
//!
//! Invariant: one transaction at a time on the one writer connection, in
//! arrival order. [`LiteWriter`] is a fair (FIFO) async mutex around the
//! connection; a transaction holds the guard from `BEGIN IMMEDIATE` to
//! `COMMIT`, and a guard dropped before its commit (an error, a panic, a
//! cancelled request) rolls back on the spot, synchronously, before the next
//! caller can take the connection. No statement of the store awaits anything
//! but the database, so a transaction never yields while it holds the lock:
//! it runs start to finish on one thread with no hop at all. The
//! conformance suite (races included) runs against this writer unchanged,
//! which is the proof; `lite::tests` cover the row, argument and error
//! mapping.
//!
//! The statements stay written once, in `sqlx` syntax: [`Lite::run`] takes
//! the same SQL and `Any` arguments sqlx's SQLite driver would, binds `$N`
//! by number as it does, and answers with `Any` rows, so every caller's
//! `sqlx::query(…).fetch_one(&mut *tx)` reads the same values from either
//! path. Reads run in place the same way, on a few read-only connections
//! beside the writer (WAL mode: they never block it nor it them); a read
//! takes whichever is free.

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use sqlx::any::AnyValue;
use sqlx::any::{AnyArguments, AnyQueryResult, AnyRow, AnyTypeInfo, AnyTypeInfoKind};
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::Either;
use sqlx_core::any::{AnyColumn, AnyValueKind};
use sqlx_core::ext::ustr::UStr;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// Statements kept prepared on the writer (the store has about 150).
const STATEMENT_CACHE: usize = 256;

/// A connection shared by every clone of the store; `None` once the store
/// is closed.
pub(crate) type LiteSlot = Arc<tokio::sync::Mutex<Option<Lite>>>;

/// Column names and columns of one statement's result, built once per SQL.
type Shape = (Arc<sqlx_core::HashMap<UStr, usize>>, Arc<[AnyColumn]>);

/// A rusqlite connection speaking sqlx's `Any` types.
pub struct Lite {
    conn: rusqlite::Connection,
    shapes: HashMap<Box<str>, Shape>,
    /// The writer's open transaction (see [`crate::group`]).
    pub(crate) group: Option<crate::group::OpenGroup>,
    /// Groups begun so far, to tell them apart.
    pub(crate) groups: u64,
}

impl std::fmt::Debug for Lite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lite").finish_non_exhaustive()
    }
}

/// One step of a result: a row, or the statement's outcome.
pub(crate) type Step = Either<AnyQueryResult, AnyRow>;

impl Lite {
    /// Process-wide SQLite settings, applied before SQLite's first use (the
    /// backend calls this before it opens anything; later calls do nothing).
    ///
    /// Memory statistics off: with them on (SQLite's default) every one of
    /// SQLite's allocations and frees takes a process-wide mutex to count
    /// bytes, which nothing here reads (no soft heap limit is set).
    ///
    /// SQLite allocates from mimalloc, as the binaries' Rust code does (see
    /// `minitowerd.rs`): through glibc's `malloc`, SQLite's allocations were
    /// 11% of the server's CPU in `dispatch` (`perf`, 2026-12-08), the writer
    /// building and freeing statement cursors, records and pages per row.
    ///
    /// SQLite refuses both settings once initialized; that is harmless (it
    /// then keeps its own allocator, for every allocation alike).
    pub fn configure_library() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            use rusqlite::ffi;
            // SAFETY: SQLITE_CONFIG_MEMSTATUS takes one int and
            // SQLITE_CONFIG_MALLOC a pointer to methods SQLite copies;
            // sqlite3_config is called before any connection of this
            // process (or returns SQLITE_MISUSE without effect), so no
            // allocation made by one allocator is ever freed by the other.
            unsafe {
                ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as std::os::raw::c_int);
                let methods = ffi::sqlite3_mem_methods {
                    xMalloc: Some(mi::malloc),
                    xFree: Some(mi::free),
                    xRealloc: Some(mi::realloc),
                    xSize: Some(mi::size),
                    xRoundup: Some(mi::roundup),
                    xInit: Some(mi::init),
                    xShutdown: Some(mi::shutdown),
                    pAppData: std::ptr::null_mut(),
                };
                ffi::sqlite3_config(
                    ffi::SQLITE_CONFIG_MALLOC,
                    &methods as *const ffi::sqlite3_mem_methods,
                );
            }
        });
    }

    /// Opens `path` (it must exist: the backend created and migrated it),
    /// read-write or read-only, and applies `setup` (per-connection
    /// pragmas).
    pub fn open(path: &std::path::Path, write: bool, setup: &str) -> Result<Lite, sqlx::Error> {
        use rusqlite::OpenFlags;
        let mode = match write {
            true => OpenFlags::SQLITE_OPEN_READ_WRITE,
            false => OpenFlags::SQLITE_OPEN_READ_ONLY,
        };
        let conn =
            rusqlite::Connection::open_with_flags(path, mode | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(map_err)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.execute_batch(setup).map_err(map_err)?;
        Ok(Lite {
            conn,
            shapes: HashMap::new(),
            group: None,
            groups: 0,
        })
    }

    /// Runs one statement (or, without arguments, a `;`-separated batch),
    /// stopping after `limit` rows when given. The steps are what sqlx's
    /// SQLite driver would have streamed: the rows, then the outcome.
    pub(crate) fn run(
        &mut self,
        sql: &str,
        args: Option<AnyArguments<'_>>,
        limit: Option<usize>,
    ) -> Result<Vec<Step>, sqlx::Error> {
        // rusqlite would prepare the first statement and ignore the rest.
        if sql.trim_end().trim_end_matches(';').contains(';') {
            if args.is_some() {
                return Err(lite_error(
                    "one statement per query when it has arguments".into(),
                ));
            }
            self.conn.execute_batch(sql).map_err(map_err)?;
            return Ok(vec![Either::Left(AnyQueryResult {
                rows_affected: self.conn.changes(),
                last_insert_id: None,
            })]);
        }
        let mut stmt = self.conn.prepare_cached(sql).map_err(map_err)?;
        let values = args.map(|a| a.values.0).unwrap_or_default();
        for i in 1..=stmt.parameter_count() {
            // `$N` and `?N` name the Nth argument (as sqlx binds them);
            // anything else takes arguments in order.
            let n = stmt
                .parameter_name(i)
                .and_then(|name| name.get(1..))
                .and_then(|digits| digits.parse::<usize>().ok())
                .unwrap_or(i);
            let value = values.get(n.wrapping_sub(1)).ok_or_else(|| {
                lite_error(format!(
                    "statement has parameter {n}, only {} bound",
                    values.len()
                ))
            })?;
            stmt.raw_bind_parameter(i, to_sql(value)).map_err(map_err)?;
        }
        let writes = !stmt.readonly();
        let shape = match self.shapes.get(sql) {
            Some(shape) => shape.clone(),
            None => {
                // Bounded like the statement cache: SQL built per call (a
                // list of N placeholders) must not grow it forever.
                if self.shapes.len() >= STATEMENT_CACHE {
                    self.shapes.clear();
                }
                let shape = shape_of(&stmt);
                self.shapes.insert(sql.into(), shape.clone());
                shape
            }
        };
        let mut out = Vec::new();
        let mut rows = stmt.raw_query();
        while limit.is_none_or(|l| out.len() < l) {
            let Some(row) = rows.next().map_err(map_err)? else {
                break;
            };
            let mut values = Vec::with_capacity(shape.1.len());
            for i in 0..shape.1.len() {
                values.push(AnyValue {
                    kind: from_sql(row.get_ref(i).map_err(map_err)?)?,
                });
            }
            out.push(Either::Right(AnyRow {
                column_names: shape.0.clone(),
                columns: shape.1.to_vec(),
                values,
            }));
        }
        drop(rows);
        out.push(Either::Left(AnyQueryResult {
            rows_affected: if writes { self.conn.changes() } else { 0 },
            last_insert_id: None,
        }));
        Ok(out)
    }

    /// Runs statements without arguments or results (`BEGIN`, `COMMIT`,
    /// `ROLLBACK`, pragmas).
    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        self.conn.execute_batch(sql).map_err(map_err)
    }

    /// Whether a transaction is open on the connection.
    pub(crate) fn in_transaction(&self) -> bool {
        !self.conn.is_autocommit()
    }
}

/// Names and (untyped) columns of a prepared statement's result.
fn shape_of(stmt: &rusqlite::Statement<'_>) -> Shape {
    let mut names = sqlx_core::HashMap::new();
    let mut columns = Vec::new();
    for (ordinal, name) in stmt.column_names().into_iter().enumerate() {
        let name = UStr::new(name);
        names.insert(name.clone(), ordinal);
        columns.push(AnyColumn {
            ordinal,
            name,
            type_info: AnyTypeInfo {
                kind: AnyTypeInfoKind::Null,
            },
        });
    }
    (Arc::new(names), columns.into())
}

/// An argument as SQLite takes it (sqlx's SQLite driver maps the same way).
fn to_sql<'a>(v: &'a AnyValueKind<'_>) -> ToSqlOutput<'a> {
    match v {
        AnyValueKind::Null(_) => ToSqlOutput::Owned(Value::Null),
        AnyValueKind::Bool(b) => ToSqlOutput::Owned(Value::Integer(i64::from(*b))),
        AnyValueKind::SmallInt(i) => ToSqlOutput::Owned(Value::Integer(i64::from(*i))),
        AnyValueKind::Integer(i) => ToSqlOutput::Owned(Value::Integer(i64::from(*i))),
        AnyValueKind::BigInt(i) => ToSqlOutput::Owned(Value::Integer(*i)),
        AnyValueKind::Real(r) => ToSqlOutput::Owned(Value::Real(f64::from(*r))),
        AnyValueKind::Double(d) => ToSqlOutput::Owned(Value::Real(*d)),
        AnyValueKind::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
        AnyValueKind::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        // `AnyValueKind` is non-exhaustive; sqlx 0.8.6 has no other kind.
        #[allow(unreachable_patterns)]
        _ => ToSqlOutput::Owned(Value::Null),
    }
}

/// A column value as sqlx's SQLite driver reports it: by the value's own
/// storage class.
fn from_sql(v: ValueRef<'_>) -> Result<AnyValueKind<'static>, sqlx::Error> {
    Ok(match v {
        ValueRef::Null => AnyValueKind::Null(AnyTypeInfoKind::Null),
        ValueRef::Integer(i) => AnyValueKind::BigInt(i),
        ValueRef::Real(f) => AnyValueKind::Double(f),
        ValueRef::Text(t) => AnyValueKind::Text(Cow::Owned(
            String::from_utf8(t.to_vec()).map_err(|e| sqlx::Error::Decode(e.into()))?,
        )),
        ValueRef::Blob(b) => AnyValueKind::Blob(Cow::Owned(b.to_vec())),
    })
}

/// A SQLite error as sqlx reports one: code, message, constraint kind.
#[derive(Debug, Clone)]
pub(crate) struct LiteError {
    code: Option<i32>,
    message: String,
}

impl LiteError {
    /// An error of ours, without a SQLite code.
    pub(crate) fn new(message: &str) -> LiteError {
        LiteError {
            code: None,
            message: message.into(),
        }
    }
}

impl From<&sqlx::Error> for LiteError {
    fn from(e: &sqlx::Error) -> LiteError {
        let db = e.as_database_error();
        LiteError {
            code: db.and_then(|d| d.code()).and_then(|c| c.parse().ok()),
            message: db.map_or_else(|| e.to_string(), |d| d.message().to_string()),
        }
    }
}

impl std::fmt::Display for LiteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code {
            Some(c) => write!(f, "(code: {c}) {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for LiteError {}

impl DatabaseError for LiteError {
    fn message(&self) -> &str {
        &self.message
    }
    fn code(&self) -> Option<Cow<'_, str>> {
        self.code.map(|c| Cow::Owned(c.to_string()))
    }
    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }
    fn kind(&self) -> ErrorKind {
        use rusqlite::ffi;
        match self.code {
            Some(ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => {
                ErrorKind::UniqueViolation
            }
            Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => ErrorKind::ForeignKeyViolation,
            Some(ffi::SQLITE_CONSTRAINT_NOTNULL) => ErrorKind::NotNullViolation,
            Some(ffi::SQLITE_CONSTRAINT_CHECK) => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

fn lite_error(message: String) -> sqlx::Error {
    sqlx::Error::Database(Box::new(LiteError {
        code: None,
        message,
    }))
}

/// Maps a rusqlite error to the sqlx error the SQLite driver would give.
pub(crate) fn map_err(e: rusqlite::Error) -> sqlx::Error {
    match e {
        rusqlite::Error::SqliteFailure(f, msg) => sqlx::Error::Database(Box::new(LiteError {
            code: Some(f.extended_code),
            message: msg.unwrap_or_else(|| f.to_string()),
        })),
        other => lite_error(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::{Arguments, Row};

    fn lite() -> (tempfile::TempDir, Lite) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        rusqlite::Connection::open(&path).unwrap();
        let mut l = Lite::open(&path, true, "PRAGMA foreign_keys = ON;").unwrap();
        l.batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, \
             score REAL, data BLOB, parent INTEGER REFERENCES t(id));",
        )
        .unwrap();
        (dir, l)
    }

    fn args<'q>(f: impl FnOnce(&mut AnyArguments<'q>)) -> Option<AnyArguments<'q>> {
        let mut a = AnyArguments::default();
        f(&mut a);
        Some(a)
    }

    fn rows(steps: Vec<Step>) -> Vec<AnyRow> {
        steps.into_iter().filter_map(|s| s.right()).collect()
    }

    #[test]
    fn binds_by_number_and_reads_back_every_storage_class() {
        let (_d, mut l) = lite();
        let steps = l
            .run(
                "INSERT INTO t (name, score, data) VALUES ($2, $1, $3) RETURNING id, name",
                args(|a| {
                    a.add(1.5f64).unwrap();
                    a.add("a").unwrap();
                    a.add(vec![1u8, 2]).unwrap();
                }),
                None,
            )
            .unwrap();
        let row = &rows(steps)[0];
        assert_eq!(row.try_get::<i64, _>("id").unwrap(), 1);
        assert_eq!(row.try_get::<String, _>("name").unwrap(), "a");
        // `$1` named twice is one argument
        let got = rows(
            l.run(
                "SELECT $1 AS a, $2 AS b, $1 AS c",
                args(|a| {
                    a.add("x").unwrap();
                    a.add(7i64).unwrap();
                }),
                None,
            )
            .unwrap(),
        );
        assert_eq!(got[0].try_get::<String, _>("c").unwrap(), "x");
        assert_eq!(got[0].try_get::<i64, _>("b").unwrap(), 7);
        let got = rows(
            l.run(
                "SELECT id, name, score, data, parent FROM t WHERE name = $1",
                args(|a| a.add("a").unwrap()),
                None,
            )
            .unwrap(),
        );
        let row = &got[0];
        assert_eq!(row.try_get::<f64, _>("score").unwrap(), 1.5);
        assert_eq!(row.try_get::<Vec<u8>, _>("data").unwrap(), vec![1, 2]);
        assert_eq!(row.try_get::<Option<i64>, _>("parent").unwrap(), None);
        assert!(
            row.try_get::<i64, _>("parent").is_err(),
            "NULL is not a number"
        );
    }

    #[test]
    fn reports_rows_affected_and_honours_the_limit() {
        let (_d, mut l) = lite();
        for name in ["a", "b", "c"] {
            l.run(
                "INSERT INTO t (name) VALUES ($1)",
                args(|a| a.add(name).unwrap()),
                None,
            )
            .unwrap();
        }
        let steps = l
            .run("UPDATE t SET score = 1 WHERE name <> 'a'", None, None)
            .unwrap();
        assert!(matches!(&steps[..], [Either::Left(r)] if r.rows_affected == 2));
        let steps = l
            .run("SELECT name FROM t ORDER BY name", None, None)
            .unwrap();
        assert_eq!(rows(steps).len(), 3);
        let steps = l
            .run("SELECT name FROM t ORDER BY name", None, Some(1))
            .unwrap();
        assert_eq!(rows(steps).len(), 1);
        // a read after a write reports no changes of its own
        let steps = l.run("SELECT name FROM t", None, None).unwrap();
        assert!(matches!(steps.last(), Some(Either::Left(r)) if r.rows_affected == 0));
    }

    #[test]
    fn constraint_errors_keep_their_kind() {
        let (_d, mut l) = lite();
        let insert = |l: &mut Lite, name: &'static str, parent: Option<i64>| {
            l.run(
                "INSERT INTO t (name, parent) VALUES ($1, $2)",
                args(|a| {
                    a.add(name).unwrap();
                    a.add(parent).unwrap();
                }),
                None,
            )
        };
        insert(&mut l, "a", None).unwrap();
        let dup = insert(&mut l, "a", None).err().expect("fails");
        assert!(
            matches!(&dup, sqlx::Error::Database(d) if d.is_unique_violation()),
            "{dup}"
        );
        let fk = insert(&mut l, "b", Some(99)).err().expect("fails");
        assert!(
            matches!(&fk, sqlx::Error::Database(d) if d.is_foreign_key_violation()),
            "{fk}"
        );
        let missing = l
            .run("SELECT $2", args(|a| a.add(1i64).unwrap()), None)
            .err()
            .expect("fails");
        assert!(missing.to_string().contains("parameter 2"), "{missing}");
        assert!(l.run("SELEC 1", None, None).is_err());
    }

    #[test]
    fn sql_built_per_call_does_not_grow_the_cache_forever() {
        let (_d, mut l) = lite();
        for n in 0..STATEMENT_CACHE + 10 {
            let steps = l.run(&format!("SELECT {n} AS n"), None, None).unwrap();
            assert_eq!(rows(steps)[0].try_get::<i64, _>("n").unwrap(), n as i64);
        }
        assert!(l.shapes.len() <= STATEMENT_CACHE, "{}", l.shapes.len());
    }

    #[test]
    fn a_batch_without_arguments_runs_whole() {
        let (_d, mut l) = lite();
        l.run(
            "INSERT INTO t (name) VALUES ('x'); INSERT INTO t (name) VALUES ('y');",
            None,
            None,
        )
        .unwrap();
        let steps = l.run("SELECT COUNT(*) AS n FROM t", None, None).unwrap();
        assert_eq!(rows(steps)[0].try_get::<i64, _>("n").unwrap(), 2);
        let with_args = l.run("SELECT $1; SELECT 2", args(|a| a.add(1i64).unwrap()), None);
        assert!(
            with_args.is_err(),
            "a second statement is never dropped silently"
        );
    }
}

/// SQLite's memory methods on mimalloc (see [`Lite::configure_library`]).
/// SQLite passes sizes as positive `int`s and frees only what these
/// returned.
mod mi {
    use libmimalloc_sys as sys;
    use std::os::raw::{c_int, c_void};

    pub(super) unsafe extern "C" fn malloc(n: c_int) -> *mut c_void {
        sys::mi_malloc(n.max(0) as usize)
    }
    pub(super) unsafe extern "C" fn free(p: *mut c_void) {
        sys::mi_free(p)
    }
    pub(super) unsafe extern "C" fn realloc(p: *mut c_void, n: c_int) -> *mut c_void {
        sys::mi_realloc(p, n.max(0) as usize)
    }
    pub(super) unsafe extern "C" fn size(p: *mut c_void) -> c_int {
        c_int::try_from(sys::mi_usable_size(p)).unwrap_or(c_int::MAX)
    }
    pub(super) unsafe extern "C" fn roundup(n: c_int) -> c_int {
        c_int::try_from(sys::mi_good_size(n.max(0) as usize)).unwrap_or(n)
    }
    pub(super) unsafe extern "C" fn init(_: *mut c_void) -> c_int {
        0
    }
    pub(super) unsafe extern "C" fn shutdown(_: *mut c_void) {}
}
