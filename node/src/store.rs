//! `Store` (an opened store to share) and `ManualClock`, and how the `store` argument and the
//! `clock` option of `new Inbox` / `new Outbox` are read.

use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use oncely::clock::SharedClock;
use oncely::defaults::MANUAL_CLOCK_START;
use oncely::{AnyStore, ErrorCode, SqliteConfig, Timestamp};

use crate::conv::{self, Options, count, number, secs, text};
use crate::errors::{Napi, Result, coded, err, invalid};
use crate::{opt_number, promise};

fn open_store(loc: &str) -> Result<AnyStore> {
    AnyStore::open(loc, SqliteConfig::default()).map_err(err)
}

/// A store given as a location string or an opened [`Store`].
pub(crate) fn store_of(env: &Env, v: Unknown<'_>) -> Result<AnyStore> {
    match v.get_type().napi()? {
        ValueType::String => open_store(&text("store", v)?),
        ValueType::Object if Store::instance_of(env, &v).napi()? => {
            let s: ClassInstance<Store> =
                unsafe { ClassInstance::from_napi_value(env.raw(), v.raw()).napi()? };
            Ok(s.inner.clone())
        }
        _ => Err(invalid("store", format!("must be a location string or a Store, got {}", conv::kind(&v)?))),
    }
}

/// The `clock` option: absent/undefined (system clock) or a [`ManualClock`].
pub(crate) fn clock_of(env: &Env, options: &Options<'_>) -> Result<SharedClock> {
    let Some(v) = options.get("clock")? else { return Ok(Arc::new(oncely::SystemClock)) };
    if v.get_type().napi()? == ValueType::Object && ManualClock::instance_of(env, &v).napi()? {
        let c: ClassInstance<ManualClock> =
            unsafe { ClassInstance::from_napi_value(env.raw(), v.raw()).napi()? };
        return Ok(Arc::new(c.inner.clone()));
    }
    Err(invalid("clock", format!("must be a ManualClock, got {}", conv::kind(&v)?)))
}

/// A clock that moves only when told to, for tests and the conformance runner. Pass it as the
/// `clock` option of an `Inbox` or `Outbox`; they then share its time.
#[napi]
pub struct ManualClock {
    inner: oncely::ManualClock,
}

#[napi]
impl ManualClock {
    /// A manual clock showing `startMs` (milliseconds since the Unix epoch).
    #[napi(constructor, ts_args_type = "startMs?: number | undefined | null")]
    pub fn new(start_ms: Option<Unknown>) -> Result<Self> {
        let start = match opt_number("startMs", start_ms)? {
            Some(ms) => Timestamp(count("startMs", ms)? as i64),
            None => MANUAL_CLOCK_START,
        };
        Ok(ManualClock { inner: oncely::ManualClock::new(start) })
    }

    /// Moves the clock forward by `seconds`.
    #[napi(ts_args_type = "seconds: number")]
    pub fn advance(&self, seconds: Unknown) -> Result<()> {
        self.inner.advance(secs("seconds", number("seconds", seconds)?)?);
        Ok(())
    }

    /// Moves the clock forward by `ms` milliseconds.
    #[napi(ts_args_type = "ms: number")]
    pub fn advance_ms(&self, ms: Unknown) -> Result<()> {
        self.inner.advance(Duration::from_millis(count("ms", number("ms", ms)?)?));
        Ok(())
    }

    /// Sets the clock to `ms` (may be earlier: a clock jump).
    #[napi(ts_args_type = "ms: number")]
    pub fn set_ms(&self, ms: Unknown) -> Result<()> {
        self.inner.set(Timestamp(count("ms", number("ms", ms)?)? as i64));
        Ok(())
    }

    /// The clock's time in milliseconds since the Unix epoch.
    #[napi]
    pub fn now_ms(&self) -> i64 {
        oncely::Clock::now(&self.inner).0
    }
}

/// An opened store to share between inboxes and outboxes: `"memory"` (a new in-memory store), an
/// SQLite file path (optionally `sqlite:PATH`) or a PostgreSQL URL (`postgres://...`).
#[napi]
pub struct Store {
    pub(crate) inner: AnyStore,
    location: String,
}

#[napi]
impl Store {
    #[napi(constructor, ts_args_type = "location: string")]
    pub fn new(location: Unknown) -> Result<Self> {
        let location = text("location", location)?;
        Ok(Store { inner: open_store(&location)?, location })
    }

    /// The location the store was opened with (a PostgreSQL URL's password hidden).
    #[napi(getter)]
    pub fn location(&self) -> String {
        oncely::store::location::redact(&self.location)
    }
}

/// Native half of `Store.postgresSchemaUrl` (index.js): creates the PostgreSQL schema `schema`
/// in the database at `url` if missing and resolves to the URL that keeps a store's tables there.
#[napi(js_name = "_postgresSchemaUrl", skip_typescript)]
pub fn postgres_schema_url(env: Env, url: Unknown, schema: Unknown) -> Result<AsyncBlock<String>> {
    let (url, schema) = (text("url", url)?, text("schema", schema)?);
    promise(&env, async move {
        napi::tokio::task::spawn_blocking(move || oncely::PostgresStore::schema_url(&url, &schema))
            .await
            .map_err(|e| coded(ErrorCode::Storage, format!("creating the schema failed: {e}")))?
            .map_err(err)
    })
}
