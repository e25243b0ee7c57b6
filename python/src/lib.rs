//! `oncely._native`: the Python binding of oncely. Translation only — type conversion, error
//! mapping and async adaptation; every rule lives in the core crate (DESIGN §7).
//!
//! Conventions: durations from Python are float seconds, checked by
//! [`oncely::clock::duration_from_secs_f64`]; timestamps are integer milliseconds since the Unix
//! epoch (`*_ms`); ids and scopes are `str`; payloads and results are `bytes`. Sync calls release
//! the GIL while the store works.

mod aio;
mod args;
mod errors;
mod http;
mod inbox;
mod outbox;
mod transaction;
mod worker;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use oncely::{AnyStore, Mode, SqliteConfig, Timestamp};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyString};

pub(crate) use args::{Extra, Int, Num, Text};
pub(crate) use errors::to_py;

/// Runs a core future to completion on the calling thread with the GIL released. The stores'
/// futures need no particular executor (SQLite answers through a channel from its writer
/// thread), so a plain `block_on` is enough and costs far less per call than entering the shared
/// runtime; only the worker, which needs tokio's timers and tasks, runs there.
pub(crate) fn block<T, F>(py: Python<'_>, fut: F) -> PyResult<T>
where
    T: Send,
    F: Future<Output = oncely::Result<T>> + Send,
{
    py.detach(|| pollster::block_on(fut)).map_err(to_py)
}

/// Like [`block`], on the shared tokio runtime: for the worker, which needs tokio's timers and
/// tasks.
pub(crate) fn block_on_runtime<T, F>(py: Python<'_>, fut: F) -> PyResult<T>
where
    T: Send,
    F: Future<Output = oncely::Result<T>> + Send,
{
    py.detach(|| oncely::runtime::block_on(fut)).and_then(|r| r).map_err(to_py)
}

/// A float number of seconds from Python, checked by the core.
pub(crate) fn secs(name: &'static str, v: Num) -> PyResult<Duration> {
    oncely::clock::duration_from_secs_f64(name, v.0).map_err(to_py)
}

pub(crate) fn opt_secs(name: &'static str, v: Option<Num>) -> PyResult<Option<Duration>> {
    v.map(|v| secs(name, v)).transpose()
}

pub(crate) fn mode(v: Option<&str>) -> PyResult<Option<Mode>> {
    v.map(|s| s.parse::<Mode>().map_err(to_py)).transpose()
}

/// `bytes` or `bytearray` (never `str`: text must be encoded by the caller).
pub(crate) fn to_bytes(name: &str, obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(b.to_vec());
    }
    Err(pyo3::exceptions::PyTypeError::new_err(format!("`{name}` must be bytes, not {}", type_name(obj))))
}

/// The text of a handler's exception: `str(exc)` when that succeeds and is not empty, else the
/// exception's type name — a `__str__` that raises (or says nothing) must not lose the failure.
/// The one rule for `Inbox.process`, `Inbox.claim` and the worker.
pub(crate) fn exception_text(exc: &Bound<'_, PyAny>) -> String {
    let message = exc.str().ok().map(|s| s.to_string_lossy().into_owned());
    let type_name = exc.get_type().name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    oncely::handler::failure_text(message.as_deref(), &type_name)
}

/// `exception_text` for `oncely.Inbox.claim` (Python code).
#[pyfunction]
fn _exception_text(exc: &Bound<'_, PyAny>) -> String {
    exception_text(exc)
}

/// The type name of a caller's value, for an error message (quoted: a class name can be long).
pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    match obj.get_type().name() {
        Ok(n) => oncely::text::quote(&n.to_string_lossy()),
        Err(_) => "?".into(),
    }
}

pub(crate) fn py_bytes(py: Python<'_>, b: &[u8]) -> Py<PyBytes> {
    PyBytes::new(py, b).unbind()
}

pub(crate) fn opt_py_bytes(py: Python<'_>, b: &Option<Vec<u8>>) -> Option<Py<PyBytes>> {
    b.as_deref().map(|b| py_bytes(py, b))
}

