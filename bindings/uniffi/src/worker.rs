//! `Worker`: the push-style delivery loop. The core's `oncely::Worker` leases, bounds the
//! concurrency, extends leases and settles by the handler's outcome; this file only calls the
//! host's handler (on a blocking thread) and converts what it returns.

use std::sync::Arc;

use oncely::handler::{HandlerResult, Hint, Raised, Returned};
use oncely::{AnyStore, Outcome, WorkerConfig};
use tokio::sync::watch;

use crate::errors::{HandlerError, OncelyError};
use crate::on_runtime;
use crate::outbox::Outbox;
use crate::text::{HostText, ms};

/// One message handed to a worker's handler.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Message {
    /// The message id: pass it on as the idempotency key.
    pub id: String,
    /// The ordering key.
    pub key: Option<String>,
    /// The payload.
    pub payload: Vec<u8>,
    /// The headers.
    pub headers: std::collections::HashMap<String, String>,
    /// Which attempt this is (1 for the first).
    pub attempt: u32,
    /// When it was enqueued.
    pub created_at_ms: i64,
    /// The idempotency key for the receiver: the message id (as `Delivery.idempotencyKey`).
    pub idempotency_key: String,
    /// When it became deliverable (its enqueue time plus any delay, or the time a retry or
    /// snooze set).
    pub available_at_ms: i64,
}

/// What a worker handler says about one attempt. The core's handler contract settles it
/// (`oncely::handler`, the same rule as Python's and Node's `Retry`, `Snooze` and `Permanent`).
#[derive(Debug, Clone, uniffi::Enum)]
pub enum WorkerOutcome {
    /// Delivered: the message is removed.
    Success,
    /// Failed: retry by the policy, or after `afterMs` (the receiver's Retry-After). A negative
    /// `afterMs` is a bad hint: a retry by the policy whose error says so (`busy (bad
    /// Retry.after: …)`).
    Retry {
        /// What went wrong (empty: the stored error is `Retry`).
        error: HostText,
        /// A delay replacing the backoff.
        after_ms: Option<i64>,
    },
    /// Not now (rate limited): again after `afterMs` without using up an attempt. Zero or a
    /// negative delay is a bad hint: a retry by the policy (the attempt counts) whose error is
    /// `bad Snooze.seconds: …` — never a message returned at once, forever.
    Snooze {
        /// The delay.
        after_ms: i64,
    },
    /// Failed for good: dead-letter (or park) without retrying.
    Fail {
        /// Why (empty: the stored reason is `Permanent`).
        reason: HostText,
    },
}

/// A worker's handler: delivers one message and says how it went. Throwing
/// `HandlerException.Permanent` is `Fail`; any other exception is a retry whose error is the
/// exception's message (its class name when the message is null or empty). Called on one of
/// oncely's threads, several at once up to the worker's concurrency; it may block.
#[uniffi::export(callback_interface)]
pub trait DeliveryHandler: Send + Sync {
    /// Delivers `message`.
    fn deliver(&self, message: Message) -> Result<WorkerOutcome, HandlerError>;
}

/// A worker's handler as a suspend function (Kotlin) / async function (Swift): delivers one
/// message and says how it went, like [`DeliveryHandler`] but without holding a thread while it
/// waits (a network upload with a suspending HTTP client). Runs in the host's coroutine scope
/// (Kotlin: `GlobalScope`, on `Dispatchers.Default`); when the worker stops it at shutdown, the
/// coroutine is cancelled.
#[uniffi::export(callback_interface)]
#[async_trait::async_trait]
pub trait SuspendDeliveryHandler: Send + Sync {
    /// Delivers `message`.
    async fn deliver(&self, message: Message) -> Result<WorkerOutcome, HandlerError>;
}

/// What a worker run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct RunSummary {
    /// Deliveries handed to the handler.
    pub attempts: u64,
    /// Of those, settled as delivered.
    pub succeeded: u64,
    /// Of those, whose handler failed.
    pub failed: u64,
    /// Still running at shutdown: stopped and settled as failed attempts (retried).
    pub released: u64,
}

