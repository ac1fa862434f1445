//! The shared conformance suite against PostgreSQL, one fresh database per
//! test. Without `MINITOWER_TEST_POSTGRES_URL` every test returns at once
//! after saying so.

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

minitower_store::conformance_tests!(fresh);
