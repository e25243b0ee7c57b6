//! The outbox half of the runner: the `outbox` configuration, the outbox steps, their outcomes and
//! their one canonical rendering (README, "Outbox steps").

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oncely::backoff::RetryPolicy;
use oncely::outbox::{
    Cancelled, Enqueued, Event, EventKind, MessageState, Ordering, OutboxRecord, PoisonPolicy, RetryBudget,
    Settle, Settled, Stats,
};
use oncely::{
    Clock, Delivery, ErrorCode, Message, Mode, NewMessage, Outbox, OutboxConfig, OutboxStore, Timestamp,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Backend, CLOCK_START_MS, Outcome, Run, Step, delay_bounds};

/// The queue of the outbox when a scenario does not name one.
pub const DEFAULT_QUEUE: &str = "default";

/// A scenario's outbox configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSpec {
    /// The queue the steps use unless a step names another; default [`DEFAULT_QUEUE`].
    pub queue: Option<String>,
    /// `at_most_once`, `at_least_once` or `exactly_once` (default).
    pub mode: Option<String>,
    /// How long a lease lasts (default 30,000 ms).
    pub lease_ms: Option<u64>,
    /// The serde form of `RetryPolicy` (default: the core's default policy).
    pub retry: Option<Value>,
    /// `"unordered"` (default) or `{"fifo_per_key": "block" | "dead_letter" | {"park_ms": n}}`.
    pub ordering: Option<Value>,
    /// The jitter seed (default 0).
    pub seed: Option<u64>,
    /// `{ratio, min_per_second?, burst?}` (defaults 10 and 100); none by default.
    pub retry_budget: Option<BudgetSpec>,
    /// The largest payload accepted (default 1 MiB).
    pub max_payload_bytes: Option<usize>,
    /// How long a delivered id is remembered against a second enqueue (default 300,000 ms; 0
    /// remembers nothing).
    pub dedup_window_ms: Option<u64>,
}

/// A retry budget as a scenario writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSpec {
    /// Retries earned per first attempt.
    pub ratio: f64,
    /// Retries allowed per second regardless of traffic (default 10).
    pub min_per_second: Option<f64>,
    /// The most retries saved up (default 100).
    pub burst: Option<f64>,
}

/// One message of an `enqueue_many` (and the fields of `enqueue`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageSpec {
    /// The id (required in scenarios, so that later steps can name it).
    pub id: String,
    /// The payload (UTF-8); default empty.
    pub payload: Option<String>,
    /// The ordering key.
    pub key: Option<String>,
    /// Headers.
    pub headers: Option<BTreeMap<String, String>>,
    /// Deliverable no earlier than this long after the enqueue.
    pub delay_ms: Option<u64>,
}

/// The actual outcome of an outbox step.
#[derive(Debug)]
pub enum OutboxOutcome {
    /// An oncely error, by its stable code.
    Error(ErrorCode),
    /// `enqueue`.
    Enqueued(Enqueued),
    /// `enqueue_many`.
    EnqueuedMany(Vec<Enqueued>),
    /// `lease`: (id, attempt, fenced) in lease order.
    Leased(Vec<(String, u32, bool)>),
    /// A settle step.
    Settled(Settled),
    /// `inspect`: what the handler of a delivery sees.
    Delivery(Message, Option<String>),
    /// `cancel`.
    Cancel(Cancelled),
    /// `get_message`.
    Message(Option<OutboxRecord>),
    /// `dead_letters`: ids in queue order.
    Dead(Vec<String>),
    /// `replay`.
    Replayed(bool),
    /// `purge_dead`.
    Purged(u64),
    /// `stats`.
    Stats(Stats),
    /// `counters`.
    Counters(Stats),
    /// `events`.
    Events(Vec<Event>),
    /// `work`: one `run_until_idle`.
    Worked(oncely::worker::RunSummary),
}

/// A time as an offset in milliseconds from the scenario's clock start.
fn off(t: Timestamp) -> i64 {
    t.0 - CLOCK_START_MS
}

