//! `Inbox`: the receiver's processed-ID store (`begin`, `process`, tickets, ...).

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use oncely::handler::{HandlerResult, Raised};
use oncely::{AnyStore, Begin as CoreBegin, CachePolicy, Failure, InboxConfig};
use oncely::{ProcessError, Request};

use crate::conv::{Options, bytes, list, opt_bytes, text, u32_of};
use crate::errors::{Error, HANDLER_FAILED, Napi, REPLAYED_FAILURE, Result, err, invalid};
use crate::store::{clock_of, store_of};
use crate::{CoreInbox, mode, promise, required};

/// A stored outcome of an id's first delivery.
#[napi(object)]
pub struct Replay {
    /// `"seen"`, `"succeeded"` or `"failed"`.
    pub status: String,
    pub result: Option<Buffer>,
}

/// A claim on one id: run the effect, then `finish`, `fail` or `release` it.
#[napi]
pub struct Ticket {
    inner: Arc<oncely::Ticket<AnyStore>>,
}

#[napi]
impl Ticket {
    #[napi(getter)]
    pub fn id(&self) -> String {
        self.inner.id().to_string()
    }

    /// The fencing token.
    #[napi(getter)]
    pub fn token(&self) -> f64 {
        self.inner.token() as f64
    }

    #[napi(getter)]
    pub fn mode(&self) -> String {
        self.inner.mode().as_str().to_string()
    }

    /// Stores the effect's result: duplicates get it.
    #[napi(ts_args_type = "result?: Buffer | string | null", ts_return_type = "Promise<void>")]
    pub fn finish(&self, env: &Env, result: Option<Unknown>) -> Result<AsyncBlock<()>> {
        let (t, result) = (self.inner.clone(), opt_bytes("result", result)?.unwrap_or_default());
        promise(env, async move { t.finish(result).await.map_err(err) })
    }

    /// A permanent failure, stored or not by the cache policy.
    #[napi(ts_args_type = "reason?: Buffer | string | null", ts_return_type = "Promise<void>")]
    pub fn fail(&self, env: &Env, reason: Option<Unknown>) -> Result<AsyncBlock<()>> {
        let (t, reason) = (self.inner.clone(), opt_bytes("reason", reason)?.unwrap_or_default());
        promise(env, async move { t.fail(reason).await.map_err(err) })
    }

    /// Gives the id back (a retryable failure): the next delivery may claim it.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn release(&self, env: &Env) -> Result<AsyncBlock<()>> {
        let t = self.inner.clone();
        promise(env, async move { t.release().await.map_err(err) })
    }

    /// Settles the claim by a handler's outcome, exactly as `process` settles one: without
    /// `options.error`, finishes it with `result`; with it, a failure (`options.permanent`: stored
    /// or released by the cache policy; otherwise the id is given back).
    #[napi(
        ts_args_type = "result?: Buffer | string | null, options?: { error?: string, permanent?: boolean }",
        ts_return_type = "Promise<void>"
    )]
    pub fn settle(
        &self,
        env: &Env,
        result: Option<Unknown>,
        options: Option<Unknown>,
    ) -> Result<AsyncBlock<()>> {
        let o = Options::of("settle options", options, &["error", "permanent"])?;
        let result = opt_bytes("result", result)?.unwrap_or_default();
        let error = o.text("error")?;
        let permanent = match o.get("permanent")? {
            None => false,
            Some(v) if v.get_type().napi()? == ValueType::Boolean => unsafe {
                bool::from_napi_value(env.raw(), v.raw()).napi()?
            },
            Some(v) => {
                return Err(invalid(
                    "permanent",
                    format!("must be a boolean, got {}", crate::conv::kind(&v)?),
                ));
            }
        };
        let t = self.inner.clone();
        promise(env, async move {
            match error {
                None => t.settle::<String>(Ok(result)).await,
                Some(error) => t.settle(Err(&Failure { error, permanent })).await,
            }
            .map_err(err)
        })
    }
}

