//! asyncio adaptation: `*_async` methods return awaitables (pyo3-async-runtimes) whose Rust
//! futures run on oncely's one shared runtime (`oncely::runtime`, rebuilt after `fork()`), not on
//! a second runtime of pyo3-async-runtimes' own.
//!
//! Threads Python did not start (the runtime's workers and blocking pool, handler threads, a
//! store's writer thread) enter Python only through [`attach`] (pyo3-async-runtimes' completions
//! through [`OncelyRuntime::spawn_blocking`], which is gated the same way). At exit an `atexit`
//! hook ([`close_python`]) closes that gate and waits, with the GIL released, for the threads
//! inside to leave: a completion that lost the GIL half-way (e.g. inside
//! `loop.call_soon_threadsafe`) would otherwise try to take it back while the interpreter
//! finalises, and CPython then tears that thread down under Rust's feet (SIGSEGV/SIGABRT at
//! exit). After the hook, such threads leave Python alone: a late result is dropped, its
//! references parked in pyo3's pool (no Python call).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3_async_runtimes::TaskLocals;
use pyo3_async_runtimes::generic::{ContextExt, Runtime};
use tokio::sync::OnceCell;

use crate::to_py;

/// Threads inside Python through [`gated`], and whether the interpreter is closing.
struct Gate {
    pid: u32,
    closing: bool,
    inside: usize,
}

static GATE: Mutex<Gate> = Mutex::new(Gate { pid: 0, closing: false, inside: 0 });
static LEFT: Condvar = Condvar::new();

/// How long the exit hook waits for threads inside Python to leave (a sync worker handler that
/// never returns must not hang the exit).
const EXIT_WAIT: Duration = Duration::from_secs(2);

fn gate() -> std::sync::MutexGuard<'static, Gate> {
    let mut g = GATE.lock().unwrap_or_else(|p| p.into_inner());
    let pid = std::process::id();
    if g.pid != pid {
        // First use, or a child after `fork()`: the parent's threads do not exist here.
        *g = Gate { pid, closing: false, inside: 0 };
    }
    g
}

/// Runs `f` (which enters Python) unless the interpreter is closing; counts it while it runs so
/// that the exit hook can wait for it.
pub(crate) fn gated<R>(f: impl FnOnce() -> R) -> Option<R> {
    {
        let mut g = gate();
        if g.closing {
            return None;
        }
        g.inside += 1;
    }
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            let mut g = gate();
            g.inside = g.inside.saturating_sub(1);
            if g.inside == 0 {
                LEFT.notify_all();
            }
        }
    }
    let _leave = Leave;
    Some(f())
}

/// `Python::attach` for threads Python did not start: None (and no Python call) once the
/// interpreter is closing.
pub(crate) fn attach<R>(f: impl for<'py> FnOnce(Python<'py>) -> R) -> Option<R> {
    gated(|| Python::attach(f))
}

/// The error of a call that could not enter Python because the interpreter is closing.
pub(crate) fn closing_error() -> PyErr {
    pyo3::exceptions::PyRuntimeError::new_err("the Python interpreter is shutting down")
}

/// [`attach`] for fallible work: the interpreter closing is an error.
pub(crate) fn try_attach<R>(f: impl for<'py> FnOnce(Python<'py>) -> PyResult<R>) -> PyResult<R> {
    attach(f).unwrap_or_else(|| Err(closing_error()))
}

/// The `atexit` hook: closes the gate and waits (GIL released, at most [`EXIT_WAIT`]) for the
/// threads inside Python to leave.
#[pyfunction]
pub(crate) fn close_python(py: Python<'_>) {
    gate().closing = true;
    py.detach(|| {
        let deadline = Instant::now() + EXIT_WAIT;
        let mut g = gate();
        while g.inside > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            g = LEFT.wait_timeout(g, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    });
}

/// Registers [`close_python`] with `atexit` (runs before the interpreter finalises, while
/// every thread may still take the GIL).
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let hook = wrap_pyfunction!(close_python, m)?;
    m.py().import("atexit")?.call_method1("register", (hook,))?;
    Ok(())
}

pub(crate) struct OncelyRuntime;

tokio::task_local! {
    static TASK_LOCALS: OnceCell<TaskLocals>;
}

impl Runtime for OncelyRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle = tokio::task::JoinHandle<()>;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        // `spawn_py` made sure the runtime exists in this process before any spawn.
        let rt = oncely::runtime::runtime().expect("oncely runtime");
        rt.spawn(fut)
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        // pyo3-async-runtimes completes every awaitable here (`Python::attach` + `set_result`):
        // gated, so that no completion enters Python once the interpreter is closing.
        let rt = oncely::runtime::runtime().expect("oncely runtime");
        rt.spawn_blocking(move || {
            let _ = gated(f);
        })
    }
}

impl ContextExt for OncelyRuntime {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        let cell = OnceCell::new();
        let _ = cell.set(locals);
        Box::pin(TASK_LOCALS.scope(cell, fut))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS.try_with(|c| c.get().cloned()).unwrap_or_default()
    }
}

/// An awaitable for `fut`, which runs on oncely's runtime. Must be called with an event loop
/// running (inside a coroutine).
pub(crate) fn spawn_py<'py, T, F>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    oncely::runtime::runtime().map_err(to_py)?;
    pyo3_async_runtimes::generic::future_into_py::<OncelyRuntime, F, T>(py, fut)
}

/// Wraps a handler's awaitable so that a `KeyboardInterrupt` or `SystemExit` it raises comes back
/// as a value: asyncio re-raises those straight out of the event loop (not through the task's
/// awaiter), so the claim would be left unsettled while the program exits. [`uncapture`] raises
/// it again once the Rust side has settled.
pub(crate) fn capture<'py>(awaitable: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    static CAPTURE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let py = awaitable.py();
    let f = CAPTURE.get_or_try_init(py, || -> PyResult<_> {
        let code = c"async def capture(awaitable):\n    try:\n        return (True, await awaitable)\n    except (KeyboardInterrupt, SystemExit) as exc:\n        return (False, exc)\n";
        Ok(PyModule::from_code(py, code, c"oncely_capture.py", c"oncely_capture")?.getattr("capture")?.unbind())
    })?;
    f.bind(py).call1((awaitable,))
}

/// The result of an awaitable wrapped by [`capture`]: its value, or its exception raised again.
pub(crate) fn uncapture(r: PyResult<Py<PyAny>>) -> PyResult<Py<PyAny>> {
    let pair = r?;
    try_attach(|py| {
        let (ok, v): (bool, Bound<'_, PyAny>) = pair.bind(py).extract()?;
        if ok { Ok(v.unbind()) } else { Err(PyErr::from_value(v)) }
    })
}

/// Awaits what a Python handler returned when it is awaitable (an `async def` handler), or takes
/// it as is.
pub(crate) async fn resolve(value: Py<PyAny>) -> PyResult<Py<PyAny>> {
    let fut = try_attach(|py| -> PyResult<_> {
        let v = value.bind(py);
        if v.hasattr("__await__")? {
            Ok(Some(pyo3_async_runtimes::generic::into_future::<OncelyRuntime>(capture(v)?)?))
        } else {
            Ok(None)
        }
    })?;
    match fut {
        Some(f) => uncapture(f.await),
        None => Ok(value),
    }
}
