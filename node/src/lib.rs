//! `oncely` for Node.js: the napi-rs binding of oncely. Translation only — type conversion,
//! error mapping and async adaptation; every rule lives in the core crate (DESIGN §7).
//!
//! Conventions: durations are float seconds (checked by
//! [`oncely::clock::duration_from_secs_f64`]); timestamps are integer milliseconds since the Unix
//! epoch (`*Ms`); ids are strings; payloads are `Buffer` (or a string, encoded as UTF-8); results
//! are `Buffer`. Every async method runs on napi's tokio runtime and returns a Promise.
//!
//! Errors: a core error becomes a JS `Error` whose message is `CODE\x1fTEXT`; `index.js` turns it
//! into the subclass for `CODE` (`err.code` = `ONCELY_` + the stable code upper-cased).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use oncely::clock::SharedClock;
use oncely::inbox::Status as RecordStatus;
use oncely::outbox::{MessageState, OutboxRecord as CoreRecord, Settled as CoreSettled};
use oncely::{
    AnyStore, Begin as CoreBegin, CachePolicy, Failure, InboxConfig, Mode, NewMessage, OutboxConfig,
};
use oncely::{ProcessError, Request, SqliteConfig, Timestamp};

mod conv;
mod errors;
mod transaction;
mod worker;

use conv::{Options, bytes, count, list, number, opt_bytes, opt_text, present, secs, size, text, u32_of};
pub(crate) use errors::{SEP, coded, err, invalid};

type CoreInbox = oncely::Inbox<AnyStore>;
type CoreOutbox = oncely::Outbox<AnyStore>;

/// The Promise of a method whose arguments were converted (on the JS thread) before `f` runs on
/// napi's tokio runtime.
pub(crate) fn promise<V, F>(env: &Env, f: F) -> Result<AsyncBlock<V>>
where
    V: ToNapiValue + Send + 'static,
    F: Future<Output = Result<V>> + Send + 'static,
{
    AsyncBlockBuilder::new(f).build(env)
}

/// An optional number argument (undefined or null: none).
fn opt_number(name: &'static str, v: Option<Unknown<'_>>) -> Result<Option<f64>> {
    present(v)?.map(|v| number(name, v)).transpose()
}

/// A required option of an arguments object.
fn required<T>(name: &'static str, v: Option<T>) -> Result<T> {
    v.ok_or_else(|| invalid(name, "is required"))
}

fn mode(v: Option<String>) -> Result<Option<Mode>> {
    v.map(|s| s.parse::<Mode>().map_err(err)).transpose()
}

fn open_store(loc: &str) -> Result<AnyStore> {
    AnyStore::open(loc, SqliteConfig::default()).map_err(err)
}

/// A store given as a location string or an opened [`Store`].
fn store_of(env: &Env, v: Unknown<'_>) -> Result<AnyStore> {
    match v.get_type()? {
        ValueType::String => open_store(&text("store", v)?),
        ValueType::Object if Store::instance_of(env, &v)? => {
            let s: ClassInstance<Store> = unsafe { ClassInstance::from_napi_value(env.raw(), v.raw())? };
            Ok(s.inner.clone())
        }
        _ => Err(invalid("store", format!("must be a location string or a Store, got {}", conv::kind(&v)?))),
    }
}

/// The `clock` option: absent/undefined (system clock) or a [`ManualClock`].
fn clock_of(env: &Env, options: &Options<'_>) -> Result<SharedClock> {
    let Some(v) = options.get("clock")? else { return Ok(Arc::new(oncely::SystemClock)) };
    if v.get_type()? == ValueType::Object && ManualClock::instance_of(env, &v)? {
        let c: ClassInstance<ManualClock> = unsafe { ClassInstance::from_napi_value(env.raw(), v.raw())? };
        return Ok(Arc::new(c.inner.clone()));
    }
    Err(invalid("clock", format!("must be a ManualClock, got {}", conv::kind(&v)?)))
}

/// The options objects that index.js reads itself (by the name it passes): their known keys,
/// checked here with every other options object's.
const JS_OPTIONS: &[(&str, &[&str])] = &[
    ("run options", &["signal"]),
    ("Retry options", &["after"]),
    ("idempotent options", &["key", "payload", "inbox", "mode", "lease", "wait"]),
];

/// Native half of index.js's options checks: refuses an options object of `which` (a name in
/// [`JS_OPTIONS`]) that is not an object or has a key it does not know.
#[napi(js_name = "_checkOptions", skip_typescript)]
pub fn check_options(which: String, options: Option<Unknown>) -> Result<()> {
    let (what, known) = JS_OPTIONS
        .iter()
        .find(|(w, _)| *w == which)
        .ok_or_else(|| invalid("options", format!("no such options object: {}", oncely::text::quote(&which))))?;
    Options::of(what, options, known).map(drop)
}

/// Native half of index.js's `toBuffer`: a handler's string result as UTF-8, decoded from
/// UTF-16 by the core's rule (a lone surrogate refused, never replaced).
#[napi(js_name = "_utf8", skip_typescript)]
pub fn utf8(value: Unknown) -> Result<Buffer> {
    Ok(Buffer::from(bytes("result", value)?))
}

/// A clock that moves only when told to, for tests and the conformance runner. Pass it as the
/// `clock` option of an `Inbox` or `Outbox`; they then share its time.
#[napi]
pub struct ManualClock {
    inner: oncely::ManualClock,
}

