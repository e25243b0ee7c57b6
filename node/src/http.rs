//! `Idempotency-Key` for HTTP (`oncely::http`): `HttpGate`, `HttpClaim`, `HttpRetry` and
//! `httpVerdict`. Translation only: requests and responses are converted here, every rule (which
//! requests take a key, what is stored, replayed or refused, when a client tries again) is the
//! core's. index.js passes the policy and the retry policy as JSON text and adapts the
//! transactional handler; the middleware and the client (node/http/) only carry requests and
//! responses across.

use std::sync::Arc;
use std::time::SystemTime;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunction;
use napi_derive::napi;
use oncely::http::{HttpPolicy, Step};
use oncely::{AnyStore, ProcessError};

use crate::conv::{Options, integer, kind, list, number, opt_text, present, text};
use crate::errors::{Error, HANDLER_FAILED};
use crate::store::store_of;
use crate::transaction::{Transaction, lend_to_js};
use crate::{Napi, Result, err, invalid, promise, required};

type CoreGate = oncely::http::HttpGate<AnyStore>;
type CoreClaim = oncely::http::HttpClaim<AnyStore>;

/// The fields of a request object ([`HttpRequest`]).
const REQUEST: &[&str] = &["method", "path", "query", "headers", "body", "scope"];
/// The fields of a response object ([`HttpResponse`]).
const RESPONSE: &[&str] = &["status", "headers", "body"];

/// A request as the server received it (the argument of `gate.admit`).
#[napi(object)]
pub struct HttpRequest {
    /// The method (any case).
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string without its `?` (default empty).
    pub query: Option<String>,
    /// The headers in the order received, as `[name, value]` pairs.
    #[napi(ts_type = "Array<[string, string]>")]
    pub headers: Vec<Vec<String>>,
    /// The whole body (default empty).
    #[napi(ts_type = "Buffer | string | null")]
    pub body: Option<Buffer>,
    /// Whose key space the key lives in (a tenant, a user); null: one shared space.
    #[napi(ts_type = "string | null")]
    pub scope: Option<String>,
}

/// A response: what a handler answered, a replay (with `idempotent-replayed: true`) or a
/// refusal (an RFC 9457 problem). `headers` are `[name, value]` pairs in order.
#[napi(object)]
pub struct HttpResponse {
    /// The status code (100–599).
    pub status: u32,
    /// The headers in order, as `[name, value]` pairs.
    #[napi(ts_type = "Array<[string, string]>")]
    pub headers: Vec<Vec<String>>,
    /// The body.
    #[napi(ts_type = "Buffer")]
    pub body: Buffer,
}

fn js_response(r: oncely::http::HttpResponse) -> HttpResponse {
    HttpResponse {
        status: u32::from(r.status),
        headers: r.headers.into_iter().map(|(n, v)| vec![n, v]).collect(),
        body: Buffer::from(r.body),
    }
}