/// A clock that moves only when told to, for tests and the conformance runner. Pass it as
/// `clock=` to an `Inbox` or `Outbox`; clones of it share one time.
#[pyclass(module = "oncely._native", frozen)]
pub struct ManualClock {
    pub(crate) inner: oncely::ManualClock,
}

#[pymethods]
impl ManualClock {
    /// A manual clock showing `start_ms` (milliseconds since the Unix epoch).
    /// Left out (or `None`), the core's default start (`oncely::defaults::MANUAL_CLOCK_START`).
    #[new]
    #[pyo3(signature = (start_ms = None, **extra))]
    fn new(start_ms: Option<Int<args::StartMs>>, extra: Option<Extra<args::ManualClockKw>>) -> Self {
        let _ = extra;
        ManualClock {
            inner: match start_ms {
                Some(ms) => oncely::ManualClock::new(Timestamp(ms.0 as i64)),
                None => oncely::ManualClock::default(),
            },
        }
    }

    /// Moves the clock forward by `seconds`.
    #[pyo3(signature = (seconds, **extra))]
    fn advance(&self, seconds: Num, extra: Option<Extra<args::AdvanceKw>>) -> PyResult<()> {
        let _ = extra;
        self.inner.advance(secs("seconds", seconds)?);
        Ok(())
    }

    /// Moves the clock forward by `ms` milliseconds.
    #[pyo3(signature = (ms, **extra))]
    fn advance_ms(&self, ms: Int<args::Ms>, extra: Option<Extra<args::AdvanceMsKw>>) {
        let _ = extra;
        self.inner.advance(Duration::from_millis(ms.0));
    }

    /// Sets the clock to `ms` (may be earlier: a clock jump).
    #[pyo3(signature = (ms, **extra))]
    fn set_ms(&self, ms: Int<args::Ms>, extra: Option<Extra<args::SetMsKw>>) {
        let _ = extra;
        self.inner.set(Timestamp(ms.0 as i64));
    }

    /// The clock's time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64 {
        oncely::Clock::now(&self.inner).0
    }

    fn __repr__(&self) -> String {
        format!("ManualClock({})", self.now_ms())
    }
}

pub(crate) fn shared_clock(clock: Option<&Bound<'_, ManualClock>>) -> oncely::clock::SharedClock {
    match clock {
        Some(c) => Arc::new(c.get().inner.clone()),
        None => Arc::new(oncely::SystemClock),
    }
}

/// An opened store, to share between several inboxes and outboxes: `"memory"` (a new in-memory
/// store), `"sqlite::memory:"`, an SQLite file path (optionally `sqlite:PATH`), or a PostgreSQL
/// URL (`postgres://user:password@host:port/db`). The file (or the connection pool) is closed
/// when the last inbox, outbox, ticket and delivery using it is gone.
#[pyclass(module = "oncely._native", frozen)]
pub struct Store {
    pub(crate) inner: AnyStore,
    location: String,
}

#[pymethods]
impl Store {
    #[new]
    #[pyo3(signature = (location, **extra))]
    fn new(
        py: Python<'_>,
        location: Text<args::Location>,
        extra: Option<Extra<args::StoreKw>>,
    ) -> PyResult<Self> {
        let _ = extra;
        let location = location.0;
        let loc = location.clone();
        let inner = py.detach(move || AnyStore::open(&loc, SqliteConfig::default())).map_err(to_py)?;
        Ok(Store { inner, location })
    }

    /// The location the store was opened with, any password replaced by `***`.
    #[getter]
    fn location(&self) -> String {
        oncely::store::location::redact(&self.location)
    }