#[napi]
impl ManualClock {
    /// A manual clock showing `startMs` (milliseconds since the Unix epoch).
    #[napi(constructor, ts_args_type = "startMs?: number | undefined | null")]
    pub fn new(start_ms: Option<Unknown>) -> Result<Self> {
        let start = count("startMs", opt_number("startMs", start_ms)?.unwrap_or(1_700_000_000_000.0))?;
        Ok(ManualClock { inner: oncely::ManualClock::new(Timestamp(start as i64)) })
    }

    /// Moves the clock forward by `seconds`.
    #[napi(ts_args_type = "seconds: number")]
    pub fn advance(&self, seconds: Unknown) -> Result<()> {
        self.inner.advance(secs("seconds", number("seconds", seconds)?)?);
        Ok(())
    }

    /// Moves the clock forward by `ms` milliseconds.
    #[napi(ts_args_type = "ms: number")]
    pub fn advance_ms(&self, ms: Unknown) -> Result<()> {
        self.inner.advance(Duration::from_millis(count("ms", number("ms", ms)?)?));
        Ok(())
    }

    /// Sets the clock to `ms` (may be earlier: a clock jump).
    #[napi(ts_args_type = "ms: number")]
    pub fn set_ms(&self, ms: Unknown) -> Result<()> {
        self.inner.set(Timestamp(count("ms", number("ms", ms)?)? as i64));
        Ok(())
    }

    /// The clock's time in milliseconds since the Unix epoch.
    #[napi]
    pub fn now_ms(&self) -> i64 {
        oncely::Clock::now(&self.inner).0
    }
}

/// An opened store to share between inboxes and outboxes: `"memory"` (a new in-memory store), an
/// SQLite file path (optionally `sqlite:PATH`) or a PostgreSQL URL (`postgres://...`).
#[napi]
pub struct Store {
    inner: AnyStore,
    location: String,
}

#[napi]
impl Store {
    #[napi(constructor, ts_args_type = "location: string")]
    pub fn new(location: Unknown) -> Result<Self> {
        let location = text("location", location)?;
        Ok(Store { inner: open_store(&location)?, location })
    }

    /// The location the store was opened with (a PostgreSQL URL's password hidden).
    #[napi(getter)]
    pub fn location(&self) -> String {
        oncely::store::postgres::redact(&self.location)
    }
}

/// Native half of `Store.postgresSchemaUrl` (index.js): creates the PostgreSQL schema `schema`
/// in the database at `url` if missing and resolves to the URL that keeps a store's tables there.
#[napi(js_name = "_postgresSchemaUrl", skip_typescript)]
pub fn postgres_schema_url(env: Env, url: Unknown, schema: Unknown) -> Result<AsyncBlock<String>> {
    let (url, schema) = (text("url", url)?, text("schema", schema)?);
    promise(&env, async move {
        napi::tokio::task::spawn_blocking(move || oncely::PostgresStore::schema_url(&url, &schema))
            .await
            .map_err(|e| coded("ONCELY_STORAGE", &format!("creating the schema failed: {e}")))?
            .map_err(err)
    })
}

// ---------------------------------------------------------------------------------------------
// Inbox

/// A stored outcome of an id's first delivery.
#[napi(object)]
pub struct Replay {
    /// `"seen"`, `"succeeded"` or `"failed"`.
    pub status: String,
    pub result: Option<Buffer>,
}

fn status_str(s: RecordStatus) -> &'static str {
    match s {
        RecordStatus::Seen => "seen",
        RecordStatus::Succeeded => "succeeded",
        RecordStatus::Failed => "failed",
        #[allow(unreachable_patterns)]
        _ => "unknown",
    }
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
    #[napi]
    pub async fn release(&self) -> Result<()> {
        let t = self.inner.clone();
        t.release().await.map_err(err)
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
            out.replay = Some((status_str(r.status).to_string(), r.result));
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
    inner: CoreInbox,
    /// `process` calls whose handler answered with a Promise (see `_completeProcess`).
    pending: Arc<worker::Pending<HandlerAnswer>>,
}

/// A `process` handler's answer: the result, or `"permanent\x1fTEXT"` / `"retryable\x1fTEXT"`.
type HandlerAnswer = std::result::Result<Vec<u8>, String>;

fn handler_answer(a: Either<Buffer, String>) -> HandlerAnswer {
    match a {
        Either::A(b) => Ok(b.to_vec()),
        Either::B(failure) => Err(failure),
    }
}

fn handler_failure(failure: &str) -> Failure<String> {
    match failure.split_once(SEP) {
        Some(("permanent", text)) => Failure::permanent(text.to_string()),
        Some((_, text)) => Failure::retryable(text.to_string()),
        None => Failure::retryable(failure.to_string()),
    }
}

