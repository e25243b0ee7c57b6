//! The sender's durable retry queue (docs/design.md §3).
//!
//! Pull-style: [`Outbox::enqueue`], [`Outbox::lease`], then one of the [`Delivery`]'s settle
//! calls (`ack`, `retry`, `snooze`, `fail`, `extend`, `release`). Every rule — what the modes
//! write when, backoff, dead letters, FIFO per key, the retry budget — lives in [`rules`] and runs
//! inside the store's atomic step. [`crate::worker::Worker`] is a loop over these calls.

mod budget;
mod record;
pub mod rules;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

pub use budget::RetryBudget;
pub use record::{MessageState, OutboxRecord, QueueStats};
pub use rules::{Cancelled, Enqueued, Ordering, PoisonPolicy, Settle, SettleFields, Settled};

use crate::backoff::RetryPolicy;
use crate::clock::{SharedClock, SystemClock, Timestamp, require_positive};
use crate::error::{Error, Result};
use crate::message::{Message, new_id, validate_id};
use crate::mode::Mode;
use crate::store::OutboxStore;
use budget::BudgetState;
use rules::Rules;

/// A state change of one message, delivered to [`Outbox::on_event`] listeners after it committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The message.
    pub id: String,
    /// When it happened (by the outbox's clock).
    pub at: Timestamp,
    /// What happened.
    pub kind: EventKind,
}

/// What happened to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// Added to the queue.
    Enqueued,
    /// Handed to a worker for its `attempt`-th attempt.
    Leased {
        /// 1 for the first attempt.
        attempt: u32,
    },
    /// Delivered and removed.
    Acked,
    /// An attempt failed; deliverable again at `at`.
    Retried {
        /// When.
        at: Timestamp,
        /// The attempt's error.
        error: String,
    },
    /// Put off without using up an attempt.
    Snoozed {
        /// Until when.
        until: Timestamp,
    },
    /// Given back unattempted.
    Released,
    /// A worker's lease ran out (it crashed or hung); the message is deliverable again or dead.
    LeaseExpired,
    /// Given up on and kept as a dead letter.
    DeadLettered {
        /// Why.
        reason: String,
    },
    /// A poison message set aside under [`PoisonPolicy::Park`].
    Parked {
        /// When it is deliverable again.
        until: Timestamp,
    },
    /// At-most-once: the attempt failed after the message had left the queue: it is lost.
    Dropped,
    /// Removed before delivery.
    Cancelled,
    /// A dead letter put back in the queue.
    Replayed,
    /// A dead letter deleted.
    Purged,
}

impl EventKind {
    /// The stable snake_case name of this kind (`"dead_lettered"`, ...), the same in every
    /// binding and in the conformance scenarios.
    pub const fn name(&self) -> &'static str {
        match self {
            EventKind::Enqueued => "enqueued",
            EventKind::Leased { .. } => "leased",
            EventKind::Acked => "acked",
            EventKind::Retried { .. } => "retried",
            EventKind::Snoozed { .. } => "snoozed",
            EventKind::Released => "released",
            EventKind::LeaseExpired => "lease_expired",
            EventKind::DeadLettered { .. } => "dead_lettered",
            EventKind::Parked { .. } => "parked",
            EventKind::Dropped => "dropped",
            EventKind::Cancelled => "cancelled",
            EventKind::Replayed => "replayed",
            EventKind::Purged => "purged",
        }
    }
}

/// How an outbox behaves. Build with [`OutboxConfig::new`] and the setters.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// The queue's name: outboxes with different names on one store never see each other's
    /// messages.
    pub queue: String,
    /// The delivery guarantee. Default: exactly-once (at-least-once delivery, each attempt
    /// carrying the message id as idempotency key).
    pub mode: Mode,
    /// When to retry and when to give up. Default: [`RetryPolicy::default`].
    pub retry: RetryPolicy,
    /// How long a lease lasts before the message is deliverable again. Default: 30 s.
    pub lease: Duration,
    /// Delivery order. Default: unordered.
    pub ordering: Ordering,
    /// Seed of the backoff jitter (each message draws from its own stream). Default: 0.
    pub seed: u64,
    /// Caps retries as a share of first attempts. Default: none.
    pub retry_budget: Option<RetryBudget>,
    /// The largest payload accepted. Default: 1 MiB.
    pub max_payload_bytes: usize,
}

