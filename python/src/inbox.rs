//! `Inbox`, `Ticket`, `BeginResult`, `Processed`, `InboxRecord`: the receiver's processed-ID store.

use std::sync::Arc;

use oncely::inbox::{InboxRecord as CoreRecord, RecordState};
use oncely::{AnyStore, Begin, CachePolicy, Failure, InboxConfig, ProcessError, Request};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

use crate::aio::{attach, closing_error, resolve, spawn_py, try_attach};
use crate::errors::{Permanent, ReplayedFailure};
use crate::transaction::Transaction;
use crate::{
    Extra, Int, ManualClock, Num, Text, args, block, mode, opt_py_bytes, opt_secs, shared_clock, store_of,
    to_bytes, to_py,
};

type CoreInbox = oncely::Inbox<AnyStore>;
type CoreTicket = oncely::Ticket<AnyStore>;

/// A claim on one id: run the effect, then `finish`, `fail` or `release` it.
#[pyclass(module = "oncely._native", frozen)]
pub struct Ticket {
    inner: Arc<CoreTicket>,
}

#[pymethods]
impl Ticket {
    /// The claimed id.
    #[getter]
    fn id(&self) -> &str {
        self.inner.id()
    }

    /// The fencing token (0 for an at-least-once claim, which holds no lease).
    #[getter]
    fn token(&self) -> u64 {
        self.inner.token()
    }

    /// The claim's mode.
    #[getter]
    fn mode(&self) -> &'static str {
        self.inner.mode().as_str()
    }

    /// Marks the id done and stores `result` for replay to duplicates.
    #[pyo3(signature = (result, **extra))]
    fn finish(
        &self,
        py: Python<'_>,
        result: &Bound<'_, PyAny>,
        extra: Option<Extra<args::TicketFinishKw>>,
    ) -> PyResult<()> {
        let _ = extra;
        let result = to_bytes("result", result)?;
        let t = self.inner.clone();
        block(py, async move { t.finish(result).await })
    }

    /// Reports a permanent failure (stored or released by the inbox's cache policy).
    #[pyo3(signature = (reason, **extra))]
    fn fail(
        &self,
        py: Python<'_>,
        reason: &Bound<'_, PyAny>,
        extra: Option<Extra<args::TicketFailKw>>,
    ) -> PyResult<()> {
        let _ = extra;
        let reason = to_bytes("reason", reason)?;
        let t = self.inner.clone();
        block(py, async move { t.fail(reason).await })
    }

    /// Gives the id back so that a retry can claim it at once.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        let t = self.inner.clone();
        block(py, async move { t.release().await })
    }

    /// Settles the claim by a handler's outcome, exactly as `Inbox.process` does: without
    /// `error`, finishes it with `result`; with `error`, a permanent failure is stored or
    /// released by the cache policy and a retryable one releases the id.
    #[pyo3(
        signature = (result=None, error=None, permanent=args::Flag(false), **extra),
        text_signature = "(self, /, result=None, error=None, permanent=False, **extra)"
    )]
    fn settle(
        &self,
        py: Python<'_>,
        result: Option<&Bound<'_, PyAny>>,
        error: Option<Text<args::ErrorText>>,
        permanent: args::Flag,
        extra: Option<Extra<args::TicketSettleKw>>,
    ) -> PyResult<()> {
        let _ = extra;
        let t = self.inner.clone();
        let result = match result {
            Some(r) if !r.is_none() => match to_bytes("result", r) {
                Ok(b) => b,
                Err(e) => {
                    // As `process` does with a handler that returned something else than bytes:
                    // a retryable failure (the id is given back), and the TypeError is raised.
                    let error = crate::exception_text(e.value(py).as_any());
                    block(py, async move { t.settle(Err(&Failure { error, permanent: false })).await })?;
                    return Err(e);
                }
            },
            _ => Vec::new(),
        };
        block(py, async move {
            match error {
                None => t.settle::<String>(Ok(result)).await,
                Some(error) => {
                    t.settle(Err(&oncely::Failure { error: error.0, permanent: permanent.0 })).await
                }
            }
        })
    }

    /// `finish`, awaitable.
    #[pyo3(signature = (result, **extra))]
    fn finish_async<'py>(
        &self,
        py: Python<'py>,
        result: &Bound<'_, PyAny>,
        extra: Option<Extra<args::TicketFinishKw>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = extra;
        let result = to_bytes("result", result)?;
        let t = self.inner.clone();
        spawn_py(py, async move { t.finish(result).await.map_err(to_py) })
    }

    /// `fail`, awaitable.
    #[pyo3(signature = (reason, **extra))]
    fn fail_async<'py>(
        &self,
        py: Python<'py>,
        reason: &Bound<'_, PyAny>,
        extra: Option<Extra<args::TicketFailKw>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = extra;
        let reason = to_bytes("reason", reason)?;
        let t = self.inner.clone();
        spawn_py(py, async move { t.fail(reason).await.map_err(to_py) })
    }

    /// `release`, awaitable.
    fn release_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let t = self.inner.clone();
        spawn_py(py, async move { t.release().await.map_err(to_py) })
    }

    fn __repr__(&self) -> String {
        format!(
            "Ticket(id={:?}, token={}, mode={:?})",
            self.inner.id(),
            self.inner.token(),
            self.inner.mode().as_str()
        )
    }
}

