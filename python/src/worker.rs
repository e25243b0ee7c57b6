//! `Worker`, `Message`, `RunSummary`: the push-style worker. The core's `oncely::Worker` does the
//! leasing, concurrency and settling; this file only calls the Python handler and turns what it
//! did into an [`Outcome`]: returning `None`/`True` is success; raising `oncely.Retry`,
//! `oncely.Snooze` or `oncely.Permanent` picks that outcome; any other exception (or return
//! value) is a retryable failure with the exception's text.

use std::collections::BTreeMap;
use std::sync::Arc;

use oncely::{AnyStore, Outcome, WorkerConfig};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyType};
use pyo3_async_runtimes::TaskLocals;
use tokio::sync::watch;

use crate::aio::{attach, spawn_py, try_attach};
use crate::block_on_runtime;
use crate::errors::Permanent;
use crate::outbox::Outbox;
use crate::{Int, args, exception_text, py_bytes, secs, to_py};

type CoreWorker = oncely::Worker<AnyStore>;

/// One message handed to a worker's handler. `id` is the idempotency key for the receiver.
#[pyclass(module = "oncely._native", frozen)]
pub struct Message {
    inner: oncely::Message,
}

#[pymethods]
impl Message {
    #[getter]
    fn id(&self) -> &str {
        &self.inner.id
    }
    /// The idempotency key: the message id.
    #[getter]
    fn idempotency_key(&self) -> &str {
        &self.inner.id
    }
    #[getter]
    fn key(&self) -> Option<&str> {
        self.inner.key.as_deref()
    }
    #[getter]
    fn payload(&self, py: Python<'_>) -> Py<PyBytes> {
        py_bytes(py, &self.inner.payload)
    }
    #[getter]
    fn headers(&self) -> BTreeMap<String, String> {
        self.inner.headers.clone()
    }
    /// Which attempt this is (1 for the first).
    #[getter]
    fn attempt(&self) -> u32 {
        self.inner.attempts
    }
    #[getter]
    fn created_at_ms(&self) -> i64 {
        self.inner.created_at.0
    }
    #[getter]
    fn available_at_ms(&self) -> i64 {
        self.inner.available_at.0
    }

    fn __repr__(&self) -> String {
        format!("Message(id={:?}, attempt={})", self.inner.id, self.inner.attempts)
    }
}

/// What a worker run did: deliveries handed to the handler (`attempts`), of those `succeeded`
/// and `failed`, and `released`: still running at shutdown, stopped and retried.
#[pyclass(module = "oncely._native", frozen, get_all)]
pub struct RunSummary {
    attempts: u64,
    succeeded: u64,
    failed: u64,
    released: u64,
}

#[pymethods]
impl RunSummary {
    fn __repr__(&self) -> String {
        format!(
            "RunSummary(attempts={}, succeeded={}, failed={}, released={})",
            self.attempts, self.succeeded, self.failed, self.released
        )
    }
}

fn summary(s: oncely::worker::RunSummary) -> RunSummary {
    RunSummary { attempts: s.attempts, succeeded: s.succeeded, failed: s.failed, released: s.released }
}

/// `oncely.Retry` and `oncely.Snooze` (Python classes: they take keyword arguments).
fn outcome_types(py: Python<'_>) -> PyResult<&(Py<PyType>, Py<PyType>)> {
    static TYPES: PyOnceLock<(Py<PyType>, Py<PyType>)> = PyOnceLock::new();
    TYPES.get_or_try_init(py, || {
        let m = py.import("oncely")?;
        Ok((
            m.getattr("Retry")?.cast_into::<PyType>()?.unbind(),
            m.getattr("Snooze")?.cast_into::<PyType>()?.unbind(),
        ))
    })
}

