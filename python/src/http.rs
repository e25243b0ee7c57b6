//! `HttpGate`, `Admission`, `HttpClaim`, `HttpRetry`, `http_verdict`: the `Idempotency-Key`
//! layer (`oncely::http`). Translation only: requests and responses are carried across as
//! `(status, headers, body)` tuples and header lists; every rule (which methods take a key, what
//! is stored, what is replayed, what a refusal says, when a client tries again) is the core's.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use oncely::http::{HttpPolicy, HttpRequest, HttpResponse};
use oncely::{AnyStore, ProcessError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::aio::{attach, closing_error, spawn_py, try_attach};
use crate::transaction::Transaction;
use crate::{Extra, Int, ManualClock, Text, args, block, shared_clock, store_of, to_bytes, to_py};

type CoreGate = oncely::http::HttpGate<AnyStore>;
type CoreClaim = oncely::http::HttpClaim<AnyStore>;
type CoreAdmission = oncely::http::Admission<AnyStore>;

/// The HTTP options from Python: a dict (written as JSON), JSON text, or `None` (the defaults),
/// read by the core's [`HttpPolicy::from_json`].
fn http_policy_of(py: Python<'_>, v: Option<&Bound<'_, PyAny>>) -> PyResult<HttpPolicy> {
    let Some(v) = v.filter(|v| !v.is_none()) else { return HttpPolicy::from_json("null").map_err(to_py) };
    let unwritable =
        |why| oncely::Error::invalid("http options", format!("cannot be written as JSON ({why})"));
    let Some(text) = args::json_text(py, "policy", v, unwritable)? else {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "`policy` must be dict, str or None, not {}",
            crate::type_name(v)
        )));
    };
    HttpPolicy::from_json(&text).map_err(to_py)
}

/// Header pairs from Python: a list (or tuple, or any iterable) of `(name, value)` pairs of
/// `str`, or a dict of `str` to `str`.
fn pairs_of(name: &'static str, obj: &Bound<'_, PyAny>) -> PyResult<Vec<(String, String)>> {
    let bad = || {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "`{name}` must be a list of (str, str) pairs, not {}",
            crate::type_name(obj)
        ))
    };
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() {
        return Err(bad());
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        return d.iter().map(|(k, v)| Ok((args::text_of(name, &k)?, args::text_of(name, &v)?))).collect();
    }
    let mut out = Vec::new();
    for item in obj.try_iter().map_err(|_| bad())? {
        let item = item?;
        let pair = item.cast::<PyTuple>().ok().filter(|t| t.len() == 2).map(|t| t.to_owned());
        let pair = match pair {
            Some(p) => p,
            None => match item.cast::<PyList>() {
                Ok(l) if l.len() == 2 => l.to_tuple(),
                _ => {
                    return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                        "`{name}`: each header must be a (name, value) pair, not {}",
                        crate::type_name(&item)
                    )));
                }
            },
        };
        out.push((args::text_of(name, &pair.get_item(0)?)?, args::text_of(name, &pair.get_item(1)?)?));
    }
    Ok(out)
}

/// A response as Python sees it: `(status, [(name, value), ...], body)`.
fn response_tuple(py: Python<'_>, r: &HttpResponse) -> PyResult<Py<PyTuple>> {
    let headers = PyList::empty(py);
    for (n, v) in &r.headers {
        headers.append((n.as_str(), v.as_str()))?;
    }
    Ok(PyTuple::new(
        py,
        [r.status.into_pyobject(py)?.into_any(), headers.into_any(), PyBytes::new(py, &r.body).into_any()],
    )?
    .unbind())
}

/// A response from Python's parts; a status that is not a whole number from 0 to 65535 is
/// refused here, any other value goes to the core's check (100–599).
fn response_of(
    status: &Bound<'_, PyAny>,
    headers: &Bound<'_, PyAny>,
    body: &Bound<'_, PyAny>,
) -> PyResult<HttpResponse> {
    let status = args::integer("status", status, 0, u16::MAX as u64)? as u16;
    Ok(HttpResponse { status, headers: pairs_of("headers", headers)?, body: to_bytes("body", body)? })
}