/// index.js's adapter of a `process` handler: `(callId) => answer | undefined` (undefined: the
/// answer comes later through `_completeProcess(callId, answer)`); an answer is the result
/// (a Buffer) or a `"permanent|retryable\x1fTEXT"` string. It never throws.
type ProcessHandlerFn =
    ThreadsafeFunction<FnArgs<(u32,)>, Option<Either<Buffer, String>>, FnArgs<(u32,)>, Status, false>;

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
            cfg = cfg.cache_policy(match p.as_str() {
                "success_only" => CachePolicy::SuccessOnly,
                "success_and_failure" => CachePolicy::SuccessAndFailure,
                other => {
                    return Err(invalid(
                        "cache_policy",
                        format!(
                            "unknown policy `{}` (expected success_only or success_and_failure)",
                            oncely::text::quote(other)
                        ),
                    ));
                }
            });
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

    /// Claims `id` (pull style).
    #[napi(ts_args_type = "id: string, payload?: Buffer | string | null, options?: CallOptions", ts_return_type = "Promise<Begin>")]
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
        promise(env, async move { Ok(inbox.begin_many(reqs).await.map_err(err)?.into_iter().map(begin_of).collect()) })
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
                            let _ = tx.send(r.map(|a| a.map(handler_answer)).map_err(|e| e.reason.clone()));
                            Ok(())
                        },
                    );
                    if status != Status::Ok {
                        return Err(Failure::retryable(format!("the handler could not be called ({status})")));
                    }
                    let answer = match now.await {
                        Ok(Ok(Some(answer))) => answer,
                        Ok(Ok(None)) => later.await.unwrap_or_else(|_| Err("retryable\u{1f}the handler's answer was lost".into())),
                        Ok(Err(reason)) => Err(format!("retryable{SEP}{reason}")),
                        Err(_) => Err(format!("retryable{SEP}the handler was not called (Node is shutting down)")),
                    };
                    drop(registered);
                    answer.map_err(|f| handler_failure(&f))
                })
                .await;
            match outcome {
                Ok(p) => Ok(Processed { result: p.result.map(Buffer::from), replayed: p.replayed }),
                Err(ProcessError::Handler(text)) => Err(coded("ONCELY_HANDLER_FAILED", &text)),
                Err(ProcessError::ReplayedFailure(reason)) => Err(coded(
                    "ONCELY_REPLAYED_FAILURE",
                    &String::from_utf8_lossy(reason.as_deref().unwrap_or_default()),
                )),
                Err(ProcessError::Oncely(e)) => Err(err(e)),
                #[allow(unreachable_patterns)]
                Err(_) => Err(coded("ONCELY_UNKNOWN", "unknown process error")),
            }
        })
    }

    /// The answer of a `process` handler that returned a Promise (see `ProcessHandlerFn`).
    #[napi(js_name = "_completeProcess", skip_typescript)]
    pub fn complete_process(&self, call_id: f64, answer: Either<Buffer, String>) -> Result<()> {
        self.pending.complete(u32_of("callId", call_id)?, handler_answer(answer));
        Ok(())
    }

    /// Finishes several tickets (of this inbox) in one store round trip; one result per item.
    #[napi(ts_args_type = "items: Array<[Ticket, Buffer | string]>")]
    pub fn finish_many(&self, env: &Env, items: Unknown) -> Result<AsyncBlock<Vec<FinishResult>>> {
        let mut batch = Vec::new();
        for a in list("items", items)? {
            let bad = || invalid("items", "each item must be [Ticket, result]");
            let (t, r) = match list("items", a).map_err(|_| bad())?.as_slice() {
                [t, r] if t.get_type()? == ValueType::Object && Ticket::instance_of(env, t)? => (*t, *r),
                _ => return Err(bad()),
            };
            let t: ClassInstance<Ticket> = unsafe { ClassInstance::from_napi_value(env.raw(), t.raw())? };
            batch.push((t.inner.clone(), bytes("result", r)?));
        }
        let inbox = self.inner.clone();
        AsyncBlockBuilder::new(async move {
            let refs = batch.iter().map(|(t, r)| (&**t, r.clone())).collect();
            let results = inbox.finish_many(refs).await.map_err(err)?;
            Ok(results
                .into_iter()
                .map(|r| match r {
                    Ok(()) => FinishResult { ok: true, error: None },
                    Err(e) => FinishResult {
                        ok: false,
                        error: Some(format!("ONCELY_{}{SEP}{e}", e.code().as_str().to_uppercase())),
                    },
                })
                .collect())
        })
        .build(env)
    }

    /// The id's record as stored, or null.
    #[napi(ts_args_type = "id: string", ts_return_type = "Promise<InboxRecord | null>")]
    pub fn get(&self, env: &Env, id: Unknown) -> Result<AsyncBlock<Option<InboxRecord>>> {
        let (inbox, id) = (self.inner.clone(), text("id", id)?);
        promise(env, async move { Ok(inbox.get(&id).await.map_err(err)?.map(inbox_record)) })
    }

    /// Deletes expired records; returns how many.
    #[napi]
    pub async fn purge_expired(&self) -> Result<f64> {
        let inbox = self.inner.clone();
        inbox.purge_expired().await.map(|n| n as f64).map_err(err)
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
    let (state, result, lease_until_ms) = match r.state {
        RecordState::InProgress { lease_until } => ("in_progress".to_string(), None, Some(lease_until.0)),
        RecordState::Completed(o) => (status_str(o.status).to_string(), o.result, None),
        #[allow(unreachable_patterns)]
        _ => ("unknown".to_string(), None, None),
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
#[napi(object)]
pub struct FinishResult {
    pub ok: bool,
    /// The error (index.js turns the native `CODE\x1fTEXT` into the error object).
    #[napi(ts_type = "OncelyError")]
    pub error: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Outbox

/// The outcome of a settle call: `kind` is `"acked"`, `"retrying"` (at `atMs`), `"gave_up"`,
/// `"returned"` (deliverable again at `atMs`), `"extended"` (leased until `atMs`) or `"dropped"`.
#[napi(object)]
pub struct Settled {
    pub kind: String,
    pub at_ms: Option<i64>,
}

fn settled(s: CoreSettled) -> Settled {
    let (kind, at_ms) = match s {
        CoreSettled::Acked => ("acked", None),
        CoreSettled::Retrying { at } => ("retrying", Some(at.0)),
        CoreSettled::GaveUp => ("gave_up", None),
        CoreSettled::Returned { at } => ("returned", Some(at.0)),
        CoreSettled::Extended { until } => ("extended", Some(until.0)),
        CoreSettled::Dropped => ("dropped", None),
        #[allow(unreachable_patterns)]
        _ => ("unknown", None),
    };
    Settled { kind: kind.to_string(), at_ms }
}

/// A message as stored.
#[napi(object)]
pub struct OutboxRecord {
    pub id: String,
    pub key: Option<String>,
    pub payload: Buffer,
    pub headers: std::collections::HashMap<String, String>,
    /// `"ready"`, `"leased"` or `"dead"`.
    pub state: String,
    pub attempts: u32,
    pub available_at_ms: i64,
    pub created_at_ms: i64,
    pub last_error: Option<String>,
    pub reason: Option<String>,
    pub seq: f64,
    pub lease_until_ms: Option<i64>,
}

fn outbox_record(r: CoreRecord) -> OutboxRecord {
    let (state, reason, lease_until_ms) = match r.state {
        MessageState::Ready => ("ready", None, None),
        MessageState::Leased { lease_until, .. } => ("leased", None, Some(lease_until.0)),
        MessageState::Dead { reason } => ("dead", Some(reason), None),
        #[allow(unreachable_patterns)]
        _ => ("unknown", None, None),
    };
    let m = r.message;
    OutboxRecord {
        payload: Buffer::from(m.payload),
        id: m.id,
        key: m.key,
        headers: m.headers.into_iter().collect(),
        state: state.to_string(),
        attempts: m.attempts,
        available_at_ms: m.available_at.0,
        created_at_ms: m.created_at.0,
        last_error: r.last_error,
        reason,
        seq: r.seq as f64,
        lease_until_ms,
    }
}

/// The queue's counts and this process's counters.
#[napi(object)]
pub struct OutboxStats {
    pub ready: f64,
    pub scheduled: f64,
    pub leased: f64,
    pub dead: f64,
    pub oldest_age_ms: Option<f64>,
    pub enqueued: f64,
    pub delivered: f64,
    pub retried: f64,
    pub dead_lettered: f64,
    pub dropped: f64,
    pub attempts_settled: f64,
}

/// One leased message. Settle it once: `ack`, `retry`, `snooze`, `fail`, `release` (`extend`
/// keeps the lease longer). Pass `idempotencyKey` on to the receiver.
#[napi]
pub struct Delivery {
    inner: Arc<oncely::Delivery<AnyStore>>,
}

#[napi]
impl Delivery {
    #[napi(getter)]
    pub fn id(&self) -> String {
        self.inner.id().to_string()
    }
    #[napi(getter)]
    pub fn idempotency_key(&self) -> String {
        self.inner.idempotency_key().to_string()
    }
    #[napi(getter)]
    pub fn payload(&self) -> Buffer {
        Buffer::from(self.inner.payload().to_vec())
    }
    #[napi(getter)]
    pub fn key(&self) -> Option<String> {
        self.inner.message().key.clone()
    }
    #[napi(getter)]
    pub fn headers(&self) -> std::collections::HashMap<String, String> {
        self.inner.message().headers.clone().into_iter().collect()
    }
    #[napi(getter)]
    pub fn attempt(&self) -> u32 {
        self.inner.attempt()
    }
    #[napi(getter)]
    pub fn token(&self) -> f64 {
        self.inner.token() as f64
    }
    #[napi(getter)]
    pub fn last_error(&self) -> Option<String> {
        self.inner.last_error().map(str::to_string)
    }
    #[napi(getter)]
    pub fn created_at_ms(&self) -> i64 {
        self.inner.message().created_at.0
    }

    #[napi]
    pub async fn ack(&self) -> Result<()> {
        let d = self.inner.clone();
        d.ack().await.map_err(err)
    }

    /// A failed attempt: retry by the policy, or after `after` seconds.
    #[napi(
        ts_args_type = "error?: string | undefined | null, after?: number | undefined | null",
        ts_return_type = "Promise<Settled>"
    )]
    pub fn retry(&self, env: &Env, error: Option<Unknown>, after: Option<Unknown>) -> Result<AsyncBlock<Settled>> {
        let error = opt_text("error", error)?.unwrap_or_default();
        let after = opt_number("after", after)?.map(|v| secs("after", v)).transpose()?;
        let d = self.inner.clone();
        promise(env, async move { d.retry(after, error).await.map(settled).map_err(err) })
    }

    /// Again after `after` seconds, no attempt used up.
    #[napi(ts_args_type = "after: number", ts_return_type = "Promise<Settled>")]
    pub fn snooze(&self, env: &Env, after: Unknown) -> Result<AsyncBlock<Settled>> {
        let after = secs("after", number("after", after)?)?;
        let d = self.inner.clone();
        promise(env, async move { d.snooze(after).await.map(settled).map_err(err) })
    }

    /// A permanent failure: dead-letter (or park).
    #[napi(ts_args_type = "reason?: string | undefined | null", ts_return_type = "Promise<Settled>")]
    pub fn fail(&self, env: &Env, reason: Option<Unknown>) -> Result<AsyncBlock<Settled>> {
        let reason = opt_text("reason", reason)?.unwrap_or_default();
        let d = self.inner.clone();
        promise(env, async move { d.fail(reason).await.map(settled).map_err(err) })
    }

    /// Keeps the lease `lease` more seconds from now.
    #[napi(ts_args_type = "lease: number", ts_return_type = "Promise<Settled>")]
    pub fn extend(&self, env: &Env, lease: Unknown) -> Result<AsyncBlock<Settled>> {
        let lease = secs("lease", number("lease", lease)?)?;
        let d = self.inner.clone();
        promise(env, async move { d.extend(lease).await.map(settled).map_err(err) })
    }

    /// Gives the message back, no attempt used up.
    #[napi]
    pub async fn release(&self) -> Result<Settled> {
        let d = self.inner.clone();
        d.release().await.map(settled).map_err(err)
    }
}

/// One message for `enqueue`.
#[napi(object)]
pub struct EnqueueOptions {
    pub id: Option<String>,
    pub key: Option<String>,
    pub headers: Option<std::collections::HashMap<String, String>>,
    /// Seconds before the first delivery.
    pub delay: Option<f64>,
}

/// The sender's durable retry queue named `queue`.
#[napi]
pub struct Outbox {
    inner: CoreOutbox,
    /// Events recorded since `recordEvents()` (None: not recording).
    events: Arc<std::sync::Mutex<Option<Vec<OutboxEvent>>>>,
    /// The JS side of `outbox.events` (None: no listener).
    listener: Arc<std::sync::Mutex<Option<Arc<EventFn>>>>,
}

/// The event listener index.js installs: weak (it does not keep Node running), called without
/// waiting for an answer.
type EventFn = ThreadsafeFunction<OutboxEvent, (), OutboxEvent, Status, false, true>;

/// `retryBudget` option.
#[napi(object)]
pub struct RetryBudgetOptions {
    pub ratio: f64,
    pub min_per_second: Option<f64>,
    pub burst: Option<f64>,
}

/// One state change of a message (see `Outbox.recordEvents`).
#[napi(object)]
#[derive(Clone)]
pub struct OutboxEvent {
    /// `enqueued leased acked retried snoozed released lease_expired dead_lettered parked dropped
    /// cancelled replayed purged`.
    pub kind: String,
    pub id: String,
    pub at_ms: i64,
    pub attempt: Option<u32>,
    pub retry_at_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub error: Option<String>,
    pub reason: Option<String>,
}

fn event(e: &oncely::outbox::Event) -> OutboxEvent {
    use oncely::outbox::EventKind;
    let mut ev = OutboxEvent {
        kind: String::new(),
        id: e.id.clone(),
        at_ms: e.at.0,
        attempt: None,
        retry_at_ms: None,
        until_ms: None,
        error: None,
        reason: None,
    };
    match &e.kind {
        EventKind::Leased { attempt } => ev.attempt = Some(*attempt),
        EventKind::Retried { at, error } => {
            ev.retry_at_ms = Some(at.0);
            ev.error = Some(error.clone());
        }
        EventKind::Snoozed { until } | EventKind::Parked { until } => ev.until_ms = Some(until.0),
        EventKind::DeadLettered { reason } => ev.reason = Some(reason.clone()),
        _ => {}
    }
    ev.kind = e.kind.name().to_string();
    ev
}

fn ordering_of(
    ordering: &str,
    poison: Option<&str>,
    park_after: Option<f64>,
) -> Result<oncely::outbox::Ordering> {
    let park_after = park_after.map(|v| secs("park_after", v)).transpose()?;
    oncely::outbox::Ordering::from_names(ordering, poison, park_after).map_err(err)
}

/// A retry policy in the core's JSON form (the text index.js made of the `retry` object).
fn retry_policy(json: Unknown<'_>) -> Result<oncely::backoff::RetryPolicy> {
    let p: oncely::backoff::RetryPolicy =
        serde_json::from_str(&text("retry", json)?).map_err(|e| invalid("retry", e.to_string()))?;
    p.validate().map_err(err)?;
    Ok(p)
}

/// The options of `enqueue` ([`EnqueueOptions`]).
pub(crate) const ENQUEUE_OPTIONS: &[&str] = &["id", "key", "headers", "delay"];
/// The fields of an `enqueueMany` message ([`NewMessageOptions`]).
const NEW_MESSAGE: &[&str] = &["payload", "id", "key", "headers", "delay"];
/// The options of `new Outbox` ([`OutboxOptions`]; `retry` is read by index.js).
const OUTBOX_OPTIONS: &[&str] = &[
    "mode", "retry", "lease", "ordering", "poison", "parkAfter", "retryBudget", "seed", "maxPayloadBytes", "clock",
];
/// The options of `settle` ([`SettleOptions`]).
const SETTLE_OPTIONS: &[&str] = &["after", "error", "reason", "lease"];

/// A message with `payload` and the enqueue options `o` (`id`, `key`, `headers`, `delay`).
pub(crate) fn new_message(payload: Vec<u8>, o: &Options<'_>) -> Result<NewMessage> {
    let mut m = NewMessage::new(payload);
    if let Some(id) = o.text("id")? {
        m = m.id(id);
    }
    if let Some(k) = o.text("key")? {
        m = m.key(k);
    }
    for (k, v) in o.strings("headers")? {
        m = m.header(k, v);
    }
    if let Some(d) = o.secs("delay")? {
        m = m.delay(d);
    }
    Ok(m)
}

fn enqueued_str(e: oncely::outbox::Enqueued) -> String {
    match e {
        oncely::outbox::Enqueued::Queued => "queued",
        oncely::outbox::Enqueued::AlreadyQueued => "already_queued",
        #[allow(unreachable_patterns)]
        _ => "unknown",
    }
    .to_string()
}

/// One message for `enqueueMany`.
#[napi(object)]
pub struct NewMessageOptions {
    #[napi(ts_type = "Buffer | string")]
    pub payload: Either<Buffer, String>,
    pub id: Option<String>,
    pub key: Option<String>,
    pub headers: Option<std::collections::HashMap<String, String>>,
    pub delay: Option<f64>,
}

/// Options of `Outbox.settle` (by id and token, without the Delivery object).
#[napi(object)]
pub struct SettleOptions {
    pub after: Option<f64>,
    pub error: Option<String>,
    pub reason: Option<String>,
    pub lease: Option<f64>,
}

#[napi]
impl Outbox {
    /// Options: `mode`, `retry` (a retry-policy object, e.g. `{maxAttempts...}` in the core's
    /// snake_case JSON form), `lease` (seconds), `seed`, `maxPayloadBytes`, `clock`.
    #[napi(constructor, ts_args_type = "store: string | Store, queue: string, options?: OutboxOptions")]
    pub fn new(
        env: Env,
        store: Unknown,
        queue: Unknown,
        options: Option<Unknown>,
        retry_json: Option<Unknown>,
    ) -> Result<Self> {
        // `retry_json`: index.js passes the `retry` option as JSON text.
        let options = Options::of("outbox options", options, OUTBOX_OPTIONS)?;
        let mut cfg = OutboxConfig::new(text("queue", queue)?);
        if let Some(s) = options.count("seed")? {
            cfg = cfg.seed(s);
        }
        if let Some(m) = mode(options.text("mode")?)? {
            cfg = cfg.mode(m);
        }
        if let Some(r) = present(retry_json)? {
            cfg = cfg.retry(retry_policy(r)?);
        }
        if let Some(l) = options.secs("lease")? {
            cfg = cfg.lease(l);
        }
        if let Some(n) = options.size("maxPayloadBytes")? {
            cfg.max_payload_bytes = n;
        }
        cfg = cfg.ordering(ordering_of(
            options.text("ordering")?.as_deref().unwrap_or("unordered"),
            options.text("poison")?.as_deref(),
            options.number("parkAfter")?,
        )?);
        let b = options.options("retry budget options", "retryBudget", &["ratio", "minPerSecond", "burst"])?;
        if b.given() {
            let mut budget = oncely::outbox::RetryBudget::new(required("ratio", b.number("ratio")?)?);
            if let Some(v) = b.number("minPerSecond")? {
                budget.min_per_second = v;
            }
            if let Some(v) = b.number("burst")? {
                budget.burst = v;
            }
            cfg = cfg.retry_budget(budget);
        }
        let clock = clock_of(&env, &options)?;
        let store = store_of(&env, store)?;
        let inner = CoreOutbox::with_clock(store, cfg, clock).map_err(err)?;
        let events: Arc<std::sync::Mutex<Option<Vec<OutboxEvent>>>> = Arc::default();
        let listener: Arc<std::sync::Mutex<Option<Arc<EventFn>>>> = Arc::default();
        let (sink, to_js) = (events.clone(), listener.clone());
        inner.on_event(move |e| {
            if let Some(v) = sink.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                v.push(event(e));
            }
            let f = to_js.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(f) = f {
                f.call(event(e), ThreadsafeFunctionCallMode::NonBlocking);
            }
        });
        Ok(Outbox { inner, events, listener })
    }

    #[napi(getter)]
    pub fn queue(&self) -> String {
        self.inner.config().queue.clone()
    }

    /// The outbox clock's time in ms.
    #[napi]
    pub fn now_ms(&self) -> i64 {
        self.inner.now().0
    }

    /// Enqueues one message; `"queued"` or `"already_queued"` (same id).
    #[napi(
        ts_args_type = "payload: Buffer | string, options?: EnqueueOptions",
        ts_return_type = "Promise<'queued' | 'already_queued'>"
    )]
    pub fn enqueue(&self, env: &Env, payload: Unknown, options: Option<Unknown>) -> Result<AsyncBlock<String>> {
        let options = Options::of("enqueue options", options, ENQUEUE_OPTIONS)?;
        let m = new_message(bytes("payload", payload)?, &options)?;
        let o = self.inner.clone();
        promise(env, async move { o.enqueue(m).await.map(enqueued_str).map_err(err) })
    }

    /// Enqueues several messages in one transaction.
    #[napi(
        ts_args_type = "messages: Array<NewMessageOptions>",
        ts_return_type = "Promise<Array<'queued' | 'already_queued'>>"
    )]
    pub fn enqueue_many(&self, env: &Env, messages: Unknown) -> Result<AsyncBlock<Vec<String>>> {
        let mut ms = Vec::new();
        for m in list("messages", messages)? {
            let o = Options::of("enqueue options", Some(m), NEW_MESSAGE)?;
            ms.push(new_message(bytes("payload", required("payload", o.get("payload")?)?)?, &o)?);
        }
        let o = self.inner.clone();
        promise(env, async move {
            o.enqueue_many(ms).await.map(|v| v.into_iter().map(enqueued_str).collect()).map_err(err)
        })
    }

    /// Settles a leased message by id and fencing token (e.g. after a restart): `action` is
    /// `ack`, `retry`, `snooze` (needs `after`), `fail`, `extend` (needs `lease`) or `release`.
    #[napi(
        ts_args_type = "id: string, token: number, action: 'ack' | 'retry' | 'snooze' | 'fail' | 'extend' | 'release', options?: SettleOptions"
    )]
    pub fn settle(
        &self,
        env: &Env,
        id: Unknown,
        token: Unknown,
        action: Unknown,
        options: Option<Unknown>,
    ) -> Result<AsyncBlock<Settled>> {
        use oncely::outbox::Settle;
        let id = text("id", id)?;
        let token = count("token", number("token", token)?)?;
        let action = text("action", action)?;
        let o = Options::of("settle options", options, SETTLE_OPTIONS)?;
        let need = |name: &'static str| -> Result<Duration> {
            o.secs(name)?.ok_or_else(|| invalid(name, format!("is required for `{action}`")))
        };
        let how = match action.as_str() {
            "ack" => Settle::Ack,
            "retry" => Settle::Retry { after: o.secs("after")?, error: o.text("error")?.unwrap_or_default() },
            "snooze" => Settle::Snooze { after: need("after")? },
            "fail" => Settle::Fail { reason: o.text("reason")?.unwrap_or_default() },
            "extend" => Settle::Extend { lease: need("lease")? },
            "release" => Settle::Release,
            other => {
                return Err(invalid(
                    "action",
                    format!(
                        "unknown action `{}` (expected ack, retry, snooze, fail, extend or release)",
                        oncely::text::quote(other)
                    ),
                ));
            }
        };
        let ob = self.inner.clone();
        promise(env, async move { ob.settle(&id, token, how).await.map(settled).map_err(err) })
    }

    /// Removes a queued message before delivery: `"cancelled"`, `"in_flight"` or `"not_found"`.
    #[napi(ts_args_type = "id: string", ts_return_type = "Promise<'cancelled' | 'in_flight' | 'not_found'>")]
    pub fn cancel(&self, env: &Env, id: Unknown) -> Result<AsyncBlock<String>> {
        use oncely::outbox::Cancelled;
        let (o, id) = (self.inner.clone(), text("id", id)?);
        promise(env, async move {
            let c = o.cancel(&id).await.map_err(err)?;
            Ok(match c {
                Cancelled::Cancelled => "cancelled",
                Cancelled::InFlight => "in_flight",
                Cancelled::NotFound => "not_found",
                #[allow(unreachable_patterns)]
                _ => "unknown",
            }
            .to_string())
        })
    }

    /// Starts recording this outbox's events (state changes after they committed, in this
    /// process); `takeEvents()` hands them over.
    #[napi]
    pub fn record_events(&self) {
        let mut g = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            *g = Some(Vec::new());
        }
    }

    /// Native half of `outbox.events` (index.js): every event of this outbox, in order, is passed
    /// to `listener` on the JS thread, until it is replaced or set to null. The listener does
    /// not keep the process alive.
    #[napi(js_name = "_setEventListener", skip_typescript)]
    pub fn set_event_listener(&self, listener: Option<EventFn>) {
        *self.listener.lock().unwrap_or_else(|p| p.into_inner()) = listener.map(Arc::new);
    }

    /// The events recorded since the last call (empty when not recording).
    #[napi]
    pub fn take_events(&self) -> Vec<OutboxEvent> {
        let mut g = self.events.lock().unwrap_or_else(|p| p.into_inner());
        g.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Leases up to `max` (default 1) due messages.
    #[napi(ts_args_type = "max?: number | undefined | null", ts_return_type = "Promise<Array<Delivery>>")]
    pub fn lease(&self, env: &Env, max: Option<Unknown>) -> Result<AsyncBlock<Vec<Delivery>>> {
        let max = size("max", opt_number("max", max)?.unwrap_or(1.0))?;
        let o = self.inner.clone();
        promise(env, async move {
            let ds = o.lease(max).await.map_err(err)?;
            Ok(ds.into_iter().map(|d| Delivery { inner: Arc::new(d) }).collect())
        })
    }

    /// The message as stored, or null.
    #[napi(ts_args_type = "id: string", ts_return_type = "Promise<OutboxRecord | null>")]
    pub fn get(&self, env: &Env, id: Unknown) -> Result<AsyncBlock<Option<OutboxRecord>>> {
        let (o, id) = (self.inner.clone(), text("id", id)?);
        promise(env, async move { o.get(&id).await.map(|r| r.map(outbox_record)).map_err(err) })
    }

    /// Dead letters in order, after `afterSeq`, at most `limit` (default 100).
    #[napi(
        ts_args_type = "afterSeq?: number | undefined | null, limit?: number | undefined | null",
        ts_return_type = "Promise<Array<OutboxRecord>>"
    )]
    pub fn dead_letters(
        &self,
        env: &Env,
        after_seq: Option<Unknown>,
        limit: Option<Unknown>,
    ) -> Result<AsyncBlock<Vec<OutboxRecord>>> {
        let after = opt_number("afterSeq", after_seq)?.map(|s| count("afterSeq", s)).transpose()?;
        let limit = size("limit", opt_number("limit", limit)?.unwrap_or(100.0))?;
        let o = self.inner.clone();
        promise(env, async move {
            o.dead_letters(after, limit).await.map(|v| v.into_iter().map(outbox_record).collect()).map_err(err)
        })
    }

    /// Makes a dead letter deliverable again; false if it was not dead.
    #[napi(ts_args_type = "id: string", ts_return_type = "Promise<boolean>")]
    pub fn replay(&self, env: &Env, id: Unknown) -> Result<AsyncBlock<bool>> {
        let (o, id) = (self.inner.clone(), text("id", id)?);
        promise(env, async move { o.replay(&id).await.map_err(err) })
    }

    /// Deletes dead letters (all, or the given ids); returns how many.
    #[napi(ts_args_type = "ids?: Array<string> | undefined | null", ts_return_type = "Promise<number>")]
    pub fn purge_dead(&self, env: &Env, ids: Option<Unknown>) -> Result<AsyncBlock<f64>> {
        let ids = match present(ids)? {
            Some(v) => Some(list("ids", v)?.into_iter().map(|id| text("ids", id)).collect::<Result<Vec<_>>>()?),
            None => None,
        };
        let o = self.inner.clone();
        promise(env, async move { o.purge_dead(ids).await.map(|n| n as f64).map_err(err) })
    }

    #[napi]
    pub async fn stats(&self) -> Result<OutboxStats> {
        let o = self.inner.clone();
        let s = o.stats().await.map_err(err)?;
        Ok(OutboxStats {
            ready: s.queue.ready as f64,
            scheduled: s.queue.scheduled as f64,
            leased: s.queue.leased as f64,
            dead: s.queue.dead as f64,
            oldest_age_ms: s.oldest_age.map(|a| a.as_millis() as f64),
            enqueued: s.counters.enqueued as f64,
            delivered: s.counters.delivered as f64,
            retried: s.counters.retried as f64,
            dead_lettered: s.counters.dead_lettered as f64,
            dropped: s.counters.dropped as f64,
            attempts_settled: s.counters.attempts_settled as f64,
        })
    }
}

