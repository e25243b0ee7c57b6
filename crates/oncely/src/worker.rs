//! The push-style worker: leases messages, runs a handler with bounded concurrency, and settles
//! each delivery by the handler's [`Outcome`]. It only loops: every rule stays in the
//! [`Outbox`](crate::Outbox) calls it makes.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::clock::require_positive;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::outbox::{Delivery, EventKind, Outbox, Settle};
use crate::store::OutboxStore;

/// What a handler says about one delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Delivered.
    Success,
    /// Failed; retry by the policy, or after `after` (e.g. the receiver's Retry-After).
    Retry {
        /// A delay hint replacing the backoff.
        after: Option<Duration>,
        /// What went wrong.
        error: String,
    },
    /// Not now (rate limited): try again after the delay without using up an attempt.
    Snooze(Duration),
    /// Failed for good: dead-letter (or park) without retrying.
    Fail(String),
}

impl Outcome {
    /// A retryable failure with no delay hint.
    pub fn retry(error: impl Into<String>) -> Self {
        Outcome::Retry { after: None, error: error.into() }
    }
}

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Handlers running at once. Default: 16.
    pub concurrency: usize,
    /// How long to wait before looking again when nothing was due. Default: 50 ms.
    pub poll_interval: Duration,
    /// On shutdown, how long in-flight handlers may take before they are stopped.
    /// Default: 30 s.
    pub shutdown_timeout: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 16,
            poll_interval: Duration::from_millis(50),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// What a worker run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Deliveries handed to the handler.
    pub attempts: u64,
    /// Of those, settled as delivered.
    pub succeeded: u64,
    /// Of those, whose handler failed or panicked (retried, dead-lettered or dropped by the mode).
    pub failed: u64,
    /// Attempts still running at shutdown: stopped and settled as failed attempts (retried by
    /// the policy).
    pub released: u64,
}

/// Runs a handler over an outbox. Needs a tokio runtime with timers (see [`crate::runtime`]).
#[derive(Debug, Clone)]
pub struct Worker<S: OutboxStore> {
    outbox: Outbox<S>,
    config: WorkerConfig,
}

enum Stop {
    Never,
    WhenIdle,
}

impl<S: OutboxStore> Worker<S> {
    /// A worker for `outbox`.
    pub fn new(outbox: Outbox<S>, config: WorkerConfig) -> Result<Self> {
        if config.concurrency == 0 {
            return Err(Error::invalid("concurrency", "must be at least 1"));
        }
        require_positive("poll_interval", config.poll_interval)?;
        Ok(Worker { outbox, config })
    }

