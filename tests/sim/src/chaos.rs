//! Faults: what can go wrong, with one probability per kind drawn for each seed, and a store
//! wrapper that makes the core's store calls fail — cleanly or ambiguously — around the public
//! store traits, so the core itself needs no hook for it.

use std::future::Future;
use std::sync::{Arc, Mutex};

use oncely::clock::Timestamp;
use oncely::records::{InboxOp, InboxRecord, OpAnswer};
use oncely::sql::{StoreTx, TransactionalStore};
use oncely::store::OutboxTx;
use oncely::{Error, InboxStore, OutboxStore, Result};

use crate::rng::SimRng;

/// Every fault the simulator injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A request from the worker to the receiver never arrives.
    RequestLost,
    /// The receiver's reply never arrives.
    ReplyLost,
    /// A packet arrives twice.
    Duplicated,
    /// A packet is held back, so later ones overtake it.
    Reordered,
    /// A packet arrives after the lease it was sent under ran out.
    DelayPastLease,
    /// The receiver's handler fails (retryably): no effect.
    HandlerError,
    /// The receiver's handler stalls past its claim's lease.
    HandlerStall,
    /// A store write fails: nothing committed, and the caller is told so.
    WriteFailure,
    /// A store write commits, but the caller is told it failed.
    AmbiguousCommit,
    /// A node's process dies: everything in memory is gone, the store stays.
    Crash,
    /// A node loses power: a crash, and SQLite's written-but-unsynced data is gone.
    PowerCut,
    /// A node's clock jumps forwards.
    ClockForward,
    /// A node's clock jumps backwards.
    ClockBackward,
}

impl Fault {
    /// Every kind, in table order.
    pub const ALL: [Fault; 13] = [
        Fault::RequestLost,
        Fault::ReplyLost,
        Fault::Duplicated,
        Fault::Reordered,
        Fault::DelayPastLease,
        Fault::HandlerError,
        Fault::HandlerStall,
        Fault::WriteFailure,
        Fault::AmbiguousCommit,
        Fault::Crash,
        Fault::PowerCut,
        Fault::ClockForward,
        Fault::ClockBackward,
    ];

    /// A short name for tables and traces.
    pub fn name(self) -> &'static str {
        match self {
            Fault::RequestLost => "req_lost",
            Fault::ReplyLost => "reply_lost",
            Fault::Duplicated => "dup",
            Fault::Reordered => "reorder",
            Fault::DelayPastLease => "late",
            Fault::HandlerError => "h_err",
            Fault::HandlerStall => "h_stall",
            Fault::WriteFailure => "w_fail",
            Fault::AmbiguousCommit => "ambig",
            Fault::Crash => "crash",
            Fault::PowerCut => "power",
            Fault::ClockForward => "clk_fwd",
            Fault::ClockBackward => "clk_back",
        }
    }

    /// The probabilities a seed chooses from for this kind (per packet, per handler run, per
    /// store call, per node step or per chaos tick; see docs/simulation.md).
    fn choices(self) -> &'static [f64] {
        match self {
            Fault::Crash => &[0.0, 0.005, 0.02, 0.05],
            Fault::PowerCut => &[0.0, 0.01, 0.03],
            Fault::ClockForward | Fault::ClockBackward => &[0.0, 0.01, 0.05],
            Fault::WriteFailure | Fault::AmbiguousCommit => &[0.0, 0.01, 0.05, 0.1],
            _ => &[0.0, 0.02, 0.1, 0.25],
        }
    }
}

/// The state every fault decision of one run draws from.
pub struct ChaosState {
    rng: SimRng,
    probability: [f64; 13],
    /// How many faults of each kind were injected.
    pub injected: [u64; 13],
    /// Faults are injected only while this is on (off while a run heals and is checked).
    pub enabled: bool,
    /// The schedule's trace, kept when asked for.
    pub trace: Option<Vec<String>>,
    /// The virtual time now (ms), for the trace.
    pub now: u64,
}

/// Shared by the run and the store wrappers of its nodes.
pub type Chaos = Arc<Mutex<ChaosState>>;

