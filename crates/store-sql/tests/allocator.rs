//! SQLite allocates from mimalloc once `Lite::configure_library` ran before
//! SQLite's first use (see its doc comment for why). A test binary of its
//! own: no other test may initialize SQLite first in this process.

use rusqlite::ffi;

#[test]
fn sqlite_allocates_from_mimalloc_after_configure_library() {
    minitower_store_sql::Lite::configure_library();
    let dir = tempfile::tempdir().unwrap();
    // SQLite works on the configured allocator: a database written and read.
    let conn = rusqlite::Connection::open(dir.path().join("a.db")).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; CREATE TABLE t (x TEXT); \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) \
         INSERT INTO t SELECT printf('%0500d', i) FROM n;",
    )
    .unwrap();
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM t WHERE length(x) = 500", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(n, 2000);
    // SAFETY: a block from SQLite's allocator, freed by it.
    unsafe {
        let p = ffi::sqlite3_malloc(1000);
        assert!(!p.is_null());
        assert!(
            libmimalloc_sys::mi_is_in_heap_region(p as *const _),
            "SQLite's allocation is not mimalloc's: SQLITE_CONFIG_MALLOC did not take"
        );
        assert!(ffi::sqlite3_msize(p) >= 1000);
        ffi::sqlite3_free(p);
    }
}
