//! The shared conformance suite on real SQLite files, one per test.

use minitower_store::Store;
use std::sync::Arc;
use tempfile::TempDir;

/// A fresh database in its own temp dir (a nested path, so `open` has to
/// create the parent folder); the dir is removed when the guard drops.
async fn fresh() -> Option<(Arc<dyn Store>, TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let store = minitower_store_sqlite::open(&dir.path().join("data").join("minitower.db"))
        .await
        .unwrap();
    Some((Arc::new(store), dir))
}

minitower_store::conformance_tests!(fresh);
