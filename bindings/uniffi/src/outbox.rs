//! `Outbox` and `Delivery`: the sender's durable retry queue. Every rule (what each mode writes
//! when, backoff, dead letters, FIFO per key, the retry budget) is the core's `oncely::Outbox`.

use std::collections::HashMap;
use std::sync::Arc;

use oncely::outbox::{
    Cancelled as CoreCancelled, Enqueued as CoreEnqueued, EventKind as CoreEventKind, MessageState,
    Settle as CoreSettle, Settled as CoreSettled,
};
use oncely::{AnyStore, NewMessage as CoreNewMessage, OutboxConfig};

use crate::errors::{HandlerError, OncelyError, to_ms};
use crate::inbox::Mode;
use crate::on_runtime;
use crate::retry::RetryPolicy;
use crate::store::{ManualClock, Store, clock_of};
use crate::text::{HostText, count, ms, opt_ms, opt_text, size, texts, timestamp};

pub(crate) type CoreOutbox = oncely::Outbox<AnyStore>;
type CoreDelivery = oncely::Delivery<AnyStore>;

/// What a FIFO queue does with a message it gives up on (a poison message).
#[derive(Debug, Clone, Copy, uniffi::Enum)]
pub enum PoisonPolicy {
    /// Dead-letter it and hold back the rest of its key until it is replayed or purged.
    Block,
    /// Dead-letter it and go on with the rest of its key.
    DeadLetter,
    /// Put it at the back of its key's line with fresh attempts, deliverable after `afterMs`.
    Park {
        /// How long it stays aside.
        after_ms: i64,
    },
}

/// Delivery order.
#[derive(Debug, Clone, Copy, uniffi::Enum)]
pub enum Ordering {
    /// Any order (by due time).
    Unordered,
    /// At most one message per key in flight, in enqueue order.
    FifoPerKey {
        /// What a poison message does to its key.
        poison: PoisonPolicy,
    },
}

/// Caps retries as a share of first attempts, so an outage does not become a retry storm.
#[derive(Debug, Clone, Copy, uniffi::Record)]
pub struct RetryBudget {
    /// Retries allowed per first attempt.
    pub ratio: f64,
    /// Retries allowed per second regardless of traffic. Default: 10.
    #[uniffi(default = None)]
    pub min_per_second: Option<f64>,
    /// The most allowance saved up. Default: 100.
    #[uniffi(default = None)]
    pub burst: Option<f64>,
}

/// How an outbox behaves; every absent field has the core's default (exactly-once, lease 30 s,
/// 10 attempts with exponential backoff and full jitter, unordered, seed 0, no budget, 1 MiB).
#[derive(Clone, Default, uniffi::Record)]
pub struct OutboxOptions {
    /// The delivery guarantee.
    #[uniffi(default = None)]
    pub mode: Option<Mode>,
    /// When to retry and when to give up.
    #[uniffi(default = None)]
    pub retry: Option<Arc<RetryPolicy>>,
    /// How long a lease lasts before the message is deliverable again.
    #[uniffi(default = None)]
    pub lease_ms: Option<i64>,
    /// Delivery order.
    #[uniffi(default = None)]
    pub ordering: Option<Ordering>,
    /// Seed of the backoff jitter.
    #[uniffi(default = None)]
    pub seed: Option<u64>,
    /// Retry budget.
    #[uniffi(default = None)]
    pub retry_budget: Option<RetryBudget>,
    /// The largest payload accepted.
    #[uniffi(default = None)]
    pub max_payload_bytes: Option<u64>,
    /// How long a delivered id is remembered against a second enqueue (default 300,000 ms;
    /// 0: not at all).
    #[uniffi(default = None)]
    pub dedup_window_ms: Option<i64>,
}