fn enqueued(e: Enqueued) -> &'static str {
    e.as_str()
}

fn render_event(e: &Event) -> Value {
    let extra = match &e.kind {
        EventKind::Leased { attempt } => json!({"attempt": attempt}),
        EventKind::Retried { at, error } => json!({"retry_at_ms": off(*at), "error": error}),
        EventKind::Snoozed { until } | EventKind::Parked { until } => json!({"until_ms": off(*until)}),
        EventKind::DeadLettered { reason } => json!({"reason": reason}),
        _ => json!({}),
    };
    let kind = e.kind.name();
    let mut v = json!({"kind": kind, "id": e.id});
    if let (Value::Object(m), Value::Object(x)) = (&mut v, extra) {
        m.extend(x);
    }
    v
}

/// Renders an outbox outcome as the canonical JSON that scenario `expect`s are compared with.
pub fn render(o: &OutboxOutcome) -> Value {
    match o {
        OutboxOutcome::Error(code) => json!({"error": code.as_str()}),
        OutboxOutcome::Enqueued(e) => json!({"enqueued": enqueued(*e)}),
        OutboxOutcome::EnqueuedMany(es) => {
            json!({"enqueued": es.iter().map(|e| enqueued(*e)).collect::<Vec<_>>()})
        }
        OutboxOutcome::Leased(ds) => json!({"leased": ds
            .iter()
            .map(|(id, attempt, fenced)| json!({"id": id, "attempt": attempt, "fenced": fenced}))
            .collect::<Vec<_>>()}),
        OutboxOutcome::Settled(s) => json!({"settled": match s {
            Settled::Acked => json!("acked"),
            Settled::Retrying { at } => json!({"retrying_at_ms": off(*at)}),
            Settled::GaveUp => json!("gave_up"),
            Settled::Returned { at } => json!({"returned_at_ms": off(*at)}),
            Settled::Extended { until } => json!({"extended_until_ms": off(*until)}),
            Settled::Dropped => json!("dropped"),
        }}),
        OutboxOutcome::Delivery(m, last_error) => json!({
            "id": m.id,
            "attempt": m.attempts,
            "payload": String::from_utf8_lossy(&m.payload),
            "key": m.key,
            "headers": m.headers,
            "last_error": last_error,
        }),
        OutboxOutcome::Cancel(c) => json!({"cancel": match c {
            Cancelled::Cancelled => "cancelled",
            Cancelled::InFlight => "in_flight",
            Cancelled::NotFound => "not_found",
        }}),
        OutboxOutcome::Message(None) => json!({"message": null}),
        OutboxOutcome::Message(Some(r)) => {
            let (state, reason) = match &r.state {
                MessageState::Ready => ("ready", None),
                MessageState::Leased { .. } => ("leased", None),
                MessageState::Dead { reason } => ("dead", Some(reason.clone())),
            };
            json!({"message": {
                "state": state,
                "attempts": r.message.attempts,
                "available_at_ms": off(r.message.available_at),
                "last_error": r.last_error,
                "reason": reason,
            }})
        }
        OutboxOutcome::Dead(ids) => json!({"dead": ids}),
        OutboxOutcome::Worked(s) => {
            json!({"attempts": s.attempts, "succeeded": s.succeeded, "failed": s.failed})
        }
        OutboxOutcome::Replayed(b) => json!({"replayed": b}),
        OutboxOutcome::Purged(n) => json!({"purged": n}),
        OutboxOutcome::Stats(s) => json!({
            "ready": s.queue.ready,
            "scheduled": s.queue.scheduled,
            "leased": s.queue.leased,
            "dead": s.queue.dead,
            "oldest_age_ms": s.oldest_age.map(|d| d.as_millis() as u64),
        }),
        OutboxOutcome::Counters(s) => json!({
            "enqueued": s.counters.enqueued,
            "delivered": s.counters.delivered,
            "retried": s.counters.retried,
            "dead_lettered": s.counters.dead_lettered,
            "dropped": s.counters.dropped,
        }),
        OutboxOutcome::Events(es) => Value::Array(es.iter().map(render_event).collect()),
    }
}

