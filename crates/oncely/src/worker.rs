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
use crate::outbox::{Delivery, Outbox, Settle};
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
        loop {
            // Settle what finished and lease what there is room for, in one commit.
            let free = self.config.concurrency.saturating_sub(tasks.len());
            let leased = self
                .settle_and_lease(
                    std::mem::take(&mut finished),
                    free,
                    &mut in_flight,
                    &mut summary,
                    &stop,
                    &mut snoozed,
                )
                .await?;
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
        // Graceful shutdown: no more leases; let in-flight work finish for a while.
        self.settle_and_lease(
            std::mem::take(&mut finished),
            0,
            &mut in_flight,
            &mut summary,
            &stop,
            &mut snoozed,
        )
        .await?;
        let deadline = tokio::time::sleep(self.config.shutdown_timeout);
        tokio::pin!(deadline);
        while !tasks.is_empty() {
            tokio::select! {
                done = tasks.join_next() => {
                    let finished = done.into_iter().filter_map(|r| r.ok()).collect();
                    self.settle_and_lease(finished, 0, &mut in_flight, &mut summary, &stop, &mut snoozed).await?;
                }
                _ = &mut deadline => break,
            }
        }
        // Still running: stop the handlers (dropping an attempt aborts its handler task) and give
        // their messages back as failed attempts — an attempt under way may have had an effect,
        // so it counts, and a handler that always hangs still runs out of attempts.
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let unfinished = in_flight
            .keys()
            .map(|attempt| (attempt.clone(), Outcome::retry("the worker shut down during the attempt")))
            .collect::<Vec<_>>();
        summary.released = unfinished.len() as u64;
        let before = (summary.succeeded, summary.failed);
        self.settle_and_lease(unfinished, 0, &mut in_flight, &mut summary, &stop, &mut snoozed).await?;
        (summary.succeeded, summary.failed) = before;
        Ok(summary)
    }

    /// Settles finished attempts by their outcomes and leases up to `max` more, in one store
    /// step. A settle refused for a lost lease is logged: that message is redelivered.
    async fn settle_and_lease(
        &self,
        finished: Vec<(Attempt, Outcome)>,
        max: usize,
        in_flight: &mut HashMap<Attempt, Arc<Delivery<S>>>,
        summary: &mut RunSummary,
        stop: &Stop,
        snoozed: &mut HashSet<String>,
    ) -> Result<Vec<Delivery<S>>> {
        let mut items = Vec::with_capacity(finished.len());
        for (attempt, outcome) in finished {
            let Some(delivery) = in_flight.remove(&attempt) else { continue };
            if outcome == Outcome::Success {
                summary.succeeded += 1;
            } else {
                summary.failed += 1;
            }
            let how = settle_for(outcome);
            if matches!(how, Settle::Snooze { .. }) && matches!(stop, Stop::WhenIdle) {
                // Not delivered again in this run: a handler that always snoozes must not keep
                // `run_until_idle` from ending.
                snoozed.insert(delivery.id().to_owned());
            }
            items.push((delivery, how));
        }
        if items.is_empty() && max == 0 {
            return Ok(Vec::new());
        }
        let refs = items.iter().map(|(d, how)| (d.as_ref(), how.clone())).collect();
        let (answers, leased) = self.outbox.settle_many_lease_skipping(refs, max, snoozed.clone()).await?;
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
    (key, outcome)
}