/// One message to enqueue.
#[derive(Debug, Clone, uniffi::Record)]
pub struct NewMessage {
    /// The payload.
    pub payload: Vec<u8>,
    /// The id (default: a new UUIDv7). An id already in the queue adds no second copy.
    #[uniffi(default = None)]
    pub id: Option<HostText>,
    /// The ordering key (FIFO per key).
    #[uniffi(default = None)]
    pub key: Option<HostText>,
    /// Headers handed to the handler.
    #[uniffi(default = None)]
    pub headers: Option<HashMap<HostText, HostText>>,
    /// Deliverable no earlier than this long from now.
    #[uniffi(default = None)]
    pub delay_ms: Option<i64>,
    /// Deliverable no earlier than this time (ms since the epoch); when given, `delayMs` is
    /// ignored (the core's rule).
    #[uniffi(default = None)]
    pub available_at_ms: Option<i64>,
}

pub(crate) fn new_message(m: NewMessage) -> Result<CoreNewMessage, OncelyError> {
    let mut out = CoreNewMessage::new(m.payload);
    if let Some(id) = opt_text("id", m.id)? {
        out = out.id(id);
    }
    if let Some(k) = opt_text("key", m.key)? {
        out = out.key(k);
    }
    for (k, v) in m.headers.unwrap_or_default() {
        out = out.header(k.decode("headers")?, v.decode("headers")?);
    }
    if let Some(t) = m.available_at_ms {
        out = out.available_at(timestamp("available_at_ms", t)?);
    }
    if let Some(d) = opt_ms("delay_ms", m.delay_ms)? {
        out = out.delay(d);
    }
    Ok(out)
}

/// What `enqueue` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Enqueued {
    /// Added.
    Queued,
    /// A message with this id and payload is in the queue (pending, in flight or dead); nothing
    /// was added.
    AlreadyQueued,
    /// A message with this id and payload left the queue within the dedup window (delivered);
    /// nothing was added.
    AlreadyDelivered,
}

pub(crate) fn enqueued(e: CoreEnqueued) -> Enqueued {
    match e {
        CoreEnqueued::Queued => Enqueued::Queued,
        CoreEnqueued::AlreadyQueued => Enqueued::AlreadyQueued,
        CoreEnqueued::AlreadyDelivered => Enqueued::AlreadyDelivered,
    }
}

/// What `cancel` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Cancelled {
    /// Removed before delivery.
    Cancelled,
    /// Being delivered now: not cancelled.
    InFlight,
    /// No such message.
    NotFound,
}

/// How to settle a leased message (by id and token, e.g. after a restart).
#[derive(Debug, Clone, uniffi::Enum)]
pub enum Settle {
    /// Delivered.
    Ack,
    /// Failed: retry by the policy, or after `afterMs` (a Retry-After hint).
    Retry {
        /// The hint, replacing the backoff.
        after_ms: Option<i64>,
        /// The attempt's error.
        error: HostText,
    },
    /// Not now: again after `afterMs`, without using up an attempt.
    Snooze {
        /// The delay.
        after_ms: i64,
    },
    /// Failed for good: dead-letter (or park).
    Fail {
        /// Why.
        reason: HostText,
    },
    /// Keep the lease `leaseMs` longer from now.
    Extend {
        /// The new lease.
        lease_ms: i64,
    },
    /// Give it back unattempted (graceful shutdown).
    Release,
}

fn settle_of(s: Settle) -> Result<CoreSettle, OncelyError> {
    Ok(match s {
        Settle::Ack => CoreSettle::Ack,
        Settle::Retry { after_ms, error } => {
            CoreSettle::Retry { after: opt_ms("after_ms", after_ms)?, error: error.decode("error")? }
        }
        Settle::Snooze { after_ms } => CoreSettle::Snooze { after: ms("after_ms", after_ms)? },
        Settle::Fail { reason } => CoreSettle::Fail { reason: reason.decode("reason")? },
        Settle::Extend { lease_ms } => CoreSettle::Extend { lease: ms("lease_ms", lease_ms)? },
        Settle::Release => CoreSettle::Release,
    })
}