/// `str(v)`, or "" when that fails (for values that are not the exception itself).
fn text(v: &Bound<'_, PyAny>) -> String {
    v.str().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The outcome of one handler call.
fn outcome_of(py: Python<'_>, r: PyResult<Py<PyAny>>) -> Outcome {
    match r {
        Ok(v) => {
            let v = v.bind(py);
            if v.is_none() || v.is(PyBool::new(py, true)) {
                Outcome::Success
            } else {
                let shown = match v.repr() {
                    Ok(r) => oncely::text::quote(&r.to_string_lossy()),
                    Err(_) => crate::type_name(v),
                };
                Outcome::retry(format!("the handler returned {shown} (expected None or True)"))
            }
        }
        Err(e) => {
            let exc = e.value(py);
            if e.is_instance_of::<Permanent>(py) {
                return Outcome::Fail(exception_text(exc.as_any()));
            }
            let Ok((retry, snooze)) = outcome_types(py) else {
                return Outcome::retry(exception_text(exc.as_any()));
            };
            let seconds = |name: &'static str| -> PyResult<Option<std::time::Duration>> {
                let v = exc.getattr(name)?;
                if v.is_none() { Ok(None) } else { secs(name, v.extract()?).map(Some) }
            };
            if exc.is_instance(retry.bind(py)).unwrap_or(false) {
                let error = exc.getattr("error").map(|e| text(&e)).unwrap_or_default();
                return match seconds("after") {
                    Ok(after) => Outcome::Retry { after, error },
                    Err(bad) => {
                        Outcome::retry(format!("{error} (bad Retry.after: {})", text(bad.value(py).as_any())))
                    }
                };
            }
            if exc.is_instance(snooze.bind(py)).unwrap_or(false) {
                return match seconds("seconds") {
                    Ok(Some(d)) => Outcome::Snooze(d),
                    Ok(None) => Outcome::retry("Snooze needs seconds"),
                    Err(bad) => {
                        Outcome::retry(format!("bad Snooze.seconds: {}", text(bad.value(py).as_any())))
                    }
                };
            }
            Outcome::retry(exception_text(exc.as_any()))
        }
    }
}

/// A Python handler, called from the worker's tokio tasks.
struct Handler {
    func: Py<PyAny>,
    /// `async def` (or an object with an `async def __call__`): called on the task, awaited on
    /// the event loop. Otherwise called on a thread of its own, outside the runtime, so that it
    /// may block and make sync oncely calls.
    is_async: bool,
    /// The event loop of an `*_async` run; None for a sync run (coroutines go to `asyncio.run`).
    locals: Option<TaskLocals>,
}

impl Handler {
    fn new(py: Python<'_>, func: Py<PyAny>, locals: Option<TaskLocals>) -> PyResult<Arc<Self>> {
        let f = func.bind(py);
        if !f.is_callable() {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "the handler must be callable, not {}",
                crate::type_name(f)
            )));
        }
        let iscoro = py.import("inspect")?.getattr("iscoroutinefunction")?;
        let is_async = iscoro.call1((f,))?.is_truthy()?
            || (f.hasattr("__call__")? && iscoro.call1((f.getattr("__call__")?,))?.is_truthy()?);
        Ok(Arc::new(Handler { func, is_async, locals }))
    }

    /// Runs `f` with the GIL on a new thread (no tokio context there).
    async fn on_thread<T: Send + 'static>(
        f: impl FnOnce(Python<'_>) -> PyResult<T> + Send + 'static,
    ) -> PyResult<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("oncely-handler".into())
            .spawn(move || {
                let _ = tx.send(try_attach(f));
            })
            .map_err(|e| {
                pyo3::exceptions::PyRuntimeError::new_err(format!("cannot start a handler thread: {e}"))
            })?;
        rx.await.map_err(|_| pyo3::exceptions::PyRuntimeError::new_err("the handler thread died"))?
    }

    async fn call(self: Arc<Self>, m: oncely::Message) -> Outcome {
        let r = self.clone().call_inner(m).await;
        attach(|py| outcome_of(py, r)).unwrap_or_else(|| Outcome::retry("the Python interpreter is shutting down"))
    }

    async fn call_inner(self: Arc<Self>, m: oncely::Message) -> PyResult<Py<PyAny>> {
        let v = if self.is_async {
            try_attach(|py| self.func.call1(py, (Message { inner: m },)))?
        } else {
            let me = self.clone();
            Self::on_thread(move |py| me.func.call1(py, (Message { inner: m },))).await?
        };
        let awaitable = try_attach(|py| v.bind(py).hasattr("__await__"))?;
        if !awaitable {
            return Ok(v);
        }
        match &self.locals {
            Some(locals) => {
                let fut = try_attach(|py| {
                    pyo3_async_runtimes::into_future_with_locals(locals, v.into_bound(py))
                })?;
                fut.await
            }
            None => {
                Self::on_thread(move |py| Ok(py.import("asyncio")?.call_method1("run", (v,))?.unbind())).await
            }
        }
    }
}

/// Runs a handler over an outbox's messages with bounded concurrency (see the module doc of
/// `oncely.Worker`). Durations are seconds.
#[pyclass(module = "oncely._native", frozen)]
pub struct Worker {
    inner: CoreWorker,
    stop: watch::Sender<bool>,
}