fn parse_ordering(v: &Value) -> Result<Ordering, String> {
    let bad = || format!("outbox.ordering: expected \"unordered\" or {{\"fifo_per_key\": ...}}, got {v}");
    match v {
        Value::String(s) if s == "unordered" => Ok(Ordering::Unordered),
        Value::Object(m) if m.len() == 1 => {
            let poison = m.get("fifo_per_key").ok_or_else(bad)?;
            let policy = match poison {
                Value::String(s) if s == "block" => PoisonPolicy::Block,
                Value::String(s) if s == "dead_letter" => PoisonPolicy::DeadLetter,
                Value::Object(p) if p.len() == 1 => {
                    let ms = p.get("park_ms").and_then(Value::as_u64).ok_or_else(bad)?;
                    PoisonPolicy::Park { after: Duration::from_millis(ms) }
                }
                _ => return Err(bad()),
            };
            Ok(Ordering::FifoPerKey(policy))
        }
        _ => Err(bad()),
    }
}

/// The configuration from a spec: `Err(String)` for a malformed scenario; `Ok(Err(code))` when
/// the configuration is well-formed but the core refuses it (every outbox step then answers
/// that error).
fn config(spec: &OutboxSpec) -> Result<Result<OutboxConfig, ErrorCode>, String> {
    let mut cfg = OutboxConfig::new(spec.queue.clone().unwrap_or_else(|| DEFAULT_QUEUE.into()));
    if let Some(m) = &spec.mode {
        cfg = cfg.mode(m.parse::<Mode>().map_err(|e| format!("outbox.mode: {e}"))?);
    }
    if let Some(ms) = spec.lease_ms {
        cfg = cfg.lease(Duration::from_millis(ms));
    }
    if let Some(o) = &spec.ordering {
        cfg = cfg.ordering(parse_ordering(o)?);
    }
    if let Some(seed) = spec.seed {
        cfg = cfg.seed(seed);
    }
    if let Some(b) = &spec.retry_budget {
        let mut budget = RetryBudget::new(b.ratio);
        if let Some(v) = b.min_per_second {
            budget.min_per_second = v;
        }
        if let Some(v) = b.burst {
            budget.burst = v;
        }
        cfg = cfg.retry_budget(budget);
    }
    if let Some(n) = spec.max_payload_bytes {
        cfg.max_payload_bytes = n;
    }
    if let Some(ms) = spec.dedup_window_ms {
        cfg = cfg.dedup_window(Duration::from_millis(ms));
    }
    if let Some(p) = &spec.retry {
        match serde_json::from_value::<RetryPolicy>(p.clone()) {
            Ok(p) => cfg = cfg.retry(p),
            Err(_) => return Ok(Err(ErrorCode::InvalidArgument)),
        }
    }
    Ok(Ok(cfg))
}

/// A delivery the scenario keeps under a name. `live` is the core's [`Delivery`] while the
/// process that leased it runs; after a `restart` only its id and token remain, and it is
/// settled with [`Outbox::settle`] (a stale token from a crashed worker).
pub(crate) struct Held<S: OutboxStore> {
    queue: String,
    token: u64,
    message: Message,
    last_error: Option<String>,
    live: Option<Delivery<S>>,
}

/// The outbox side of a run.
pub(crate) struct OutboxState<S: OutboxStore> {
    config: Result<OutboxConfig, ErrorCode>,
    outboxes: HashMap<String, Outbox<S>>,
    held: HashMap<String, Held<S>>,
    events: Arc<Mutex<Vec<Event>>>,
    /// The largest fencing token handed out per (queue, id).
    tokens: HashMap<(String, String), u64>,
    /// The last retry delay seen per (queue, id, attempt), for the decorrelated bounds.
    delays: HashMap<(String, String, u32), u64>,
}