/// What a settle did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Settled {
    /// Delivered and removed.
    Acked,
    /// Deliverable again at `atMs`.
    Retrying {
        /// When.
        at_ms: i64,
    },
    /// Given up: dead-lettered, or parked under the park policy.
    GaveUp,
    /// Snoozed or released: deliverable again at `atMs`, attempt not counted.
    Returned {
        /// When.
        at_ms: i64,
    },
    /// The lease now runs until `untilMs`.
    Extended {
        /// The new end of the lease.
        until_ms: i64,
    },
    /// At-most-once: the message had left the queue when leased; a failure loses it.
    Dropped,
}

pub(crate) fn settled(s: CoreSettled) -> Settled {
    match s {
        CoreSettled::Acked => Settled::Acked,
        CoreSettled::Retrying { at } => Settled::Retrying { at_ms: at.0 },
        CoreSettled::GaveUp => Settled::GaveUp,
        CoreSettled::Returned { at } => Settled::Returned { at_ms: at.0 },
        CoreSettled::Extended { until } => Settled::Extended { until_ms: until.0 },
        CoreSettled::Dropped => Settled::Dropped,
    }
}

/// Where a stored message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum MessageStatus {
    /// Waiting for delivery (now or at `availableAtMs`).
    Ready,
    /// Leased to a worker.
    Leased,
    /// A dead letter.
    Dead,
}

/// A message as stored.
#[derive(Debug, Clone, uniffi::Record)]
pub struct OutboxRecord {
    /// The id (the receiver's idempotency key).
    pub id: String,
    /// The ordering key.
    pub key: Option<String>,
    /// The payload.
    pub payload: Vec<u8>,
    /// The headers.
    pub headers: HashMap<String, String>,
    /// Where it stands.
    pub status: MessageStatus,
    /// Attempts counted so far.
    pub attempts: u32,
    /// Deliverable no earlier than this.
    pub available_at_ms: i64,
    /// When it was enqueued.
    pub created_at_ms: i64,
    /// The previous attempt's error.
    pub last_error: Option<String>,
    /// Why it was dead-lettered.
    pub reason: Option<String>,
    /// Its place in the queue (for paging dead letters).
    pub seq: u64,
    /// For `Leased`: when the lease runs out.
    pub lease_until_ms: Option<i64>,
}

fn outbox_record(r: oncely::outbox::OutboxRecord) -> OutboxRecord {
    let (status, reason, lease_until_ms) = match r.state {
        MessageState::Ready => (MessageStatus::Ready, None, None),
        MessageState::Leased { lease_until, .. } => (MessageStatus::Leased, None, Some(lease_until.0)),
        MessageState::Dead { reason } => (MessageStatus::Dead, Some(reason), None),
    };
    let m = r.message;
    OutboxRecord {
        id: m.id,
        key: m.key,
        payload: m.payload,
        headers: m.headers.into_iter().collect(),
        status,
        attempts: m.attempts,
        available_at_ms: m.available_at.0,
        created_at_ms: m.created_at.0,
        last_error: r.last_error,
        reason,
        seq: r.seq,
        lease_until_ms,
    }
}

/// The queue as stored, and this process's counters since the outbox was opened.
#[derive(Debug, Clone, uniffi::Record)]
pub struct OutboxStats {
    /// Deliverable now (including expired leases).
    pub ready: u64,
    /// Waiting for their time.
    pub scheduled: u64,
    /// In flight.
    pub leased: u64,
    /// Dead letters.
    pub dead: u64,
    /// Age of the oldest pending message.
    pub oldest_age_ms: Option<i64>,
    /// Enqueued by this process.
    pub enqueued: u64,
    /// Acked.
    pub delivered: u64,
    /// Retries scheduled.
    pub retried: u64,
    /// Dead-lettered.
    pub dead_lettered: u64,
    /// At-most-once messages lost to a failure.
    pub dropped: u64,
    /// Attempts settled.
    pub attempts_settled: u64,
    /// Mean time from lease to settle.
    pub mean_attempt_latency_ms: Option<f64>,
}