impl OutboxConfig {
    /// The defaults, for queue `queue`.
    pub fn new(queue: impl Into<String>) -> Self {
        OutboxConfig {
            queue: queue.into(),
            mode: Mode::ExactlyOnce,
            retry: RetryPolicy::default(),
            lease: Duration::from_secs(30),
            ordering: Ordering::Unordered,
            seed: 0,
            retry_budget: None,
            max_payload_bytes: crate::limits::DEFAULT_MAX_BYTES,
        }
    }

    /// Sets the mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the lease.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Sets the delivery order.
    pub fn ordering(mut self, ordering: Ordering) -> Self {
        self.ordering = ordering;
        self
    }

    /// Sets the jitter seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets a retry budget.
    pub fn retry_budget(mut self, budget: RetryBudget) -> Self {
        self.retry_budget = Some(budget);
        self
    }

    fn validate(&self) -> Result<()> {
        if self.queue.is_empty() || self.queue.len() > 128 || self.queue.contains('\0') {
            return Err(Error::invalid("queue", "must be 1 to 128 bytes long, without NUL"));
        }
        self.retry.validate()?;
        require_positive("lease", self.lease)?;
        if let Ordering::FifoPerKey(PoisonPolicy::Park { after }) = self.ordering {
            require_positive("ordering.park.after", after)?;
        }
        if let Some(b) = &self.retry_budget {
            b.validate()?;
        }
        Ok(())
    }
}

/// A message to enqueue. Built with [`NewMessage::new`] and the setters.
#[derive(Debug, Clone, Default)]
pub struct NewMessage {
    id: Option<String>,
    key: Option<String>,
    payload: Vec<u8>,
    headers: BTreeMap<String, String>,
    delay: Option<Duration>,
    available_at: Option<Timestamp>,
}

impl NewMessage {
    /// A message with `payload`, a fresh UUIDv7 id, deliverable at once.
    pub fn new(payload: impl Into<Vec<u8>>) -> Self {
        NewMessage { payload: payload.into(), ..Default::default() }
    }

    /// Sets the id (the receiver's idempotency key).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the ordering key.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Delivers no earlier than `delay` after the enqueue.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Delivers no earlier than `at`.
    pub fn available_at(mut self, at: Timestamp) -> Self {
        self.available_at = Some(at);
        self
    }

    fn into_message(self, now: Timestamp, max_payload: usize) -> Result<Message> {
        let id = match self.id {
            Some(id) => {
                validate_id(&id)?;
                id
            }
            None => new_id(),
        };
        if let Some(key) = &self.key {
            crate::limits::key(key)?;
        }
        crate::limits::payload(self.payload.len(), max_payload)?;
        crate::limits::headers(self.headers.iter().map(|(k, v)| k.len() + v.len()).sum())?;
        let available_at = match (self.available_at, self.delay) {
            (Some(at), _) => at.max(now),
            (None, Some(d)) => now.after(d),
            (None, None) => now,
        };
        Ok(Message {
            id,
            key: self.key,
            payload: self.payload,
            headers: self.headers,
            created_at: now,
            available_at,
            attempts: 0,
        })
    }
}

/// Counters since the outbox was opened (in this process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Messages added.
    pub enqueued: u64,
    /// Messages acknowledged as delivered.
    pub delivered: u64,
    /// Failed attempts scheduled for a retry.
    pub retried: u64,
    /// Messages given up on.
    pub dead_lettered: u64,
    /// At-most-once messages whose one attempt failed (lost by design).
    pub dropped: u64,
    /// Attempts settled (acked, retried, failed, snoozed or released).
    pub attempts_settled: u64,
    /// Total time from lease to settle over those attempts, in microseconds (wall clock).
    pub attempt_micros: u64,
}