impl<S: OutboxStore> OutboxState<S> {
    pub(crate) fn new(spec: &OutboxSpec) -> Result<Self, String> {
        Ok(OutboxState {
            config: config(spec)?,
            outboxes: HashMap::new(),
            held: HashMap::new(),
            events: Arc::new(Mutex::new(Vec::new())),
            tokens: HashMap::new(),
            delays: HashMap::new(),
        })
    }

    /// A crash: every outbox is dropped, and every delivery keeps only its id and token.
    pub(crate) fn crash(&mut self) {
        self.outboxes.clear();
        for h in self.held.values_mut() {
            h.live = None;
        }
    }
}

/// How a settle step settles.
enum How {
    Ack,
    Retry(Option<Duration>, String),
    Snooze(Duration),
    Fail(String),
    Extend(Duration),
    Release,
}

fn new_message(m: &MessageSpec) -> NewMessage {
    let mut nm = NewMessage::new(m.payload.clone().unwrap_or_default().into_bytes()).id(m.id.clone());
    if let Some(k) = &m.key {
        nm = nm.key(k.clone());
    }
    for (k, v) in m.headers.iter().flatten() {
        nm = nm.header(k.clone(), v.clone());
    }
    if let Some(ms) = m.delay_ms {
        nm = nm.delay(Duration::from_millis(ms));
    }
    nm
}

impl<B: Backend> Run<B> {
    fn queue_of(&self, queue: &Option<String>) -> String {
        queue.clone().unwrap_or_else(|| match &self.out.config {
            Ok(c) => c.queue.clone(),
            Err(_) => DEFAULT_QUEUE.into(),
        })
    }

    /// The outbox of `queue` (opened on first use, over the shared store and clock, with the
    /// event collector attached).
    fn outbox(&mut self, queue: &str) -> Result<Result<Outbox<B::Store>, ErrorCode>, String> {
        if let Some(o) = self.out.outboxes.get(queue) {
            return Ok(Ok(o.clone()));
        }
        let mut config = match &self.out.config {
            Ok(c) => c.clone(),
            Err(code) => return Ok(Err(*code)),
        };
        config.queue = queue.to_owned();
        let store = self.backend.store()?;
        match Outbox::with_clock(store, config, Arc::new(self.clock.clone())) {
            Ok(o) => {
                let sink = self.out.events.clone();
                o.on_event(move |e| sink.lock().expect("event sink").push(e.clone()));
                self.out.outboxes.insert(queue.to_owned(), o.clone());
                Ok(Ok(o))
            }
            Err(e) => Ok(Err(e.code())),
        }
    }

    fn note(&mut self, msg: String) {
        self.violation.get_or_insert(msg);
    }

    async fn settle(&mut self, name: &str, how: How) -> Result<OutboxOutcome, String> {
        let held = self
            .out
            .held
            .get(name)
            .ok_or_else(|| format!("scenario error: no delivery named `{name}` is held"))?;
        let (queue, id, token, attempt) =
            (held.queue.clone(), held.message.id.clone(), held.token, held.message.attempts);
        let hinted = matches!(how, How::Retry(Some(_), _));
        let is_retry = matches!(how, How::Retry(..));
        let result = match &held.live {
            Some(d) => match how {
                How::Ack => d.ack().await.map(|()| Settled::Acked),
                How::Retry(after, error) => d.retry(after, error).await,
                How::Snooze(after) => d.snooze(after).await,
                How::Fail(reason) => d.fail(reason).await,
                How::Extend(lease) => d.extend(lease).await,
                How::Release => d.release().await,
            },
            None => {
                let outbox = match self.outbox(&queue)? {
                    Ok(o) => o,
                    Err(code) => return Ok(OutboxOutcome::Error(code)),
                };
                let how = match how {
                    How::Ack => Settle::Ack,
                    How::Retry(after, error) => Settle::Retry { after, error },
                    How::Snooze(after) => Settle::Snooze { after },
                    How::Fail(reason) => Settle::Fail { reason },
                    How::Extend(lease) => Settle::Extend { lease },
                    How::Release => Settle::Release,
                };
                outbox.settle(&id, token, how).await
            }
        };
        let settled = match result {
            Ok(s) => s,
            Err(e) => return Ok(OutboxOutcome::Error(e.code())),
        };
        if let (true, Settled::Retrying { at }) = (is_retry, settled) {
            let delay = at.0 - self.clock.now().0;
            let delay = u64::try_from(delay).unwrap_or(0);
            if let (false, Ok(cfg)) = (hinted, &self.out.config) {
                let prev = if attempt <= 1 {
                    Some(None)
                } else {
                    self.out.delays.get(&(queue.clone(), id.clone(), attempt - 1)).map(|d| Some(*d))
                };
                let (lo, hi) = delay_bounds(&cfg.retry, attempt, prev);
                if (delay as f64) < lo || (delay as f64) > hi {
                    self.note(format!(
                        "invariant: the retry of `{id}` after attempt {attempt} is scheduled {delay} ms \
                         later, outside the documented [{lo}, {hi}] ms of the policy"
                    ));
                }
            }
            self.out.delays.insert((queue, id, attempt), delay);
        }
        Ok(OutboxOutcome::Settled(settled))
    }