/// What happened to a message.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum EventKind {
    /// Added to the queue.
    Enqueued,
    /// Handed out for its `attempt`-th attempt.
    Leased {
        /// 1 for the first.
        attempt: u32,
    },
    /// Delivered and removed.
    Acked,
    /// An attempt failed; deliverable again at `retryAtMs`.
    Retried {
        /// When.
        retry_at_ms: i64,
        /// The attempt's error.
        error: String,
    },
    /// Put off without using up an attempt.
    Snoozed {
        /// Until when.
        until_ms: i64,
    },
    /// Given back unattempted.
    Released,
    /// A lease ran out (a crashed or hung worker).
    LeaseExpired,
    /// Given up on and kept as a dead letter.
    DeadLettered {
        /// Why.
        reason: String,
    },
    /// Set aside under the park policy.
    Parked {
        /// When it is deliverable again.
        until_ms: i64,
    },
    /// At-most-once: lost after a failed attempt.
    Dropped,
    /// Removed before delivery.
    Cancelled,
    /// A dead letter put back.
    Replayed,
    /// A dead letter deleted.
    Purged,
    /// Not about one message (`id` is empty): a worker found the store unavailable and keeps its
    /// outcomes while it retries; once per outage.
    StoreUnavailable {
        /// The first error of the outage.
        error: String,
    },
    /// Not about one message (`id` is empty): the store answered again after an outage.
    StoreRecovered {
        /// How long the outage lasted.
        after_ms: u64,
    },
}

/// A state change of one message, published after it committed.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct OutboxEvent {
    /// The message id.
    pub id: String,
    /// When (by the outbox's clock).
    pub at_ms: i64,
    /// The stable name of the kind (`"dead_lettered"`, ...), the core's.
    pub name: String,
    /// What happened.
    pub kind: EventKind,
}

fn event(e: &oncely::outbox::Event) -> OutboxEvent {
    let kind = match &e.kind {
        CoreEventKind::Enqueued => EventKind::Enqueued,
        CoreEventKind::Leased { attempt } => EventKind::Leased { attempt: *attempt },
        CoreEventKind::Acked => EventKind::Acked,
        CoreEventKind::Retried { at, error } => {
            EventKind::Retried { retry_at_ms: at.0, error: error.clone() }
        }
        CoreEventKind::Snoozed { until } => EventKind::Snoozed { until_ms: until.0 },
        CoreEventKind::Released => EventKind::Released,
        CoreEventKind::LeaseExpired => EventKind::LeaseExpired,
        CoreEventKind::DeadLettered { reason } => EventKind::DeadLettered { reason: reason.clone() },
        CoreEventKind::Parked { until } => EventKind::Parked { until_ms: until.0 },
        CoreEventKind::Dropped => EventKind::Dropped,
        CoreEventKind::Cancelled => EventKind::Cancelled,
        CoreEventKind::Replayed => EventKind::Replayed,
        CoreEventKind::Purged => EventKind::Purged,
        CoreEventKind::StoreUnavailable { error } => EventKind::StoreUnavailable { error: error.clone() },
        CoreEventKind::StoreRecovered { after_ms } => EventKind::StoreRecovered { after_ms: *after_ms },
    };
    OutboxEvent { id: e.id.clone(), at_ms: e.at.0, name: e.kind.name().to_string(), kind }
}

/// Receives an outbox's events, in commit order, after each state change committed. Called
/// synchronously on the thread that made the change: keep it quick (hand the event to a queue).
/// An exception it throws is logged and ignored.
#[uniffi::export(callback_interface)]
pub trait OutboxListener: Send + Sync {
    /// One event.
    fn on_event(&self, event: OutboxEvent) -> Result<(), HandlerError>;
}

/// One leased message. Settle it once (`ack`, `retry`, `snooze`, `fail`, `release`; `extend`
/// keeps the lease longer). Pass `idempotencyKey` on to the receiver. A settle after the lease
/// was taken over throws `LeaseLost` and writes nothing.
#[derive(uniffi::Object)]
pub struct Delivery {
    inner: Arc<CoreDelivery>,
}

