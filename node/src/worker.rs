//! `Worker`: the push-style worker. The core's `oncely::Worker` does the leasing, the concurrency
//! bound, the lease heartbeats and the settling; this file only calls the JS handler through a
//! threadsafe function (on the JS thread, never blocking it) and turns what it answered into an
//! [`Outcome`].
//!
//! index.js wraps the user's handler so that it never throws and describes what it did as a
//! [`HandlerAnswer`]: which value it returned, or what it threw (with the thrown value's message,
//! type name and hint). The core's handler contract ([`oncely::handler`]) turns that into the
//! outcome and the stored failure text, the same rule as in every other language. The wrapper is
//! called as `(callId, message)` and returns the answer at once when the handler returned without
//! a Promise; otherwise it returns `undefined` and later hands the answer to
//! `_complete(callId, answer)` (cheaper per message than awaiting the Promise from Rust).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::tokio::sync::{oneshot, watch};
use napi_derive::napi;
use oncely::handler::{HandlerResult, Hint, Raised, Returned};
use oncely::{AnyStore, Outcome, WorkerConfig};

use crate::conv::{Options, u32_of};
use crate::outbox::Outbox;
use crate::{Result, err, promise};

type CoreWorker = oncely::Worker<AnyStore>;

/// The handler as index.js adapted it: `(callId, message) => string | undefined`.
type HandlerFn =
    ThreadsafeFunction<FnArgs<(u32, Message)>, Option<HandlerAnswer>, FnArgs<(u32, Message)>, Status, false>;

/// What a worker handler did, as index.js describes it (no interpretation: see
/// [`oncely::handler`]). Exactly one of `returned` and `raised` is set.
#[napi(object)]
pub struct HandlerAnswer {
    /// It returned: `"nothing"` (undefined or null), `"true"` or `"value"`.
    pub returned: Option<String>,
    /// The returned value as JS shows it (for `"value"`).
    pub shown: Option<String>,
    /// It threw: `"retry"`, `"snooze"`, `"permanent"` or `"other"`.
    pub raised: Option<String>,
    /// A Retry/Snooze hint that is a number (seconds).
    pub hint: Option<f64>,
    /// A Retry/Snooze hint that is not a number, as JS shows what it is.
    pub bad_hint: Option<String>,
    /// The thrown value's message (a Retry's error), if it could be read.
    pub message: Option<String>,
    /// The thrown value's type name (its constructor's name, or `typeof`).
    pub type_name: Option<String>,
}

/// Calls whose JS handler answered with a Promise, waiting for its outcome to be handed back
/// through a native `_complete…(callId, outcome)` call (the worker's and `Inbox.process`'s).
pub(crate) struct Pending<T> {
    next: AtomicU32,
    waiting: Mutex<HashMap<u32, oneshot::Sender<T>>>,
}

impl<T> Default for Pending<T> {
    fn default() -> Self {
        Pending { next: AtomicU32::new(0), waiting: Mutex::new(HashMap::new()) }
    }
}

impl<T> Pending<T> {
    /// A fresh call id and the receiver of its outcome; the entry goes with the guard.
    pub(crate) fn register(&self) -> (Registered<'_, T>, oneshot::Receiver<T>) {
        let (tx, rx) = oneshot::channel();
        let mut w = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let mut id = self.next.fetch_add(1, Ordering::Relaxed);
        while w.contains_key(&id) {
            id = self.next.fetch_add(1, Ordering::Relaxed);
        }
        w.insert(id, tx);
        (Registered { pending: self, id }, rx)
    }

    pub(crate) fn complete(&self, id: u32, outcome: T) {
        let tx = self.waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        if let Some(tx) = tx {
            let _ = tx.send(outcome);
        }
    }
}

/// A registered call: removes its entry when the attempt ends or is dropped (e.g. given up at
/// shutdown).
pub(crate) struct Registered<'a, T> {
    pending: &'a Pending<T>,
    pub(crate) id: u32,
}

impl<T> Drop for Registered<'_, T> {
    fn drop(&mut self) {
        self.pending.waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
    }
}

/// One message handed to a worker's handler. `idempotencyKey` (the message id) is what the
/// receiver deduplicates on.
#[napi(object)]
pub struct Message {
    pub id: String,
    /// The idempotency key: the message id.
    pub idempotency_key: String,
    pub key: Option<String>,
    pub payload: Buffer,
    pub headers: HashMap<String, String>,
    /// Which attempt this is (1 for the first).
    pub attempt: u32,
    pub created_at_ms: i64,
    pub available_at_ms: i64,
}

fn message(m: oncely::Message) -> Message {
    Message {
        idempotency_key: m.id.clone(),
        id: m.id,
        key: m.key,
        payload: Buffer::from(m.payload),
        headers: m.headers.into_iter().collect(),
        attempt: m.attempts,
        created_at_ms: m.created_at.0,
        available_at_ms: m.available_at.0,
    }
}

/// What a worker run did: deliveries handed to the handler (`attempts`), of those `succeeded`
/// and `failed`, and `released`: still running at shutdown, stopped and settled as failed
/// attempts (retried by the policy).
#[napi(object)]
pub struct RunSummary {
    pub attempts: f64,
    pub succeeded: f64,
    pub failed: f64,
    pub released: f64,
}

fn summary(s: oncely::worker::RunSummary) -> RunSummary {
    RunSummary {
        attempts: s.attempts as f64,
        succeeded: s.succeeded as f64,
        failed: s.failed as f64,
        released: s.released as f64,
    }
}