/// `[name, value]` pairs: an array of two-string arrays.
fn pairs(name: &'static str, v: Option<Unknown<'_>>) -> Result<Vec<(String, String)>> {
    let Some(v) = present(v)? else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for (i, item) in list(name, v)?.into_iter().enumerate() {
        let bad = |what: String| {
            invalid(name, format!("must be an array of [name, value] pairs, but item {i} {what}"))
        };
        if item.get_type().napi()? != ValueType::Object || !item.is_array().napi()? {
            return Err(bad(format!("is {}", kind(&item)?)));
        }
        let pair = list(name, item)?;
        let [n, v] =
            <[Unknown<'_>; 2]>::try_from(pair).map_err(|p| bad(format!("has {} elements", p.len())))?;
        out.push((text(name, n)?, text(name, v)?));
    }
    Ok(out)
}

/// A request object for the core.
fn request_of(v: Unknown<'_>) -> Result<oncely::http::HttpRequest> {
    let o = Options::of("http request", Some(v), REQUEST)?;
    Ok(oncely::http::HttpRequest {
        method: required("method", o.text("method")?)?,
        path: required("path", o.text("path")?)?,
        query: o.text("query")?.unwrap_or_default(),
        headers: pairs("headers", o.get("headers")?)?,
        body: o.bytes("body")?.unwrap_or_default(),
        scope: o.text("scope")?,
    })
}

/// A response object for the core (its status is checked by the core: 100–599).
fn response_of(v: Unknown<'_>) -> Result<oncely::http::HttpResponse> {
    let o = Options::of("http response", Some(v), RESPONSE)?;
    if !o.given() {
        return Err(invalid("response", "must be an object with `status`, `headers` and `body`"));
    }
    let status = integer("status", required("status", o.number("status")?)?, 0, u64::from(u16::MAX))? as u16;
    Ok(oncely::http::HttpResponse {
        status,
        headers: pairs("headers", o.get("headers")?)?,
        body: o.bytes("body")?.unwrap_or_default(),
    })
}

/// What to do with a request (the answer of `gate.admit`): `kind` is `"pass"` (run the handler
/// untouched), `"run"` (run it, then `claim.complete(response)` before sending it, or
/// `claim.abandon()` when it failed) or `"respond"` (send `response` as it is, without running
/// the handler).
#[napi(object, object_from_js = false, use_nullable = true)]
pub struct Admission {
    #[napi(ts_type = "'pass' | 'run' | 'respond'")]
    pub kind: String,
    /// For `"respond"`: the response to send.
    pub response: Option<HttpResponse>,
    /// For `"run"`: the claim on the key while the handler runs.
    pub claim: Option<HttpClaim>,
}

fn admission_of(a: oncely::http::Admission<AnyStore>) -> Admission {
    let kind = a.kind().to_string();
    match a {
        oncely::http::Admission::Run(c) => {
            Admission { kind, response: None, claim: Some(HttpClaim { inner: Arc::new(c) }) }
        }
        oncely::http::Admission::Respond(r) => {
            Admission { kind, response: Some(js_response(r)), claim: None }
        }
        _ => Admission { kind, response: None, claim: None },
    }
}

/// Decides, for each request, whether its handler runs, and stores what it answered
/// (`oncely::http::HttpGate`): a keyed request runs its handler once; its retries get the first
/// response; a different request under the same key is refused.
#[napi]
pub struct HttpGate {
    inner: CoreGate,
}

/// index.js's adapter of a transactional HTTP handler: `(tx) => { response } | { raised, ... }`
/// (it never throws); the answer is read on the JS thread ([`tx_answer`]).
type HttpTxHandlerFn = ThreadsafeFunction<Transaction, RawAnswer, Transaction, Status, false>;

/// The adapter's return value, read as it is and converted in the threadsafe function's callback
/// (on the JS thread, while the value is alive): a value without a lifetime, as the handler's
/// return type must be.
pub struct RawAnswer(napi::sys::napi_env, napi::sys::napi_value);

impl FromNapiValue for RawAnswer {
    unsafe fn from_napi_value(env: napi::sys::napi_env, v: napi::sys::napi_value) -> napi::Result<Self> {
        Ok(RawAnswer(env, v))
    }
}

impl RawAnswer {
    fn read(self) -> std::result::Result<oncely::http::HttpResponse, Unanswered> {
        // SAFETY: called in the threadsafe function's callback, on the JS thread, in the scope
        // the value was returned in.
        match unsafe { Unknown::from_napi_value(self.0, self.1) } {
            Ok(v) => tx_answer(v),
            Err(e) => Err(Unanswered::Invalid(Error::new(e.status.as_ref().to_string(), &e.reason))),
        }
    }
}

/// Why a transactional handler did not answer: it threw (index.js re-throws what it threw), or
/// what it returned is not a response.
enum Unanswered {
    Raised(String),
    Invalid(Error),
}

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unanswered::Raised(t) => f.write_str(t),
            Unanswered::Invalid(e) => f.write_str(&e.reason),
        }
    }
}