#[uniffi::export]
impl Delivery {
    /// The message id.
    pub fn id(&self) -> String {
        self.inner.id().to_string()
    }
    /// The idempotency key for the receiver (the message id).
    pub fn idempotency_key(&self) -> String {
        self.inner.idempotency_key().to_string()
    }
    /// The payload.
    pub fn payload(&self) -> Vec<u8> {
        self.inner.payload().to_vec()
    }
    /// The ordering key.
    pub fn key(&self) -> Option<String> {
        self.inner.message().key.clone()
    }
    /// The headers.
    pub fn headers(&self) -> HashMap<String, String> {
        self.inner.message().headers.clone().into_iter().collect()
    }
    /// Which attempt this is (1 for the first).
    pub fn attempt(&self) -> u32 {
        self.inner.attempt()
    }
    /// The lease's fencing token (0 in at-most-once, where nothing is leased).
    pub fn token(&self) -> u64 {
        self.inner.token()
    }
    /// The previous attempt's error.
    pub fn last_error(&self) -> Option<String> {
        self.inner.last_error().map(str::to_string)
    }
    /// When the message was enqueued.
    pub fn created_at_ms(&self) -> i64 {
        self.inner.message().created_at.0
    }
    /// When the message became deliverable (its enqueue time plus any delay, or the time the
    /// last retry or snooze set).
    pub fn available_at_ms(&self) -> i64 {
        self.inner.message().available_at.0
    }

    /// Delivered: removes the message.
    pub async fn ack(&self) -> Result<(), OncelyError> {
        let d = self.inner.clone();
        on_runtime(async move { Ok(d.ack().await?) }).await
    }

    /// A failed attempt: retried by the policy (or after `afterMs`), or given up.
    #[uniffi::method(default(after_ms = None))]
    pub async fn retry(&self, error: HostText, after_ms: Option<i64>) -> Result<Settled, OncelyError> {
        let error = error.decode("error")?;
        let after = opt_ms("after_ms", after_ms)?;
        let d = self.inner.clone();
        on_runtime(async move { Ok(settled(d.retry(after, error).await?)) }).await
    }

    /// Not now: again after `afterMs`, no attempt used up.
    pub async fn snooze(&self, after_ms: i64) -> Result<Settled, OncelyError> {
        let after = ms("after_ms", after_ms)?;
        let d = self.inner.clone();
        on_runtime(async move { Ok(settled(d.snooze(after).await?)) }).await
    }

    /// A permanent failure: dead-letter (or park).
    pub async fn fail(&self, reason: HostText) -> Result<Settled, OncelyError> {
        let reason = reason.decode("reason")?;
        let d = self.inner.clone();
        on_runtime(async move { Ok(settled(d.fail(reason).await?)) }).await
    }

    /// Keeps the lease `leaseMs` more from now.
    pub async fn extend(&self, lease_ms: i64) -> Result<Settled, OncelyError> {
        let lease = ms("lease_ms", lease_ms)?;
        let d = self.inner.clone();
        on_runtime(async move { Ok(settled(d.extend(lease).await?)) }).await
    }

    /// Gives the message back unattempted.
    pub async fn release(&self) -> Result<Settled, OncelyError> {
        let d = self.inner.clone();
        on_runtime(async move { Ok(settled(d.release().await?)) }).await
    }

    /// Settles by `how` (the same as the calls above).
    pub async fn settle(&self, how: Settle) -> Result<Settled, OncelyError> {
        let how = settle_of(how)?;
        let d = self.inner.clone();
        on_runtime(async move { Ok(settled(d.settle(how).await?)) }).await
    }
}

/// The sender's durable retry queue named `queue` on a store. Cheap to share.
#[derive(uniffi::Object)]
pub struct Outbox {
    pub(crate) inner: CoreOutbox,
}