#[allow(clippy::too_many_arguments)]
fn request_of(
    method: Text<args::Method>,
    path: Text<args::Path>,
    headers: &Bound<'_, PyAny>,
    body: Option<&Bound<'_, PyAny>>,
    query: Option<Text<args::Query>>,
    scope: Option<Text<args::Scope>>,
) -> PyResult<HttpRequest> {
    Ok(HttpRequest {
        method: method.0,
        path: path.0,
        query: query.map(|q| q.0).unwrap_or_default(),
        headers: pairs_of("headers", headers)?,
        body: match body {
            Some(b) => to_bytes("body", b)?,
            None => Vec::new(),
        },
        scope: scope.map(|s| s.0),
    })
}

/// What to do with a request (`HttpGate.admit`): `kind` is `"pass"` (run the handler as if there
/// were no gate), `"run"` (run it, then settle `claim`) or `"respond"` (send `response`, a
/// `(status, headers, body)` tuple, and do not run the handler).
#[pyclass(module = "oncely._native", frozen, get_all)]
pub struct Admission {
    kind: &'static str,
    response: Option<Py<PyTuple>>,
    claim: Option<Py<HttpClaim>>,
}

#[pymethods]
impl Admission {
    fn __repr__(&self, py: Python<'_>) -> String {
        match (&self.response, &self.claim) {
            (Some(r), _) => {
                let status: u16 = r.bind(py).get_item(0).and_then(|s| s.extract()).unwrap_or(0);
                format!("Admission(respond, status={status})")
            }
            (_, Some(c)) => format!("Admission(run, {})", c.get().__repr__()),
            _ => format!("Admission({})", self.kind),
        }
    }
}

fn admission(py: Python<'_>, a: CoreAdmission) -> PyResult<Admission> {
    let kind = a.kind();
    Ok(match a {
        CoreAdmission::Pass => Admission { kind, response: None, claim: None },
        CoreAdmission::Run(claim) => Admission {
            kind,
            response: None,
            claim: Some(Py::new(py, HttpClaim { inner: Arc::new(claim) })?),
        },
        CoreAdmission::Respond(r) => Admission { kind, response: Some(response_tuple(py, &r)?), claim: None },
    })
}

/// A claim on one key while its handler runs: settle it with `complete` (the handler's response)
/// or `abandon` (the handler raised). Left unsettled, the key is given back when its lease ends.
#[pyclass(module = "oncely._native", frozen)]
pub struct HttpClaim {
    inner: Arc<CoreClaim>,
}

impl HttpClaim {
    /// The response to complete with; a status Python cannot give the core gives the key back
    /// first, as the core does for a status outside 100–599.
    fn response(
        &self,
        py: Python<'_>,
        status: &Bound<'_, PyAny>,
        headers: &Bound<'_, PyAny>,
        body: &Bound<'_, PyAny>,
    ) -> PyResult<HttpResponse> {
        match response_of(status, headers, body) {
            Ok(r) => Ok(r),
            Err(e) => {
                let c = self.inner.clone();
                block(py, async move { c.abandon().await })?;
                Err(e)
            }
        }
    }
}

#[pymethods]
impl HttpClaim {
    /// The key's record id in the gate's inbox (the scope's length, a colon, the scope, the key).
    #[getter]
    fn id(&self) -> &str {
        self.inner.id()
    }

    /// The claim's fencing token: larger than every token handed out for this key before.
    #[getter]
    fn token(&self) -> u64 {
        self.inner.token()
    }

    /// Settles the claim by the handler's response, which the caller then sends as it is: `True`
    /// when it was stored for replay, `False` when the policy gave the key back (a 5xx, a "try
    /// again" status, a body over `max_response_bytes`). `headers` is a list of `(name, value)`.
    #[pyo3(signature = (status, headers, body, **extra))]
    fn complete(
        &self,
        py: Python<'_>,
        status: &Bound<'_, PyAny>,
        headers: &Bound<'_, PyAny>,
        body: &Bound<'_, PyAny>,
        extra: Option<Extra<args::HttpCompleteKw>>,
    ) -> PyResult<bool> {
        let _ = extra;
        let response = self.response(py, status, headers, body)?;
        let c = self.inner.clone();
        block(py, async move { c.complete(&response).await })
    }