    /// Delivers until nothing is due and nothing is in flight, then returns. Messages scheduled
    /// for later are left for a later run.
    pub async fn run_until_idle<H, Fut>(&self, handler: H) -> Result<RunSummary>
    where
        H: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        self.run_inner(handler, std::future::pending::<()>(), Stop::WhenIdle).await
    }

    /// [`Worker::run_until_idle`] that also ends early, gracefully, when `shutdown` resolves
    /// (as [`Worker::run`] does): for a binding whose handler asked the process to stop (a
    /// Python `KeyboardInterrupt`) while draining.
    pub async fn run_until_idle_or<H, Fut>(
        &self,
        handler: H,
        shutdown: impl Future<Output = ()>,
    ) -> Result<RunSummary>
    where
        H: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        self.run_inner(handler, shutdown, Stop::WhenIdle).await
    }

    /// Delivers until `shutdown` resolves; then stops leasing, waits up to `shutdown_timeout` for
    /// in-flight handlers, and stops those still running, settling them as failed attempts
    /// (retried by the policy: an attempt under way may have had its effect).
    pub async fn run<H, Fut>(&self, handler: H, shutdown: impl Future<Output = ()>) -> Result<RunSummary>
    where
        H: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        self.run_inner(handler, shutdown, Stop::Never).await
    }

    async fn run_inner<H, Fut>(
        &self,
        handler: H,
        shutdown: impl Future<Output = ()>,
        stop: Stop,
    ) -> Result<RunSummary>
    where
        H: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::invalid(
                "runtime",
                "the worker runs on tokio: await it inside a tokio runtime, or call it through oncely::runtime::block_on",
            ));
        }
        let handler = Arc::new(handler);
        let mut tasks: JoinSet<(Attempt, Outcome)> = JoinSet::new();
        // Keyed by (id, token): a handler that outlived its lease must not settle its successor.
        let mut in_flight: HashMap<Attempt, Arc<Delivery<S>>> = HashMap::new();
        let mut summary = RunSummary::default();
        tokio::pin!(shutdown);
        let lease = self.outbox.config().lease;
        let mut finished: Vec<(Attempt, Outcome)> = Vec::new();
        let mut snoozed = HashSet::new();
        let mut weather = Weather::new(self.config.poll_interval);
        loop {
            // Settle what finished and lease what there is room for, in one commit. While the
            // store is unavailable the outcomes wait (their leases still hold: running handlers
            // keep extending theirs) and the worker tries again after a bounded backoff.
            let free = self.config.concurrency.saturating_sub(tasks.len());
            let step = self
                .settle_and_lease(&mut finished, free, &mut in_flight, &mut summary, &stop, &mut snoozed)
                .await;
            let leased = match weather.judge(&self.outbox, step)? {
                Some(leased) => leased,
                None => {
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(weather.backoff()) => {}
                    }
                    while let Some(r) = tasks.try_join_next() {
                        finished.extend(r.ok());
                    }
                    continue;
                }
            };
            let got_any = !leased.is_empty();
            for delivery in leased {
                let delivery = Arc::new(delivery);
                summary.attempts += 1;
                in_flight.insert((delivery.id().to_owned(), delivery.token()), delivery.clone());
                tasks.spawn(attempt(delivery, handler.clone(), lease));
            }
            if in_flight.is_empty() && !got_any && matches!(stop, Stop::WhenIdle) {
                return Ok(summary);
            }
            let first = tokio::select! {
                _ = &mut shutdown => break,
                done = tasks.join_next(), if !tasks.is_empty() => done,
                _ = tokio::time::sleep(self.config.poll_interval), if !got_any || free == 0 => None,
            };
            finished.extend(first.into_iter().filter_map(|r| r.ok()));
            while let Some(r) = tasks.try_join_next() {
                finished.extend(r.ok());
            }
        }
        // Graceful shutdown: no more leases; let in-flight work finish for a while, settling
        // what finishes (through passing store trouble, until the deadline).
        let deadline = tokio::time::sleep(self.config.shutdown_timeout);
        tokio::pin!(deadline);
        loop {
            if !finished.is_empty() {
                let step = self
                    .settle_and_lease(&mut finished, 0, &mut in_flight, &mut summary, &stop, &mut snoozed)
                    .await;
                if weather.judge(&self.outbox, step)?.is_none() {
                    tokio::select! {
                        _ = tokio::time::sleep(weather.backoff()) => continue,
                        _ = &mut deadline => break,
                    }
                }
            }
            if tasks.is_empty() {
                break;
            }
            tokio::select! {
                done = tasks.join_next() => finished.extend(done.into_iter().filter_map(|r| r.ok())),
                _ = &mut deadline => break,
            }
        }
        // Still running: stop the handlers (dropping an attempt aborts its handler task) and give
        // their messages back as failed attempts — an attempt under way may have had an effect,
        // so it counts, and a handler that always hangs still runs out of attempts.
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let settled: HashSet<&Attempt> = finished.iter().map(|(a, _)| a).collect();
        let mut unfinished = in_flight
            .keys()
            .filter(|a| !settled.contains(a))
            .map(|attempt| (attempt.clone(), Outcome::retry("the worker shut down during the attempt")))
            .collect::<Vec<_>>();
        summary.released = unfinished.len() as u64;
        let before = (summary.succeeded, summary.failed);
        unfinished.append(&mut finished);
        // Last try: if the store is still unavailable, the leases run out and the messages are
        // redelivered by the mode's rules, as after a crash.
        self.settle_and_lease(&mut unfinished, 0, &mut in_flight, &mut summary, &stop, &mut snoozed).await?;
        (summary.succeeded, summary.failed) = before;
        Ok(summary)
    }

    /// Settles finished attempts by their outcomes and leases up to `max` more, in one store
    /// step. A settle refused for a lost lease is logged: that message is redelivered. When the
    /// step fails, `finished` keeps every outcome, to be settled by a later step.
    async fn settle_and_lease(
        &self,
        finished: &mut Vec<(Attempt, Outcome)>,
        max: usize,
        in_flight: &mut HashMap<Attempt, Arc<Delivery<S>>>,
        summary: &mut RunSummary,
        stop: &Stop,
        snoozed: &mut HashSet<String>,
    ) -> Result<Vec<Delivery<S>>> {
        finished.retain(|(attempt, _)| in_flight.contains_key(attempt));
        let mut items = Vec::with_capacity(finished.len());
        let mut skip = snoozed.clone();
        for (attempt, outcome) in finished.iter() {
            let delivery = in_flight[attempt].clone();
            let how = settle_for(outcome.clone());
            if matches!(how, Settle::Snooze { .. }) && matches!(stop, Stop::WhenIdle) {
                // Not delivered again in this run: a handler that always snoozes must not keep
                // `run_until_idle` from ending.
                skip.insert(delivery.id().to_owned());
            }
            items.push((delivery, how));
        }
        if items.is_empty() && max == 0 {
            return Ok(Vec::new());
        }
        let refs = items.iter().map(|(d, how)| (d.as_ref(), how.clone())).collect();
        let (answers, leased) = self.outbox.settle_many_lease_skipping(refs, max, skip.clone()).await?;
        *snoozed = skip;
        for (attempt, outcome) in finished.drain(..) {
            in_flight.remove(&attempt);
            if outcome == Outcome::Success {
                summary.succeeded += 1;
            } else {
                summary.failed += 1;
            }
        }
        for ((d, _), answer) in items.iter().zip(answers) {
            if let Err(e) = answer {
                tracing::warn!(id = %d.id(), error = %e, "oncely: a delivery's lease was lost before it was settled; it will be redelivered");
            }
        }
        Ok(leased)
    }
}

