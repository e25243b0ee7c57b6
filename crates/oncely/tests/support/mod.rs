//! What the per-store behaviour suites share: the backends they run on, and the macro that
//! turns a list of generic suite functions into one `#[tokio::test]` per backend.

#![allow(dead_code)] // each suite uses the backends it needs

use std::sync::Arc;

use oncely::{MemoryStore, SqliteConfig, SqliteStore, Synchronous};

/// A fresh memory store (nothing to clean up).
pub fn memory() -> (Arc<MemoryStore>, ()) {
    (Arc::new(MemoryStore::new()), ())
}

/// A fresh SQLite store in a temporary directory, removed when the guard drops.
pub fn sqlite(sync: Synchronous) -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SqliteConfig { synchronous: sync, ..SqliteConfig::default() };
    (SqliteStore::open(dir.path().join("suite.db"), cfg).unwrap(), dir)
}

/// A fresh private in-memory SQLite database.
pub fn sqlite_in_memory() -> (SqliteStore, ()) {
    (SqliteStore::open(":memory:", SqliteConfig::default()).unwrap(), ())
}

/// `suite_tests!(backend_module, make_store_expr; test_fn, ...)`: one test per suite function,
/// each on a fresh store made by the expression.
#[macro_export]
macro_rules! suite_tests {
    ($backend:ident, $make:expr; $($test:ident),* $(,)?) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let (store, _guard) = $make;
                    suite::$test(store).await;
                }
            )*
        }
    };
}

/// The run-time-chosen store over SQLite, as the bindings open it.
pub fn any_sqlite() -> (oncely::AnyStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let location = format!("sqlite:{}", dir.path().join("any.db").display());
    (oncely::AnyStore::open(&location, SqliteConfig::default()).unwrap(), dir)
}

/// The run-time-chosen store in memory.
pub fn any_memory() -> (oncely::AnyStore, ()) {
    (oncely::AnyStore::open("memory", SqliteConfig::default()).unwrap(), ())
}