/// A run's chaos: the probability of each kind is drawn from the seed.
pub fn new_chaos(seed: u64, trace: bool, power_cuts: bool) -> Chaos {
    let mut pick = SimRng::new(seed, 1);
    let mut probability = [0.0; 13];
    for (p, f) in probability.iter_mut().zip(Fault::ALL) {
        *p = pick.pick(f.choices());
    }
    if !power_cuts {
        probability[Fault::PowerCut as usize] = 0.0;
    }
    Arc::new(Mutex::new(ChaosState {
        rng: SimRng::new(seed, 2),
        probability,
        injected: [0; 13],
        enabled: true,
        trace: trace.then(Vec::new),
        now: 0,
    }))
}

impl ChaosState {
    /// Whether `fault` strikes now (counted and traced when it does).
    pub fn roll(&mut self, fault: Fault, what: &dyn std::fmt::Debug) -> bool {
        if !self.enabled || !self.rng.chance(self.probability[fault as usize]) {
            return false;
        }
        self.injected[fault as usize] += 1;
        self.note(|| format!("FAULT {} {what:?}", fault.name()));
        true
    }

    /// A random number in `lo..=hi` from the chaos stream.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        self.rng.range(lo, hi)
    }

    /// Appends a line to the trace, if one is kept.
    pub fn note(&mut self, line: impl FnOnce() -> String) {
        if let Some(trace) = &mut self.trace {
            trace.push(format!("{:>6} ms  {}", self.now, line()));
        }
    }

    /// The probability of each kind in this run.
    pub fn probabilities(&self) -> [f64; 13] {
        self.probability
    }
}

/// How a wrapped store call goes.
enum Verdict {
    Commit,
    Fail,
    Ambiguous,
}

/// A store whose writes fail now and then, or commit while answering that they failed.
#[derive(Clone)]
pub struct Faulty<S> {
    inner: S,
    chaos: Chaos,
}

impl<S> Faulty<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, chaos: Chaos) -> Self {
        Faulty { inner, chaos }
    }

    /// The store underneath.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn verdict(&self, what: &str) -> Verdict {
        let mut chaos = self.chaos.lock().unwrap();
        if chaos.roll(Fault::WriteFailure, &what) {
            Verdict::Fail
        } else if chaos.roll(Fault::AmbiguousCommit, &what) {
            Verdict::Ambiguous
        } else {
            Verdict::Commit
        }
    }

    /// Runs `call` as the verdict says.
    async fn with_faults<R>(&self, what: &str, call: impl Future<Output = Result<R>>) -> Result<R> {
        match self.verdict(what) {
            Verdict::Commit => call.await,
            Verdict::Fail => Err(injected("failed")),
            Verdict::Ambiguous => {
                let _ = call.await;
                Err(injected("was committed but reported as failed"))
            }
        }
    }
}

fn injected(what: &str) -> Error {
    Error::Storage(format!("simulated store write {what}"))
}

impl<S: InboxStore + Clone> InboxStore for Faulty<S> {
    async fn apply(&self, scope: &str, now: Timestamp, ops: Vec<InboxOp>) -> Result<Vec<OpAnswer>> {
        self.with_faults("inbox apply", self.inner.apply(scope, now, ops)).await
    }

    fn get(&self, scope: &str, id: &str) -> impl Future<Output = Result<Option<InboxRecord>>> + Send {
        self.inner.get(scope, id)
    }

    fn purge_expired(&self, now: Timestamp, limit: usize) -> impl Future<Output = Result<u64>> + Send {
        self.inner.purge_expired(now, limit)
    }
}

impl<S: OutboxStore + Clone> OutboxStore for Faulty<S> {
    async fn transact<R: Send + 'static>(
        &self,
        queue: &str,
        work: impl FnOnce(&mut dyn OutboxTx) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        self.with_faults("outbox step", self.inner.transact(queue, work)).await
    }

    async fn transact_with<R: Send + 'static>(
        &self,
        queue: &str,
        durability: oncely::records::Durability,
        work: impl FnOnce(&mut dyn OutboxTx) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        self.with_faults("outbox step", self.inner.transact_with(queue, durability, work)).await
    }

    fn queue_names(&self) -> impl Future<Output = Result<Vec<String>>> + Send {
        self.inner.queue_names()
    }
}

impl<S: TransactionalStore + Clone> TransactionalStore for Faulty<S> {
    async fn transaction<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut dyn StoreTx) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        self.with_faults("transaction", self.inner.transaction(job)).await
    }
}