/// Options of `new Outbox(store, queue, options)`.
#[napi(object)]
pub struct OutboxOptions {
    #[napi(ts_type = "'at_most_once' | 'at_least_once' | 'exactly_once'")]
    pub mode: Option<String>,
    /// A retry policy in the core's JSON form, e.g. `{max_attempts: 5, backoff: {kind:
    /// "exponential", initial_ms: 100, factor: 2, max_ms: 10000}, jitter: "full"}`.
    #[napi(ts_type = "object")]
    pub retry: Option<()>,
    pub lease: Option<f64>,
    /// `"unordered"` (default) or `"fifo_per_key"`.
    pub ordering: Option<String>,
    /// With `fifo_per_key`: `"block"` (default), `"dead_letter"` or `"park"` (with `parkAfter`).
    pub poison: Option<String>,
    pub park_after: Option<f64>,
    pub retry_budget: Option<RetryBudgetOptions>,
    pub seed: Option<f64>,
    pub max_payload_bytes: Option<f64>,
    #[napi(ts_type = "ManualClock")]
    pub clock: Option<()>,
}

/// A retry policy (in the core's JSON form, passed as JSON text by index.js), for computing its
/// delays and decisions in whole milliseconds.
#[napi]
pub struct RetryPolicy {
    inner: oncely::backoff::RetryPolicy,
}

