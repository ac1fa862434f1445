//! What differs between the databases the shared SQL runs on, and nothing
//! else. Each field is a statement or a clause; the shared code never
//! branches on which database it talks to, only on what the dialect gives.

use std::borrow::Cow;

/// The seam between the shared SQL and one database.
#[derive(Debug)]
pub struct Dialect {
    /// A name for logs and errors.
    pub name: &'static str,
    /// How a write transaction begins; `None` for the driver's default.
    pub begin_write: Option<&'static str>,
    /// How a read-only, one-snapshot transaction begins.
    pub begin_snapshot: Option<&'static str>,
    /// Whether row-locking clauses (`FOR UPDATE`, `FOR NO KEY UPDATE`,
    /// `FOR KEY SHARE`, `SKIP LOCKED`) and `COLLATE "C"` are kept. SQLite has neither: its
    /// single writer serializes transactions and its default collation is
    /// already bytewise.
    pub row_locks: bool,
    /// Whether a `WITH` may hold an `INSERT`/`UPDATE … RETURNING` feeding the
    /// main statement (PostgreSQL), so several steps take one round trip.
    pub writable_ctes: bool,
    /// An expression of the database's time in unix milliseconds (within a
    /// transaction: its start), when the database can be the one clock of
    /// several replicas.
    pub now_ms: Option<&'static str>,
    /// Runs of a team per status: `$1` team id; columns `status`, `n`.
    pub status_counts: &'static str,
    /// Queued runs per team, app and environment; columns `team`, `app`,
    /// `environment`, `n`, ordered bytewise.
    pub pending_counts: &'static str,
    /// Run once on the write pool before it closes.
    pub on_close: Option<&'static str>,
    /// Whether text may hold NUL. PostgreSQL's cannot: a NUL in a log line
    /// would fail its whole batch, so it is stored as U+FFFD there.
    pub text_holds_nul: bool,
    /// One bounded step returning freed pages to the file system (run on
    /// the write pool, outside a transaction); `None` where the database
    /// does that by itself.
    pub reclaim_step: Option<&'static str>,
    /// How many freed pages [`Dialect::reclaim_step`] could still return
    /// (0 when it cannot return any).
    pub reclaimable: Option<&'static str>,
}

/// The clauses [`Dialect::row_locks`] governs, longest first so that
/// `FOR UPDATE SKIP LOCKED` goes as a whole.
const LOCK_CLAUSES: [&str; 5] = [
    " FOR UPDATE SKIP LOCKED",
    " FOR NO KEY UPDATE",
    " FOR KEY SHARE",
    " FOR UPDATE",
    " COLLATE \"C\"",
];

impl Dialect {
    /// `sql` as this dialect runs it: unchanged where row locks exist,
    /// without the locking and collation clauses elsewhere.
    pub fn sql<'a>(&self, sql: &'a str) -> Cow<'a, str> {
        if self.row_locks || !LOCK_CLAUSES.iter().any(|c| sql.contains(c)) {
            return Cow::Borrowed(sql);
        }
        let mut out = sql.to_string();
        for c in LOCK_CLAUSES {
            out = out.replace(c, "");
        }
        Cow::Owned(out)
    }

    /// `s` as this database can store it (see [`Dialect::text_holds_nul`]).
    pub fn text<'a>(&self, s: &'a str) -> Cow<'a, str> {
        if self.text_holds_nul || !s.contains('\0') {
            Cow::Borrowed(s)
        } else {
            Cow::Owned(s.replace('\0', "\u{FFFD}"))
        }
    }

    /// [`Dialect::text`] for optional values.
    pub fn text_opt(&self, s: Option<&str>) -> Option<String> {
        s.map(|s| self.text(s).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_LOCKS: Dialect = Dialect {
        name: "test",
        begin_write: None,
        begin_snapshot: None,
        row_locks: false,
        writable_ctes: false,
        now_ms: None,
        status_counts: "",
        pending_counts: "",
        on_close: None,
        text_holds_nul: false,
        reclaim_step: None,
        reclaimable: None,
    };

    #[test]
    fn lock_clauses_go_without_row_locks() {
        let d = &NO_LOCKS;
        assert_eq!(
            d.sql("SELECT id FROM runs LIMIT 1 FOR UPDATE SKIP LOCKED"),
            "SELECT id FROM runs LIMIT 1"
        );
        assert_eq!(
            d.sql("SELECT 1 FROM apps FOR NO KEY UPDATE"),
            "SELECT 1 FROM apps"
        );
        assert_eq!(
            d.sql("SELECT a FROM t ORDER BY a COLLATE \"C\", b COLLATE \"C\""),
            "SELECT a FROM t ORDER BY a, b"
        );
        assert!(matches!(d.sql("SELECT 1"), Cow::Borrowed(_)));
        let kept = Dialect {
            row_locks: true,
            writable_ctes: true,
            ..NO_LOCKS
        };
        assert_eq!(kept.sql("SELECT 1 FOR UPDATE"), "SELECT 1 FOR UPDATE");
    }

    #[test]
    fn nul_is_replaced_only_where_text_cannot_hold_it() {
        assert_eq!(NO_LOCKS.text("a\0b"), "a\u{FFFD}b");
        assert_eq!(NO_LOCKS.text("plain"), "plain");
        let holds = Dialect {
            text_holds_nul: true,
            ..NO_LOCKS
        };
        assert_eq!(holds.text("a\0b"), "a\0b");
    }
}