/// The answer to `Inbox.begin`: `outcome` is `"claimed"` (see `ticket`), `"duplicate"` (see
/// `status` and `result`), `"in_progress"` (see `lease_until_ms`) or `"conflict"`.
#[pyclass(module = "oncely._native", frozen, get_all)]
pub struct BeginResult {
    outcome: &'static str,
    ticket: Option<Py<Ticket>>,
    status: Option<&'static str>,
    result: Option<Py<PyBytes>>,
    lease_until_ms: Option<i64>,
}

#[pymethods]
impl BeginResult {
    /// `True` when the caller holds the id (`ticket` is set).
    #[getter]
    fn claimed(&self) -> bool {
        self.ticket.is_some()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        match self.outcome {
            "claimed" => format!(
                "BeginResult(claimed, {})",
                self.ticket.as_ref().map(|t| t.get().__repr__()).unwrap_or_default()
            ),
            "duplicate" => format!(
                "BeginResult(duplicate, status={:?}, result={})",
                self.status.unwrap_or(""),
                self.result
                    .as_ref()
                    .map(|r| format!("{:?}", String::from_utf8_lossy(r.bind(py).as_bytes())))
                    .unwrap_or("None".into())
            ),
            other => format!("BeginResult({other})"),
        }
    }
}

fn begin_result(py: Python<'_>, b: Begin<AnyStore>) -> PyResult<BeginResult> {
    let mut r = BeginResult { outcome: "", ticket: None, status: None, result: None, lease_until_ms: None };
    match b {
        Begin::Claimed(t) => {
            r.outcome = "claimed";
            r.ticket = Some(Py::new(py, Ticket { inner: Arc::new(t) })?);
        }
        Begin::Duplicate(replay) => {
            r.outcome = "duplicate";
            r.status = Some(replay.status.as_str());
            r.result = opt_py_bytes(py, &replay.result);
        }
        Begin::InProgress { lease_until } => {
            r.outcome = "in_progress";
            r.lease_until_ms = Some(lease_until.0);
        }
        Begin::Conflict => r.outcome = "conflict",
    }
    Ok(r)
}

/// What `Inbox.process` returns: the handler's result (or the stored one, `replayed=True`).
#[pyclass(module = "oncely._native", frozen, get_all)]
pub struct Processed {
    result: Option<Py<PyBytes>>,
    replayed: bool,
}

#[pymethods]
impl Processed {
    fn __repr__(&self, py: Python<'_>) -> String {
        let r = self.result.as_ref().map(|r| format!("{:?}", String::from_utf8_lossy(r.bind(py).as_bytes())));
        format!(
            "Processed(result={}, replayed={})",
            r.unwrap_or("None".into()),
            if self.replayed { "True" } else { "False" }
        )
    }
}

/// An id's record as stored: `state` is `"in_progress"`, `"seen"`, `"succeeded"` or `"failed"`.
#[pyclass(module = "oncely._native", frozen, get_all)]
pub struct InboxRecord {
    state: &'static str,
    result: Option<Py<PyBytes>>,
    token: u64,
    fingerprint: Option<String>,
    expires_at_ms: i64,
    lease_until_ms: Option<i64>,
}

#[pymethods]
impl InboxRecord {
    fn __repr__(&self) -> String {
        format!(
            "InboxRecord(state={:?}, token={}, expires_at_ms={})",
            self.state, self.token, self.expires_at_ms
        )
    }
}