    /// `complete`, awaitable.
    #[pyo3(signature = (status, headers, body, **extra))]
    fn complete_async<'py>(
        &self,
        py: Python<'py>,
        status: &Bound<'_, PyAny>,
        headers: &Bound<'_, PyAny>,
        body: &Bound<'_, PyAny>,
        extra: Option<Extra<args::HttpCompleteKw>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = extra;
        let response = self.response(py, status, headers, body)?;
        let c = self.inner.clone();
        spawn_py(py, async move { c.complete(&response).await.map_err(to_py) })
    }

    /// Gives the key back at once (the handler raised): a retry runs the handler again.
    fn abandon(&self, py: Python<'_>) -> PyResult<()> {
        let c = self.inner.clone();
        block(py, async move { c.abandon().await })
    }

    /// `abandon`, awaitable.
    fn abandon_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        spawn_py(py, async move { c.abandon().await.map_err(to_py) })
    }

    fn __repr__(&self) -> String {
        format!("HttpClaim(id={:?}, token={})", self.inner.id(), self.inner.token())
    }
}

/// A handler's exception, with its text.
struct HandlerError {
    err: PyErr,
    text: String,
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn handler_error(err: PyErr) -> HandlerError {
    let text = attach(|py| crate::exception_text(err.value(py).as_any())).unwrap_or_default();
    HandlerError { err, text }
}

/// Decides, for each request, whether its handler runs, and stores what it answered: the
/// `Idempotency-Key` gate. `store` is a location or an opened `Store`; `policy` the HTTP options
/// (a dict, JSON text or `None` for the defaults; durations in seconds).
#[pyclass(module = "oncely._native", frozen)]
pub struct HttpGate {
    inner: CoreGate,
}

#[pymethods]
impl HttpGate {
    #[new]
    #[pyo3(signature = (store, policy = None, *, clock = None, **extra))]
    fn new(
        py: Python<'_>,
        store: &Bound<'_, PyAny>,
        policy: Option<&Bound<'_, PyAny>>,
        clock: Option<&Bound<'_, ManualClock>>,
        extra: Option<Extra<args::HttpGateKw>>,
    ) -> PyResult<Self> {
        let _ = extra;
        let policy = http_policy_of(py, policy)?;
        let store = store_of(py, store)?;
        let inner = CoreGate::with_clock(store, policy, shared_clock(clock)).map_err(to_py)?;
        Ok(HttpGate { inner })
    }

