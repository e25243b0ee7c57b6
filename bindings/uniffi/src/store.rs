//! `Store` (a store opened by location) and `ManualClock` (an injected clock for tests).

use std::sync::Arc;

use oncely::{AnyStore, SqliteConfig};

use crate::errors::OncelyError;
use crate::text::{HostText, ms, timestamp};

/// How hard an SQLite commit is pushed to disk before callers are told "done".
#[derive(Debug, Clone, Copy, uniffi::Enum)]
pub enum Synchronous {
    /// Every commit is synced: survives power loss (default).
    Full,
    /// Survives a crash of the process (kill -9, the app killed by the OS); the last commits may
    /// be lost on power loss.
    Normal,
}

/// How to open an SQLite store; every field has the core's default.
#[derive(Debug, Clone, uniffi::Record)]
pub struct SqliteOptions {
    /// Durability of each commit. Default: `Full`.
    #[uniffi(default = None)]
    pub synchronous: Option<Synchronous>,
    /// How long to wait for another process's write lock. Default: 5000 ms.
    #[uniffi(default = None)]
    pub busy_timeout_ms: Option<i64>,
}

/// An opened store, shared by the inboxes and outboxes built on it. Opening it is the only
/// place where a backend is chosen; every rule is the same on all of them.
#[derive(uniffi::Object)]
pub struct Store {
    pub(crate) inner: AnyStore,
    location: String,
}

#[uniffi::export]
impl Store {
    /// Opens the store at `location`: `"memory"` (a new in-memory store, lost with the process),
    /// `"sqlite::memory:"` (a private in-memory SQLite database), or an SQLite file path
    /// (optionally written `sqlite:PATH`), created if missing. A file that is not an oncely store
    /// is refused with `CorruptStore` before anything is written. The location is parsed by the
    /// core (`AnyStore::open`), so new backends (PostgreSQL URLs) work here as they land.
    #[uniffi::constructor(default(options = None))]
    pub fn new(location: HostText, options: Option<SqliteOptions>) -> Result<Arc<Self>, OncelyError> {
        let location = location.decode("location")?;
        let mut config = SqliteConfig::default();
        if let Some(o) = options {
            if let Some(s) = o.synchronous {
                config.synchronous = match s {
                    Synchronous::Full => oncely::Synchronous::Full,
                    Synchronous::Normal => oncely::Synchronous::Normal,
                };
            }
            if let Some(t) = o.busy_timeout_ms {
                config.busy_timeout = ms("busy_timeout_ms", t)?;
            }
        }
        let inner = AnyStore::open(&location, config)?;
        Ok(Arc::new(Store { inner, location }))
    }

    /// The location the store was opened with, any password replaced by `***`.
    pub fn location(&self) -> String {
        oncely::store::location::redact(&self.location)
    }
}

/// A clock that moves only when told to, for tests and the conformance runner. Inboxes and
/// outboxes given the same clock share its time.
#[derive(uniffi::Object)]
pub struct ManualClock {
    pub(crate) inner: oncely::ManualClock,
}

#[uniffi::export]
impl ManualClock {
    /// A manual clock showing `startMs` (milliseconds since the Unix epoch, 0 to 2^53 − 1).
    #[uniffi::constructor]
    pub fn new(start_ms: i64) -> Result<Arc<Self>, OncelyError> {
        Ok(Arc::new(ManualClock { inner: oncely::ManualClock::new(timestamp("start_ms", start_ms)?) }))
    }

    /// Moves the clock forward by `ms` milliseconds (negative: `invalid_argument`).
    pub fn advance_ms(&self, ms: i64) -> Result<(), OncelyError> {
        self.inner.advance(crate::text::ms("ms", ms)?);
        Ok(())
    }

    /// Sets the clock to `ms` (may go back: a clock jump; 0 to 2^53 − 1).
    pub fn set_ms(&self, ms: i64) -> Result<(), OncelyError> {
        self.inner.set(timestamp("ms", ms)?);
        Ok(())
    }

    /// The clock's time in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        oncely::Clock::now(&self.inner).0
    }
}

pub(crate) fn clock_of(clock: Option<Arc<ManualClock>>) -> oncely::clock::SharedClock {
    match clock {
        Some(c) => Arc::new(c.inner.clone()),
        None => Arc::new(oncely::SystemClock),
    }
}

/// Creates the PostgreSQL schema (namespace) `schema` in the database at `url` if it does not
/// exist, and returns `url` set to use it, so that a store opened with the result keeps its
/// tables there, apart from everything else (tests give each run a schema of its own). `schema`
/// must be a plain identifier (letters, digits, `_`), else `InvalidArgument` and nothing is
/// created. Blocks while it connects.
#[uniffi::export]
pub fn postgres_schema_url(url: HostText, schema: HostText) -> Result<String, OncelyError> {
    Ok(oncely::PostgresStore::schema_url(&url.decode("url")?, &schema.decode("schema")?)?)
}