/// How a worker runs; every absent field has the core's default (16 at once, polling every
/// 50 ms, 30 s for in-flight handlers at shutdown).
#[derive(Debug, Clone, Default, uniffi::Record)]
pub struct WorkerOptions {
    /// Handlers running at once.
    #[uniffi(default = None)]
    pub concurrency: Option<u32>,
    /// How long to wait before looking again when nothing was due.
    #[uniffi(default = None)]
    pub poll_interval_ms: Option<i64>,
    /// On shutdown, how long in-flight handlers may take before they are stopped.
    #[uniffi(default = None)]
    pub shutdown_timeout_ms: Option<i64>,
}

/// What the handler did, described for the core's handler contract ([`oncely::handler`]), which
/// decides the outcome and the stored text: `Success` is a handler that returned; `Retry`,
/// `Snooze` and `Fail` are the core's `Retry`, `Snooze` and `Permanent` (hints in milliseconds,
/// given to the core in seconds); a thrown `HandlerException` is what it carries.
fn handler_result(r: Result<Result<WorkerOutcome, HandlerError>, tokio::task::JoinError>) -> HandlerResult {
    let raised = |kind, message, type_name: &str| HandlerResult::Raised {
        kind,
        message,
        type_name: type_name.to_owned(),
    };
    let seconds = |ms: i64| Hint::Seconds(ms as f64 / 1000.0);
    match r {
        Ok(Ok(WorkerOutcome::Success)) => HandlerResult::Returned(Returned::Nothing),
        // A handler's failure texts are read lossily (stored, never refused).
        Ok(Ok(WorkerOutcome::Retry { error, after_ms })) => raised(
            Raised::Retry { error: Some(error.lossy()), after: after_ms.map_or(Hint::Absent, seconds) },
            Some(error.lossy()),
            "Retry",
        ),
        Ok(Ok(WorkerOutcome::Snooze { after_ms })) => {
            raised(Raised::Snooze { seconds: seconds(after_ms) }, None, "Snooze")
        }
        Ok(Ok(WorkerOutcome::Fail { reason })) => {
            raised(Raised::Permanent, Some(reason.lossy()), "Permanent")
        }
        Ok(Err(e)) => e.into(),
        Err(e) => raised(Raised::Other, Some(format!("the handler did not return: {e}")), "JoinError"),
    }
}

fn outcome(r: Result<Result<WorkerOutcome, HandlerError>, tokio::task::JoinError>) -> Outcome {
    handler_result(r).outcome()
}

/// Runs a handler over an outbox's messages with bounded concurrency. Every rule is in the
/// outbox calls it makes: a crash mid-attempt means redelivery after the lease (or loss in
/// at-most-once), never a silent ack.
#[derive(uniffi::Object)]
pub struct Worker {
    inner: oncely::Worker<AnyStore>,
    stop: watch::Sender<bool>,
}

#[uniffi::export]
impl Worker {
    /// A worker for `outbox`. Bad options throw `InvalidArgument`.
    #[uniffi::constructor(default(options = None))]
    pub fn new(outbox: Arc<Outbox>, options: Option<WorkerOptions>) -> Result<Arc<Self>, OncelyError> {
        let o = options.unwrap_or_default();
        let mut config = WorkerConfig::default();
        if let Some(c) = o.concurrency {
            config.concurrency = c as usize;
        }
        if let Some(p) = o.poll_interval_ms {
            config.poll_interval = ms("poll_interval_ms", p)?;
        }
        if let Some(s) = o.shutdown_timeout_ms {
            config.shutdown_timeout = ms("shutdown_timeout_ms", s)?;
        }
        let inner = oncely::Worker::new(outbox.inner.clone(), config)?;
        Ok(Arc::new(Worker { inner, stop: watch::channel(false).0 }))
    }

    /// Delivers until nothing is due and nothing is in flight, then returns what it did.
    /// Messages scheduled for later are left for a later run.
    pub async fn run_until_idle(&self, handler: Box<dyn DeliveryHandler>) -> Result<RunSummary, OncelyError> {
        let handler: Arc<dyn DeliveryHandler> = Arc::from(handler);
        let w = self.inner.clone();
        on_runtime(async move { Ok(summary(w.run_until_idle(move |m| call(handler.clone(), m)).await?)) })
            .await
    }

