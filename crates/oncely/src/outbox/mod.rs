//! The sender's durable retry queue (docs/design.md §3).
//!
//! Pull-style: [`Outbox::enqueue`], [`Outbox::lease`], then one of the [`Delivery`]'s settle
//! calls (`ack`, `retry`, `snooze`, `fail`, `extend`, `release`). Every rule — what the modes
//! write when, backoff, dead letters, FIFO per key, the retry budget — lives in [`rules`] and runs
//! inside the store's atomic step. [`crate::worker::Worker`] is a loop over these calls.

mod budget;
mod config;
mod counters;
mod delivery;
mod events;
mod in_transaction;
pub mod rules;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use parking_lot::{Mutex, RwLock};

pub use crate::records::{MessageState, OutboxRecord, QueueStats};
pub use budget::RetryBudget;
pub use config::{NewMessage, OutboxConfig};
use counters::AtomicCounters;
pub use counters::{Counters, Stats};
pub use delivery::Delivery;
pub use events::{Event, EventKind, FlatEvent};
pub use rules::{Cancelled, Enqueued, Ordering, PoisonPolicy, Settle, SettleFields, Settled};

use crate::clock::{SharedClock, SystemClock, Timestamp, require_positive};
use crate::error::{Error, Result};
use crate::message::validate_id;
use crate::records::Durability;
use crate::store::OutboxStore;
use budget::BudgetState;
use rules::Rules;

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

impl<S: OutboxStore> Outbox<S> {
    /// An outbox on `store` with `config`, in real time: its deadlines (due times, leases) are
    /// judged by the store's clock — the database server's on PostgreSQL, so every host of a
    /// fleet agrees whatever its own clock says — or the host's clock where there is one host.
    pub fn open(store: S, config: OutboxConfig) -> Result<Self> {
        Self::with_clock(store, config, Arc::new(SystemClock))
    }

    /// Like [`Outbox::open`], on an injected clock. [`SystemClock`] means real time, as for
    /// [`Outbox::open`].
    pub fn with_clock(store: S, config: OutboxConfig, clock: SharedClock) -> Result<Self> {
        config.validate()?;
        let clock = match clock.is_real_time() {
            true => OutboxStore::deadline_clock(&store).unwrap_or(clock),
            false => clock,
        };
        let rules = Rules {
            mode: config.mode,
            retry: config.retry,
            ordering: config.ordering,
            seed: config.seed,
            dedup_window: config.dedup_window,
        };
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

    /// An event about the store rather than one message (its `id` is empty), stamped now.
    pub(crate) fn store_event(&self, kind: EventKind) -> Event {
        Event { id: String::new(), at: self.now(), kind }
    }

    pub(crate) fn publish_events(&self, events: Vec<Event>) {
        #[cfg(feature = "otel")]
        crate::telemetry::count_events(&self.inner.config.queue, &events);
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

    /// Runs one rule inside the store's atomic step, durable, and publishes its events once
    /// committed.
    async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut dyn crate::store::OutboxTx, &Rules, &mut Vec<Event>) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        self.run_with(Durability::Durable, work).await
    }

