//! `Outbox`, `Delivery`, `Settled`, `OutboxRecord`, `Event`, `RetryPolicy`: the sender's
//! durable retry queue.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use oncely::backoff::{AttemptHistory, JitterRng, RetryDecision, RetryPolicy as CorePolicy};
use oncely::outbox::{
    Cancelled, Enqueued, Event as CoreEvent, MessageState, Ordering, OutboxRecord as CoreRecord, RetryBudget,
    Settle, Settled as CoreSettled,
};
use oncely::{AnyStore, Error, NewMessage, OutboxConfig, Timestamp};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

use crate::aio::{spawn_py, try_attach};
use crate::args::{self, Headers};
use crate::{
    Extra, Int, ManualClock, Num, Text, block, opt_secs, py_bytes, secs, shared_clock, store_of, to_bytes,
    to_py,
};

type CoreOutbox = oncely::Outbox<AnyStore>;
type CoreDelivery = oncely::Delivery<AnyStore>;

fn invalid(name: &'static str, reason: impl Into<String>) -> PyErr {
    to_py(Error::invalid(name, reason))
}

/// A retry policy from its dict (or JSON text) form, e.g.
/// `{"max_attempts": 5, "backoff": {"kind": "exponential", "initial_ms": 100, "factor": 2.0,
/// "max_ms": 10000}, "jitter": "full"}`.
pub(crate) fn policy_of(py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<CorePolicy> {
    let unwritable = |why| {
        oncely::Error::invalid(
            "retry",
            format!("is not a retry policy: it cannot be written as JSON ({why})"),
        )
    };
    let Some(text) = crate::args::json_text(py, "retry", v, unwritable)? else {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "`retry` must be dict or str, not {}",
            crate::type_name(v)
        )));
    };
    let p: CorePolicy = serde_json::from_str(&text).map_err(|e| invalid("retry", e.to_string()))?;
    p.validate().map_err(to_py)?;
    Ok(p)
}

/// `lease`'s `max`: the caller's, else the core's default.
fn lease_max(max: Option<Int<args::LeaseMax>>) -> usize {
    max.map_or(oncely::defaults::LEASE_MAX, |m| m.0 as usize)
}

/// `dead_letters`'s `limit`: the caller's, else the core's default.
fn dead_letters_limit(limit: Option<Int<args::Limit>>) -> usize {
    limit.map_or(oncely::defaults::DEAD_LETTERS_LIMIT, |l| l.0 as usize)
}

/// The outcome of a settle call: `kind` is `"acked"`, `"retrying"` (at `at_ms`), `"gave_up"`
/// (dead-lettered or parked), `"returned"` (deliverable again at `at_ms`), `"extended"` (leased
/// until `at_ms`) or `"dropped"` (at-most-once: the message is lost).
#[pyclass(module = "oncely._native", frozen, get_all)]
pub struct Settled {
    kind: &'static str,
    at_ms: Option<i64>,
}

#[pymethods]
impl Settled {
    fn __repr__(&self) -> String {
        match self.at_ms {
            Some(t) => format!("Settled({:?}, at_ms={t})", self.kind),
            None => format!("Settled({:?})", self.kind),
        }
    }
}

fn settled(s: CoreSettled) -> Settled {
    Settled { kind: s.as_str(), at_ms: s.at().map(|t| t.0) }
}

/// One leased message. Settle it exactly once: `ack`, `retry`, `snooze`, `fail`, `release`
/// (`extend` keeps the lease longer). Pass `id` to the receiver as the idempotency key.
#[pyclass(module = "oncely._native", frozen)]
pub struct Delivery {
    inner: Arc<CoreDelivery>,
}

#[pymethods]
impl Delivery {
    #[getter]
    fn id(&self) -> &str {
        self.inner.id()
    }
    /// The idempotency key: the message id.
    #[getter]
    fn idempotency_key(&self) -> &str {
        self.inner.idempotency_key()
    }
    #[getter]
    fn payload(&self, py: Python<'_>) -> Py<PyBytes> {
        py_bytes(py, self.inner.payload())
    }
    #[getter]
    fn key(&self) -> Option<&str> {
        self.inner.message().key.as_deref()
    }
    #[getter]
    fn headers(&self) -> BTreeMap<String, String> {
        self.inner.message().headers.clone()
    }
    /// Which attempt this is (1 for the first).
    #[getter]
    fn attempt(&self) -> u32 {
        self.inner.attempt()
    }
    /// The lease's fencing token (0 in at-most-once).
    #[getter]
    fn token(&self) -> u64 {
        self.inner.token()
    }
    /// The error of the previous attempt.
    #[getter]
    fn last_error(&self) -> Option<&str> {
        self.inner.last_error()
    }
    #[getter]
    fn created_at_ms(&self) -> i64 {
        self.inner.message().created_at.0
    }
    #[getter]
    fn available_at_ms(&self) -> i64 {
        self.inner.message().available_at.0
    }

