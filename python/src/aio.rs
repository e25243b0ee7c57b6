//! asyncio adaptation: `*_async` methods return awaitables (pyo3-async-runtimes) whose Rust
//! futures run on oncely's one shared runtime (`oncely::runtime`, rebuilt after `fork()`), not on
//! a second runtime of pyo3-async-runtimes' own.

use std::future::Future;
use std::pin::Pin;

use pyo3::prelude::*;
use pyo3_async_runtimes::TaskLocals;
use pyo3_async_runtimes::generic::{ContextExt, Runtime};
use tokio::sync::OnceCell;

use crate::to_py;

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
        let rt = oncely::runtime::runtime().expect("oncely runtime");
        rt.spawn_blocking(f)
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

/// Awaits what a Python handler returned when it is awaitable (an `async def` handler), or takes
/// it as is.
pub(crate) async fn resolve(value: Py<PyAny>) -> PyResult<Py<PyAny>> {
    let fut = Python::attach(|py| -> PyResult<_> {
        let v = value.bind(py);
        if v.hasattr("__await__")? {
            Ok(Some(pyo3_async_runtimes::generic::into_future::<OncelyRuntime>(v.clone())?))
        } else {
            Ok(None)
        }
    })?;
    match fut {
        Some(f) => f.await,
        None => Ok(value),
    }
}
