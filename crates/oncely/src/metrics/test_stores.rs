//! What the metrics' store tests share: their runtime, and the PostgreSQL store they run on when
//! `ONCELY_POSTGRES_URL` is set (required under CI).

/// A runtime for one test.
pub(super) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[cfg(feature = "postgres")]
/// A PostgreSQL store in a fresh schema named after `prefix`, or `None` (said loudly) when no
/// server is given; under CI a missing server fails the test instead of skipping it.
pub(super) fn postgres(prefix: &str) -> Option<crate::store::AnyStore> {
    let url = match std::env::var("ONCELY_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "ONCELY_POSTGRES_URL is not set under CI: the PostgreSQL tests must not skip"
            );
            eprintln!(
                "!! SKIPPED: PostgreSQL test (set ONCELY_POSTGRES_URL, or run through scripts/with-postgres.sh)"
            );
            return None;
        }
    };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let schema = format!("{prefix}_{}_{nanos}", std::process::id());
    let url = crate::store::PostgresStore::schema_url(&url, &schema).unwrap();
    Some(crate::store::AnyStore::open(&url, crate::store::SqliteConfig::default()).unwrap())
}
