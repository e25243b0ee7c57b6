//! `Worker`, `Message`, `RunSummary`: the push-style worker. The core's `oncely::Worker` does the
//! leasing, concurrency and settling; this file only calls the Python handler and turns what it
//! did into an [`Outcome`]: returning `None`/`True` is success; raising `oncely.Retry`,
//! `oncely.Snooze` or `oncely.Permanent` picks that outcome; any other exception (or return
//! value) is a retryable failure with the exception's text.

use std::collections::BTreeMap;
use std::sync::Arc;

use oncely::handler::{HandlerResult, Hint, Raised, Returned};
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
use crate::{Extra, Int, Num, args, py_bytes, secs, to_py};

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

/// `str(v)` when it can be read and is not empty.
fn message_of(v: &Bound<'_, PyAny>) -> Option<String> {
    v.str().ok().map(|s| s.to_string_lossy().into_owned()).filter(|s| !s.is_empty())
}

/// A Retry/Snooze hint as the handler gave it: `None` is no hint, a number (not a bool) is
/// seconds, anything else is described by its `repr`.
fn hint_of(v: PyResult<Bound<'_, PyAny>>) -> Hint {
    let Ok(v) = v else { return Hint::Absent };
    if v.is_none() {
        return Hint::Absent;
    }
    if !v.is_instance_of::<PyBool>() {
        if let Ok(seconds) = v.extract::<f64>() {
            return Hint::Seconds(seconds);
        }
    }
    Hint::NotANumber(
        v.repr().map(|r| r.to_string_lossy().into_owned()).unwrap_or_else(|_| crate::type_name(&v)),
    )
}