    /// Delivered: the message is done.
    fn ack(&self, py: Python<'_>) -> PyResult<Settled> {
        self.settle(py, Settle::Ack)
    }

    /// The attempt failed: retry by the policy, or after `after` seconds (a Retry-After hint).
    #[pyo3(signature = (error = Text::new(""), *, after = None, **extra))]
    fn retry(
        &self,
        py: Python<'_>,
        error: Text<args::ErrorText>,
        after: Option<Num>,
        extra: Option<Extra<args::RetryKw>>,
    ) -> PyResult<Settled> {
        let _ = extra;
        let after = opt_secs("after", after)?;
        self.settle(py, Settle::Retry { after, error: error.0 })
    }

    /// Not now: deliver again after `after` seconds without using up an attempt.
    #[pyo3(signature = (after, **extra))]
    fn snooze(&self, py: Python<'_>, after: Num, extra: Option<Extra<args::SnoozeKw>>) -> PyResult<Settled> {
        let _ = extra;
        let after = secs("after", after)?;
        self.settle(py, Settle::Snooze { after })
    }

    /// A permanent failure: dead-letter (or park) without retrying.
    #[pyo3(signature = (reason, **extra))]
    fn fail(
        &self,
        py: Python<'_>,
        reason: Text<args::Reason>,
        extra: Option<Extra<args::FailKw>>,
    ) -> PyResult<Settled> {
        let _ = extra;
        self.settle(py, Settle::Fail { reason: reason.0 })
    }

    /// Keeps the lease for `lease` more seconds from now.
    #[pyo3(signature = (lease, **extra))]
    fn extend(&self, py: Python<'_>, lease: Num, extra: Option<Extra<args::ExtendKw>>) -> PyResult<Settled> {
        let _ = extra;
        let lease = secs("lease", lease)?;
        self.settle(py, Settle::Extend { lease })
    }

    /// Gives the message back unattempted.
    fn release(&self, py: Python<'_>) -> PyResult<Settled> {
        self.settle(py, Settle::Release)
    }

    /// `ack`, awaitable.
    fn ack_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.settle_async(py, Settle::Ack)
    }

    /// `retry`, awaitable.
    #[pyo3(signature = (error = Text::new(""), *, after = None, **extra))]
    fn retry_async<'py>(
        &self,
        py: Python<'py>,
        error: Text<args::ErrorText>,
        after: Option<Num>,
        extra: Option<Extra<args::RetryKw>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = extra;
        let after = opt_secs("after", after)?;
        self.settle_async(py, Settle::Retry { after, error: error.0 })
    }

    /// `snooze`, awaitable.
    #[pyo3(signature = (after, **extra))]
    fn snooze_async<'py>(
        &self,
        py: Python<'py>,
        after: Num,
        extra: Option<Extra<args::SnoozeKw>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = extra;
        let after = secs("after", after)?;
        self.settle_async(py, Settle::Snooze { after })
    }

    /// `fail`, awaitable.
    #[pyo3(signature = (reason, **extra))]
    fn fail_async<'py>(
        &self,
        py: Python<'py>,
        reason: Text<args::Reason>,
        extra: Option<Extra<args::FailKw>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = extra;
        self.settle_async(py, Settle::Fail { reason: reason.0 })
    }

    /// `extend`, awaitable.
    #[pyo3(signature = (lease, **extra))]
    fn extend_async<'py>(
        &self,
        py: Python<'py>,
        lease: Num,
        extra: Option<Extra<args::ExtendKw>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = extra;
        let lease = secs("lease", lease)?;
        self.settle_async(py, Settle::Extend { lease })
    }

    /// `release`, awaitable.
    fn release_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.settle_async(py, Settle::Release)
    }

    fn __repr__(&self) -> String {
        format!(
            "Delivery(id={:?}, attempt={}, token={})",
            self.inner.id(),
            self.inner.attempt(),
            self.inner.token()
        )
    }
}