/// The answer to `Inbox.begin`: `outcome` is `"claimed"` (with `ticket`), `"duplicate"` (with
/// `replay`), `"in_progress"` (with `leaseUntilMs`) or `"conflict"`.
#[napi]
pub struct Begin {
    outcome: &'static str,
    ticket: Option<Arc<oncely::Ticket<AnyStore>>>,
    replay: Option<(String, Option<Vec<u8>>)>,
    lease_until_ms: Option<i64>,
}

#[napi]
impl Begin {
    #[napi(getter, ts_return_type = "'claimed' | 'duplicate' | 'in_progress' | 'conflict'")]
    pub fn outcome(&self) -> &'static str {
        self.outcome
    }

    #[napi(getter)]
    pub fn ticket(&self) -> Option<Ticket> {
        self.ticket.clone().map(|inner| Ticket { inner })
    }

    #[napi(getter)]
    pub fn replay(&self) -> Option<Replay> {
        self.replay.clone().map(|(status, result)| Replay { status, result: result.map(Buffer::from) })
    }

    #[napi(getter)]
    pub fn lease_until_ms(&self) -> Option<i64> {
        self.lease_until_ms
    }
}

fn begin_of(b: CoreBegin<AnyStore>) -> Begin {
    let mut out = Begin { outcome: "conflict", ticket: None, replay: None, lease_until_ms: None };
    match b {
        CoreBegin::Claimed(t) => {
            out.outcome = "claimed";
            out.ticket = Some(Arc::new(t));
        }
        CoreBegin::Duplicate(r) => {
            out.outcome = "duplicate";
            out.replay = Some((r.status.as_str().to_string(), r.result));
        }
        CoreBegin::InProgress { lease_until } => {
            out.outcome = "in_progress";
            out.lease_until_ms = Some(lease_until.0);
        }
        CoreBegin::Conflict => {}
        #[allow(unreachable_patterns)]
        _ => {}
    }
    out
}

/// The result of `Inbox.process`.
#[napi(object)]
pub struct Processed {
    pub result: Option<Buffer>,
    /// `true` when the handler did not run because the id was already done.
    pub replayed: bool,
}

/// Per-call options of `begin` / `process`.
#[napi(object)]
pub struct CallOptions {
    #[napi(ts_type = "'at_most_once' | 'at_least_once' | 'exactly_once'")]
    pub mode: Option<String>,
    /// Lease in seconds.
    pub lease: Option<f64>,
    /// `process` only: wait up to this many seconds for a concurrent first delivery.
    pub wait: Option<f64>,
}

/// Options of `new Inbox(store, scope, options)`.
#[napi(object)]
pub struct InboxOptions {
    #[napi(ts_type = "'at_most_once' | 'at_least_once' | 'exactly_once'")]
    pub mode: Option<String>,
    pub lease: Option<f64>,
    pub retention: Option<f64>,
    /// `"success_only"` (default) or `"success_and_failure"`.
    #[napi(ts_type = "'success_only' | 'success_and_failure'")]
    pub cache_policy: Option<String>,
    pub recent_capacity: Option<f64>,
    pub max_result_bytes: Option<f64>,
    #[napi(ts_type = "ManualClock")]
    pub clock: Option<()>,
}

/// The options of `begin` and `process` ([`CallOptions`]).
const CALL_OPTIONS: &[&str] = &["mode", "lease", "wait"];
/// The fields of a `beginMany` request ([`BeginRequest`]).
const BEGIN_REQUEST: &[&str] = &["id", "payload", "mode", "lease"];
/// The options of `new Inbox` ([`InboxOptions`]).
const INBOX_OPTIONS: &[&str] =
    &["mode", "lease", "retention", "cachePolicy", "recentCapacity", "maxResultBytes", "clock"];

/// A request for `id` with `payload` and the call options `o` (`mode`, `lease`, `wait`).
pub(crate) fn request(id: String, payload: Option<Vec<u8>>, o: &Options<'_>) -> Result<Request> {
    let mut req = Request::new(id);
    if let Some(p) = payload {
        req = req.payload(&p);
    }
    if let Some(m) = mode(o.text("mode")?)? {
        req = req.mode(m);
    }
    if let Some(l) = o.secs("lease")? {
        req = req.lease(l);
    }
    if let Some(w) = o.secs("wait")? {
        req = req.wait(w);
    }
    Ok(req)
}