    /// What to do with one request (see `Admission`). `headers` is the request's headers as a
    /// list of `(name, value)` pairs in the order received; `query` the query string without its
    /// `?`; `scope` whose key space the key lives in (a tenant), `None` for one shared space.
    #[pyo3(signature = (method, path, *, headers, body = None, query = None, scope = None, **extra),
        text_signature = "(self, /, method, path, *, headers, body=b'', query='', scope=None, **extra)")]
    #[allow(clippy::too_many_arguments)]
    fn admit(
        &self,
        py: Python<'_>,
        method: Text<args::Method>,
        path: Text<args::Path>,
        headers: &Bound<'_, PyAny>,
        body: Option<&Bound<'_, PyAny>>,
        query: Option<Text<args::Query>>,
        scope: Option<Text<args::Scope>>,
        extra: Option<Extra<args::AdmitKw>>,
    ) -> PyResult<Admission> {
        let _ = extra;
        let req = request_of(method, path, headers, body, query, scope)?;
        let gate = self.inner.clone();
        let a = block(py, async move { gate.admit(&req).await })?;
        admission(py, a)
    }

    /// `admit`'s answer when it needs no store access — a request let through or refused, or a
    /// retry this process answered recently — else `None` (then call `admit_async`). Never
    /// blocks, so an event loop may call it on its own thread.
    #[pyo3(signature = (method, path, *, headers, body = None, query = None, scope = None, **extra),
        text_signature = "(self, /, method, path, *, headers, body=b'', query='', scope=None, **extra)")]
    #[allow(clippy::too_many_arguments)]
    fn admit_now(
        &self,
        py: Python<'_>,
        method: Text<args::Method>,
        path: Text<args::Path>,
        headers: &Bound<'_, PyAny>,
        body: Option<&Bound<'_, PyAny>>,
        query: Option<Text<args::Query>>,
        scope: Option<Text<args::Scope>>,
        extra: Option<Extra<args::AdmitKw>>,
    ) -> PyResult<Option<Admission>> {
        let _ = extra;
        let req = request_of(method, path, headers, body, query, scope)?;
        self.inner.admit_now(&req).map_err(to_py)?.map(|a| admission(py, a)).transpose()
    }

    /// `admit`, awaitable.
    #[pyo3(signature = (method, path, *, headers, body = None, query = None, scope = None, **extra),
        text_signature = "(self, /, method, path, *, headers, body=b'', query='', scope=None, **extra)")]
    #[allow(clippy::too_many_arguments)]
    fn admit_async<'py>(
        &self,
        py: Python<'py>,
        method: Text<args::Method>,
        path: Text<args::Path>,
        headers: &Bound<'_, PyAny>,
        body: Option<&Bound<'_, PyAny>>,
        query: Option<Text<args::Query>>,
        scope: Option<Text<args::Scope>>,
        extra: Option<Extra<args::AdmitKw>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = extra;
        let req = request_of(method, path, headers, body, query, scope)?;
        let gate = self.inner.clone();
        spawn_py(py, async move {
            let a = gate.admit(&req).await.map_err(to_py)?;
            try_attach(|py| admission(py, a))
        })
    }

    /// Answers one request with `handler(tx)` run inside one transaction of the store (SQLite or
    /// PostgreSQL): what the handler writes through `tx` (a `Transaction`), the key's claim and
    /// the stored response commit together. `handler` returns `(status, headers, body)`; returns
    /// the response to send, the same shape — the handler's own, a replay, or a refusal. A
    /// response the policy does not store rolls the handler's writes back and gives the key
    /// back; an exception from the handler does too, and is raised again here. The handler runs
    /// on the store's writer thread while the transaction is open: database work only.
    #[pyo3(signature = (method, path, handler, *, headers, body = None, query = None, scope = None, **extra),
        text_signature = "(self, /, method, path, handler, *, headers, body=b'', query='', scope=None, **extra)")]
    #[allow(clippy::too_many_arguments)]
    fn respond_in_transaction(
        &self,
        py: Python<'_>,
        method: Text<args::Method>,
        path: Text<args::Path>,
        handler: Py<PyAny>,
        headers: &Bound<'_, PyAny>,
        body: Option<&Bound<'_, PyAny>>,
        query: Option<Text<args::Query>>,
        scope: Option<Text<args::Scope>>,
        extra: Option<Extra<args::RespondTxKw>>,
    ) -> PyResult<Py<PyTuple>> {
        let _ = extra;
        let req = request_of(method, path, headers, body, query, scope)?;
        let gate = self.inner.clone();
        let r = py.detach(move || {
            pollster::block_on(gate.respond_in_transaction(&req, move |sql| {
                attach(|py| {
                    let tx = Py::new(py, Transaction::new(sql)).map_err(handler_error)?;
                    let r = handler.call1(py, (tx.clone_ref(py),));
                    tx.get().close();
                    let v = r.map_err(handler_error)?;
                    let v = v.bind(py);
                    let parts = v.cast::<PyTuple>().ok().filter(|t| t.len() == 3).ok_or_else(|| {
                        handler_error(pyo3::exceptions::PyTypeError::new_err(format!(
                            "the handler must return (status, headers, body), not {}",
                            crate::type_name(v)
                        )))
                    })?;
                    let part = |i| parts.get_item(i).map_err(handler_error);
                    response_of(&part(0)?, &part(1)?, &part(2)?).map_err(handler_error)
                })
                .unwrap_or_else(|| {
                    Err(HandlerError { err: closing_error(), text: "interpreter shutdown".into() })
                })
            }))
        });
        match r {
            Ok(response) => response_tuple(py, &response),
            Err(ProcessError::Handler(h)) => Err(h.err),
            Err(ProcessError::Oncely(e)) => Err(to_py(e)),
            Err(e @ ProcessError::ReplayedFailure(_)) => {
                Err(to_py(oncely::Error::CorruptStore(e.to_string())))
            }
        }
    }

    fn __repr__(&self) -> String {
        format!("HttpGate(name={:?})", self.inner.policy().name)
    }
}

/// One keyed request's retries by a retry policy (the dict or JSON form `Outbox(retry=...)`
/// takes; `None` for the default policy), with jitter seeded by `key`: after each attempt, `next`
/// says whether to hand the answer to the caller or to wait and send it again.
#[pyclass(module = "oncely._native", frozen)]
pub struct HttpRetry {
    inner: Mutex<oncely::http::HttpRetry>,
}