#[uniffi::export]
impl Outbox {
    /// An outbox for `queue` on `store`. `clock`: a `ManualClock` for tests. Bad options throw
    /// `InvalidArgument`.
    #[uniffi::constructor(default(options = None, clock = None))]
    pub fn new(
        store: Arc<Store>,
        queue: HostText,
        options: Option<OutboxOptions>,
        clock: Option<Arc<ManualClock>>,
    ) -> Result<Arc<Self>, OncelyError> {
        let o = options.unwrap_or_default();
        let mut cfg = OutboxConfig::new(queue.decode("queue")?);
        if let Some(m) = o.mode {
            cfg = cfg.mode(m.into());
        }
        if let Some(r) = o.retry {
            cfg = cfg.retry(r.inner);
        }
        if let Some(l) = o.lease_ms {
            cfg = cfg.lease(ms("lease_ms", l)?);
        }
        if let Some(ord) = o.ordering {
            use oncely::outbox::{Ordering as O, PoisonPolicy as P};
            cfg = cfg.ordering(match ord {
                Ordering::Unordered => O::Unordered,
                Ordering::FifoPerKey { poison } => O::FifoPerKey(match poison {
                    PoisonPolicy::Block => P::Block,
                    PoisonPolicy::DeadLetter => P::DeadLetter,
                    PoisonPolicy::Park { after_ms } => P::Park { after: ms("after_ms", after_ms)? },
                }),
            });
        }
        if let Some(s) = o.seed {
            cfg = cfg.seed(count("seed", s)?);
        }
        if let Some(b) = o.retry_budget {
            let mut budget = oncely::outbox::RetryBudget::new(b.ratio);
            if let Some(v) = b.min_per_second {
                budget.min_per_second = v;
            }
            if let Some(v) = b.burst {
                budget.burst = v;
            }
            cfg = cfg.retry_budget(budget);
        }
        if let Some(n) = o.max_payload_bytes {
            cfg.max_payload_bytes = size("max_payload_bytes", n)?;
        }
        if let Some(w) = o.dedup_window_ms {
            cfg = cfg.dedup_window(ms("dedup_window_ms", w)?);
        }
        let inner = CoreOutbox::with_clock(store.inner.clone(), cfg, clock_of(clock))?;
        Ok(Arc::new(Outbox { inner }))
    }

    /// The queue's name.
    pub fn queue(&self) -> String {
        self.inner.config().queue.clone()
    }

    /// The outbox clock's time (ms since the epoch).
    pub fn now_ms(&self) -> i64 {
        self.inner.now().0
    }

    /// Calls `listener` with every event of this outbox from now on (in this process).
    pub fn on_event(&self, listener: Box<dyn OutboxListener>) {
        self.inner.on_event(move |e| {
            // The core publishes on the thread that made the change, often a worker of oncely's
            // runtime: a listener that blocks there (a Kotlin `runBlocking { outbox.get(id) }`)
            // would starve the task it waits for, queued on that same worker. `block_in_place`
            // hands the worker's queue to another thread for the call (elsewhere it just calls).
            let answer = tokio::task::block_in_place(|| listener.on_event(event(e)));
            if let Err(err) = answer {
                tracing::warn!(error = %err, "oncely: an outbox event listener failed");
            }
        });
    }

    /// Enqueues one message; returns once it is durable. `AlreadyQueued`: a message with this id
    /// is in the queue and nothing was added. A bad message throws `InvalidArgument` and writes
    /// nothing.
    pub async fn enqueue(&self, message: NewMessage) -> Result<Enqueued, OncelyError> {
        let m = new_message(message)?;
        let o = self.inner.clone();
        on_runtime(async move { Ok(enqueued(o.enqueue(m).await?)) }).await
    }

    /// Enqueues several messages in one commit: all or none (one bad message refuses the call).
    pub async fn enqueue_many(&self, messages: Vec<NewMessage>) -> Result<Vec<Enqueued>, OncelyError> {
        let ms = messages.into_iter().map(new_message).collect::<Result<Vec<_>, _>>()?;
        let o = self.inner.clone();
        on_runtime(async move { Ok(o.enqueue_many(ms).await?.into_iter().map(enqueued).collect()) }).await
    }