/// How a handler's outcome settles its delivery. A snooze shorter than a millisecond is not a
/// snooze (it would hand the message straight back without using up an attempt, forever): it
/// settles as a retryable failure that says so, so the policy's attempt limit still ends it.
fn settle_for(outcome: Outcome) -> Settle {
    match outcome {
        Outcome::Success => Settle::Ack,
        Outcome::Retry { after, error } => Settle::Retry { after, error },
        Outcome::Snooze(after) => match require_positive("snooze", after) {
            Ok(after) => Settle::Snooze { after },
            Err(e) => Settle::Retry { after: None, error: format!("bad snooze: {e}") },
        },
        Outcome::Fail(reason) => Settle::Fail { reason },
    }
}

/// How a worker rides out a store that is unavailable for a while: a transient error
/// ([`Error::is_transient`]) is published as a `store_unavailable` event and logged once per
/// outage, answered with a backoff that doubles from the poll interval up to
/// [`Weather::MAX_BACKOFF`]; the first step that succeeds afterwards publishes
/// `store_recovered`. Any other error ends the run.
struct Weather {
    first: Duration,
    next: Duration,
    since: Option<std::time::Instant>,
}

impl Weather {
    /// The longest wait between two tries while the store is unavailable.
    const MAX_BACKOFF: Duration = Duration::from_secs(2);