/// Options of `new Worker(outbox, handler, options)`. Durations are seconds.
#[napi(object)]
#[allow(dead_code)] // the typings only: `NativeWorker::new` reads the object (conv::Options)
pub struct WorkerOptions {
    /// Handlers running at once (default 16).
    pub concurrency: Option<f64>,
    /// How long to wait before looking again when nothing was due (default 0.05).
    pub poll_interval: Option<f64>,
    /// On `stop()`, how long handlers in flight may take before they are given up (default 30).
    pub shutdown_timeout: Option<f64>,
}

/// The core's description of what the handler did (index.js fills the answer's fields).
fn result_of(a: HandlerAnswer) -> HandlerResult {
    let hint = match (a.hint, a.bad_hint) {
        (Some(seconds), _) => Hint::Seconds(seconds),
        (None, Some(shown)) => Hint::NotANumber(shown),
        (None, None) => Hint::Absent,
    };
    let kind = match (a.returned.as_deref(), a.raised.as_deref()) {
        (Some("nothing"), _) => return HandlerResult::Returned(Returned::Nothing),
        (Some("true"), _) => return HandlerResult::Returned(Returned::True),
        (Some(_), _) => return HandlerResult::Returned(Returned::Value(a.shown.unwrap_or_default())),
        (None, Some("retry")) => Raised::Retry { error: a.message.clone(), after: hint },
        (None, Some("snooze")) => Raised::Snooze { seconds: hint },
        (None, Some("permanent")) => Raised::Permanent,
        (None, _) => Raised::Other,
    };
    HandlerResult::Raised { kind, message: a.message, type_name: a.type_name.unwrap_or_default() }
}

/// Calls the handler on the JS thread and waits (asynchronously) for its outcome. Never fails:
/// whatever goes wrong is a retryable failure of this attempt.
async fn call(handler: Arc<HandlerFn>, pending: Arc<Pending<HandlerAnswer>>, m: oncely::Message) -> Outcome {
    let (registered, later) = pending.register();
    let id = registered.id;
    let (tx, now) = oneshot::channel();
    let status = handler.call_with_return_value(
        FnArgs::from((id, message(m))),
        ThreadsafeFunctionCallMode::NonBlocking,
        move |r, _| {
            let _ = tx.send(r);
            Ok(())
        },
    );
    if status != Status::Ok {
        return Outcome::retry(format!("the handler could not be called ({status})"));
    }
    match now.await {
        Ok(Ok(Some(answer))) => result_of(answer).outcome(),
        Ok(Ok(None)) => match later.await {
            Ok(answer) => result_of(answer).outcome(),
            Err(_) => Outcome::retry("the handler's outcome was lost"),
        },
        Ok(Err(e)) => Outcome::retry(e.reason.clone()),
        Err(_) => Outcome::retry("the handler was not called (Node is shutting down)"),
    }
}

/// Native half of `Worker` (index.js gives it the adapted handler on every run).
#[napi]
pub struct NativeWorker {
    inner: CoreWorker,
    stop: watch::Sender<bool>,
    pending: Arc<Pending<HandlerAnswer>>,
}

#[napi]
impl NativeWorker {
    #[napi(constructor, ts_args_type = "outbox: Outbox, options?: WorkerOptions | undefined | null")]
    pub fn new(outbox: &Outbox, options: Option<Unknown>) -> Result<Self> {
        let o = Options::of("worker options", options, &["concurrency", "pollInterval", "shutdownTimeout"])?;
        let mut config = WorkerConfig::default();
        if let Some(c) = o.size("concurrency")? {
            config.concurrency = c;
        }
        if let Some(p) = o.secs("pollInterval")? {
            config.poll_interval = p;
        }
        if let Some(t) = o.secs("shutdownTimeout")? {
            config.shutdown_timeout = t;
        }
        let inner = CoreWorker::new(outbox.inner.clone(), config).map_err(err)?;
        Ok(NativeWorker { inner, stop: watch::channel(false).0, pending: Arc::default() })
    }

    /// Delivers until nothing is due and nothing is in flight.
    #[napi(
        ts_args_type = "handler: (callId: number, message: Message) => HandlerAnswer | undefined",
        ts_return_type = "Promise<RunSummary>"
    )]
    pub fn run_until_idle(&self, env: &Env, handler: HandlerFn) -> Result<AsyncBlock<RunSummary>> {
        let (h, p) = (Arc::new(handler), self.pending.clone());
        let w = self.inner.clone();
        promise(env, async move {
            w.run_until_idle(move |m| call(h.clone(), p.clone(), m)).await.map(summary).map_err(err)
        })
    }

    /// Delivers until `stop()`; then stops leasing, waits up to `shutdownTimeout` for handlers in
    /// flight and settles those still running as failed attempts.
    #[napi(
        ts_args_type = "handler: (callId: number, message: Message) => HandlerAnswer | undefined",
        ts_return_type = "Promise<RunSummary>"
    )]
    pub fn run(&self, env: &Env, handler: HandlerFn) -> Result<AsyncBlock<RunSummary>> {
        let (h, p) = (Arc::new(handler), self.pending.clone());
        let w = self.inner.clone();
        let mut stopped = self.stop.subscribe();
        promise(env, async move {
            let stop = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            w.run(move |m| call(h.clone(), p.clone(), m), stop).await.map(summary).map_err(err)
        })
    }

    /// The answer of a call whose handler answered with a Promise (see the module docs).
    #[napi(js_name = "_complete", ts_args_type = "callId: number, answer: HandlerAnswer")]
    pub fn complete(&self, call_id: f64, answer: HandlerAnswer) -> Result<()> {
        self.pending.complete(u32_of("callId", call_id)?, answer);
        Ok(())
    }

    /// Asks `run` to shut down gracefully. A stopped worker stays stopped.
    #[napi]
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    #[napi(getter)]
    pub fn stopped(&self) -> bool {
        *self.stop.borrow()
    }
}