impl Counters {
    /// Mean time from lease to settle, if any attempt was settled.
    pub fn mean_attempt_latency(&self) -> Option<Duration> {
        (self.attempts_settled > 0)
            .then(|| Duration::from_micros(self.attempt_micros / self.attempts_settled))
    }
}

#[derive(Default)]
struct AtomicCounters {
    enqueued: AtomicU64,
    delivered: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    dropped: AtomicU64,
    attempts_settled: AtomicU64,
    attempt_micros: AtomicU64,
}

/// A snapshot of an outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// The queue as stored (all processes).
    pub queue: QueueStats,
    /// This process's counters.
    pub counters: Counters,
    /// Age of the oldest pending message, by the outbox's clock.
    pub oldest_age: Option<Duration>,
}

type Listener = Arc<dyn Fn(&Event) + Send + Sync>;

struct Inner<S> {
    store: S,
    clock: SharedClock,
    config: OutboxConfig,
    rules: Rules,
    counters: AtomicCounters,
    listeners: RwLock<Vec<Listener>>,
    budget: Option<Mutex<BudgetState>>,
}

/// A durable retry queue over a store. Cheap to clone; clones share everything.
pub struct Outbox<S: OutboxStore> {
    inner: Arc<Inner<S>>,
}

impl<S: OutboxStore> Clone for Outbox<S> {
    fn clone(&self) -> Self {
        Outbox { inner: self.inner.clone() }
    }
}

impl<S: OutboxStore> std::fmt::Debug for Outbox<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("queue", &self.inner.config.queue).finish_non_exhaustive()
    }
}

/// One leased message, handed to a handler. Settle it exactly once with one of its methods; a
/// settle after the lease was taken over is refused with [`Error::LeaseLost`].
pub struct Delivery<S: OutboxStore> {
    outbox: Outbox<S>,
    record: OutboxRecord,
    token: u64,
    leased_at: std::time::Instant,
}

impl<S: OutboxStore> std::fmt::Debug for Delivery<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.record.message.id)
            .field("attempt", &self.record.message.attempts)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl<S: OutboxStore> Delivery<S> {
    /// The message id. Pass it to the receiver as the idempotency key (or map it to a broker's
    /// dedup header: `Nats-Msg-Id`, SQS `MessageDeduplicationId`).
    pub fn id(&self) -> &str {
        &self.record.message.id
    }

    /// The idempotency key of this delivery: the message id.
    pub fn idempotency_key(&self) -> &str {
        self.id()
    }

    /// The message as leased.
    pub fn message(&self) -> &Message {
        &self.record.message
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.record.message.payload
    }

    /// Which attempt this is (1 for the first).
    pub fn attempt(&self) -> u32 {
        self.record.message.attempts
    }

    /// The lease's fencing token (0 in at-most-once, where nothing is leased).
    pub fn token(&self) -> u64 {
        self.token
    }

    /// The error of the previous attempt, if any.
    pub fn last_error(&self) -> Option<&str> {
        self.record.last_error.as_deref()
    }

    /// Settles the delivery.
    pub async fn settle(&self, how: Settle) -> Result<Settled> {
        let extend = matches!(how, Settle::Extend { .. });
        let settled = self.outbox.settle(&self.record.message.id, self.token, how).await?;
        if !extend {
            self.count_attempt();
        }
        Ok(settled)
    }

    fn count_attempt(&self) {
        let c = &self.outbox.inner.counters;
        c.attempts_settled.fetch_add(1, AtomicOrdering::Relaxed);
        c.attempt_micros.fetch_add(self.leased_at.elapsed().as_micros() as u64, AtomicOrdering::Relaxed);
    }

    /// Delivered: the message is done.
    pub async fn ack(&self) -> Result<()> {
        self.settle(Settle::Ack).await.map(drop)
    }

    /// The attempt failed: retry by the policy, or after `after` when the handler knows better
    /// (Retry-After). Gives up (dead letter or park) when the policy says so.
    pub async fn retry(&self, after: Option<Duration>, error: impl Into<String>) -> Result<Settled> {
        self.settle(Settle::Retry { after, error: error.into() }).await
    }

    /// Not now: deliver again after `after` (at least one millisecond: a zero snooze would hand
    /// the message straight back, forever) without using up an attempt.
    pub async fn snooze(&self, after: Duration) -> Result<Settled> {
        self.settle(Settle::Snooze { after }).await
    }

    /// A permanent failure: dead-letter (or park) without retrying.
    pub async fn fail(&self, reason: impl Into<String>) -> Result<Settled> {
        self.settle(Settle::Fail { reason: reason.into() }).await
    }

    /// Keeps the lease for `lease` more from now (for long handlers).
    pub async fn extend(&self, lease: Duration) -> Result<Settled> {
        self.settle(Settle::Extend { lease }).await
    }

    /// Gives the message back unattempted (graceful shutdown).
    pub async fn release(&self) -> Result<Settled> {
        self.settle(Settle::Release).await
    }
}

