//! One store type for callers that choose the backend at run time (the language bindings, the
//! CLI): a store named by a location string.

use std::sync::Arc;

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::records::{InboxOp, InboxRecord, OpAnswer, ScopeCounts};
use crate::store::{InboxStore, MemoryStore, OutboxStore, OutboxTx, SqliteConfig, SqliteStore};

/// Any of oncely's stores. Clones share the same store.
#[derive(Clone)]
pub enum AnyStore {
    /// The in-memory store (lost with the process).
    Memory(Arc<MemoryStore>),
    /// An SQLite file (or a private `:memory:` database).
    Sqlite(SqliteStore),
    /// A PostgreSQL database.
    #[cfg(feature = "postgres")]
    Postgres(crate::store::PostgresStore),
}

/// Runs the same expression on whichever store `$any` holds, bound to `$s`.
macro_rules! dispatch {
    ($any:expr, $s:ident => $e:expr) => {
        match $any {
            AnyStore::Memory($s) => $e,
            AnyStore::Sqlite($s) => $e,
            #[cfg(feature = "postgres")]
            AnyStore::Postgres($s) => $e,
        }
    };
}

impl std::fmt::Debug for AnyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnyStore::Memory(_) => f.write_str("AnyStore::Memory"),
            AnyStore::Sqlite(s) => f.debug_tuple("AnyStore::Sqlite").field(s).finish(),
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(s) => f.debug_tuple("AnyStore::Postgres").field(s).finish(),
        }
    }
}

impl AnyStore {
    /// Refuses, without opening or creating anything, a location that [`AnyStore::open`] would
    /// refuse for its form alone: empty, a libpq key/value string, or a URL of a scheme oncely
    /// does not open. `Ok` means the text is a store location (whether the store opens is
    /// another matter).
    pub fn check_location(location: &str) -> Result<()> {
        if location.is_empty() {
            return Err(Error::invalid("location", "must not be empty (\"memory\" or an SQLite file path)"));
        }
        refuse_foreign_location(location)
    }

    /// Opens the store at `location`: `"memory"` for a new in-memory store, `"sqlite::memory:"`
    /// for a private in-memory SQLite database, and otherwise an SQLite file path (optionally
    /// written `sqlite:PATH` or `sqlite://PATH`); `postgres://…` or `postgresql://…` for a
    /// PostgreSQL database (with [`crate::store::PostgresConfig`]'s defaults).
    ///
    /// The `sqlite:` forms take one option after a `?`: `synchronous=full` (the default) or
    /// `synchronous=normal` ([`crate::Synchronous`]), so that every binding can choose the
    /// durability level with the location alone. A plain path is taken whole, `?` included.
    pub fn open(location: &str, mut sqlite: SqliteConfig) -> Result<Self> {
        if location.is_empty() {
            return Err(Error::invalid("location", "must not be empty (\"memory\" or an SQLite file path)"));
        }
        if location == "memory" {
            return Ok(AnyStore::Memory(Arc::new(MemoryStore::new())));
        }
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            #[cfg(feature = "postgres")]
            return Ok(AnyStore::Postgres(crate::store::PostgresStore::open(location, Default::default())?));
            #[cfg(not(feature = "postgres"))]
            return Err(Error::invalid(
                "location",
                "names a PostgreSQL database, but this build has no PostgreSQL support (cargo feature `postgres`)",
            ));
        }
        Self::check_location(location)?;
        let path = match location.strip_prefix("sqlite://").or_else(|| location.strip_prefix("sqlite:")) {
            Some(rest) => match rest.rsplit_once('?') {
                Some((path, options)) => {
                    sqlite.synchronous = synchronous_option(options)?;
                    path
                }
                None => rest,
            },
            None => location,
        };
        if path.is_empty() {
            return Err(Error::invalid("location", "names no SQLite file"));
        }
        Ok(AnyStore::Sqlite(SqliteStore::open(path, sqlite)?))
    }
}

/// The one option of an `sqlite:` location: `synchronous=full` or `synchronous=normal`.
fn synchronous_option(options: &str) -> Result<crate::Synchronous> {
    match options.to_ascii_lowercase().as_str() {
        "synchronous=full" => Ok(crate::Synchronous::Full),
        "synchronous=normal" => Ok(crate::Synchronous::Normal),
        _ => Err(Error::invalid(
            "location",
            format!(
                "has the option `{}`; an sqlite: location takes synchronous=full or synchronous=normal",
                crate::text::quote(options)
            ),
        )),
    }
}

/// The keywords of a libpq key/value connection string (`host=db user=app password=…`).
const LIBPQ_KEYWORDS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "application_name",
    "connect_timeout",
    "options",
    "service",
    "target_session_attrs",
];