/// The receiver's processed-ID store, in one `scope`.
#[napi]
pub struct Inbox {
    pub(crate) inner: CoreInbox,
    /// `process` calls whose handler answered with a Promise (see `_completeProcess`).
    pending: Arc<crate::worker::Pending<Answer>>,
}

/// What index.js's adapter of a `process` handler (or a transactional one) answers: the result
/// it returned (as a Buffer), or what it threw, described for the core's handler contract
/// ([`oncely::handler`]) as a worker handler's answer is. Exactly one of `result` and `raised` is
/// set.
#[napi(object)]
pub struct ProcessAnswer {
    /// The handler's result.
    pub result: Option<Buffer>,
    /// It threw: `"permanent"` (a `Permanent`) or `"other"`.
    #[napi(ts_type = "'permanent' | 'other'")]
    pub raised: Option<String>,
    /// The thrown value's message, if it could be read.
    pub message: Option<String>,
    /// The thrown value's type name (its constructor's name, or `typeof`).
    pub type_name: Option<String>,
}

/// A handler's answer for the core: its result, or its failure (permanent or retryable, with
/// the stored text) by the core's handler contract.
pub(crate) type Answer = std::result::Result<Vec<u8>, Failure<String>>;

pub(crate) fn answer_of(a: ProcessAnswer) -> Answer {
    if let Some(result) = a.result {
        return Ok(result.to_vec());
    }
    let kind = if a.raised.as_deref() == Some("permanent") { Raised::Permanent } else { Raised::Other };
    let raised =
        HandlerResult::Raised { kind, message: a.message, type_name: a.type_name.unwrap_or_default() };
    // Only a return has no failure, and this is a raise.
    raised.inbox_failure().map_or(Ok(Vec::new()), Err)
}

/// index.js's adapter of a `process` handler: `(callId) => answer | undefined` (undefined: the
/// answer comes later through `_completeProcess(callId, answer)`). It never throws.
type ProcessHandlerFn =
    ThreadsafeFunction<FnArgs<(u32,)>, Option<ProcessAnswer>, FnArgs<(u32,)>, Status, false>;

#[napi]
impl Inbox {
    #[napi(constructor, ts_args_type = "store: string | Store, scope: string, options?: InboxOptions")]
    pub fn new(env: Env, store: Unknown, scope: Unknown, options: Option<Unknown>) -> Result<Self> {
        let options = Options::of("inbox options", options, INBOX_OPTIONS)?;
        let mut cfg = InboxConfig::new(text("scope", scope)?);
        if let Some(m) = mode(options.text("mode")?)? {
            cfg = cfg.mode(m);
        }
        if let Some(l) = options.secs("lease")? {
            cfg = cfg.lease(l);
        }
        if let Some(r) = options.secs("retention")? {
            cfg = cfg.retention(r);
        }
        if let Some(p) = options.text("cachePolicy")? {
            cfg = cfg.cache_policy(p.parse::<CachePolicy>().map_err(err)?);
        }
        if let Some(n) = options.size("recentCapacity")? {
            cfg = cfg.recent_capacity(n);
        }
        if let Some(n) = options.size("maxResultBytes")? {
            cfg.max_result_bytes = n;
        }
        let clock = clock_of(&env, &options)?;
        let store = store_of(&env, store)?;
        Ok(Inbox { inner: CoreInbox::with_clock(store, cfg, clock).map_err(err)?, pending: Arc::default() })
    }

    #[napi(getter)]
    pub fn scope(&self) -> String {
        self.inner.config().scope.clone()
    }