fn record(py: Python<'_>, r: CoreRecord) -> InboxRecord {
    let state = r.state.as_str();
    let (result, lease_until_ms) = match r.state {
        RecordState::InProgress { lease_until } => (None, Some(lease_until.0)),
        RecordState::Completed(o) => (o.result, None),
    };
    InboxRecord {
        state,
        result: opt_py_bytes(py, &result),
        token: r.token,
        fingerprint: r.fingerprint.map(|f| f.to_hex()),
        expires_at_ms: r.expires_at.0,
        lease_until_ms,
    }
}

/// A handler's exception, with its `str()` as the text the core stores for a permanent failure.
struct HandlerError {
    err: PyErr,
    text: String,
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn handler_failure(py: Python<'_>, err: PyErr) -> Failure<HandlerError> {
    let permanent = err.is_instance_of::<Permanent>(py);
    let text = crate::exception_text(err.value(py).as_any());
    Failure { error: HandlerError { err, text }, permanent }
}

/// The failure of a handler that could not run: the interpreter is shutting down.
fn closing_failure() -> Failure<HandlerError> {
    Failure {
        error: HandlerError { err: closing_error(), text: "interpreter shutdown".into() },
        permanent: false,
    }
}

/// Calls a Python handler (with the GIL) and takes its result as bytes.
fn call_handler(handler: &Py<PyAny>) -> Result<Vec<u8>, Failure<HandlerError>> {
    attach(|py| match handler.call0(py) {
        Ok(v) => to_bytes("the handler's result", v.bind(py)).map_err(|e| handler_failure(py, e)),
        Err(e) => Err(handler_failure(py, e)),
    })
    .unwrap_or_else(|| Err(closing_failure()))
}

fn process_answer(
    py: Python<'_>,
    r: Result<oncely::Processed, ProcessError<HandlerError>>,
) -> PyResult<Processed> {
    match r {
        Ok(p) => Ok(Processed { result: opt_py_bytes(py, &p.result), replayed: p.replayed }),
        Err(ProcessError::Handler(h)) => Err(h.err),
        Err(e @ ProcessError::ReplayedFailure(_)) => {
            let msg = e.to_string();
            let ProcessError::ReplayedFailure(reason) = e else { unreachable!() };
            let err = ReplayedFailure::new_err(msg);
            err.value(py).setattr("reason", opt_py_bytes(py, &reason))?;
            Err(err)
        }
        Err(ProcessError::Oncely(e)) => Err(to_py(e)),
    }
}

fn request(
    id: Text<args::Id>,
    payload: Option<&Bound<'_, PyAny>>,
    mode_: Option<Text<args::ModeName>>,
    lease: Option<Num>,
) -> PyResult<Request> {
    let mut req = Request::new(id.0);
    if let Some(p) = payload {
        if !p.is_none() {
            req = req.payload(&to_bytes("payload", p)?);
        }
    }
    if let Some(m) = mode(mode_.as_deref())? {
        req = req.mode(m);
    }
    if let Some(l) = opt_secs("lease", lease)? {
        req = req.lease(l);
    }
    Ok(req)
}

/// The requests of `begin_many`: ids (str) or dicts with `id` and optional `payload`, `mode`,
/// `lease`.
fn requests_of(requests: &Bound<'_, PyList>) -> PyResult<Vec<Request>> {
    let mut reqs = Vec::with_capacity(requests.len());
    for item in requests.iter() {
        if let Ok(s) = item.cast::<PyString>() {
            reqs.push(Request::new(args::text("id", s)?));
            continue;
        }
        let d = item.cast::<PyDict>().map_err(|_| {
            pyo3::exceptions::PyTypeError::new_err("each request must be an id (str) or a dict")
        })?;
        args::keywords(<args::BeginKw as args::Call>::WHAT, d, <args::BeginKw as args::Call>::KNOWN)?;
        let i = reqs.len();
        let id = d.get_item("id")?.ok_or_else(|| to_py(oncely::Error::invalid("id", "is required")))?; // Node's text
        let id: Text<args::Id> = args::item_field("request", i, "id", &id)?;
        let payload = d.get_item("payload")?;
        let m: Option<Text<args::ModeName>> =
            d.get_item("mode")?.map(|v| args::item_field("request", i, "mode", &v)).transpose()?;
        let lease: Option<Num> =
            d.get_item("lease")?.map(|v| args::item_field("request", i, "lease", &v)).transpose()?;
        reqs.push(request(id, payload.as_ref(), m, lease)?);
    }
    Ok(reqs)
}

/// The `(ticket, result)` items of `finish_many`, converted.
fn finish_items(
    py: Python<'_>,
    items: &[(Py<Ticket>, Py<PyAny>)],
) -> PyResult<Vec<(Arc<CoreTicket>, Vec<u8>)>> {
    items.iter().map(|(t, r)| Ok((t.get().inner.clone(), to_bytes("result", r.bind(py))?))).collect()
}

/// The receiver's processed-ID store, in one `scope`. `store` is a location (`"memory"`, an SQLite
/// file path) or an opened `Store`; durations are seconds.
#[pyclass(module = "oncely._native", frozen, subclass)]
pub struct Inbox {
    inner: CoreInbox,
}

#[pymethods]
impl Inbox {
    #[new]
    #[pyo3(signature = (store, scope, *, mode = None, lease = None, retention = None, cache_policy = None, recent_capacity = None, max_result_bytes = None, clock = None, **extra))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        store: &Bound<'_, PyAny>,
        scope: Text<args::Scope>,
        mode: Option<Text<args::ModeName>>,
        lease: Option<Num>,
        retention: Option<Num>,
        cache_policy: Option<Text<args::CachePolicyName>>,
        recent_capacity: Option<Int<args::RecentCapacity>>,
        max_result_bytes: Option<Int<args::MaxResultBytes>>,
        clock: Option<&Bound<'_, ManualClock>>,
        extra: Option<Extra<args::InboxKw>>,
    ) -> PyResult<Self> {
        let _ = extra;
        let mut cfg = InboxConfig::new(scope.0);
        if let Some(m) = crate::mode(mode.as_deref())? {
            cfg = cfg.mode(m);
        }
        if let Some(l) = opt_secs("lease", lease)? {
            cfg = cfg.lease(l);
        }
        if let Some(r) = opt_secs("retention", retention)? {
            cfg = cfg.retention(r);
        }
        if let Some(p) = cache_policy {
            cfg = cfg.cache_policy(p.parse::<CachePolicy>().map_err(to_py)?);
        }
        if let Some(n) = recent_capacity {
            cfg = cfg.recent_capacity(n.0 as usize);
        }
        if let Some(n) = max_result_bytes {
            cfg.max_result_bytes = n.0 as usize;
        }
        let store = store_of(py, store)?;
        let clock = shared_clock(clock);
        let inner = CoreInbox::with_clock(store, cfg, clock).map_err(to_py)?;
        Ok(Inbox { inner })
    }