/// A retry decision: `{ retryInMs }` or `{ giveUp: 'max_attempts' | 'deadline' }`.
#[napi(object)]
pub struct RetryDecision {
    pub retry_in_ms: Option<f64>,
    pub give_up: Option<String>,
}

/// The fields of [`DecideArgs`].
const DECIDE_ARGS: &[&str] = &["seed", "attempts", "firstAttemptAtMs", "nowMs", "lastDelayMs", "retryAfterMs"];

/// Arguments of `RetryPolicy.decideMs`.
#[napi(object)]
pub struct DecideArgs {
    pub seed: f64,
    pub attempts: u32,
    pub first_attempt_at_ms: f64,
    pub now_ms: f64,
    pub last_delay_ms: Option<f64>,
    pub retry_after_ms: Option<f64>,
}

#[napi]
impl RetryPolicy {
    #[napi(constructor, ts_args_type = "policy: object | string")]
    pub fn new(json: Unknown) -> Result<Self> {
        Ok(RetryPolicy { inner: retry_policy(json)? })
    }

    /// The delays (ms) before attempts 2..=n+1 from a fresh stream seeded with `seed`.
    #[napi(ts_args_type = "seed: number, n: number")]
    pub fn schedule_ms(&self, seed: Unknown, n: Unknown) -> Result<Vec<f64>> {
        let seed = count("seed", number("seed", seed)?)?;
        let n = u32_of("n", number("n", n)?)?;
        Ok(self.inner.schedule(seed, n).iter().map(|d| d.as_millis() as f64).collect())
    }