    fn new(poll_interval: Duration) -> Weather {
        let first = poll_interval.clamp(Duration::from_millis(10), Self::MAX_BACKOFF);
        Weather { first, next: first, since: None }
    }

    /// `Some(value)` when the step succeeded, `None` when it failed transiently (try again after
    /// [`Weather::backoff`]); a permanent error is returned.
    fn judge<T, S: OutboxStore>(&mut self, outbox: &Outbox<S>, step: Result<T>) -> Result<Option<T>> {
        match step {
            Ok(v) => {
                if let Some(since) = self.since.take() {
                    let after_ms = since.elapsed().as_millis() as u64;
                    tracing::info!(after_ms, "oncely: the store is reachable again; the worker goes on");
                    outbox.publish_events(vec![outbox.store_event(EventKind::StoreRecovered { after_ms })]);
                }
                self.next = self.first;
                Ok(Some(v))
            }
            Err(e) if e.is_transient() => {
                if self.since.is_none() {
                    self.since = Some(std::time::Instant::now());
                    tracing::warn!(error = %e, "oncely: the store is unavailable; the worker keeps its outcomes and retries");
                    outbox.publish_events(vec![
                        outbox.store_event(EventKind::StoreUnavailable { error: e.to_string() }),
                    ]);
                }
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// How long to wait before the next try; doubles up to [`Weather::MAX_BACKOFF`].
    fn backoff(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(Self::MAX_BACKOFF);
        now
    }
}

/// One delivery attempt: the message id and the lease's fencing token.
type Attempt = (String, u64);

/// Aborts the handler's task when the attempt is dropped (aborted at shutdown).
struct AbortOnDrop(tokio::task::JoinHandle<Outcome>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One attempt: run the handler, extending the lease while it runs. A panicking handler counts
/// as a retryable failure. The worker settles the outcome.
async fn attempt<S, H, Fut>(
    delivery: Arc<Delivery<S>>,
    handler: Arc<H>,
    lease: Duration,
) -> (Attempt, Outcome)
where
    S: OutboxStore,
    H: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let key = (delivery.id().to_owned(), delivery.token());
    #[cfg(feature = "otel")]
    let traced = crate::telemetry::start_attempt(
        delivery.queue(),
        delivery.id(),
        delivery.attempt(),
        &delivery.message().headers,
    );
    #[cfg(feature = "otel")]
    let mut run = AbortOnDrop(match &traced {
        Some(t) => {
            use opentelemetry::context::FutureExt as _;
            let work = {
                let _in = t.context().clone().attach();
                handler(delivery.message().clone())
            };
            tokio::spawn(work.with_context(t.context().clone()))
        }
        None => tokio::spawn(handler(delivery.message().clone())),
    });
    #[cfg(not(feature = "otel"))]
    let mut run = AbortOnDrop(tokio::spawn(handler(delivery.message().clone())));
    let heartbeat = (lease / 3).max(Duration::from_millis(1));
    let outcome = loop {
        tokio::select! {
            joined = &mut run.0 => break match joined {
                Ok(outcome) => outcome,
                Err(e) if e.is_panic() => Outcome::retry("the handler panicked"),
                Err(_) => Outcome::retry("the handler was cancelled"),
            },
            _ = tokio::time::sleep(heartbeat) => {
                // Long handler: keep the lease. If it was lost, the settle is refused later.
                let _ = delivery.settle(Settle::Extend { lease }).await;
            }
        }
    };
    #[cfg(feature = "otel")]
    if let Some(t) = traced {
        match &outcome {
            Outcome::Success => t.end("success", None),
            Outcome::Retry { error, .. } => t.end("retry", Some(error)),
            Outcome::Snooze(_) => t.end("snooze", None),
            Outcome::Fail(reason) => t.end("fail", Some(reason)),
        }
    }
    (key, outcome)
}