impl Delivery {
    fn settle_async<'py>(&self, py: Python<'py>, how: Settle) -> PyResult<Bound<'py, PyAny>> {
        let d = self.inner.clone();
        spawn_py(py, async move { d.settle(how).await.map(settled).map_err(to_py) })
    }

    fn settle(&self, py: Python<'_>, how: Settle) -> PyResult<Settled> {
        let d = self.inner.clone();
        block(py, async move { d.settle(how).await }).map(settled)
    }
}

/// A message as stored: `state` is `"ready"` (including scheduled for later), `"leased"` or
/// `"dead"` (`reason` set).
#[pyclass(module = "oncely._native", frozen, get_all)]
pub struct OutboxRecord {
    id: String,
    payload: Py<PyBytes>,
    key: Option<String>,
    headers: BTreeMap<String, String>,
    state: &'static str,
    attempts: u32,
    available_at_ms: i64,
    created_at_ms: i64,
    last_error: Option<String>,
    reason: Option<String>,
    seq: u64,
    lease_until_ms: Option<i64>,
}

#[pymethods]
impl OutboxRecord {
    fn __repr__(&self) -> String {
        format!("OutboxRecord(id={:?}, state={:?}, attempts={})", self.id, self.state, self.attempts)
    }
}

fn outbox_record(py: Python<'_>, r: CoreRecord) -> OutboxRecord {
    let state = r.state.as_str();
    let (reason, lease_until_ms) = match r.state {
        MessageState::Ready => (None, None),
        MessageState::Leased { lease_until, .. } => (None, Some(lease_until.0)),
        MessageState::Dead { reason } => (Some(reason), None),
    };
    let m = r.message;
    OutboxRecord {
        payload: py_bytes(py, &m.payload),
        id: m.id,
        key: m.key,
        headers: m.headers,
        state,
        attempts: m.attempts,
        available_at_ms: m.available_at.0,
        created_at_ms: m.created_at.0,
        last_error: r.last_error,
        reason,
        seq: r.seq,
        lease_until_ms,
    }
}

/// A state change of one message, passed to `Outbox.on_event` callbacks. `kind` is one of
/// `enqueued leased acked retried snoozed released lease_expired dead_lettered parked dropped
/// cancelled replayed purged`; the other fields are set for the kinds they belong to.
#[pyclass(module = "oncely._native", frozen, get_all)]
pub struct Event {
    kind: &'static str,
    id: String,
    at_ms: i64,
    attempt: Option<u32>,
    retry_at_ms: Option<i64>,
    until_ms: Option<i64>,
    error: Option<String>,
    reason: Option<String>,
}

#[pymethods]
impl Event {
    fn __repr__(&self) -> String {
        format!("Event({:?}, id={:?}, at_ms={})", self.kind, self.id, self.at_ms)
    }
}

/// The settle `settle(id, token, action, ...)` names (the core reads the action).
fn settle_of(
    action: &str,
    after: Option<Num>,
    error: Option<Text<args::ErrorText>>,
    reason: Option<Text<args::Reason>>,
    lease: Option<Num>,
) -> PyResult<Settle> {
    let fields = oncely::outbox::SettleFields {
        after: opt_secs("after", after)?,
        error: error.map(|e| e.0),
        reason: reason.map(|r| r.0),
        lease: opt_secs("lease", lease)?,
    };
    Settle::from_action(action, fields).map_err(to_py)
}

fn event(e: &CoreEvent) -> Event {
    let f = e.flat();
    Event {
        kind: f.kind,
        id: f.id,
        at_ms: f.at_ms,
        attempt: f.attempt,
        retry_at_ms: f.retry_at_ms,
        until_ms: f.until_ms,
        error: f.error,
        reason: f.reason,
    }
}

fn ordering_of(ordering: Option<&str>, poison: Option<&str>, park_after: Option<Num>) -> PyResult<Ordering> {
    Ordering::from_names(ordering, poison, opt_secs("park_after", park_after)?).map_err(to_py)
}

fn budget_of(d: &Bound<'_, PyDict>) -> PyResult<RetryBudget> {
    args::keywords(<args::RetryBudgetKw as args::Call>::WHAT, d, <args::RetryBudgetKw as args::Call>::KNOWN)?;
    let ratio = d.get_item("ratio")?.ok_or_else(|| invalid("ratio", "is required"))?.extract::<Num>()?.0;
    let mut b = RetryBudget::new(ratio);
    if let Some(v) = d.get_item("min_per_second")? {
        b.min_per_second = v.extract::<Num>()?.0;
    }
    if let Some(v) = d.get_item("burst")? {
        b.burst = v.extract::<Num>()?.0;
    }
    Ok(b)
}

