//! One tokio runtime per process, for callers that are not async themselves (the blocking
//! facade, the Python and Kotlin bindings). Created on first use; a child process created by
//! `fork()` gets a fresh one instead of inheriting the parent's dead threads.

use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

static RUNTIME: Mutex<Option<(u32, Arc<tokio::runtime::Runtime>)>> = Mutex::new(None);

/// The process's shared runtime (two worker threads, timers and I/O enabled).
pub fn runtime() -> Result<Arc<tokio::runtime::Runtime>> {
    let mut slot = RUNTIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let pid = std::process::id();
    if let Some((owner, rt)) = slot.as_ref() {
        if *owner == pid {
            return Ok(rt.clone());
        }
        // Forked: the parent's worker threads do not exist here. Leak the old runtime (dropping
        // it would try to join threads that are gone) and build a new one.
        std::mem::forget(slot.take());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("oncely-runtime")
        .enable_all()
        .build()
        .map_err(|e| Error::Storage(format!("cannot start the async runtime: {e}")))?;
    let rt = Arc::new(rt);
    *slot = Some((pid, rt.clone()));
    Ok(rt)
}

/// Runs `future` to completion on the shared runtime, blocking the calling thread. Must not be
/// called from inside an async task.
pub fn block_on<F: Future>(future: F) -> Result<F::Output> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::invalid("block_on", "cannot block inside an async runtime; await instead"));
    }
    Ok(runtime()?.block_on(future))
}