#[pymethods]
impl HttpRetry {
    #[new]
    #[pyo3(signature = (key, retry = None, **extra))]
    fn new(
        py: Python<'_>,
        key: Text<args::Key>,
        retry: Option<&Bound<'_, PyAny>>,
        extra: Option<Extra<args::HttpRetryKw>>,
    ) -> PyResult<Self> {
        let _ = extra;
        let policy = match retry {
            Some(r) if !r.is_none() => crate::outbox::policy_of(py, r)?,
            _ => oncely::backoff::RetryPolicy::default(),
        };
        let inner = oncely::http::HttpRetry::new(policy, &key).map_err(to_py)?;
        Ok(HttpRetry { inner: Mutex::new(inner) })
    }

    /// After an attempt that just ended with `status` (`None`: no answer came — a timeout, a
    /// dropped connection) and its `Retry-After` header: `None` to hand the answer to the
    /// caller, else the seconds to wait before sending the request again (same key, same body).
    #[pyo3(signature = (status, retry_after = None, **extra))]
    fn next(
        &self,
        status: Option<Int<args::Status>>,
        retry_after: Option<Text<args::RetryAfter>>,
        extra: Option<Extra<args::HttpNextKw>>,
    ) -> Option<f64> {
        let _ = extra;
        let now = oncely::Clock::now(&oncely::SystemClock);
        let mut r = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match r.next(status.map(|s| s.0 as u16), retry_after.as_deref(), now) {
            oncely::http::Step::Return(_) => None,
            oncely::http::Step::Wait(d) => Some(d.as_secs_f64()),
        }
    }
}

/// What an answer to a keyed request means, by its status (`None`: no answer came) and its
/// `Retry-After` header: `("done", None)`, `("final", None)` or `("again", seconds or None)`.
#[pyfunction]
#[pyo3(signature = (status, retry_after = None, **extra))]
fn http_verdict(
    status: Option<Int<args::Status>>,
    retry_after: Option<Text<args::RetryAfter>>,
    extra: Option<Extra<args::HttpVerdictKw>>,
) -> (&'static str, Option<f64>) {
    let _ = extra;
    let v = oncely::http::verdict(status.map(|s| s.0 as u16), retry_after.as_deref(), SystemTime::now());
    let after = match &v {
        oncely::http::Verdict::Again { after } => after.map(|d: Duration| d.as_secs_f64()),
        _ => None,
    };
    (v.as_str(), after)
}

/// A durable request as one message: `(key, payload)`, where `key` (the `Idempotency-Key` among
/// `headers`, else a fresh id) is the message id to enqueue it under and `payload` its bytes —
/// the same form in every language (`oncely::http::QueuedRequest`).
#[pyfunction]
#[pyo3(signature = (method, url, headers, body = None, **extra))]
fn http_request_payload(
    py: Python<'_>,
    method: Text<args::Method>,
    url: Text<args::Url>,
    headers: &Bound<'_, PyAny>,
    body: Option<&Bound<'_, PyAny>>,
    extra: Option<Extra<args::HttpRequestPayloadKw>>,
) -> PyResult<(String, Py<PyBytes>)> {
    let _ = extra;
    let body = match body {
        Some(b) if !b.is_none() => to_bytes("body", b)?,
        _ => Vec::new(),
    };
    let (key, req) = oncely::http::QueuedRequest::keyed(method.0, url.0, pairs_of("headers", headers)?, body);
    Ok((key, PyBytes::new(py, &req.to_payload()).unbind()))
}

/// The request in a payload `http_request_payload` made: `(method, url, headers, body)`, without
/// the key (send the message id as `Idempotency-Key`). Another payload is `InvalidArgument`.
#[pyfunction]
#[pyo3(signature = (payload, **extra))]
fn http_request_of(
    py: Python<'_>,
    payload: &Bound<'_, PyAny>,
    extra: Option<Extra<args::HttpRequestOfKw>>,
) -> PyResult<(String, String, Vec<(String, String)>, Py<PyBytes>)> {
    let _ = extra;
    let r = oncely::http::QueuedRequest::from_payload(&to_bytes("payload", payload)?).map_err(to_py)?;
    Ok((r.method, r.url, r.headers, PyBytes::new(py, &r.body).unbind()))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(http_request_payload, m)?)?;
    m.add_function(wrap_pyfunction!(http_request_of, m)?)?;
    m.add_class::<HttpGate>()?;
    m.add_class::<Admission>()?;
    m.add_class::<HttpClaim>()?;
    m.add_class::<HttpRetry>()?;
    m.add_function(wrap_pyfunction!(http_verdict, m)?)?;
    Ok(())
}