/// What the handler did, described for the core's handler contract ([`oncely::handler`]), which
/// decides the outcome and the stored text: the same rule as in every other language.
fn result_of(py: Python<'_>, r: PyResult<Py<PyAny>>) -> HandlerResult {
    match r {
        Ok(v) => {
            let v = v.bind(py);
            HandlerResult::Returned(if v.is_none() {
                Returned::Nothing
            } else if v.is(PyBool::new(py, true)) {
                Returned::True
            } else {
                Returned::Value(match v.repr() {
                    Ok(r) => r.to_string_lossy().into_owned(),
                    Err(_) => crate::type_name(v),
                })
            })
        }
        Err(e) => {
            let exc = e.value(py).as_any();
            let type_name =
                exc.get_type().name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let kind = match outcome_types(py) {
                _ if e.is_instance_of::<Permanent>(py) => Raised::Permanent,
                Ok((retry, _)) if exc.is_instance(retry.bind(py)).unwrap_or(false) => Raised::Retry {
                    error: exc.getattr("error").ok().and_then(|e| message_of(&e)),
                    after: hint_of(exc.getattr("after")),
                },
                Ok((_, snooze)) if exc.is_instance(snooze.bind(py)).unwrap_or(false) => {
                    Raised::Snooze { seconds: hint_of(exc.getattr("seconds")) }
                }
                _ => Raised::Other,
            };
            HandlerResult::Raised { kind, message: message_of(exc), type_name }
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
    /// The worker's stop signal (`Worker.stop()`).
    stop: watch::Sender<bool>,
    /// The first `KeyboardInterrupt`/`SystemExit` a handler raised, with its delivery's id and
    /// attempt: it stops the run and is raised again from it.
    exit: std::sync::Mutex<Option<(PyErr, String, u32)>>,
    /// Set with `exit`.
    exited: watch::Sender<bool>,
}

/// Whether `e` asks the program to stop (Ctrl-C, `sys.exit()`): not a failed attempt to retry
/// quietly, but the end of the run.
fn is_exit(py: Python<'_>, e: &PyErr) -> bool {
    e.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py)
        || e.is_instance_of::<pyo3::exceptions::PySystemExit>(py)
}

impl Handler {
    fn new(
        py: Python<'_>,
        func: Py<PyAny>,
        locals: Option<TaskLocals>,
        stop: watch::Sender<bool>,
    ) -> PyResult<Arc<Self>> {
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
        let exit = std::sync::Mutex::new(None);
        Ok(Arc::new(Handler { func, is_async, locals, stop, exit, exited: watch::channel(false).0 }))
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
        if *self.exited.borrow() {
            // A handler asked the program to stop: no more Python calls; the attempt is given
            // back as the worker gives back attempts still running at shutdown.
            return Outcome::retry("the worker stopped (a handler raised KeyboardInterrupt or SystemExit)");
        }
        let (id, attempt) = (m.id.clone(), m.attempts);
        let r = self.clone().call_inner(m).await;
        attach(|py| {
            if let Err(e) = &r {
                if is_exit(py, e) {
                    let mut exit = self.exit.lock().unwrap_or_else(|p| p.into_inner());
                    if exit.is_none() {
                        *exit = Some((e.clone_ref(py), id, attempt));
                    }
                    drop(exit);
                    self.exited.send_replace(true);
                    self.stop.send_replace(true);
                }
            }
            result_of(py, r).outcome()
        })
        .unwrap_or_else(|| Outcome::retry("the Python interpreter is shutting down"))
    }

    /// The run's answer: the handler's `KeyboardInterrupt`/`SystemExit` if one raised it.
    fn finish<T>(&self, py: Python<'_>, r: PyResult<T>) -> PyResult<T> {
        match &*self.exit.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((e, _, _)) => Err(e.clone_ref(py)),
            None => r,
        }
    }

    /// `Worker::run_until_idle`, stopped gracefully (as `run` is by `stop()`) when a handler
    /// raises `KeyboardInterrupt`/`SystemExit`.
    async fn run_until_idle(self: Arc<Self>, w: CoreWorker) -> oncely::Result<oncely::worker::RunSummary> {
        let me = self.clone();
        // A handler's KeyboardInterrupt/SystemExit stops the drain the way `stop()` stops `run`:
        // no more leases, in-flight attempts finish (or are given back), all settled.
        let mut exited = self.exited.subscribe();
        let exit = async move {
            let _ = exited.wait_for(|e| *e).await;
        };
        w.run_until_idle_or(move |m| me.clone().call(m), exit).await
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
                    pyo3_async_runtimes::into_future_with_locals(locals, crate::aio::capture(v.bind(py))?)
                })?;
                crate::aio::uncapture(fut.await)
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
    /// Every option left out (or `None`) takes the core's default (`WorkerConfig::default()`:
    /// 16 handlers at once, a 0.05 s poll interval, a 30 s shutdown timeout).
    #[pyo3(
        signature = (outbox, *, concurrency = None, poll_interval = None, shutdown_timeout = None, **extra)
    )]
    fn new(
        outbox: &Bound<'_, Outbox>,
        concurrency: Option<Int<args::Concurrency>>,
        poll_interval: Option<Num>,
        shutdown_timeout: Option<Num>,
        extra: Option<Extra<args::WorkerKw>>,
    ) -> PyResult<Self> {
        let _ = extra;
        let mut config = WorkerConfig::default();
        if let Some(c) = concurrency {
            config.concurrency = c.0 as usize;
        }
        if let Some(p) = poll_interval {
            config.poll_interval = secs("poll_interval", p)?;
        }
        if let Some(t) = shutdown_timeout {
            config.shutdown_timeout = secs("shutdown_timeout", t)?;
        }
        let inner = CoreWorker::new(outbox.get().inner.clone(), config).map_err(to_py)?;
        Ok(Worker { inner, stop: watch::channel(false).0 })
    }

    /// Delivers until nothing is due and nothing is in flight; returns a `RunSummary`. The GIL is
    /// released while waiting; sync handlers run on threads of their own.
    #[pyo3(signature = (handler, **extra))]
    fn run_until_idle(
        &self,
        py: Python<'_>,
        handler: Py<PyAny>,
        extra: Option<Extra<args::RunKw>>,
    ) -> PyResult<RunSummary> {
        let _ = extra;
        let h = Handler::new(py, handler, None, self.stop.clone())?;
        let run = h.clone().run_until_idle(self.inner.clone());
        let r = block_on_runtime(py, run).map(summary);
        h.finish(py, r)
    }

    /// `run_until_idle`, awaitable. `async def` handlers run on the calling event loop; plain
    /// ones on threads of their own.
    #[pyo3(signature = (handler, **extra))]
    fn run_until_idle_async<'py>(
        &self,
        py: Python<'py>,
        handler: Py<PyAny>,
        extra: Option<Extra<args::RunKw>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = extra;
        let locals = TaskLocals::with_running_loop(py)?.copy_context(py)?;
        let h = Handler::new(py, handler, Some(locals), self.stop.clone())?;
        let w = self.inner.clone();
        spawn_py(py, async move {
            let r = h.clone().run_until_idle(w).await.map(summary).map_err(to_py);
            try_attach(|py| h.finish(py, r))
        })
    }

    /// Delivers until `stop()` is called (from another thread, a handler or a signal handler);
    /// then stops leasing, waits up to `shutdown_timeout` for handlers in flight and settles
    /// those still running as failed attempts. Ctrl-C (KeyboardInterrupt) stops it the same way
    /// and is re-raised afterwards.
    #[pyo3(signature = (handler, **extra))]
    fn run(
        &self,
        py: Python<'_>,
        handler: Py<PyAny>,
        extra: Option<Extra<args::RunKw>>,
    ) -> PyResult<RunSummary> {
        let _ = extra;
        let h = Handler::new(py, handler, None, self.stop.clone())?;
        let handler = h.clone();
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
        handler.finish(py, r.map(summary))
    }

    /// `run`, awaitable: delivers until `stop()` is called.
    #[pyo3(signature = (handler, **extra))]
    fn run_async<'py>(
        &self,
        py: Python<'py>,
        handler: Py<PyAny>,
        extra: Option<Extra<args::RunKw>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = extra;
        let locals = TaskLocals::with_running_loop(py)?.copy_context(py)?;
        let h = Handler::new(py, handler, Some(locals), self.stop.clone())?;
        let w = self.inner.clone();
        let stopped = self.stop.subscribe();
        spawn_py(py, async move {
            let me = h.clone();
            let r = w.run(move |m| me.clone().call(m), wait_stop(stopped)).await.map(summary).map_err(to_py);
            try_attach(|py| h.finish(py, r))
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