    pub(crate) async fn outbox_step(&mut self, step: &Step) -> Result<Outcome, String> {
        macro_rules! outbox {
            ($queue:expr) => {{
                let q = self.queue_of($queue);
                match self.outbox(&q)? {
                    Ok(o) => (q, o),
                    Err(code) => return Ok(Outcome::Outbox(OutboxOutcome::Error(code))),
                }
            }};
        }
        macro_rules! or_error {
            ($r:expr, $ok:expr) => {
                match $r {
                    Ok(v) => $ok(v),
                    Err(e) => OutboxOutcome::Error(e.code()),
                }
            };
        }
        let outcome = match step {
            Step::Enqueue { id, payload, key, headers, delay_ms, queue, .. } => {
                let (_, o) = outbox!(queue);
                let spec = MessageSpec {
                    id: id.clone(),
                    payload: payload.clone(),
                    key: key.clone(),
                    headers: headers.clone(),
                    delay_ms: *delay_ms,
                };
                or_error!(o.enqueue(new_message(&spec)).await, OutboxOutcome::Enqueued)
            }
            Step::EnqueueMany { messages, queue, .. } => {
                let (_, o) = outbox!(queue);
                let batch = messages.iter().map(new_message).collect();
                or_error!(o.enqueue_many(batch).await, OutboxOutcome::EnqueuedMany)
            }
            Step::Lease { max, names, queue, .. } => {
                let (q, o) = outbox!(queue);
                let deliveries = match o.lease(*max).await {
                    Ok(d) => d,
                    Err(e) => return Ok(Outcome::Outbox(OutboxOutcome::Error(e.code()))),
                };
                let mut leased = Vec::with_capacity(deliveries.len());
                for (i, d) in deliveries.into_iter().enumerate() {
                    let (id, token, attempt) = (d.id().to_owned(), d.token(), d.attempt());
                    if token > 0 {
                        let max = self.out.tokens.entry((q.clone(), id.clone())).or_insert(0);
                        let earlier = *max;
                        *max = earlier.max(token);
                        if token <= earlier {
                            self.note(format!(
                                "invariant: the lease of `{id}` got fencing token {token}, not larger than \
                                 the earlier token {earlier} of that id"
                            ));
                        }
                    }
                    let name = names.as_ref().and_then(|n| n.get(i)).cloned().unwrap_or_else(|| id.clone());
                    leased.push((id, attempt, token > 0));
                    let held = Held {
                        queue: q.clone(),
                        token,
                        message: d.message().clone(),
                        last_error: d.last_error().map(str::to_owned),
                        live: Some(d),
                    };
                    self.out.held.insert(name, held);
                }
                OutboxOutcome::Leased(leased)
            }
            Step::Ack { delivery, .. } => self.settle(delivery, How::Ack).await?,
            Step::Retry { delivery, after_ms, error, .. } => {
                let how = How::Retry(after_ms.map(Duration::from_millis), error.clone().unwrap_or_default());
                self.settle(delivery, how).await?
            }
            Step::Snooze { delivery, after_ms, .. } => {
                self.settle(delivery, How::Snooze(Duration::from_millis(*after_ms))).await?
            }
            Step::Fail { delivery: Some(delivery), reason, .. } => {
                self.settle(delivery, How::Fail(reason.clone())).await?
            }
            Step::Extend { delivery, lease_ms, .. } => {
                self.settle(delivery, How::Extend(Duration::from_millis(*lease_ms))).await?
            }
            Step::Release { delivery: Some(delivery), .. } => self.settle(delivery, How::Release).await?,
            Step::Inspect { delivery, .. } => {
                let h = self
                    .out
                    .held
                    .get(delivery)
                    .ok_or_else(|| format!("scenario error: no delivery named `{delivery}` is held"))?;
                OutboxOutcome::Delivery(h.message.clone(), h.last_error.clone())
            }
            Step::Cancel { id, queue, .. } => {
                let (_, o) = outbox!(queue);
                or_error!(o.cancel(id).await, OutboxOutcome::Cancel)
            }
            Step::GetMessage { id, queue, .. } => {
                let (_, o) = outbox!(queue);
                or_error!(o.get(id).await, OutboxOutcome::Message)
            }
            Step::Work { handler, queue, .. } => {
                let (_, o) = outbox!(queue);
                let result = handler.result();
                let worker = match oncely::Worker::new(o, oncely::WorkerConfig::default()) {
                    Ok(w) => w,
                    Err(e) => return Ok(Outcome::Outbox(OutboxOutcome::Error(e.code()))),
                };
                let run = async move {
                    worker
                        .run_until_idle(move |_message| {
                            let outcome = result.outcome();
                            async move { outcome }
                        })
                        .await
                };
                let rt = oncely::runtime::runtime().map_err(|e| e.to_string())?;
                match rt.spawn(run).await.map_err(|e| format!("the worker task failed: {e}"))? {
                    Ok(summary) => OutboxOutcome::Worked(summary),
                    Err(e) => OutboxOutcome::Error(e.code()),
                }
            }
            Step::DeadLetters { queue, .. } => {
                let (_, o) = outbox!(queue);
                let mut ids = Vec::new();
                let mut after = None;
                loop {
                    let page = match o.dead_letters(after, 2).await {
                        Ok(p) => p,
                        Err(e) => return Ok(Outcome::Outbox(OutboxOutcome::Error(e.code()))),
                    };
                    let done = page.len() < 2;
                    after = page.last().map(|r| r.seq).or(after);
                    ids.extend(page.into_iter().map(|r| r.message.id));
                    if done {
                        break;
                    }
                }
                OutboxOutcome::Dead(ids)
            }
            Step::Replay { id, queue, .. } => {
                let (_, o) = outbox!(queue);
                or_error!(o.replay(id).await, OutboxOutcome::Replayed)
            }
            Step::PurgeDead { ids, queue, .. } => {
                let (_, o) = outbox!(queue);
                or_error!(o.purge_dead(ids.clone()).await, OutboxOutcome::Purged)
            }
            Step::Stats { queue, .. } => {
                let (_, o) = outbox!(queue);
                or_error!(o.stats().await, OutboxOutcome::Stats)
            }
            Step::Counters { queue, .. } => {
                let (_, o) = outbox!(queue);
                or_error!(o.stats().await, OutboxOutcome::Counters)
            }
            Step::Events { .. } => {
                OutboxOutcome::Events(std::mem::take(&mut *self.out.events.lock().expect("event sink")))
            }
            other => return Err(format!("internal: `{}` is not an outbox step", other.op())),
        };
        Ok(Outcome::Outbox(outcome))
    }
}