/// Refuses a location that names something other than a store oncely opens, before anything is
/// created: a libpq key/value connection string would otherwise "open" as an SQLite file of that
/// name in the current directory (password included in the file name), and another scheme
/// (`mysql://…`, `redis://…`) as a file path. The caller's text is never quoted (it may hold a
/// password).
fn refuse_foreign_location(location: &str) -> Result<()> {
    let head = location.trim_start();
    if let Some((key, _)) = head.split_once('=') {
        if LIBPQ_KEYWORDS.contains(&key.trim()) {
            return Err(Error::invalid(
                "location",
                "looks like a PostgreSQL key/value connection string; write it as a URL: postgres://user:password@host:port/dbname",
            ));
        }
    }
    if let Some((scheme, _)) = head.split_once("://") {
        let is_scheme = !scheme.is_empty()
            && scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if is_scheme && !matches!(scheme, "sqlite" | "postgres" | "postgresql") {
            return Err(Error::invalid(
                "location",
                format!(
                    "has the scheme `{}`; oncely opens \"memory\", SQLite paths (optionally sqlite://PATH) and postgres:// URLs",
                    crate::text::quote(scheme)
                ),
            ));
        }
    }
    Ok(())
}

impl InboxStore for AnyStore {
    async fn apply(&self, scope: &str, now: Timestamp, ops: Vec<InboxOp>) -> Result<Vec<OpAnswer>> {
        dispatch!(self, s => s.apply(scope, now, ops).await)
    }

    async fn apply_one(&self, scope: &str, now: Timestamp, op: InboxOp) -> Result<OpAnswer> {
        dispatch!(self, s => s.apply_one(scope, now, op).await)
    }

    async fn apply_ref(&self, scope: &str, now: Timestamp, op: &InboxOp) -> Result<OpAnswer> {
        dispatch!(self, s => s.apply_ref(scope, now, op).await)
    }

    async fn get(&self, scope: &str, id: &str) -> Result<Option<InboxRecord>> {
        dispatch!(self, s => s.get(scope, id).await)
    }

    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64> {
        dispatch!(self, s => s.purge_expired(now, limit).await)
    }

    async fn scope_counts(&self, now: Timestamp) -> Result<Vec<ScopeCounts>> {
        dispatch!(self, s => s.scope_counts(now).await)
    }

    fn deadline_clock(&self) -> Option<crate::clock::SharedClock> {
        dispatch!(self, s => InboxStore::deadline_clock(s))
    }
}

impl OutboxStore for AnyStore {
    async fn transact<R: Send + 'static>(
        &self,
        queue: &str,
        work: impl FnOnce(&mut dyn OutboxTx) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        dispatch!(self, s => s.transact(queue, work).await)
    }

    async fn transact_with<R: Send + 'static>(
        &self,
        queue: &str,
        durability: crate::records::Durability,
        work: impl FnOnce(&mut dyn OutboxTx) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        dispatch!(self, s => s.transact_with(queue, durability, work).await)
    }

    async fn queue_names(&self) -> Result<Vec<String>> {
        dispatch!(self, s => s.queue_names().await)
    }

    fn deadline_clock(&self) -> Option<crate::clock::SharedClock> {
        dispatch!(self, s => OutboxStore::deadline_clock(s))
    }
}

impl crate::sql::TransactionalStore for AnyStore {
    async fn transaction<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut dyn crate::sql::StoreTx) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        match self {
            AnyStore::Memory(_) => Err(crate::sql::no_transactions()),
            AnyStore::Sqlite(s) => s.transaction(job).await,
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(s) => s.transaction(job).await,
        }
    }
}

impl AnyStore {
    /// Runs `work` in one transaction of this store: see
    /// [`crate::sql::TransactionalStore::in_transaction`]. The memory store refuses with
    /// [`Error::InvalidArgument`].
    pub async fn in_transaction<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut dyn crate::sql::SqlTx) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        crate::sql::TransactionalStore::in_transaction(self, work).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sqlite_location_may_choose_its_durability() {
        let dir = tempfile::tempdir().unwrap();
        for option in ["synchronous=normal", "synchronous=FULL"] {
            let location = format!("sqlite:{}?{option}", dir.path().join("a.db").display());
            assert!(matches!(
                AnyStore::open(&location, SqliteConfig::default()).unwrap(),
                AnyStore::Sqlite(_)
            ));
        }
        assert!(dir.path().join("a.db").exists(), "the option is not part of the file name");
        let bad = format!("sqlite:{}?synchronous=off", dir.path().join("b.db").display());
        let e = AnyStore::open(&bad, SqliteConfig::default()).unwrap_err();
        assert!(e.to_string().contains("takes synchronous=full or synchronous=normal"), "{e}");
        assert!(!dir.path().join("b.db").exists(), "nothing is created for a refused location");
        // A plain path is taken whole.
        let plain = dir.path().join("c?d.db");
        AnyStore::open(plain.to_str().unwrap(), SqliteConfig::default()).unwrap();
        assert!(plain.exists());
    }
}