    /// The inbox's default mode (a call's `mode` option overrides it).
    #[napi(getter, ts_return_type = "'at_most_once' | 'at_least_once' | 'exactly_once'")]
    pub fn mode(&self) -> &'static str {
        self.inner.config().mode.as_str()
    }

    /// Claims `id` (pull style).
    #[napi(
        ts_args_type = "id: string, payload?: Buffer | string | null, options?: CallOptions",
        ts_return_type = "Promise<Begin>"
    )]
    pub fn begin(
        &self,
        env: &Env,
        id: Unknown,
        payload: Option<Unknown>,
        options: Option<Unknown>,
    ) -> Result<AsyncBlock<Begin>> {
        let options = Options::of("begin options", options, CALL_OPTIONS)?;
        let req = request(text("id", id)?, opt_bytes("payload", payload)?, &options)?;
        let inbox = self.inner.clone();
        promise(env, async move { inbox.begin(req).await.map(begin_of).map_err(err) })
    }

    /// Claims several ids in one store round trip.
    #[napi(ts_args_type = "requests: Array<BeginRequest>", ts_return_type = "Promise<Array<Begin>>")]
    pub fn begin_many(&self, env: &Env, requests: Unknown) -> Result<AsyncBlock<Vec<Begin>>> {
        let mut reqs = Vec::new();
        for r in list("requests", requests)? {
            let o = Options::of("begin options", Some(r), BEGIN_REQUEST)?;
            reqs.push(request(text("id", required("id", o.get("id")?)?)?, o.bytes("payload")?, &o)?);
        }
        let inbox = self.inner.clone();
        promise(env, async move {
            Ok(inbox.begin_many(reqs).await.map_err(err)?.into_iter().map(begin_of).collect())
        })
    }

    /// Native half of `process` (index.js adapts the handler, see `ProcessHandlerFn`): runs the
    /// handler at most / at least / exactly once per id.
    #[napi(js_name = "_process", skip_typescript)]
    pub fn process_native(
        &self,
        env: &Env,
        id: Unknown,
        payload: Option<Unknown>,
        handler: ProcessHandlerFn,
        options: Option<Unknown>,
    ) -> Result<AsyncBlock<Processed>> {
        let options = Options::of("process options", options, CALL_OPTIONS)?;
        let req = request(text("id", id)?, opt_bytes("payload", payload)?, &options)?;
        let inbox = self.inner.clone();
        let pending = self.pending.clone();
        promise(env, async move {
            let outcome = inbox
                .process(req, move || async move {
                    let (registered, later) = pending.register();
                    let (tx, now) = napi::tokio::sync::oneshot::channel();
                    let status = handler.call_with_return_value(
                        FnArgs::from((registered.id,)),
                        ThreadsafeFunctionCallMode::NonBlocking,
                        move |r, _| {
                            let _ = tx.send(r.map(|a| a.map(answer_of)).map_err(|e| e.reason.clone()));
                            Ok(())
                        },
                    );
                    if status != Status::Ok {
                        return Err(Failure::retryable(format!(
                            "the handler could not be called ({status})"
                        )));
                    }
                    let answer = match now.await {
                        Ok(Ok(Some(answer))) => answer,
                        Ok(Ok(None)) => later.await.unwrap_or_else(|_| {
                            Err(Failure::retryable("the handler's answer was lost".to_string()))
                        }),
                        Ok(Err(reason)) => Err(Failure::retryable(reason)),
                        Err(_) => Err(Failure::retryable(
                            "the handler was not called (Node is shutting down)".to_string(),
                        )),
                    };
                    drop(registered);
                    answer
                })
                .await;
            processed(outcome)
        })
    }

    /// The answer of a `process` handler that returned a Promise (see `ProcessHandlerFn`).
    #[napi(js_name = "_completeProcess", skip_typescript)]
    pub fn complete_process(&self, call_id: f64, answer: ProcessAnswer) -> Result<()> {
        self.pending.complete(u32_of("callId", call_id)?, answer_of(answer));
        Ok(())
    }

    /// Finishes several tickets (of this inbox) in one store round trip; one result per item.
    #[napi(ts_args_type = "items: Array<[Ticket, Buffer | string]>")]
    pub fn finish_many(&self, env: &Env, items: Unknown) -> Result<AsyncBlock<Vec<FinishResult>>> {
        let mut batch = Vec::new();
        for a in list("items", items)? {
            let bad = || invalid("items", "each item must be [Ticket, result]");
            let (t, r) = match list("items", a).map_err(|_| bad())?.as_slice() {
                [t, r]
                    if t.get_type().napi()? == ValueType::Object && Ticket::instance_of(env, t).napi()? =>
                {
                    (*t, *r)
                }
                _ => return Err(bad()),
            };
            let t: ClassInstance<Ticket> =
                unsafe { ClassInstance::from_napi_value(env.raw(), t.raw()).napi()? };
            batch.push((t.inner.clone(), bytes("result", r)?));
        }
        let inbox = self.inner.clone();
        promise(env, async move {
            let refs = batch.iter().map(|(t, r)| (&**t, r.clone())).collect();
            let results = inbox.finish_many(refs).await.map_err(err)?;
            Ok(results
                .into_iter()
                .map(|r| match r {
                    Ok(()) => FinishResult { ok: true, error: None },
                    Err(e) => FinishResult { ok: false, error: Some(err(e)) },
                })
                .collect())
        })
    }

    /// The id's record as stored, or null.
    #[napi(ts_args_type = "id: string", ts_return_type = "Promise<InboxRecord | null>")]
    pub fn get(&self, env: &Env, id: Unknown) -> Result<AsyncBlock<Option<InboxRecord>>> {
        let (inbox, id) = (self.inner.clone(), text("id", id)?);
        promise(env, async move { Ok(inbox.get(&id).await.map_err(err)?.map(inbox_record)) })
    }

    /// Deletes expired records; returns how many.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn purge_expired(&self, env: &Env) -> Result<AsyncBlock<f64>> {
        let inbox = self.inner.clone();
        promise(env, async move { inbox.purge_expired().await.map(|n| n as f64).map_err(err) })
    }
}