pub(crate) fn new_message(
    payload: Vec<u8>,
    id: Option<Text<args::Id>>,
    key: Option<Text<args::Key>>,
    headers: Option<Headers>,
    delay: Option<Num>,
) -> PyResult<NewMessage> {
    let mut m = NewMessage::new(payload);
    if let Some(id) = id {
        m = m.id(id.0);
    }
    if let Some(k) = key {
        m = m.key(k.0);
    }
    for (k, v) in headers.into_iter().flat_map(|h| h.0) {
        m = m.header(k, v);
    }
    if let Some(d) = opt_secs("delay", delay)? {
        m = m.delay(d);
    }
    Ok(m)
}

/// The messages of `enqueue_many`: bytes (the payload) or dicts with `payload` and optional `id`,
/// `key`, `headers`, `delay`.
pub(crate) fn messages_of(messages: &Bound<'_, PyList>) -> PyResult<Vec<NewMessage>> {
    let mut batch = Vec::with_capacity(messages.len());
    for item in messages.iter() {
        if let Ok(d) = item.cast::<PyDict>() {
            args::keywords(<args::EnqueueKw as args::Call>::WHAT, d, <args::EnqueueKw as args::Call>::KNOWN)?;
            let payload = match d.get_item("payload")? {
                Some(p) => to_bytes("payload", &p)?,
                None => Vec::new(),
            };
            let i = batch.len();
            let get = |k: &str| d.get_item(k).map(|v| v.filter(|v| !v.is_none()));
            batch.push(new_message(
                payload,
                get("id")?.map(|v| args::item_field("message", i, "id", &v)).transpose()?,
                get("key")?.map(|v| args::item_field("message", i, "key", &v)).transpose()?,
                get("headers")?.map(|v| args::item_field("message", i, "headers", &v)).transpose()?,
                get("delay")?.map(|v| args::item_field("message", i, "delay", &v)).transpose()?,
            )?);
        } else {
            batch.push(NewMessage::new(to_bytes("message", &item)?));
        }
    }
    Ok(batch)
}

/// `Outbox.stats` as a dict.
fn stats_dict(py: Python<'_>, s: oncely::outbox::Stats) -> PyResult<Py<PyDict>> {
    let d = PyDict::new(py);
    d.set_item("ready", s.queue.ready)?;
    d.set_item("scheduled", s.queue.scheduled)?;
    d.set_item("leased", s.queue.leased)?;
    d.set_item("dead", s.queue.dead)?;
    d.set_item("oldest_age_ms", s.oldest_age.map(|a| a.as_millis() as u64))?;
    d.set_item("enqueued", s.counters.enqueued)?;
    d.set_item("delivered", s.counters.delivered)?;
    d.set_item("retried", s.counters.retried)?;
    d.set_item("dead_lettered", s.counters.dead_lettered)?;
    d.set_item("dropped", s.counters.dropped)?;
    d.set_item("attempts_settled", s.counters.attempts_settled)?;
    d.set_item("mean_attempt_latency", s.counters.mean_attempt_latency().map(|d| d.as_secs_f64()))?;
    Ok(d.unbind())
}

pub(crate) fn enqueued(e: Enqueued) -> &'static str {
    e.as_str()
}

/// The sender's durable retry queue named `queue`. `store` is a location or an opened `Store`;
/// `retry` is a retry-policy dict (see `RetryPolicy`); durations are seconds.
#[pyclass(module = "oncely._native", frozen, subclass)]
pub struct Outbox {
    pub(crate) inner: CoreOutbox,
}