    /// Delivers until `stop()` is called; then stops leasing, waits up to the shutdown timeout
    /// for handlers in flight and settles those still running as failed attempts (retried).
    pub async fn run(&self, handler: Box<dyn DeliveryHandler>) -> Result<RunSummary, OncelyError> {
        let handler: Arc<dyn DeliveryHandler> = Arc::from(handler);
        let w = self.inner.clone();
        let mut stopped = self.stop.subscribe();
        on_runtime(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            Ok(summary(w.run(move |m| call(handler.clone(), m), shutdown).await?))
        })
        .await
    }

    /// `runUntilIdle` with a suspending handler.
    pub async fn run_until_idle_suspending(
        &self,
        handler: Box<dyn SuspendDeliveryHandler>,
    ) -> Result<RunSummary, OncelyError> {
        let handler: Arc<dyn SuspendDeliveryHandler> = Arc::from(handler);
        let w = self.inner.clone();
        on_runtime(async move {
            Ok(summary(w.run_until_idle(move |m| call_suspending(handler.clone(), m)).await?))
        })
        .await
    }

    /// `run` with a suspending handler: delivers until `stop()` is called.
    pub async fn run_suspending(
        &self,
        handler: Box<dyn SuspendDeliveryHandler>,
    ) -> Result<RunSummary, OncelyError> {
        let handler: Arc<dyn SuspendDeliveryHandler> = Arc::from(handler);
        let w = self.inner.clone();
        let mut stopped = self.stop.subscribe();
        on_runtime(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            Ok(summary(w.run(move |m| call_suspending(handler.clone(), m), shutdown).await?))
        })
        .await
    }

    /// Asks `run` / `runSuspending` to shut down gracefully. A stopped worker stays stopped (they
    /// return at once); `runUntilIdle` is not affected.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Whether `stop()` was called.
    pub fn stopped(&self) -> bool {
        *self.stop.borrow()
    }
}

fn message(m: oncely::Message) -> Message {
    Message {
        idempotency_key: m.id.clone(),
        available_at_ms: m.available_at.0,
        id: m.id,
        key: m.key,
        payload: m.payload,
        headers: m.headers.into_iter().collect(),
        attempt: m.attempts,
        created_at_ms: m.created_at.0,
    }
}

async fn call(handler: Arc<dyn DeliveryHandler>, m: oncely::Message) -> Outcome {
    let message = message(m);
    outcome(tokio::task::spawn_blocking(move || handler.deliver(message)).await)
}

async fn call_suspending(handler: Arc<dyn SuspendDeliveryHandler>, m: oncely::Message) -> Outcome {
    outcome(Ok(handler.deliver(message(m)).await))
}

fn summary(s: oncely::worker::RunSummary) -> RunSummary {
    RunSummary { attempts: s.attempts, succeeded: s.succeeded, failed: s.failed, released: s.released }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn settle(o: WorkerOutcome) -> Outcome {
        outcome(Ok(Ok(o)))
    }

    #[test]
    fn outcomes_follow_the_core_contract() {
        assert_eq!(settle(WorkerOutcome::Success), Outcome::Success);
        assert_eq!(
            settle(WorkerOutcome::Retry { error: "busy".into(), after_ms: Some(1500) }),
            Outcome::Retry { after: Some(Duration::from_millis(1500)), error: "busy".into() }
        );
        assert_eq!(
            settle(WorkerOutcome::Retry { error: "".into(), after_ms: None }),
            Outcome::retry("Retry")
        );
        assert_eq!(
            settle(WorkerOutcome::Retry { error: "busy".into(), after_ms: Some(-1000) }),
            Outcome::retry("busy (bad Retry.after: invalid argument `after`: must not be negative, got -1)")
        );
        assert_eq!(settle(WorkerOutcome::Snooze { after_ms: 2000 }), Outcome::Snooze(Duration::from_secs(2)));
        assert_eq!(
            settle(WorkerOutcome::Snooze { after_ms: 0 }),
            Outcome::retry("bad Snooze.seconds: invalid argument `seconds`: must be greater than zero")
        );
        assert_eq!(settle(WorkerOutcome::Fail { reason: "".into() }), Outcome::Fail("Permanent".into()));
        assert_eq!(
            outcome(Ok(Err(HandlerError::Retry { error: None, type_name: "HandlerFailure".into() }))),
            Outcome::retry("HandlerFailure")
        );
        assert_eq!(
            outcome(Ok(Err(HandlerError::Permanent { reason: "card declined".into() }))),
            Outcome::Fail("card declined".into())
        );
    }
}