/// The adapter's answer: `{ response }` or `{ raised, message, typeName }`.
fn tx_answer(v: Unknown<'_>) -> std::result::Result<oncely::http::HttpResponse, Unanswered> {
    let read = || -> Result<std::result::Result<oncely::http::HttpResponse, String>> {
        let o = Options::of("handler answer", Some(v), &["response", "raised", "message", "typeName"])?;
        if o.get("raised")?.is_some() {
            let text = o.text("message")?.filter(|m| !m.is_empty()).or(o.text("typeName")?);
            return Ok(Err(text.unwrap_or_else(|| "the handler failed".into())));
        }
        let response = o.get("response")?.ok_or_else(|| {
            invalid("handler", "must return a response `{ status, headers, body }`, got nothing")
        })?;
        Ok(Ok(response_of(response)?))
    };
    match read() {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(text)) => Err(Unanswered::Raised(text)),
        Err(e) => Err(Unanswered::Invalid(e)),
    }
}

#[napi]
impl HttpGate {
    /// A gate over `store` (a `Store` or a location) with `policy` (the HTTP options as JSON
    /// text; index.js makes it of the options object).
    #[napi(constructor, ts_args_type = "store: string | Store, policy?: HttpPolicy | null")]
    pub fn new(env: Env, store: Unknown, policy: Option<Unknown>) -> Result<Self> {
        let json = opt_text("policy", policy)?.unwrap_or_else(|| "null".into());
        let policy = HttpPolicy::from_json(&json).map_err(err)?;
        let store = store_of(&env, store)?;
        Ok(HttpGate { inner: CoreGate::open(store, policy).map_err(err)? })
    }

    /// Decides what to do with `request` (see `Admission`). A store out of reach is answered
    /// 503 with `Retry-After`; a bad argument of the server's own (a scope over 200 bytes) is an
    /// `InvalidArgumentError`.
    #[napi(ts_args_type = "request: HttpRequest", ts_return_type = "Promise<Admission>")]
    pub fn admit(&self, env: &Env, request: Unknown) -> Result<AsyncBlock<Admission>> {
        let req = request_of(request)?;
        let gate = self.inner.clone();
        promise(env, async move { gate.admit(&req).await.map(admission_of).map_err(err) })
    }

    /// `admit`'s answer when it needs no store access — a request let through or refused, or a
    /// retry this process answered recently — else `null` (then await `admit`). Synchronous and
    /// never blocking: the middleware takes the asynchronous path only when it must.
    #[napi(ts_args_type = "request: HttpRequest", ts_return_type = "Admission | null")]
    pub fn admit_now(&self, request: Unknown) -> Result<Option<Admission>> {
        let req = request_of(request)?;
        Ok(self.inner.admit_now(&req).map_err(err)?.map(admission_of))
    }

    /// Native half of `respondInTransaction` (index.js adapts the handler).
    #[napi(js_name = "_respondInTransaction", skip_typescript)]
    pub fn respond_in_transaction_native(
        &self,
        env: &Env,
        request: Unknown,
        handler: HttpTxHandlerFn,
    ) -> Result<AsyncBlock<HttpResponse>> {
        let req = request_of(request)?;
        let gate = self.inner.clone();
        promise(env, async move {
            let r = gate
                .respond_in_transaction(&req, move |tx| {
                    lend_to_js(&handler, tx, |r, _| {
                        Ok(r.map_err(|e| Unanswered::Raised(e.reason.clone())).and_then(RawAnswer::read))
                    })
                    .unwrap_or_else(|reason| Err(Unanswered::Raised(reason)))
                })
                .await;
            match r {
                Ok(response) => Ok(js_response(response)),
                Err(ProcessError::Handler(Unanswered::Raised(text))) => {
                    Err(Error::new(HANDLER_FAILED.into(), text))
                }
                Err(ProcessError::Handler(Unanswered::Invalid(e))) => Err(e),
                Err(ProcessError::Oncely(e)) => Err(err(e)),
                Err(ProcessError::ReplayedFailure(_)) => Err(err(oncely::Error::CorruptStore(
                    "an HTTP key's record holds a stored failure".into(),
                ))),
                #[allow(unreachable_patterns)]
                Err(_) => Err(Error::new("ONCELY_UNKNOWN".into(), "unknown process error")),
            }
        })
    }
}