#[pymethods]
impl Outbox {
    #[new]
    #[pyo3(signature = (store, queue, *, mode = None, retry = None, lease = None, ordering = None, poison = None, park_after = None, seed = None, retry_budget = None, max_payload_bytes = None, dedup_window = None, clock = None, **extra),
        text_signature = "(store, queue, *, mode=None, retry=None, lease=None, ordering=None, poison=None, park_after=None, seed=None, retry_budget=None, max_payload_bytes=None, dedup_window=None, clock=None, **extra)")]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        store: &Bound<'_, PyAny>,
        queue: Text<args::Queue>,
        mode: Option<Text<args::ModeName>>,
        retry: Option<&Bound<'_, PyAny>>,
        lease: Option<Num>,
        ordering: Option<Text<args::OrderingName>>,
        poison: Option<Text<args::Poison>>,
        park_after: Option<Num>,
        seed: Option<Int<args::Seed>>,
        retry_budget: Option<&Bound<'_, PyDict>>,
        max_payload_bytes: Option<Int<args::MaxPayloadBytes>>,
        dedup_window: Option<Num>,
        clock: Option<&Bound<'_, ManualClock>>,
        extra: Option<Extra<args::OutboxKw>>,
    ) -> PyResult<Self> {
        let _ = extra;
        let mut cfg = OutboxConfig::new(queue.0).ordering(ordering_of(
            ordering.as_deref(),
            poison.as_deref(),
            park_after,
        )?);
        if let Some(s) = seed {
            cfg = cfg.seed(s.0);
        }
        if let Some(m) = crate::mode(mode.as_deref())? {
            cfg = cfg.mode(m);
        }
        if let Some(r) = retry {
            if !r.is_none() {
                cfg = cfg.retry(policy_of(py, r)?);
            }
        }
        if let Some(l) = opt_secs("lease", lease)? {
            cfg = cfg.lease(l);
        }
        if let Some(b) = retry_budget {
            cfg = cfg.retry_budget(budget_of(b)?);
        }
        if let Some(n) = max_payload_bytes {
            cfg.max_payload_bytes = n.0 as usize;
        }
        if let Some(w) = opt_secs("dedup_window", dedup_window)? {
            cfg = cfg.dedup_window(w);
        }
        let store = store_of(py, store)?;
        let clock = shared_clock(clock);
        let inner = CoreOutbox::with_clock(store, cfg, clock).map_err(to_py)?;
        Ok(Outbox { inner })
    }

    /// The queue's name.
    #[getter]
    fn queue(&self) -> &str {
        &self.inner.config().queue
    }

    /// The outbox's clock's time, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64 {
        self.inner.now().0
    }

    /// Adds a message unless its id is known. Returns `"queued"`, `"already_queued"` (the same id
    /// and payload is in the queue) or `"already_delivered"` (delivered within the outbox's
    /// `dedup_window`); the same id with another payload raises `Conflict`. `id` defaults to a fresh UUIDv7; `delay` is in seconds.
    #[pyo3(signature = (payload, *, id = None, key = None, headers = None, delay = None, **extra))]
    fn enqueue(
        &self,
        py: Python<'_>,
        payload: &Bound<'_, PyAny>,
        id: Option<Text<args::Id>>,
        key: Option<Text<args::Key>>,
        headers: Option<Headers>,
        delay: Option<Num>,
        extra: Option<Extra<args::EnqueueKw>>,
    ) -> PyResult<&'static str> {
        let _ = extra;
        let m = new_message(to_bytes("payload", payload)?, id, key, headers, delay)?;
        let o = self.inner.clone();
        block(py, async move { o.enqueue(m).await }).map(enqueued)
    }

    /// Adds many messages in one commit. Each is bytes (the payload) or a dict with `payload` and
    /// optional `id`, `key`, `headers`, `delay`. One bad message fails the call; nothing is
    /// written then.
    #[pyo3(signature = (messages, **extra))]
    fn enqueue_many(
        &self,
        py: Python<'_>,
        messages: &Bound<'_, PyList>,
        extra: Option<Extra<args::EnqueueManyKw>>,
    ) -> PyResult<Vec<&'static str>> {
        let _ = extra;
        let batch = messages_of(messages)?;
        let o = self.inner.clone();
        block(py, async move { o.enqueue_many(batch).await }).map(|v| v.into_iter().map(enqueued).collect())
    }

    /// `enqueue_many`, awaitable.
    #[pyo3(signature = (messages, **extra))]
    fn enqueue_many_async<'py>(
        &self,
        py: Python<'py>,
        messages: &Bound<'_, PyList>,
        extra: Option<Extra<args::EnqueueManyKw>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = extra;
        let batch = messages_of(messages)?;
        let o = self.inner.clone();
        spawn_py(py, async move {
            o.enqueue_many(batch)
                .await
                .map(|v| v.into_iter().map(enqueued).collect::<Vec<_>>())
                .map_err(to_py)
        })
    }

    /// `enqueue`, awaitable.
    #[pyo3(signature = (payload, *, id = None, key = None, headers = None, delay = None, **extra))]
    fn enqueue_async<'py>(
        &self,
        py: Python<'py>,
        payload: &Bound<'_, PyAny>,
        id: Option<Text<args::Id>>,
        key: Option<Text<args::Key>>,
        headers: Option<Headers>,
        delay: Option<Num>,
        extra: Option<Extra<args::EnqueueKw>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = extra;
        let m = new_message(to_bytes("payload", payload)?, id, key, headers, delay)?;
        let o = self.inner.clone();
        spawn_py(py, async move { o.enqueue(m).await.map(enqueued).map_err(to_py) })
    }

    /// `lease`, awaitable.
    #[pyo3(signature = (max = None, **extra))]
    fn lease_async<'py>(
        &self,
        py: Python<'py>,
        max: Option<Int<args::LeaseMax>>,
        extra: Option<Extra<args::LeaseKw>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = extra;
        let o = self.inner.clone();
        let max = lease_max(max);
        spawn_py(py, async move {
            let ds = o.lease(max).await.map_err(to_py)?;
            Ok(ds.into_iter().map(|d| Delivery { inner: Arc::new(d) }).collect::<Vec<_>>())
        })
    }

    /// Leases up to `max` due messages (left out or `None`: the core's default,
    /// `oncely::defaults::LEASE_MAX`).
    #[pyo3(signature = (max = None, **extra))]
    fn lease(
        &self,
        py: Python<'_>,
        max: Option<Int<args::LeaseMax>>,
        extra: Option<Extra<args::LeaseKw>>,
    ) -> PyResult<Vec<Delivery>> {
        let _ = extra;
        let max = lease_max(max);
        let o = self.inner.clone();
        let ds = block(py, async move { o.lease(max).await })?;
        Ok(ds.into_iter().map(|d| Delivery { inner: Arc::new(d) }).collect())
    }

    /// Settles the delivery of `id` held with fencing `token` (when the `Delivery` object is
    /// gone, e.g. the token travelled elsewhere). `action` is `ack`, `retry`, `snooze`, `fail`,
    /// `extend` or `release`; `after`/`lease` in seconds.
    #[pyo3(signature = (id, token, action, *, after = None, error = None, reason = None, lease = None, **extra))]
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &self,
        py: Python<'_>,
        id: Text<args::Id>,
        token: Int<args::Token>,
        action: Text<args::Action>,
        after: Option<Num>,
        error: Option<Text<args::ErrorText>>,
        reason: Option<Text<args::Reason>>,
        lease: Option<Num>,
        extra: Option<Extra<args::SettleKw>>,
    ) -> PyResult<Settled> {
        let _ = extra;
        let how = settle_of(&action, after, error, reason, lease)?;
        let token = token.0;
        let o = self.inner.clone();
        block(py, async move { o.settle(&id, token, how).await }).map(settled)
    }

    /// `settle`, awaitable.
    #[pyo3(signature = (id, token, action, *, after = None, error = None, reason = None, lease = None, **extra))]
    #[allow(clippy::too_many_arguments)]
    fn settle_async<'py>(
        &self,
        py: Python<'py>,
        id: Text<args::Id>,
        token: Int<args::Token>,
        action: Text<args::Action>,
        after: Option<Num>,
        error: Option<Text<args::ErrorText>>,
        reason: Option<Text<args::Reason>>,
        lease: Option<Num>,
        extra: Option<Extra<args::SettleKw>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = extra;
        let how = settle_of(&action, after, error, reason, lease)?;
        let (o, token) = (self.inner.clone(), token.0);
        spawn_py(py, async move { o.settle(&id, token, how).await.map(settled).map_err(to_py) })
    }

    /// Removes a queued message before delivery: `"cancelled"`, `"in_flight"` or `"not_found"`.
    #[pyo3(signature = (id, **extra))]
    fn cancel(
        &self,
        py: Python<'_>,
        id: Text<args::Id>,
        extra: Option<Extra<args::CancelKw>>,
    ) -> PyResult<&'static str> {
        let _ = extra;
        let o = self.inner.clone();
        block(py, async move { o.cancel(&id).await }).map(Cancelled::as_str)
    }

    /// `cancel`, awaitable.
    #[pyo3(signature = (id, **extra))]
    fn cancel_async<'py>(
        &self,
        py: Python<'py>,
        id: Text<args::Id>,
        extra: Option<Extra<args::CancelKw>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = extra;
        let o = self.inner.clone();
        spawn_py(py, async move { o.cancel(&id).await.map(Cancelled::as_str).map_err(to_py) })
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
        let o = self.inner.clone();
        spawn_py(py, async move {
            let r = o.get(&id).await.map_err(to_py)?;
            try_attach(|py| Ok(r.map(|r| outbox_record(py, r))))
        })
    }

    /// `dead_letters`, awaitable.
    #[pyo3(signature = (after_seq = None, limit = None, **extra))]
    fn dead_letters_async<'py>(
        &self,
        py: Python<'py>,
        after_seq: Option<Int<args::AfterSeq>>,
        limit: Option<Int<args::Limit>>,
        extra: Option<Extra<args::DeadLettersKw>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = extra;
        let (after_seq, limit) = (after_seq.map(|s| s.0), dead_letters_limit(limit));
        let o = self.inner.clone();
        spawn_py(py, async move {
            let rs = o.dead_letters(after_seq, limit).await.map_err(to_py)?;
            try_attach(|py| Ok(rs.into_iter().map(|r| outbox_record(py, r)).collect::<Vec<_>>()))
        })
    }

    /// `replay`, awaitable.
    #[pyo3(signature = (id, **extra))]
    fn replay_async<'py>(
        &self,
        py: Python<'py>,
        id: Text<args::Id>,
        extra: Option<Extra<args::ReplayKw>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = extra;
        let o = self.inner.clone();
        spawn_py(py, async move { o.replay(&id).await.map_err(to_py) })
    }

    /// `purge_dead`, awaitable.
    #[pyo3(signature = (ids = None, **extra))]
    fn purge_dead_async<'py>(
        &self,
        py: Python<'py>,
        ids: Option<Vec<Text<args::Ids>>>,
        extra: Option<Extra<args::PurgeDeadKw>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = extra;
        let ids = ids.map(|ids| ids.into_iter().map(|id| id.0).collect::<Vec<_>>());
        let o = self.inner.clone();
        spawn_py(py, async move { o.purge_dead(ids).await.map_err(to_py) })
    }

    /// The message `id` in any state, or None.
    #[pyo3(signature = (id, **extra))]
    fn get(
        &self,
        py: Python<'_>,
        id: Text<args::Id>,
        extra: Option<Extra<args::GetKw>>,
    ) -> PyResult<Option<OutboxRecord>> {
        let _ = extra;
        let o = self.inner.clone();
        let r = block(py, async move { o.get(&id).await })?;
        Ok(r.map(|r| outbox_record(py, r)))
    }

    /// Dead letters in queue order, `limit` at a time (left out or `None`: the core's default,
    /// `oncely::defaults::DEAD_LETTERS_LIMIT`), after the `seq` of the last one seen.
    #[pyo3(signature = (after_seq = None, limit = None, **extra))]
    fn dead_letters(
        &self,
        py: Python<'_>,
        after_seq: Option<Int<args::AfterSeq>>,
        limit: Option<Int<args::Limit>>,
        extra: Option<Extra<args::DeadLettersKw>>,
    ) -> PyResult<Vec<OutboxRecord>> {
        let _ = extra;
        let (after_seq, limit) = (after_seq.map(|s| s.0), dead_letters_limit(limit));
        let o = self.inner.clone();
        let rs = block(py, async move { o.dead_letters(after_seq, limit).await })?;
        Ok(rs.into_iter().map(|r| outbox_record(py, r)).collect())
    }

    /// Puts a dead letter back in the queue with attempts reset; False if `id` is not one.
    #[pyo3(signature = (id, **extra))]
    fn replay(
        &self,
        py: Python<'_>,
        id: Text<args::Id>,
        extra: Option<Extra<args::ReplayKw>>,
    ) -> PyResult<bool> {
        let _ = extra;
        let o = self.inner.clone();
        block(py, async move { o.replay(&id).await })
    }

    /// Deletes the named dead letters, or all with None; returns how many went.
    #[pyo3(signature = (ids = None, **extra))]
    fn purge_dead(
        &self,
        py: Python<'_>,
        ids: Option<Vec<Text<args::Ids>>>,
        extra: Option<Extra<args::PurgeDeadKw>>,
    ) -> PyResult<u64> {
        let _ = extra;
        let ids = ids.map(|ids| ids.into_iter().map(|id| id.0).collect::<Vec<_>>());
        let o = self.inner.clone();
        block(py, async move { o.purge_dead(ids).await })
    }

    /// The queue's counts (all processes) and this process's counters, as a dict.
    fn stats(&self, py: Python<'_>) -> PyResult<Py<PyDict>> {
        let o = self.inner.clone();
        let s = block(py, async move { o.stats().await })?;
        stats_dict(py, s)
    }

    /// `stats`, awaitable.
    fn stats_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let o = self.inner.clone();
        spawn_py(py, async move {
            let s = o.stats().await.map_err(to_py)?;
            try_attach(|py| stats_dict(py, s))
        })
    }

    /// Calls `callback(event)` with every state change after it committed, in this process.
    /// An exception from the callback is reported as unraisable and otherwise ignored.
    #[pyo3(signature = (callback, **extra))]
    fn on_event(&self, callback: &Bound<'_, PyAny>, extra: Option<Extra<args::OnEventKw>>) -> PyResult<()> {
        let _ = extra;
        if !callback.is_callable() {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "the callback must be callable, not {}",
                crate::type_name(callback)
            )));
        }
        let callback = Arc::new(callback.clone().unbind());
        let listener = move |e: &CoreEvent| {
            crate::aio::attach(|py| {
                let r = Py::new(py, event(e)).and_then(|ev| callback.call1(py, (ev,)));
                if let Err(err) = r {
                    err.write_unraisable(py, None);
                }
            });
        };
        self.inner.on_event(listener);
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!("Outbox(queue={:?}, mode={:?})", self.inner.config().queue, self.inner.config().mode.as_str())
    }
}

