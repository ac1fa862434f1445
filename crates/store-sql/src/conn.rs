//! The one connection type every statement of the store runs on: a sqlx
//! connection or transaction (PostgreSQL), or a SQLite connection run in
//! place ([`crate::lite`]: the writer or a reader). It is a sqlx
//! [`Executor`], so `sqlx::query(…).fetch_one(&mut *tx)` reads the same on
//! all of them and each statement is written once.

use crate::lite::{Lite, LiteSlot, Step};
use futures::future::{self, BoxFuture};
use futures::stream::{self, BoxStream};
use futures::{FutureExt, StreamExt};
use sqlx::any::{AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::pool::PoolConnection;
use sqlx::{Any, Either, Execute, Executor};
use tokio::sync::OwnedMappedMutexGuard;

/// A connection to run statements on.
pub(crate) enum Db {
    /// A transaction on a pooled sqlx connection (rolled back by sqlx when
    /// dropped uncommitted).
    Tx(sqlx::Transaction<'static, Any>),
    /// A pooled sqlx connection in autocommit mode.
    Conn(PoolConnection<Any>),
    /// A SQLite connection, the writer or a reader, held exclusively (see
    /// [`LiteGuard`]).
    Lite(LiteGuard),
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Db::Tx(_) => "Db::Tx",
            Db::Conn(_) => "Db::Conn",
            Db::Lite(_) => "Db::Lite",
        })
    }
}

/// A SQLite connection while a caller holds it. Dropped with its work still
/// open (an error, a panic, a cancelled request), it rolls that work back
/// before the lock passes on, so the next caller never sees half of it.
pub(crate) struct LiteGuard {
    pub(crate) conn: OwnedMappedMutexGuard<Option<Lite>, Lite>,
    pub(crate) mode: LiteMode,
}

/// What a held SQLite connection is doing.
pub(crate) enum LiteMode {
    /// Plain statements or a plain transaction (readers; the writer
    /// outside a group).
    Plain,
    /// A unit of a group on the writer (see [`crate::group`]); the slot is
    /// the writer's, to queue for it again until the group commits.
    Unit(LiteSlot),
    /// A unit already released into its group.
    Released,
}

impl Drop for LiteGuard {
    fn drop(&mut self) {
        match self.mode {
            LiteMode::Plain if self.conn.in_transaction() => {
                if let Err(e) = self.conn.batch("ROLLBACK") {
                    tracing::error!(error = %e, "rolling back a SQLite connection failed");
                }
            }
            LiteMode::Unit(_) => self.conn.abort_unit(),
            LiteMode::Plain | LiteMode::Released => {}
        }
    }
}

/// A write or snapshot transaction: a [`Db`] that must be committed.
pub(crate) struct Tx(pub(crate) Db);

impl std::ops::Deref for Tx {
    type Target = Db;
    fn deref(&self) -> &Db {
        &self.0
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut Db {
        &mut self.0
    }
}

impl Tx {
    /// Commits; until then every statement can still be undone.
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self.0 {
            Db::Tx(tx) => tx.commit().await,
            Db::Conn(_) => Ok(()),
            Db::Lite(mut guard) => match std::mem::replace(&mut guard.mode, LiteMode::Released) {
                LiteMode::Unit(writer) => {
                    let member = guard.conn.release_unit();
                    drop(guard); // the next caller in line may join the group
                    member?.outcome(writer).await
                }
                LiteMode::Plain => {
                    guard.mode = LiteMode::Plain;
                    guard.conn.batch("COMMIT")
                }
                LiteMode::Released => Ok(()),
            },
        }
    }

    /// Undoes the transaction now (dropping it does the same).
    pub(crate) async fn rollback(self) -> Result<(), sqlx::Error> {
        match self.0 {
            Db::Tx(tx) => tx.rollback().await,
            Db::Conn(_) => Ok(()),
            Db::Lite(guard) => {
                drop(guard); // rolls the unit or transaction back
                Ok(())
            }
        }
    }
}

/// The steps of one statement on a SQLite connection, as sqlx streams them.
fn lite_stream<'e, 'q: 'e, E>(
    lite: &'e mut Lite,
    mut query: E,
    limit: Option<usize>,
) -> Result<Vec<Step>, sqlx::Error>
where
    E: 'q + Execute<'q, Any>,
{
    let sql = query.sql();
    let args = query.take_arguments().map_err(sqlx::Error::Encode)?;
    lite.run(sql, args, limit)
}

impl<'c> Executor<'c> for &'c mut Db {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match self {
            Db::Tx(tx) => (&mut **tx).fetch_many(query),
            Db::Conn(conn) => (&mut **conn).fetch_many(query),
            Db::Lite(guard) => match lite_stream(&mut guard.conn, query, None) {
                Ok(steps) => stream::iter(steps.into_iter().map(Ok)).boxed(),
                Err(e) => stream::once(future::ready(Err(e))).boxed(),
            },
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match self {
            Db::Tx(tx) => (&mut **tx).fetch_optional(query),
            Db::Conn(conn) => (&mut **conn).fetch_optional(query),
            Db::Lite(guard) => {
                let first = lite_stream(&mut guard.conn, query, Some(1))
                    .map(|steps| steps.into_iter().find_map(Either::right));
                future::ready(first).boxed()
            }
        }
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        match self {
            Db::Tx(tx) => (&mut **tx).prepare_with(sql, parameters),
            Db::Conn(conn) => (&mut **conn).prepare_with(sql, parameters),
            Db::Lite(_) => future::ready(Err(unsupported("prepare"))).boxed(),
        }
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> BoxFuture<'e, Result<sqlx_core::describe::Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        match self {
            Db::Tx(tx) => (&mut **tx).describe(sql),
            Db::Conn(conn) => (&mut **conn).describe(sql),
            Db::Lite(_) => future::ready(Err(unsupported("describe"))).boxed(),
        }
    }
}

fn unsupported(what: &str) -> sqlx::Error {
    sqlx::Error::Configuration(
        format!("{what} is not supported on SQLite connections run in place").into(),
    )
}