impl<S: OutboxStore> Outbox<S> {
    /// An outbox on `store` with `config`, on the system clock.
    pub fn open(store: S, config: OutboxConfig) -> Result<Self> {
        Self::with_clock(store, config, Arc::new(SystemClock))
    }

    /// Like [`Outbox::open`], on an injected clock.
    pub fn with_clock(store: S, config: OutboxConfig, clock: SharedClock) -> Result<Self> {
        config.validate()?;
        let rules =
            Rules { mode: config.mode, retry: config.retry, ordering: config.ordering, seed: config.seed };
        let budget = config.retry_budget.map(|b| Mutex::new(BudgetState::new(b, clock.now())));
        Ok(Outbox {
            inner: Arc::new(Inner {
                store,
                clock,
                config,
                rules,
                counters: AtomicCounters::default(),
                listeners: RwLock::new(Vec::new()),
                budget,
            }),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &OutboxConfig {
        &self.inner.config
    }

    /// The store underneath.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// The outbox's clock's "now".
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// Calls `listener` with every state change, after it committed, in this process.
    pub fn on_event(&self, listener: impl Fn(&Event) + Send + Sync + 'static) {
        self.inner.listeners.write().push(Arc::new(listener));
    }

    pub(crate) fn publish_events(&self, events: Vec<Event>) {
        let c = &self.inner.counters;
        for e in &events {
            match &e.kind {
                EventKind::DeadLettered { reason } => {
                    tracing::warn!(queue = %self.inner.config.queue, id = %e.id, %reason, "oncely: message dead-lettered")
                }
                EventKind::Dropped => {
                    tracing::info!(queue = %self.inner.config.queue, id = %e.id, "oncely: at-most-once message dropped")
                }
                _ => {}
            }
            let counter = match e.kind {
                EventKind::Enqueued => &c.enqueued,
                EventKind::Acked => &c.delivered,
                EventKind::Retried { .. } => &c.retried,
                EventKind::DeadLettered { .. } => &c.dead_lettered,
                EventKind::Dropped => &c.dropped,
                _ => continue,
            };
            counter.fetch_add(1, AtomicOrdering::Relaxed);
        }
        let listeners = self.inner.listeners.read().clone();
        if listeners.is_empty() {
            return;
        }
        for e in &events {
            for l in &listeners {
                l(e);
            }
        }
    }

    /// Runs one rule inside the store's atomic step and publishes its events once committed.
    async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut dyn crate::store::OutboxTx, &Rules, &mut Vec<Event>) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let rules = self.inner.rules.clone();
        let (result, events) = self
            .inner
            .store
            .transact(&self.inner.config.queue, move |tx| {
                let mut events = Vec::new();
                let r = work(tx, &rules, &mut events)?;
                Ok((r, events))
            })
            .await?;
        self.publish_events(events);
        Ok(result)
    }

    /// Adds `message` unless a message with its id is already in the queue. Returns once durable.
    pub async fn enqueue(&self, message: NewMessage) -> Result<Enqueued> {
        let mut r = self.enqueue_many(vec![message]).await?;
        r.pop().ok_or_else(|| Error::Storage("enqueue answered nothing".into()))
    }

    /// Adds many messages in one commit. Every message is checked first: one bad message fails
    /// the whole call and nothing is written.
    pub async fn enqueue_many(&self, messages: Vec<NewMessage>) -> Result<Vec<Enqueued>> {
        let now = self.now();
        let max = self.inner.config.max_payload_bytes;
        let messages = messages.into_iter().map(|m| m.into_message(now, max)).collect::<Result<Vec<_>>>()?;
        self.run(move |tx, _, events| rules::enqueue(tx, messages, now, events)).await
    }

    /// Enqueues `messages` through `tx`, a step of some transaction oncely does not commit
    /// itself (the transactional outbox): the same checks and rules as [`Outbox::enqueue_many`].
    /// Events are published at once, before that transaction commits.
    pub(crate) fn enqueue_through(
        &self,
        tx: &mut dyn crate::store::OutboxTx,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Enqueued>> {
        let now = self.now();
        let max = self.inner.config.max_payload_bytes;
        let messages = messages.into_iter().map(|m| m.into_message(now, max)).collect::<Result<Vec<_>>>()?;
        let mut events = Vec::new();
        let out = rules::enqueue(tx, messages, now, &mut events)?;
        self.publish_events(events);
        Ok(out)
    }

    /// Leases up to `max` due messages for the configured lease. See [`rules`] for what each
    /// mode writes.
    pub async fn lease(&self, max: usize) -> Result<Vec<Delivery<S>>> {
        Ok(self.settle_many_and_lease(Vec::new(), max).await?.1)
    }

    /// Settles `items` (as [`Outbox::settle_many`]) and then leases up to `max` messages, all in
    /// one store step: what a worker does between two rounds, in one commit.
    pub async fn settle_many_and_lease(
        &self,
        items: Vec<(&Delivery<S>, Settle)>,
        max: usize,
    ) -> Result<(Vec<Result<Settled>>, Vec<Delivery<S>>)> {
        self.settle_many_lease_skipping(items, max, HashSet::new()).await
    }

    /// [`Outbox::settle_many_and_lease`], passing over the messages whose ids `skip` holds.
    pub(crate) async fn settle_many_lease_skipping(
        &self,
        items: Vec<(&Delivery<S>, Settle)>,
        max: usize,
        skip: HashSet<String>,
    ) -> Result<(Vec<Result<Settled>>, Vec<Delivery<S>>)> {
        for (_, how) in &items {
            check_settle(how)?;
        }
        let now = self.now();
        let lease = self.inner.config.lease;
        let allowed = self.inner.budget.as_ref().map_or(usize::MAX, |b| b.lock().reserve(now));
        let work: Vec<(String, u64, Settle)> =
            items.iter().map(|(d, how)| (d.record.message.id.clone(), d.token, how.clone())).collect();
        let done = self
            .run(move |tx, rules, events| {
                let ids: Vec<&str> = work.iter().map(|(id, _, _)| id.as_str()).collect();
                tx.prefetch(&ids)?;
                let mut answers = Vec::with_capacity(work.len());
                for (id, token, how) in work {
                    match rules::settle(tx, &id, token, how, rules, now, events) {
                        // A stale token fails only its own entry.
                        Err(e) if e.code() == crate::ErrorCode::LeaseLost => answers.push(Err(e)),
                        Err(e) => return Err(e),
                        Ok(settled) => answers.push(Ok(settled)),
                    }
                }
                let leased = rules::lease(tx, max, lease, allowed, &skip, rules, now, events)?;
                Ok((answers, leased))
            })
            .await;
        let (answers, (records, retries_used)) = match done {
            Ok(done) => done,
            Err(e) => {
                if let Some(b) = &self.inner.budget {
                    b.lock().settle(now, allowed, 0, 0); // nothing was leased: all of it comes back
                }
                return Err(e);
            }
        };
        for ((d, how), answer) in items.iter().zip(&answers) {
            if answer.is_ok() && !matches!(how, Settle::Extend { .. }) {
                d.count_attempt();
            }
        }
        if let Some(b) = &self.inner.budget {
            let firsts = records.len() - retries_used;
            b.lock().settle(now, allowed, firsts, retries_used);
        }
        let leased_at = std::time::Instant::now();
        let deliveries = records
            .into_iter()
            .map(|record| {
                let token = match record.state {
                    MessageState::Leased { token, .. } => token,
                    _ => 0,
                };
                Delivery { outbox: self.clone(), record, token, leased_at }
            })
            .collect();
        Ok((answers, deliveries))
    }

    /// Settles the delivery of `id` held with `token` (what [`Delivery`]'s methods call; useful
    /// when the token travelled elsewhere, e.g. across an FFI boundary).
    pub async fn settle(&self, id: &str, token: u64, how: Settle) -> Result<Settled> {
        validate_id(id)?;
        check_settle(&how)?;
        let now = self.now();
        let id = id.to_owned();
        self.run(move |tx, rules, events| rules::settle(tx, &id, token, how, rules, now, events)).await
    }

    /// Settles many deliveries in one store step (one commit). Each gets its own answer: a stale
    /// token fails only its own entry.
    pub async fn settle_many(&self, items: Vec<(&Delivery<S>, Settle)>) -> Result<Vec<Result<Settled>>> {
        Ok(self.settle_many_and_lease(items, 0).await?.0)
    }

    /// Removes a queued message before delivery.
    pub async fn cancel(&self, id: &str) -> Result<Cancelled> {
        validate_id(id)?;
        let (now, id) = (self.now(), id.to_owned());
        self.run(move |tx, _, events| rules::cancel(tx, &id, now, events)).await
    }

    /// The message `id` in any state (pending, leased or dead), for inspection.
    pub async fn get(&self, id: &str) -> Result<Option<OutboxRecord>> {
        validate_id(id)?;
        let id = id.to_owned();
        self.run(move |tx, _, _| tx.get(&id)).await
    }

    /// Dead letters in queue order, `limit` at a time, strictly after the `seq` of the last one
    /// seen (`None` to start).
    pub async fn dead_letters(&self, after_seq: Option<u64>, limit: usize) -> Result<Vec<OutboxRecord>> {
        self.run(move |tx, _, _| tx.dead_letters(after_seq, limit)).await
    }

    /// Puts a dead letter back in the queue with attempts reset. `false` if `id` is not a dead
    /// letter.
    pub async fn replay(&self, id: &str) -> Result<bool> {
        validate_id(id)?;
        let (now, id) = (self.now(), id.to_owned());
        self.run(move |tx, rules, events| rules::replay(tx, &id, rules, now, events)).await
    }

    /// Deletes the named dead letters, or all of them with `None`; says how many went.
    pub async fn purge_dead(&self, ids: Option<Vec<String>>) -> Result<u64> {
        if let Some(ids) = &ids {
            ids.iter().try_for_each(|id| validate_id(id))?;
        }
        let now = self.now();
        self.run(move |tx, _, events| rules::purge_dead(tx, ids, now, events)).await
    }

    /// The queue's counts and this process's counters.
    pub async fn stats(&self) -> Result<Stats> {
        let now = self.now();
        let queue = self.run(move |tx, _, _| tx.stats(now)).await?;
        let c = &self.inner.counters;
        let load = |a: &AtomicU64| a.load(AtomicOrdering::Relaxed);
        Ok(Stats {
            queue,
            counters: Counters {
                enqueued: load(&c.enqueued),
                delivered: load(&c.delivered),
                retried: load(&c.retried),
                dead_lettered: load(&c.dead_lettered),
                dropped: load(&c.dropped),
                attempts_settled: load(&c.attempts_settled),
                attempt_micros: load(&c.attempt_micros),
            },
            oldest_age: queue.oldest_created_at.map(|t| now.since(t)),
        })
    }
}

/// Refuses a settle whose duration is out of range: a lease extension or a snooze must last at
/// least one millisecond (a zero snooze would return the message at once without using up an
/// attempt, a loop that never ends).
pub(crate) fn check_settle(how: &Settle) -> Result<()> {
    match how {
        Settle::Extend { lease } => require_positive("lease", *lease).map(drop),
        Settle::Snooze { after } => require_positive("snooze", *after).map(drop),
        _ => Ok(()),
    }
}