    /// [`Outbox::run`] with a commit that needs to reach only `durability`.
    async fn run_with<R: Send + 'static>(
        &self,
        durability: Durability,
        work: impl FnOnce(&mut dyn crate::store::OutboxTx, &Rules, &mut Vec<Event>) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let rules = self.inner.rules.clone();
        let (result, events) = self
            .inner
            .store
            .transact_with(&self.inner.config.queue, durability, move |tx| {
                let mut events = Vec::new();
                let r = work(tx, &rules, &mut events)?;
                count(tx, &events)?;
                Ok((r, events))
            })
            .await?;
        self.publish_events(events);
        Ok(result)
    }

    /// Adds `message` unless its id is known: already in the queue (pending or dead:
    /// [`Enqueued::AlreadyQueued`]) or delivered within the dedup window
    /// ([`Enqueued::AlreadyDelivered`]). The same id with a different payload is
    /// [`Error::Conflict`] and nothing is written. Returns once durable.
    pub async fn enqueue(&self, message: NewMessage) -> Result<Enqueued> {
        let mut r = self.enqueue_many(vec![message]).await?;
        r.pop().ok_or_else(|| Error::Storage("enqueue answered nothing".into()))
    }

    /// Adds many messages in one commit, each answered as by [`Outbox::enqueue`] (an id twice
    /// in one batch counts as already queued the second time). Every message is checked first:
    /// one bad message, or one conflict, fails the whole call and nothing is written.
    pub async fn enqueue_many(&self, messages: Vec<NewMessage>) -> Result<Vec<Enqueued>> {
        #[cfg(feature = "otel")]
        let (messages, send) = self.trace_send(messages);
        let out = self.enqueue_many_untraced(messages).await;
        #[cfg(feature = "otel")]
        if let Some(send) = send {
            send.end(out.as_ref().err());
        }
        out
    }

    async fn enqueue_many_untraced(&self, messages: Vec<NewMessage>) -> Result<Vec<Enqueued>> {
        let now = self.now();
        let max = self.inner.config.max_payload_bytes;
        let messages = messages.into_iter().map(|m| m.into_message(now, max)).collect::<Result<Vec<_>>>()?;
        self.run(move |tx, r, events| rules::enqueue(tx, messages, r, now, events)).await
    }

    /// With telemetry on: starts the enqueue's send span and writes its trace context into each
    /// message that has none.
    #[cfg(feature = "otel")]
    fn trace_send(&self, messages: Vec<NewMessage>) -> (Vec<NewMessage>, Option<crate::telemetry::SendSpan>) {
        if !crate::telemetry::is_on() {
            return (messages, None);
        }
        let ids: Vec<Option<&str>> = messages.iter().map(|m| m.given_id()).collect();
        let Some(send) = crate::telemetry::start_send(&self.inner.config.queue, &ids) else {
            return (messages, None);
        };
        let messages = messages.into_iter().map(|m| m.trace(send.headers())).collect();
        (messages, Some(send))
    }

    /// Enqueues `messages` through `tx`, a step of some transaction oncely does not commit
    /// itself (the transactional outbox): the same checks and rules as [`Outbox::enqueue_many`].
    /// Events are published at once, before that transaction commits.
    pub(crate) fn enqueue_through(
        &self,
        tx: &mut dyn crate::store::OutboxTx,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Enqueued>> {
        #[cfg(feature = "otel")]
        let (messages, send) = self.trace_send(messages);
        let now = self.now();
        let max = self.inner.config.max_payload_bytes;
        let out = (|| {
            let messages =
                messages.into_iter().map(|m| m.into_message(now, max)).collect::<Result<Vec<_>>>()?;
            let mut events = Vec::new();
            let out = rules::enqueue(tx, messages, &self.inner.rules, now, &mut events)?;
            count(tx, &events)?;
            self.publish_events(events);
            Ok(out)
        })();
        #[cfg(feature = "otel")]
        if let Some(send) = send {
            send.end(out.as_ref().err());
        }
        out
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
        // Leasing is an attempt mark of the outbox's mode (each message's own mode raises it
        // inside the step); settles add what each needs.
        let leasing =
            if max == 0 { Durability::Visible } else { Durability::of_attempt(self.inner.config.mode) };
        let durability = items.iter().fold(leasing, |d, (_, how)| d.and(how.durability()));
        let work: Vec<(String, u64, Settle)> =
            items.iter().map(|(d, how)| (d.record.message.id.clone(), d.token, how.clone())).collect();
        let done = self
            .run_with(durability, move |tx, rules, events| {
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
        self.run_with(how.durability(), move |tx, rules, events| {
            rules::settle(tx, &id, token, how, rules, now, events)
        })
        .await
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

    /// The queue as stored, its totals as the store counted them, and this process's attempt
    /// timing.
    pub async fn stats(&self) -> Result<Stats> {
        let now = self.now();
        let queue = self.run(move |tx, _, _| tx.stats(now)).await?;
        let c = &self.inner.counters;
        let load = |a: &AtomicU64| a.load(AtomicOrdering::Relaxed);
        Ok(Stats {
            queue,
            counters: Counters {
                enqueued: queue.counts.enqueued,
                delivered: queue.counts.delivered,
                retried: queue.counts.retried,
                dead_lettered: queue.counts.dead_lettered,
                dropped: queue.counts.dropped,
                attempts_settled: load(&c.attempts_settled),
                attempt_micros: load(&c.attempt_micros),
            },
            oldest_age: queue.oldest_created_at.map(|t| now.since(t)),
        })
    }
}

/// Adds what one step's `events` count to the queue's totals, in the same step (so they commit
/// together or not at all).
fn count(tx: &mut dyn crate::store::OutboxTx, events: &[Event]) -> Result<()> {
    let counts = counters::counted(events);
    if counts.is_zero() { Ok(()) } else { tx.add_counts(counts) }
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