/// A retry policy (its dict or JSON form), for computing its delays and decisions. Delays and
/// times are whole milliseconds here, as in the policy's own form.
#[pyclass(module = "oncely._native", frozen)]
pub struct RetryPolicy {
    inner: CorePolicy,
}

#[pymethods]
impl RetryPolicy {
    #[new]
    #[pyo3(signature = (policy, **extra))]
    fn new(
        py: Python<'_>,
        policy: &Bound<'_, PyAny>,
        extra: Option<Extra<args::RetryPolicyKw>>,
    ) -> PyResult<Self> {
        let _ = extra;
        Ok(RetryPolicy { inner: policy_of(py, policy)? })
    }

    /// The delays (ms) before attempts 2..=n+1 from a fresh stream seeded with `seed`.
    #[pyo3(signature = (seed, n, **extra))]
    fn schedule_ms(
        &self,
        seed: Int<args::Seed>,
        n: Int<args::Count>,
        extra: Option<Extra<args::ScheduleKw>>,
    ) -> PyResult<Vec<u64>> {
        let _ = extra;
        let schedule = self.inner.schedule_checked(seed.0, n.0).map_err(to_py)?;
        Ok(schedule.iter().map(|d| d.as_millis() as u64).collect())
    }

    /// The decision after a failed attempt: `("retry_in_ms", n)` or `("give_up", why)` with `why`
    /// `"max_attempts"` or `"deadline"`.
    #[pyo3(signature = (*, seed, attempts, first_attempt_at_ms, now_ms, last_delay_ms = None, retry_after_ms = None, **extra))]
    fn decide_ms(
        &self,
        seed: Int<args::Seed>,
        attempts: Int<args::Attempts>,
        first_attempt_at_ms: Int<args::FirstAttemptAtMs>,
        now_ms: Int<args::NowMs>,
        last_delay_ms: Option<Int<args::LastDelayMs>>,
        retry_after_ms: Option<Int<args::RetryAfterMs>>,
        extra: Option<Extra<args::DecideKw>>,
    ) -> (&'static str, Py<PyAny>) {
        let _ = extra;
        let (seed, attempts) = (seed.0, attempts.0 as u32);
        let (first_attempt_at_ms, now_ms) = (first_attempt_at_ms.0 as i64, now_ms.0 as i64);
        let (last_delay_ms, retry_after_ms) = (last_delay_ms.map(|v| v.0), retry_after_ms.map(|v| v.0));
        let history = AttemptHistory {
            attempts,
            first_attempt_at: Timestamp(first_attempt_at_ms),
            last_delay: last_delay_ms.map(Duration::from_millis),
        };
        let mut rng = JitterRng::new(seed);
        let d = self.inner.decide(
            &history,
            Timestamp(now_ms),
            retry_after_ms.map(Duration::from_millis),
            &mut rng,
        );
        Python::attach(|py| match d {
            RetryDecision::RetryIn(d) => (
                "retry_in_ms",
                u64::try_from(d.as_millis())
                    .unwrap_or(u64::MAX)
                    .into_pyobject(py)
                    .unwrap()
                    .into_any()
                    .unbind(),
            ),
            RetryDecision::GiveUp(why) => {
                let s = serde_json::to_value(why)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                ("give_up", PyString::new(py, &s).into_any().unbind())
            }
        })
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Outbox>()?;
    m.add_class::<Delivery>()?;
    m.add_class::<Settled>()?;
    m.add_class::<OutboxRecord>()?;
    m.add_class::<Event>()?;
    m.add_class::<RetryPolicy>()?;
    Ok(())
}