    /// Runs `work(tx)` in one transaction of the store (SQLite or PostgreSQL) and returns what
    /// it returned: its `tx.execute` writes and `tx.enqueue` messages commit together when it
    /// returns, and none of them remains when it raises (the exception propagates). The memory
    /// store refuses with `InvalidArgument`. `work` runs on the store's writer thread while the
    /// transaction is open: only database work through `tx` there.
    #[pyo3(signature = (work, **extra))]
    fn transaction(
        &self,
        py: Python<'_>,
        work: Py<PyAny>,
        extra: Option<Extra<args::TransactionKw>>,
    ) -> PyResult<Py<PyAny>> {
        let _ = extra;
        let store = self.inner.clone();
        let raised: Arc<std::sync::Mutex<Option<PyErr>>> = Arc::default();
        let slot = raised.clone();
        let r = py.detach(move || {
            pollster::block_on(store.in_transaction(move |sql| {
                let out = aio::attach(|py| {
                    let tx = Py::new(py, transaction::Transaction::new(sql))?;
                    let r = work.call1(py, (tx.clone_ref(py),));
                    tx.get().close();
                    r
                })
                .unwrap_or_else(|| Err(aio::closing_error()));
                out.map_err(|e| {
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    oncely::Error::Storage("the transaction's work raised".into())
                })
            }))
        });
        match r {
            Ok(v) => Ok(v),
            Err(e) => {
                Err(raised.lock().unwrap_or_else(|p| p.into_inner()).take().unwrap_or_else(|| to_py(e)))
            }
        }
    }

    /// Creates the PostgreSQL schema `schema` in the database at `url` if missing and returns
    /// the URL that keeps a store's tables there.
    #[staticmethod]
    #[pyo3(signature = (url, schema, **extra))]
    fn postgres_schema_url(
        py: Python<'_>,
        url: Text<args::Url>,
        schema: Text<args::Schema>,
        extra: Option<Extra<args::SchemaUrlKw>>,
    ) -> PyResult<String> {
        let _ = extra;
        py.detach(move || oncely::PostgresStore::schema_url(&url, &schema)).map_err(to_py)
    }

    fn __repr__(&self) -> String {
        format!("Store({:?})", oncely::store::location::redact(&self.location))
    }
}

/// A store given as a location string or as an opened [`Store`].
pub(crate) fn store_of(py: Python<'_>, store: &Bound<'_, PyAny>) -> PyResult<AnyStore> {
    if let Ok(s) = store.cast::<Store>() {
        return Ok(s.get().inner.clone());
    }
    if let Ok(s) = store.cast::<PyString>() {
        let loc = args::text("store", s)?;
        return py.detach(move || AnyStore::open(&loc, SqliteConfig::default())).map_err(to_py);
    }
    Err(pyo3::exceptions::PyTypeError::new_err(format!(
        "`store` must be a location string or a Store, not {}",
        type_name(store)
    )))
}

/// The payload fingerprint the inbox compares (first 128 bits of SHA-256, as hex): the same value
/// in every language (`InboxRecord.fingerprint`).
#[pyfunction]
#[pyo3(signature = (payload, **extra))]
fn fingerprint(payload: &Bound<'_, PyAny>, extra: Option<Extra<args::FingerprintKw>>) -> PyResult<String> {
    let _ = extra;
    Ok(oncely::Fingerprint::of(&to_bytes("payload", payload)?).to_hex())
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The core's log records go to Python's `logging`, under loggers named after the core's
    // modules (`oncely.outbox`, `oncely.store.sqlite`, ...).
    let _ = pyo3_log::try_init();
    errors::register(m)?;
    aio::register(m)?;
    m.add_class::<ManualClock>()?;
    m.add_class::<Store>()?;
    inbox::register(m)?;
    outbox::register(m)?;
    worker::register(m)?;
    http::register(m)?;
    // Private (not in `__all__`): for `oncely.Inbox.claim`.
    m.setattr("_exception_text", wrap_pyfunction!(_exception_text, m)?)?;
    m.add_function(wrap_pyfunction!(fingerprint, m)?)?;
    // Private: the keyword check of the calls written in Python (`oncely/__init__.py`).
    m.setattr("_check_keywords", wrap_pyfunction!(args::_check_keywords, m)?)?;
    m.add("__version__", oncely::version())?;
    Ok(())
}