    /// The scope.
    #[getter]
    fn scope(&self) -> &str {
        &self.inner.config().scope
    }

    /// The default mode.
    #[getter]
    fn mode(&self) -> &'static str {
        self.inner.config().mode.as_str()
    }

    /// Tries to claim `id`. `payload` (bytes) is fingerprinted: a later request for the same id
    /// with another payload is a conflict.
    #[pyo3(signature = (id, payload = None, *, mode = None, lease = None, **extra))]
    fn begin(
        &self,
        py: Python<'_>,
        id: Text<args::Id>,
        payload: Option<&Bound<'_, PyAny>>,
        mode: Option<Text<args::ModeName>>,
        lease: Option<Num>,
        extra: Option<Extra<args::BeginKw>>,
    ) -> PyResult<BeginResult> {
        let _ = extra;
        let req = request(id, payload, mode, lease)?;
        let inbox = self.inner.clone();
        let b = block(py, async move { inbox.begin(req).await })?;
        begin_result(py, b)
    }

    /// Claims many ids in one commit. Each request is an id (str) or a dict with `id` and
    /// optional `payload`, `mode`, `lease`. One bad request fails the whole call.
    #[pyo3(signature = (requests, **extra))]
    fn begin_many(
        &self,
        py: Python<'_>,
        requests: &Bound<'_, PyList>,
        extra: Option<Extra<args::BeginManyKw>>,
    ) -> PyResult<Vec<BeginResult>> {
        let _ = extra;
        let reqs = requests_of(requests)?;
        let inbox = self.inner.clone();
        let answers = block(py, async move { inbox.begin_many(reqs).await })?;
        answers.into_iter().map(|b| begin_result(py, b)).collect()
    }

    /// `begin_many`, awaitable.
    #[pyo3(signature = (requests, **extra))]
    fn begin_many_async<'py>(
        &self,
        py: Python<'py>,
        requests: &Bound<'_, PyList>,
        extra: Option<Extra<args::BeginManyKw>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = extra;
        let reqs = requests_of(requests)?;
        let inbox = self.inner.clone();
        spawn_py(py, async move {
            let answers = inbox.begin_many(reqs).await.map_err(to_py)?;
            try_attach(|py| answers.into_iter().map(|b| begin_result(py, b)).collect::<PyResult<Vec<_>>>())
        })
    }

    /// Finishes many claims of this inbox in one commit: `items` is a list of
    /// `(ticket, result)`. Returns one entry per item: `None` when it was finished, or the
    /// `OncelyError` that refused it (a stale token fails only its own item).
    #[pyo3(signature = (items, **extra))]
    fn finish_many(
        &self,
        py: Python<'_>,
        items: Vec<(Py<Ticket>, Py<PyAny>)>,
        extra: Option<Extra<args::FinishManyKw>>,
    ) -> PyResult<Vec<Option<PyErr>>> {
        let _ = extra;
        let batch = finish_items(py, &items)?;
        let inbox = self.inner.clone();
        let results = block(py, async move {
            let refs = batch.iter().map(|(t, r)| (&**t, r.clone())).collect();
            inbox.finish_many(refs).await
        })?;
        Ok(results.into_iter().map(|r| r.err().map(to_py)).collect())
    }

    /// `finish_many`, awaitable.
    #[pyo3(signature = (items, **extra))]
    fn finish_many_async<'py>(
        &self,
        py: Python<'py>,
        items: Vec<(Py<Ticket>, Py<PyAny>)>,
        extra: Option<Extra<args::FinishManyKw>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = extra;
        let batch = finish_items(py, &items)?;
        let inbox = self.inner.clone();
        spawn_py(py, async move {
            let refs = batch.iter().map(|(t, r)| (&**t, r.clone())).collect();
            let results = inbox.finish_many(refs).await.map_err(to_py)?;
            Ok(results.into_iter().map(|r| r.err().map(to_py)).collect::<Vec<_>>())
        })
    }

    /// Runs `handler()` (a callable returning bytes) at most / at least / exactly once per id.
    /// A duplicate gets the stored result with `replayed=True`. An exception from the handler is
    /// a retryable failure (the id is released) and is re-raised; raise `Permanent` (or a
    /// subclass) for a permanent one. `wait` (seconds): how long to wait for a concurrent first
    /// delivery instead of raising `InProgress` at once.
    #[pyo3(signature = (id, payload, handler, *, mode = None, lease = None, wait = None, **extra))]
    #[allow(clippy::too_many_arguments)]
    fn process(
        &self,
        py: Python<'_>,
        id: Text<args::Id>,
        payload: Option<&Bound<'_, PyAny>>,
        handler: Py<PyAny>,
        mode: Option<Text<args::ModeName>>,
        lease: Option<Num>,
        wait: Option<Num>,
        extra: Option<Extra<args::ProcessKw>>,
    ) -> PyResult<Processed> {
        let _ = extra;
        let mut req = request(id, payload, mode, lease)?;
        if let Some(w) = opt_secs("wait", wait)? {
            req = req.wait(w);
        }
        let inbox = self.inner.clone();
        // Driven by a plain executor, not the shared runtime's `block_on`: the handler runs on
        // this thread outside any tokio context, so it may itself make sync oncely calls (e.g.
        // enqueue a follow-up message in an outbox), which the runtime would refuse as nested.
        // The core's futures need no runtime (its waits use their own timer thread).
        let r = py.detach(move || {
            pollster::block_on(inbox.process(req, || std::future::ready(call_handler(&handler))))
        });
        process_answer(py, r)
    }

    /// Runs `handler(tx)` exactly once per id inside the SQLite store's own transaction: what
    /// it writes with `tx.execute(sql, params)`, the id's processed mark and the returned bytes
    /// commit together, or (on an exception) none of them. SQLite stores only. The handler runs
    /// on the store's writer thread: only database work through `tx` there, and no oncely calls
    /// on the same store (they would wait for that thread).
    #[pyo3(signature = (id, payload, handler, **extra))]
    fn process_transactional(
        &self,
        py: Python<'_>,
        id: Text<args::Id>,
        payload: Option<&Bound<'_, PyAny>>,
        handler: Py<PyAny>,
        extra: Option<Extra<args::ProcessTxKw>>,
    ) -> PyResult<Processed> {
        let _ = extra;
        let req = request(id, payload, None, None)?;
        let inbox = self.inner.clone();
        let r = py.detach(move || {
            pollster::block_on(inbox.process_in_transaction(req, move |sql| {
                attach(|py| {
                    let tx = Py::new(py, Transaction::new(sql)).map_err(|e| handler_failure(py, e))?;
                    let r = handler.call1(py, (tx.clone_ref(py),));
                    tx.get().close();
                    match r {
                        Ok(v) => {
                            to_bytes("the handler's result", v.bind(py)).map_err(|e| handler_failure(py, e))
                        }
                        Err(e) => Err(handler_failure(py, e)),
                    }
                })
                .unwrap_or_else(|| Err(closing_failure()))
            }))
        });
        process_answer(py, r)
    }

    /// `begin`, awaitable.
    #[pyo3(signature = (id, payload = None, *, mode = None, lease = None, **extra))]
    fn begin_async<'py>(
        &self,
        py: Python<'py>,
        id: Text<args::Id>,
        payload: Option<&Bound<'_, PyAny>>,
        mode: Option<Text<args::ModeName>>,
        lease: Option<Num>,
        extra: Option<Extra<args::BeginKw>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = extra;
        let req = request(id, payload, mode, lease)?;
        let inbox = self.inner.clone();
        spawn_py(py, async move {
            let b = inbox.begin(req).await.map_err(to_py)?;
            try_attach(|py| begin_result(py, b))
        })
    }

    /// `process`, awaitable. `handler` may be a plain callable or an `async def` function.
    #[pyo3(signature = (id, payload, handler, *, mode = None, lease = None, wait = None, **extra))]
    #[allow(clippy::too_many_arguments)]
    fn process_async<'py>(
        &self,
        py: Python<'py>,
        id: Text<args::Id>,
        payload: Option<&Bound<'_, PyAny>>,
        handler: Py<PyAny>,
        mode: Option<Text<args::ModeName>>,
        lease: Option<Num>,
        wait: Option<Num>,
        extra: Option<Extra<args::ProcessKw>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = extra;
        let mut req = request(id, payload, mode, lease)?;
        if let Some(w) = opt_secs("wait", wait)? {
            req = req.wait(w);
        }
        let inbox = self.inner.clone();
        spawn_py(py, async move {
            let r = inbox
                .process(req, move || async move {
                    let out = match try_attach(|py| handler.call0(py)) {
                        Ok(v) => resolve(v).await,
                        Err(e) => Err(e),
                    };
                    attach(|py| match out {
                        Ok(v) => {
                            to_bytes("the handler's result", v.bind(py)).map_err(|e| handler_failure(py, e))
                        }
                        Err(e) => Err(handler_failure(py, e)),
                    })
                    .unwrap_or_else(|| Err(closing_failure()))
                })
                .await;
            try_attach(|py| process_answer(py, r))
        })
    }

    /// `get`, awaitable.
    #[pyo3(signature = (id, **extra))]
    fn get_async<'py>(
        &self,
        py: Python<'py>,
        id: Text<args::Id>,
        extra: Option<Extra<args::GetKw>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = extra;
        let inbox = self.inner.clone();
        spawn_py(py, async move {
            let r = inbox.get(&id).await.map_err(to_py)?;
            try_attach(|py| Ok(r.map(|r| record(py, r))))
        })
    }

    /// `purge_expired`, awaitable.
    fn purge_expired_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inbox = self.inner.clone();
        spawn_py(py, async move { inbox.purge_expired().await.map_err(to_py) })
    }

    /// The id's record as stored, or None.
    #[pyo3(signature = (id, **extra))]
    fn get(
        &self,
        py: Python<'_>,
        id: Text<args::Id>,
        extra: Option<Extra<args::GetKw>>,
    ) -> PyResult<Option<InboxRecord>> {
        let _ = extra;
        let inbox = self.inner.clone();
        let r = block(py, async move { inbox.get(&id).await })?;
        Ok(r.map(|r| record(py, r)))
    }

    /// Deletes every expired record now (of every scope); returns how many went.
    fn purge_expired(&self, py: Python<'_>) -> PyResult<u64> {
        let inbox = self.inner.clone();
        block(py, async move { inbox.purge_expired().await })
    }

    fn __repr__(&self) -> String {
        format!("Inbox(scope={:?}, mode={:?})", self.inner.config().scope, self.inner.config().mode.as_str())
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Inbox>()?;
    m.add_class::<Ticket>()?;
    m.add_class::<BeginResult>()?;
    m.add_class::<Processed>()?;
    m.add_class::<InboxRecord>()?;
    m.add_class::<Transaction>()?;
    Ok(())
}