    /// The decision after a failed attempt.
    #[napi(ts_args_type = "a: DecideArgs")]
    pub fn decide_ms(&self, a: Unknown) -> Result<RetryDecision> {
        use oncely::backoff::{AttemptHistory, JitterRng, RetryDecision as D};
        let a = Options::of("decideMs arguments", Some(a), DECIDE_ARGS)?;
        let int = |name: &'static str| -> Result<u64> { count(name, required(name, a.number(name)?)?) };
        let history = AttemptHistory {
            attempts: u32_of("attempts", required("attempts", a.number("attempts")?)?)?,
            first_attempt_at: Timestamp(int("firstAttemptAtMs")? as i64),
            last_delay: a.count("lastDelayMs")?.map(Duration::from_millis),
        };
        let mut rng = JitterRng::new(int("seed")?);
        let retry_after = a.count("retryAfterMs")?.map(Duration::from_millis);
        let now = int("nowMs")? as i64;
        let d = self.inner.decide(&history, Timestamp(now), retry_after, &mut rng);
        Ok(match d {
            D::RetryIn(d) => RetryDecision { retry_in_ms: Some(d.as_millis() as f64), give_up: None },
            D::GiveUp(why) => RetryDecision {
                retry_in_ms: None,
                give_up: Some(
                    serde_json::to_value(why)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                ),
            },
        })
    }
}

/// The package version.
#[napi]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