/// A claim on one key while its handler runs (kept alive until it is completed or abandoned).
#[napi]
pub struct HttpClaim {
    inner: Arc<CoreClaim>,
}

#[napi]
impl HttpClaim {
    /// The key's record id in the gate's inbox (the scope's length, a colon, the scope, the key).
    #[napi(getter)]
    pub fn id(&self) -> String {
        self.inner.id().to_string()
    }

    /// The claim's fencing token: larger than every token handed out for this key before.
    #[napi(getter)]
    pub fn token(&self) -> f64 {
        self.inner.token() as f64
    }

    /// Settles the claim by the handler's response, which the caller then sends as it is:
    /// stored for replay (`true`) or, by the policy (a 5xx, a "try again" status, a body too
    /// large), the key given back (`false`). `LeaseLostError` when the claim was taken over. A
    /// response that is not one (a status outside 100–599) is an `InvalidArgumentError`, and the
    /// key is given back.
    #[napi(ts_args_type = "response: HttpResponseInit", ts_return_type = "Promise<boolean>")]
    pub fn complete(&self, env: &Env, response: Unknown) -> Result<AsyncBlock<bool>> {
        let claim = self.inner.clone();
        match response_of(response) {
            Ok(r) => promise(env, async move { claim.complete(&r).await.map_err(err) }),
            // Not a response at all: the key is given back, as the core gives it back for a bad
            // status, and the caller hears why.
            Err(e) => promise(env, async move {
                claim.abandon().await.map_err(err)?;
                Err(e)
            }),
        }
    }

    /// Gives the key back at once: the handler failed without a response, so a retry may run
    /// it again.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn abandon(&self, env: &Env) -> Result<AsyncBlock<()>> {
        let claim = self.inner.clone();
        promise(env, async move { claim.abandon().await.map_err(err) })
    }
}

/// One keyed request's retries by a retry policy (`oncely::http::HttpRetry`): after each
/// attempt, `next` says whether to hand the answer to the caller or to wait and send it again.
#[napi]
pub struct HttpRetry {
    inner: std::sync::Mutex<oncely::http::HttpRetry>,
}

#[napi]
impl HttpRetry {
    /// Retries for the request with `key`, by `retry` (a retry-policy object as the Outbox's
    /// `retry` option takes; index.js passes it as JSON text; default the core's policy).
    #[napi(constructor, ts_args_type = "key: string, retry?: object | string | null")]
    pub fn new(key: Unknown, retry: Option<Unknown>) -> Result<Self> {
        let key = text("key", key)?;
        let policy = match present(retry)? {
            Some(json) => crate::outbox::retry_policy(json)?,
            None => oncely::backoff::RetryPolicy::default(),
        };
        let inner = oncely::http::HttpRetry::new(policy, &key).map_err(err)?;
        Ok(HttpRetry { inner: std::sync::Mutex::new(inner) })
    }

    /// After an attempt that ended now with `status` (null: no answer — a network error or a
    /// timeout) and its `Retry-After` header: null to hand the answer (or the error) to the
    /// caller, else the seconds to wait before sending the request again.
    #[napi(ts_args_type = "status: number | null, retryAfter?: string | null")]
    pub fn next(&self, status: Option<Unknown>, retry_after: Option<Unknown>) -> Result<Option<f64>> {
        let status = status_of(status)?;
        let retry_after = opt_text("retryAfter", retry_after)?;
        let now = oncely::Clock::now(&oncely::SystemClock);
        let mut r = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Ok(match r.next(status, retry_after.as_deref(), now) {
            Step::Wait(d) => Some(d.as_secs_f64()),
            _ => None,
        })
    }
}

