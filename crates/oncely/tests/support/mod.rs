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

/// The PostgreSQL server the tests use: `ONCELY_POSTGRES_URL` (set by
/// `scripts/with-postgres.sh`, which `make test` runs). Without it the PostgreSQL tests skip,
/// saying so loudly — except under CI (`CI=true`), where a missing server fails them.
pub fn postgres_url() -> Option<String> {
    match std::env::var("ONCELY_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("ONCELY_POSTGRES_URL is not set under CI: the PostgreSQL tests must not skip");
            }
            eprintln!(
                "!! SKIPPED: PostgreSQL test (set ONCELY_POSTGRES_URL, or run through scripts/with-postgres.sh)"
            );
            None
        }
    }
}

/// A URL for a fresh, empty schema of its own on the test server (so tests never share tables).
pub fn postgres_schema_url() -> Option<String> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let url = postgres_url()?;
    let schema = format!(
        "t_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
    );
    Some(oncely::PostgresStore::schema_url(&url, &schema).unwrap())
}

/// A fresh PostgreSQL store in a schema of its own, or `None` (skipped) without a server.
pub fn postgres() -> Option<(oncely::PostgresStore, ())> {
    let url = postgres_schema_url()?;
    Some((oncely::PostgresStore::open(&url, oncely::PostgresConfig::default()).unwrap(), ()))
}

/// The run-time-chosen store over PostgreSQL, as the bindings open it.
pub fn any_postgres() -> Option<(oncely::AnyStore, ())> {
    let url = postgres_schema_url()?;
    Some((oncely::AnyStore::open(&url, SqliteConfig::default()).unwrap(), ()))
}

/// `pg_suite_tests!(backend_module, make_option_expr; test_fn, ...)`: like `suite_tests!` for
/// backends that need a server: each test skips (loudly) when the expression gives `None`.
#[macro_export]
macro_rules! pg_suite_tests {
    ($backend:ident, $make:expr; $($test:ident),* $(,)?) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some((store, _guard)) = $make else { return };
                    suite::$test(store).await;
                }
            )*
        }
    };
}
