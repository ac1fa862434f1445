//! The shared conformance suite against PostgreSQL, one fresh database per
//! test (see `build.rs` for where the list of tests comes from). Without
//! `MINITOWER_TEST_POSTGRES_URL` every test returns at once after saying so.

use minitower_store_postgres::testing;

use minitower_store::Store;
use std::sync::Arc;
use testing::TestDb;

/// A fresh, migrated database and the guard that drops it.
async fn fresh() -> Option<(Arc<dyn Store>, TestDb)> {
    let db = testing::test_db().await?;
    let store = db.open().await;
    Some((Arc::new(store), db))
}

macro_rules! pg_conformance_tests {
    ($($module:ident :: $name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let Some((store, guard)) = fresh().await else {
                    return;
                };
                minitower_store::conformance::$module::$name(store).await;
                drop(guard);
            }
        )*
    };
}

include!(concat!(env!("OUT_DIR"), "/conformance_list.rs"));