#[pymethods]
impl Worker {
    #[new]
    #[pyo3(
        signature = (outbox, *, concurrency = Int::new(16), poll_interval = 0.05, shutdown_timeout = 30.0),
        text_signature = "(outbox, *, concurrency=16, poll_interval=0.05, shutdown_timeout=30.0)"
    )]
    fn new(
        outbox: &Bound<'_, Outbox>,
        concurrency: Int<args::Concurrency>,
        poll_interval: f64,
        shutdown_timeout: f64,
    ) -> PyResult<Self> {
        let config = WorkerConfig {
            concurrency: concurrency.0 as usize,
            poll_interval: secs("poll_interval", poll_interval)?,
            shutdown_timeout: secs("shutdown_timeout", shutdown_timeout)?,
        };
        let inner = CoreWorker::new(outbox.get().inner.clone(), config).map_err(to_py)?;
        Ok(Worker { inner, stop: watch::channel(false).0 })
    }

    /// Delivers until nothing is due and nothing is in flight; returns a `RunSummary`. The GIL is
    /// released while waiting; sync handlers run on threads of their own.
    fn run_until_idle(&self, py: Python<'_>, handler: Py<PyAny>) -> PyResult<RunSummary> {
        let h = Handler::new(py, handler, None)?;
        let w = self.inner.clone();
        block_on_runtime(py, async move { w.run_until_idle(move |m| h.clone().call(m)).await }).map(summary)
    }

    /// `run_until_idle`, awaitable. `async def` handlers run on the calling event loop; plain
    /// ones on threads of their own.
    fn run_until_idle_async<'py>(&self, py: Python<'py>, handler: Py<PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let locals = TaskLocals::with_running_loop(py)?.copy_context(py)?;
        let h = Handler::new(py, handler, Some(locals))?;
        let w = self.inner.clone();
        spawn_py(
            py,
            async move { w.run_until_idle(move |m| h.clone().call(m)).await.map(summary).map_err(to_py) },
        )
    }

    /// Delivers until `stop()` is called (from another thread, a handler or a signal handler);
    /// then stops leasing, waits up to `shutdown_timeout` for handlers in flight and settles
    /// those still running as failed attempts. Ctrl-C (KeyboardInterrupt) stops it the same way
    /// and is re-raised afterwards.
    fn run(&self, py: Python<'_>, handler: Py<PyAny>) -> PyResult<RunSummary> {
        let h = Handler::new(py, handler, None)?;
        let w = self.inner.clone();
        let stopped = self.stop.subscribe();
        let interrupt = self.stop.clone();
        let mut interrupted: Option<PyErr> = None;
        let r = std::thread::scope(|s| {
            // Python signal handlers run only on the main thread while it runs Python: look for
            // them every 100 ms while the run blocks this thread.
            let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
            let done_rx = std::sync::Mutex::new(done_rx);
            let run = s.spawn(move || {
                let r = oncely::runtime::block_on(w.run(move |m| h.clone().call(m), wait_stop(stopped)));
                let _ = done_tx.send(());
                r
            });
            loop {
                let finished =
                    py.detach(|| done_rx.lock().unwrap().recv_timeout(std::time::Duration::from_millis(100)));
                if !matches!(finished, Err(std::sync::mpsc::RecvTimeoutError::Timeout)) {
                    break;
                }
                if interrupted.is_none() {
                    if let Err(e) = py.check_signals() {
                        interrupted = Some(e);
                        interrupt.send_replace(true);
                    }
                }
            }
            run.join().expect("the worker thread panicked")
        });
        let r = r.and_then(|r| r).map_err(to_py);
        if let Some(e) = interrupted {
            return Err(e);
        }
        r.map(summary)
    }

    /// `run`, awaitable: delivers until `stop()` is called.
    fn run_async<'py>(&self, py: Python<'py>, handler: Py<PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let locals = TaskLocals::with_running_loop(py)?.copy_context(py)?;
        let h = Handler::new(py, handler, Some(locals))?;
        let w = self.inner.clone();
        let stopped = self.stop.subscribe();
        spawn_py(py, async move {
            w.run(move |m| h.clone().call(m), wait_stop(stopped)).await.map(summary).map_err(to_py)
        })
    }

    /// Asks `run`/`run_async` to shut down gracefully. A stopped worker stays stopped: later
    /// `run` calls return at once (`run_until_idle` is not affected).
    fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Whether `stop()` was called.
    #[getter]
    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    fn __repr__(&self) -> String {
        format!("Worker(stopped={})", *self.stop.borrow())
    }
}

async fn wait_stop(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Worker>()?;
    m.add_class::<Message>()?;
    m.add_class::<RunSummary>()?;
    Ok(())
}