/// An inbox record, for inspection.
#[napi(object)]
pub struct InboxRecord {
    /// `"in_progress"`, `"seen"`, `"succeeded"` or `"failed"`.
    pub state: String,
    pub result: Option<Buffer>,
    /// The fencing token of the latest claim (0 for an unfenced completion).
    pub token: f64,
    pub fingerprint: Option<String>,
    pub expires_at_ms: i64,
    pub lease_until_ms: Option<i64>,
}

fn inbox_record(r: oncely::inbox::InboxRecord) -> InboxRecord {
    use oncely::inbox::RecordState;
    let state = r.state.as_str().to_string();
    let (result, lease_until_ms) = match r.state {
        RecordState::InProgress { lease_until } => (None, Some(lease_until.0)),
        RecordState::Completed(o) => (o.result, None),
        #[allow(unreachable_patterns)]
        _ => (None, None),
    };
    InboxRecord {
        state,
        result: result.map(Buffer::from),
        token: r.token as f64,
        fingerprint: r.fingerprint.map(|f| f.to_hex()),
        expires_at_ms: r.expires_at.0,
        lease_until_ms,
    }
}

/// One request of `Inbox.beginMany`.
#[napi(object)]
pub struct BeginRequest {
    pub id: String,
    #[napi(ts_type = "Buffer | string | null")]
    pub payload: Option<Either<Buffer, String>>,
    #[napi(ts_type = "'at_most_once' | 'at_least_once' | 'exactly_once'")]
    pub mode: Option<String>,
    /// Seconds.
    pub lease: Option<f64>,
}

/// One item of `Inbox.finishMany`: `{ ok: true }` or `{ error }` (an error of the classes above).
#[napi(object, object_from_js = false)]
pub struct FinishResult {
    pub ok: bool,
    /// The error (a JS error with its code; index.js gives it its class).
    #[napi(ts_type = "OncelyError")]
    pub error: Option<Error>,
}

/// A `process` call's answer for JS: the result, or the error index.js turns into the handler's
/// own exception (`ONCELY_HANDLER_FAILED`), a `ReplayedFailureError` or an oncely error.
pub(crate) fn processed(
    r: std::result::Result<oncely::Processed, ProcessError<String>>,
) -> Result<Processed> {
    match r {
        Ok(p) => Ok(Processed { result: p.result.map(Buffer::from), replayed: p.replayed }),
        Err(ProcessError::Handler(text)) => Err(Error::new(HANDLER_FAILED.into(), text)),
        Err(ProcessError::ReplayedFailure(reason)) => Err(Error::new(
            REPLAYED_FAILURE.into(),
            String::from_utf8_lossy(reason.as_deref().unwrap_or_default()),
        )),
        Err(ProcessError::Oncely(e)) => Err(err(e)),
        #[allow(unreachable_patterns)]
        Err(_) => Err(Error::new("ONCELY_UNKNOWN".into(), "unknown process error")),
    }
}