    /// Leases up to `max` due messages (first reaping leases that ran out).
    pub async fn lease(&self, max: u32) -> Result<Vec<Arc<Delivery>>, OncelyError> {
        let o = self.inner.clone();
        on_runtime(async move {
            let ds = o.lease(max as usize).await?;
            Ok(ds.into_iter().map(|d| Arc::new(Delivery { inner: Arc::new(d) })).collect())
        })
        .await
    }

    /// Settles a leased message by id and fencing token, without its `Delivery` (e.g. after a
    /// restart). A stale token throws `LeaseLost`.
    pub async fn settle(&self, id: HostText, token: u64, how: Settle) -> Result<Settled, OncelyError> {
        let id = id.decode("id")?;
        let token = count("token", token)?;
        let how = settle_of(how)?;
        let o = self.inner.clone();
        on_runtime(async move { Ok(settled(o.settle(&id, token, how).await?)) }).await
    }

    /// Removes a queued message before delivery.
    pub async fn cancel(&self, id: HostText) -> Result<Cancelled, OncelyError> {
        let id = id.decode("id")?;
        let o = self.inner.clone();
        on_runtime(async move {
            Ok(match o.cancel(&id).await? {
                CoreCancelled::Cancelled => Cancelled::Cancelled,
                CoreCancelled::InFlight => Cancelled::InFlight,
                CoreCancelled::NotFound => Cancelled::NotFound,
            })
        })
        .await
    }

    /// The message as stored, or null.
    pub async fn get(&self, id: HostText) -> Result<Option<OutboxRecord>, OncelyError> {
        let id = id.decode("id")?;
        let o = self.inner.clone();
        on_runtime(async move { Ok(o.get(&id).await?.map(outbox_record)) }).await
    }

    /// Dead letters in queue order after `afterSeq`, at most `limit`.
    #[uniffi::method(default(after_seq = None, limit = 100))]
    pub async fn dead_letters(
        &self,
        after_seq: Option<u64>,
        limit: u32,
    ) -> Result<Vec<OutboxRecord>, OncelyError> {
        let after_seq = after_seq.map(|s| count("after_seq", s)).transpose()?;
        let o = self.inner.clone();
        on_runtime(async move {
            Ok(o.dead_letters(after_seq, limit as usize).await?.into_iter().map(outbox_record).collect())
        })
        .await
    }

    /// Puts a dead letter back in the queue with attempts reset; false if it was not dead.
    pub async fn replay(&self, id: HostText) -> Result<bool, OncelyError> {
        let id = id.decode("id")?;
        let o = self.inner.clone();
        on_runtime(async move { Ok(o.replay(&id).await?) }).await
    }

    /// Deletes the named dead letters, or all of them when `ids` is null; returns how many.
    #[uniffi::method(default(ids = None))]
    pub async fn purge_dead(&self, ids: Option<Vec<HostText>>) -> Result<u64, OncelyError> {
        let ids = ids.map(|ids| texts("ids", ids)).transpose()?;
        let o = self.inner.clone();
        on_runtime(async move { Ok(o.purge_dead(ids).await?) }).await
    }

    /// The queue's counts and this process's counters.
    pub async fn stats(&self) -> Result<OutboxStats, OncelyError> {
        let o = self.inner.clone();
        on_runtime(async move {
            let s = o.stats().await?;
            Ok(OutboxStats {
                ready: s.queue.ready,
                scheduled: s.queue.scheduled,
                leased: s.queue.leased,
                dead: s.queue.dead,
                oldest_age_ms: s.oldest_age.map(to_ms),
                enqueued: s.counters.enqueued,
                delivered: s.counters.delivered,
                retried: s.counters.retried,
                dead_lettered: s.counters.dead_lettered,
                dropped: s.counters.dropped,
                attempts_settled: s.counters.attempts_settled,
                mean_attempt_latency_ms: s.counters.mean_attempt_latency().map(|d| d.as_secs_f64() * 1000.0),
            })
        })
        .await
    }
}
