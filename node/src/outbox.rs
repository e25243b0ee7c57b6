//! `Outbox`: the sender's durable retry queue (`enqueue`, `lease`, deliveries, events), and
//! `RetryPolicy`.

use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use oncely::outbox::{MessageState, OutboxRecord as CoreRecord, Settled as CoreSettled};
use oncely::{AnyStore, NewMessage, OutboxConfig, Timestamp};

use crate::conv::{
    Options, bytes, count, integer, list, number, opt_text, present, secs, size, text, u32_of,
};
use crate::errors::{Result, err, invalid};
use crate::store::{clock_of, store_of};
use crate::{CoreOutbox, mode, opt_number, promise, required};
use oncely::defaults::{DEAD_LETTERS_LIMIT, LEASE_MAX};

/// The outcome of a settle call: `kind` is `"acked"`, `"retrying"` (at `atMs`), `"gave_up"`,
/// `"returned"` (deliverable again at `atMs`), `"extended"` (leased until `atMs`) or `"dropped"`.
#[napi(object)]
pub struct Settled {
    pub kind: String,
    pub at_ms: Option<i64>,
}

fn settled(s: CoreSettled) -> Settled {
    Settled { kind: s.as_str().to_string(), at_ms: s.at().map(|t| t.0) }
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
    let state = r.state.as_str();
    let (reason, lease_until_ms) = match r.state {
        MessageState::Ready => (None, None),
        MessageState::Leased { lease_until, .. } => (None, Some(lease_until.0)),
        MessageState::Dead { reason } => (Some(reason), None),
        #[allow(unreachable_patterns)]
        _ => (None, None),
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
    /// When the message became deliverable (its enqueue time plus any delay, or the time the
    /// last retry or snooze set).
    #[napi(getter)]
    pub fn available_at_ms(&self) -> i64 {
        self.inner.message().available_at.0
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn ack(&self, env: &Env) -> Result<AsyncBlock<()>> {
        let d = self.inner.clone();
        promise(env, async move { d.ack().await.map_err(err) })
    }

    /// A failed attempt: retry by the policy, or after `after` seconds.
    #[napi(
        ts_args_type = "error?: string | undefined | null, after?: number | undefined | null",
        ts_return_type = "Promise<Settled>"
    )]
    pub fn retry(
        &self,
        env: &Env,
        error: Option<Unknown>,
        after: Option<Unknown>,
    ) -> Result<AsyncBlock<Settled>> {
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
    #[napi(ts_return_type = "Promise<Settled>")]
    pub fn release(&self, env: &Env) -> Result<AsyncBlock<Settled>> {
        let d = self.inner.clone();
        promise(env, async move { d.release().await.map(settled).map_err(err) })
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
    pub(crate) inner: CoreOutbox,
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
    let f = e.flat();
    OutboxEvent {
        kind: f.kind.to_string(),
        id: f.id,
        at_ms: f.at_ms,
        attempt: f.attempt,
        retry_at_ms: f.retry_at_ms,
        until_ms: f.until_ms,
        error: f.error,
        reason: f.reason,
    }
}

fn ordering_of(
    ordering: Option<&str>,
    poison: Option<&str>,
    park_after: Option<f64>,
) -> Result<oncely::outbox::Ordering> {
    let park_after = park_after.map(|v| secs("park_after", v)).transpose()?;
    oncely::outbox::Ordering::from_names(ordering, poison, park_after).map_err(err)
}

/// A retry policy in the core's JSON form (the text index.js made of the `retry` object).
pub(crate) fn retry_policy(json: Unknown<'_>) -> Result<oncely::backoff::RetryPolicy> {
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
    "mode",
    "retry",
    "lease",
    "ordering",
    "poison",
    "parkAfter",
    "retryBudget",
    "seed",
    "maxPayloadBytes",
    "dedupWindow",
    "clock",
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

/// The messages of an `enqueueMany` call (an array of [`NewMessageOptions`]).
pub(crate) fn new_messages(messages: Unknown<'_>) -> Result<Vec<NewMessage>> {
    let mut ms = Vec::new();
    for m in list("messages", messages)? {
        let o = Options::of("enqueue options", Some(m), NEW_MESSAGE)?;
        ms.push(new_message(bytes("payload", required("payload", o.get("payload")?)?)?, &o)?);
    }
    Ok(ms)
}

pub(crate) fn enqueued_str(e: oncely::outbox::Enqueued) -> String {
    e.as_str().to_string()
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
    /// snake_case JSON form), `lease` (seconds), `seed`, `maxPayloadBytes`, `dedupWindow`
    /// (seconds an id is remembered once delivered; 0: not at all), `clock`.
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
        if let Some(w) = options.secs("dedupWindow")? {
            cfg = cfg.dedup_window(w);
        }
        cfg = cfg.ordering(ordering_of(
            options.text("ordering")?.as_deref(),
            options.text("poison")?.as_deref(),
            options.number("parkAfter")?,
        )?);
        let b =
            options.options("retry budget options", "retryBudget", &["ratio", "minPerSecond", "burst"])?;
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

    /// Enqueues one message; `"queued"`, `"already_queued"` (same id and payload in the queue) or
    /// `"already_delivered"` (delivered within the dedup window); another payload under a known
    /// id is a `ConflictError`.
    #[napi(
        ts_args_type = "payload: Buffer | string, options?: EnqueueOptions",
        ts_return_type = "Promise<'queued' | 'already_queued' | 'already_delivered'>"
    )]
    pub fn enqueue(
        &self,
        env: &Env,
        payload: Unknown,
        options: Option<Unknown>,
    ) -> Result<AsyncBlock<String>> {
        let options = Options::of("enqueue options", options, ENQUEUE_OPTIONS)?;
        let m = new_message(bytes("payload", payload)?, &options)?;
        let o = self.inner.clone();
        promise(env, async move { o.enqueue(m).await.map(enqueued_str).map_err(err) })
    }

    /// Enqueues several messages in one transaction.
    #[napi(
        ts_args_type = "messages: Array<NewMessageOptions>",
        ts_return_type = "Promise<Array<'queued' | 'already_queued' | 'already_delivered'>>"
    )]
    pub fn enqueue_many(&self, env: &Env, messages: Unknown) -> Result<AsyncBlock<Vec<String>>> {
        let ms = new_messages(messages)?;
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
        let fields = oncely::outbox::SettleFields {
            after: o.secs("after")?,
            error: o.text("error")?,
            reason: o.text("reason")?,
            lease: o.secs("lease")?,
        };
        let how = Settle::from_action(&action, fields).map_err(err)?;
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
            Ok(Cancelled::as_str(c).to_string())
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
        let max = opt_number("max", max)?.map(|v| size("max", v)).transpose()?.unwrap_or(LEASE_MAX);
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
        let limit =
            opt_number("limit", limit)?.map(|v| size("limit", v)).transpose()?.unwrap_or(DEAD_LETTERS_LIMIT);
        let o = self.inner.clone();
        promise(env, async move {
            o.dead_letters(after, limit)
                .await
                .map(|v| v.into_iter().map(outbox_record).collect())
                .map_err(err)
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
            Some(v) => {
                Some(list("ids", v)?.into_iter().map(|id| text("ids", id)).collect::<Result<Vec<_>>>()?)
            }
            None => None,
        };
        let o = self.inner.clone();
        promise(env, async move { o.purge_dead(ids).await.map(|n| n as f64).map_err(err) })
    }

    #[napi(ts_return_type = "Promise<OutboxStats>")]
    pub fn stats(&self, env: &Env) -> Result<AsyncBlock<OutboxStats>> {
        let o = self.inner.clone();
        promise(env, async move { o.stats().await.map(outbox_stats).map_err(err) })
    }
}

fn outbox_stats(s: oncely::outbox::Stats) -> OutboxStats {
    OutboxStats {
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
    /// Seconds a delivered id is remembered against a second enqueue (default 300; 0: none).
    pub dedup_window: Option<f64>,
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
const DECIDE_ARGS: &[&str] =
    &["seed", "attempts", "firstAttemptAtMs", "nowMs", "lastDelayMs", "retryAfterMs"];

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
        let n = integer("n", number("n", n)?, 0, u64::from(oncely::backoff::MAX_SCHEDULE_LEN))?;
        Ok(self.inner.schedule_checked(seed, n).map_err(err)?.iter().map(|d| d.as_millis() as f64).collect())
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