fn status_of(v: Option<Unknown<'_>>) -> Result<Option<u16>> {
    present(v)?
        .map(|v| Ok(integer("status", number("status", v)?, 0, u64::from(u16::MAX))? as u16))
        .transpose()
}

/// What a client does with an answer: `kind` `"done"` (settled), `"final"` (settled, not as
/// hoped: trying again cannot help) or `"again"` (try again with the same key, after `after`
/// seconds when the server said when).
#[napi(object, use_nullable = true)]
pub struct HttpVerdict {
    #[napi(ts_type = "'done' | 'final' | 'again'")]
    pub kind: String,
    /// For `"again"`: the server's `Retry-After` in seconds, if it gave a usable one.
    pub after: Option<f64>,
}

/// The verdict on an answer: its `status` (null when none came: a network error, a timeout) and
/// its `Retry-After` header.
#[napi(ts_args_type = "status: number | null, retryAfter?: string | null")]
pub fn http_verdict(status: Option<Unknown>, retry_after: Option<Unknown>) -> Result<HttpVerdict> {
    let status = status_of(status)?;
    let retry_after = opt_text("retryAfter", retry_after)?;
    let v = oncely::http::verdict(status, retry_after.as_deref(), SystemTime::now());
    let after = match &v {
        oncely::http::Verdict::Again { after } => after.map(|d| d.as_secs_f64()),
        _ => None,
    };
    Ok(HttpVerdict { kind: v.as_str().to_string(), after })
}

/// A durable request as one message: `key` (the `Idempotency-Key` among its headers, else a
/// fresh id) is the message id to enqueue it under, `payload` its bytes — the one form of a
/// queued request in every language (`oncely::http::QueuedRequest`).
#[napi(object)]
pub struct QueuedRequestPayload {
    /// The message id (the request's key).
    pub key: String,
    /// The message payload.
    pub payload: Buffer,
}

/// A request read back from its payload (without its key: send the message id as the key).
#[napi(object)]
pub struct QueuedRequest {
    /// The method.
    pub method: String,
    /// The absolute URL.
    pub url: String,
    /// The headers as `[name, value]` pairs, without `Idempotency-Key`.
    #[napi(ts_type = "Array<[string, string]>")]
    pub headers: Vec<Vec<String>>,
    /// The body.
    pub body: Buffer,
}

/// The payload of a durable request `{ method, url, headers, body }` and the key to enqueue it
/// under (see `QueuedRequestPayload`).
#[napi(ts_args_type = "request: { method: string, url: string, headers?: Array<[string, string]> | null, body?: Buffer | string | null }")]
pub fn http_request_payload(request: Unknown) -> Result<QueuedRequestPayload> {
    let o = Options::of("queued request", Some(request), &["method", "url", "headers", "body"])?;
    let (key, req) = oncely::http::QueuedRequest::keyed(
        required("method", o.text("method")?)?,
        required("url", o.text("url")?)?,
        pairs("headers", o.get("headers")?)?,
        o.bytes("body")?.unwrap_or_default(),
    );
    Ok(QueuedRequestPayload { key, payload: Buffer::from(req.to_payload()) })
}

/// The request in a payload `httpRequestPayload` made; another payload is an
/// `InvalidArgumentError`.
#[napi]
pub fn http_request_of(payload: Buffer) -> Result<QueuedRequest> {
    let r = oncely::http::QueuedRequest::from_payload(&payload).map_err(err)?;
    Ok(QueuedRequest {
        method: r.method,
        url: r.url,
        headers: r.headers.into_iter().map(|(n, v)| vec![n, v]).collect(),
        body: Buffer::from(r.body),
    })
}
