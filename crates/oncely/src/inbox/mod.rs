//! The receiver's processed-ID store (docs/design.md §4).
//!
//! Pull-style: [`Inbox::begin`] answers claimed / duplicate / in progress / conflict, and the
//! [`Ticket`] of a claim is finished, failed or released. *What is written when* — the whole
//! difference between the modes — is decided by [`decide`], inside the store's atomic step.
//! [`Inbox::process`] wraps it all around a handler.

mod cache;
mod transactional;
mod weather;

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

pub use crate::records::{
    CachePolicy, InboxOp, InboxRecord, OpAnswer, RecordState, Status, StoredOutcome, Write, decide,
};

use crate::clock::{SharedClock, SystemClock, Timestamp, require_positive};
use crate::error::{Error, Result};
use crate::fingerprint::Fingerprint;
use crate::message::validate_id;
use crate::mode::Mode;
use crate::store::InboxStore;
use cache::{Completed, RecentCompletions};

/// How an inbox behaves. Build with [`InboxConfig::new`] and the setters; checked by
/// [`Inbox::open`].
#[derive(Debug, Clone)]
pub struct InboxConfig {
    /// The namespace ids live in (an inbox name, a tenant). Two scopes never collide on an id.
    pub scope: String,
    /// The mode used when a request does not name one. Default: exactly-once.
    pub mode: Mode,
    /// How long an exactly-once claim holds an id before another caller may take it over.
    /// Default: 60 s.
    pub lease: Duration,
    /// How long a record counts: the dedup window. Default: 24 h.
    pub retention: Duration,
    /// Which outcomes are stored. Default: success only.
    pub cache_policy: CachePolicy,
    /// How many recent completions the in-memory front remembers (0 turns it off).
    /// Default: 10,000.
    pub recent_capacity: usize,
    /// How often (by the inbox's clock) expired records are collected during calls. Default: 60 s.
    pub gc_interval: Duration,
    /// The largest result or failure reason accepted. Default: 1 MiB.
    pub max_result_bytes: usize,
}

impl InboxConfig {
    /// The defaults, in `scope`.
    pub fn new(scope: impl Into<String>) -> Self {
        InboxConfig {
            scope: scope.into(),
            mode: Mode::ExactlyOnce,
            lease: Duration::from_secs(60),
            retention: Duration::from_secs(24 * 3600),
            cache_policy: CachePolicy::SuccessOnly,
            recent_capacity: 10_000,
            gc_interval: Duration::from_secs(60),
            max_result_bytes: crate::limits::DEFAULT_MAX_BYTES,
        }
    }

    /// Sets the default mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the default lease.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Sets the retention (the dedup window).
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Sets which outcomes are stored.
    pub fn cache_policy(mut self, policy: CachePolicy) -> Self {
        self.cache_policy = policy;
        self
    }

    /// Sets the capacity of the in-memory front (0 turns it off).
    pub fn recent_capacity(mut self, capacity: usize) -> Self {
        self.recent_capacity = capacity;
        self
    }

    fn validate(&self) -> Result<()> {
        if self.scope.is_empty() || self.scope.len() > 128 {
            return Err(Error::invalid("scope", "must be 1 to 128 bytes long"));
        }
        if self.scope.contains('\0') {
            return Err(Error::invalid("scope", "must not contain a NUL character"));
        }
        require_positive("lease", self.lease)?;
        require_positive("retention", self.retention)?;
        require_positive("gc_interval", self.gc_interval)?;
        Ok(())
    }
}

/// One call to [`Inbox::begin`] or [`Inbox::process`].
#[derive(Debug, Clone)]
pub struct Request {
    id: String,
    fingerprint: Option<Fingerprint>,
    mode: Option<Mode>,
    lease: Option<Duration>,
    wait: Option<Duration>,
}

impl Request {
    /// A request for `id`, in the inbox's default mode, without payload validation.
    pub fn new(id: impl Into<String>) -> Self {
        Request { id: id.into(), fingerprint: None, mode: None, lease: None, wait: None }
    }

    /// Validates the payload: a later request for the same id with a different payload is a
    /// conflict.
    pub fn payload(mut self, payload: &[u8]) -> Self {
        self.fingerprint = Some(Fingerprint::of(payload));
        self
    }

    /// Like [`Request::payload`], with a fingerprint computed by the caller.
    pub fn fingerprint(mut self, fingerprint: Fingerprint) -> Self {
        self.fingerprint = Some(fingerprint);
        self
    }

    /// The guarantee for this request.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// The lease for an exactly-once claim (instead of the inbox's default).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// For [`Inbox::process`]: when another caller holds the id, wait up to `timeout` for its
    /// result instead of answering "in progress" at once.
    pub fn wait(mut self, timeout: Duration) -> Self {
        self.wait = Some(timeout);
        self
    }

    /// The id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The stored outcome of an id that was already done, replayed to a duplicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// How the first delivery ended.
    pub status: Status,
    /// Its result (or failure reason), if one was stored.
    pub result: Option<Vec<u8>>,
}

/// The answer to [`Inbox::begin`].
pub enum Begin<S: InboxStore> {
    /// You hold the id: run the effect, then finish, fail or release the ticket.
    Claimed(Ticket<S>),
    /// Already done: here is the stored outcome. Do not run the effect.
    Duplicate(Replay),
    /// Another caller holds an unexpired lease on the id until `lease_until`.
    InProgress {
        /// When that lease runs out.
        lease_until: Timestamp,
    },
    /// The id was used with a different payload.
    Conflict,
}

/// A claim on one id. Finishing, failing or releasing with a stale token (after the lease
/// expired and someone else claimed the id) is refused with [`Error::LeaseLost`].
pub struct Ticket<S: InboxStore> {
    inbox: Inbox<S>,
    id: String,
    token: u64,
    mode: Mode,
    fingerprint: Option<Fingerprint>,
    /// The lease the claim was taken for (what keep-alive extends it by).
    lease: Duration,
}

impl<S: InboxStore> std::fmt::Debug for Begin<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Begin::Claimed(t) => f.debug_tuple("Claimed").field(t).finish(),
            Begin::Duplicate(r) => f.debug_tuple("Duplicate").field(r).finish(),
            Begin::InProgress { lease_until } => {
                f.debug_struct("InProgress").field("lease_until", lease_until).finish()
            }
            Begin::Conflict => f.write_str("Conflict"),
        }
    }
}

impl<S: InboxStore> std::fmt::Debug for Ticket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("id", &self.id)
            .field("token", &self.token)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl<S: InboxStore> Ticket<S> {
    /// The claimed id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The fencing token: larger than every token handed out for this id before.
    /// 0 for an at-least-once claim, which holds no lease.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// The claim's mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Marks the id done and stores `result` for replay to duplicates. Returns once durable.
    pub async fn finish(&self, result: impl Into<Vec<u8>>) -> Result<()> {
        let result = result.into();
        let inner = &self.inbox.inner;
        crate::limits::result(result.len(), inner.config.max_result_bytes)?;
        let op = InboxOp::Finish {
            id: self.id.clone(),
            token: self.token,
            fingerprint: self.fingerprint,
            mode: self.mode,
            outcome: StoredOutcome { status: Status::Succeeded, result: Some(result) },
            retention: inner.config.retention,
        };
        let (answer, now) = weather::apply_one(&self.inbox, &op, self.inbox.now()).await?;
        let InboxOp::Finish { outcome, .. } = op else { unreachable!("built as a finish above") };
        self.finished(answer, outcome, now)
    }

    /// Reports a permanent failure. With [`CachePolicy::SuccessAndFailure`] the failure is
    /// stored and replays to duplicates; otherwise the id is given back as by [`Ticket::release`].
    pub async fn fail(&self, reason: impl Into<Vec<u8>>) -> Result<()> {
        let (reason, inner) = (reason.into(), &self.inbox.inner);
        let policy = inner.config.cache_policy;
        if policy.stores_failures() {
            crate::limits::result(reason.len(), inner.config.max_result_bytes)?;
        }
        let stored = StoredOutcome { status: Status::Failed, result: Some(reason.clone()) };
        let op = InboxOp::Fail {
            id: self.id.clone(),
            token: self.token,
            fingerprint: self.fingerprint,
            mode: self.mode,
            reason,
            policy,
            retention: inner.config.retention,
        };
        match weather::apply_one(&self.inbox, &op, self.inbox.now()).await? {
            (OpAnswer::Released, _) => Ok(()),
            (answer, now) => self.finished(answer, stored, now),
        }
    }

    /// Keeps an exactly-once claim for `lease` more from now and says until when it now holds
    /// the id. Refused with [`Error::LeaseLost`] when the claim was taken over, finished or
    /// released, and with [`Error::InvalidArgument`] for a claim that holds no lease (at-most-once
    /// and at-least-once claims never expire into a second run).
    pub async fn extend(&self, lease: Duration) -> Result<Timestamp> {
        require_positive("lease", lease)?;
        if self.mode != Mode::ExactlyOnce {
            return Err(Error::invalid("lease", format!("a {} claim holds no lease to extend", self.mode)));
        }
        extend_claim(&self.inbox, &self.id, self.token, lease).await
    }

    /// Runs `work` while keeping this claim alive: an exactly-once claim is extended by its lease
    /// every third of its lease until `work` ends, so a handler that runs longer than the lease is never
    /// joined by a second run of the same id. The extensions run on a thread of their own
    /// (started only once the first one is due), so they go on even while `work` blocks the
    /// calling thread — a synchronous handler in a binding, a `block_on` — and cost nothing for
    /// a handler that ends within a third of its lease. If the process stalls past the lease anyway
    /// (or the extensions fail), another caller may claim the id; this claim's completion is then
    /// refused with [`Error::LeaseLost`] (fencing), and the handler may have run twice.
    pub async fn keep_alive<T>(&self, work: impl Future<Output = T>) -> T {
        let _alive = self.heartbeat();
        work.await
    }

    /// Starts keeping this claim alive until the returned guard is dropped (see
    /// [`Ticket::keep_alive`]); `None` for a claim that holds no lease.
    pub(crate) fn heartbeat(&self) -> Option<Heartbeat> {
        (self.mode == Mode::ExactlyOnce)
            .then(|| Heartbeat::start(self.inbox.clone(), self.id.clone(), self.token, self.lease))
    }

    /// Gives the id back so that a retry can claim it at once. At-most-once keeps its mark (the
    /// id is never delivered again); at-least-once holds nothing to give back.
    pub async fn release(&self) -> Result<()> {
        let op = InboxOp::Release { id: self.id.clone(), token: self.token, mode: self.mode };
        let (answer, _) = weather::apply_one(&self.inbox, &op, self.inbox.now()).await?;
        self.expect(answer, OpAnswer::Released)
    }

    /// Settles the claim by a handler's outcome, exactly as [`Inbox::process`] does: a result
    /// finishes it; a permanent failure is handled by [`Ticket::fail`] (stored or released by the
    /// cache policy); a retryable failure releases it.
    ///
    /// A result, or a failure to be stored, over the inbox's `max_result_bytes` cannot be kept
    /// for replay: the claim is then released, as for a retryable failure, and the limit's
    /// [`Error::InvalidArgument`] is returned — the id is never left claimed by a caller that
    /// has gone.
    pub async fn settle<E: std::fmt::Display>(
        &self,
        outcome: std::result::Result<Vec<u8>, &Failure<E>>,
    ) -> Result<()> {
        let config = &self.inbox.inner.config;
        let kept = match outcome {
            Ok(result) => crate::limits::result(result.len(), config.max_result_bytes).map(|()| Ok(result)),
            Err(Failure { error, permanent: true }) => {
                let reason = error.to_string();
                if config.cache_policy.stores_failures() {
                    crate::limits::result(reason.len(), config.max_result_bytes).map(|()| Err(Some(reason)))
                } else {
                    Ok(Err(Some(reason)))
                }
            }
            Err(_) => Ok(Err(None)),
        };
        match kept {
            Ok(Ok(result)) => self.finish(result).await,
            Ok(Err(Some(reason))) => self.fail(reason).await,
            Ok(Err(None)) => self.release().await,
            Err(too_large) => {
                self.release().await?;
                Err(too_large)
            }
        }
    }

    /// Checks a finish's answer and remembers the completion that stands.
    fn finished(&self, answer: OpAnswer, mine: StoredOutcome, now: Timestamp) -> Result<()> {
        let (outcome, fingerprint, expires_at) = match answer {
            OpAnswer::Finished => (mine, self.fingerprint, now.after(self.inbox.inner.config.retention)),
            // At-least-once: an earlier completion stands; remember that one, not ours.
            OpAnswer::Duplicate { outcome, fingerprint, expires_at } => (outcome, fingerprint, expires_at),
            other => return self.expect(other, OpAnswer::Finished),
        };
        self.inbox.remember(&self.id, fingerprint, outcome, expires_at);
        Ok(())
    }

    fn expect(&self, answer: OpAnswer, wanted: OpAnswer) -> Result<()> {
        if answer == wanted {
            Ok(())
        } else if answer == OpAnswer::LeaseLost {
            Err(Error::LeaseLost { id: self.id.clone(), token: self.token })
        } else {
            Err(Error::Storage(format!("store gave an unexpected answer: {answer:?}")))
        }
    }
}

/// A handler's failure, with whether a retry could help.
#[derive(Debug)]
pub struct Failure<E> {
    /// The handler's error.
    pub error: E,
    /// `true`: retrying will not help; the failure may be stored (see [`CachePolicy`]).
    pub permanent: bool,
}

impl<E> Failure<E> {
    /// A failure that a retry may cure (the default for handler errors).
    pub fn retryable(error: E) -> Self {
        Failure { error, permanent: false }
    }

    /// A failure that no retry will cure.
    pub fn permanent(error: E) -> Self {
        Failure { error, permanent: true }
    }
}

/// What [`Inbox::process`] returns on success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    /// The handler's result (this call's, or the stored one for a replay).
    pub result: Option<Vec<u8>>,
    /// `true` when the handler did not run because the id was already done.
    pub replayed: bool,
}

/// Why [`Inbox::process`] did not return a result.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError<E> {
    /// The handler ran and failed; the id was released or its failure stored, per the policy.
    #[error("handler failed: {0}")]
    Handler(E),
    /// The id's first delivery failed permanently and that failure was stored; this is its replay.
    #[error("replayed stored failure: {}", String::from_utf8_lossy(.0.as_deref().unwrap_or_default()))]
    ReplayedFailure(Option<Vec<u8>>),
    /// oncely itself refused or failed (conflict, in progress, timeout, storage, ...).
    #[error(transparent)]
    Oncely(#[from] Error),
}

struct Inner<S> {
    store: S,
    clock: SharedClock,
    config: InboxConfig,
    recent: Option<RecentCompletions>,
    next_gc: AtomicI64,
}

/// An inbox over a store. Cheap to clone; clones share the store, clock and in-memory front.
pub struct Inbox<S: InboxStore> {
    inner: Arc<Inner<S>>,
}

impl<S: InboxStore> Clone for Inbox<S> {
    fn clone(&self) -> Self {
        Inbox { inner: self.inner.clone() }
    }
}

impl<S: InboxStore> std::fmt::Debug for Inbox<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox").field("scope", &self.inner.config.scope).finish_non_exhaustive()
    }
}

impl<S: InboxStore> Inbox<S> {
    /// An inbox on `store` with `config`, in real time: its deadlines (leases, retention) are
    /// judged by the store's clock — the database server's on PostgreSQL, so every host of a
    /// fleet agrees whatever its own clock says — or the host's clock where there is one host.
    pub fn open(store: S, config: InboxConfig) -> Result<Self> {
        Self::with_clock(store, config, Arc::new(SystemClock))
    }

    /// Like [`Inbox::open`], on an injected clock (a [`crate::clock::ManualClock`] in tests).
    /// [`SystemClock`] means real time, as for [`Inbox::open`].
    pub fn with_clock(store: S, config: InboxConfig, clock: SharedClock) -> Result<Self> {
        config.validate()?;
        let clock = match clock.is_real_time() {
            true => InboxStore::deadline_clock(&store).unwrap_or(clock),
            false => clock,
        };
        let recent = (config.recent_capacity > 0).then(|| RecentCompletions::new(config.recent_capacity));
        let next_gc = AtomicI64::new(clock.now().after(config.gc_interval).0);
        Ok(Inbox { inner: Arc::new(Inner { store, clock, config, recent, next_gc }) })
    }

    /// The configuration in force.
    pub fn config(&self) -> &InboxConfig {
        &self.inner.config
    }

    /// The store underneath.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    pub(crate) fn remember(
        &self,
        id: &str,
        fingerprint: Option<Fingerprint>,
        outcome: StoredOutcome,
        expires_at: Timestamp,
    ) {
        if let Some(recent) = &self.inner.recent {
            if outcome.status != Status::Seen {
                recent.insert(id, Completed { fingerprint, outcome: Arc::new(outcome), expires_at });
            }
        }
    }

    /// Checks a request and turns it into a store operation, or answers it from the in-memory
    /// front.
    pub(crate) fn prepare(
        &self,
        req: &Request,
        now: Timestamp,
    ) -> Result<std::result::Result<InboxOp, Begin<S>>> {
        Ok(match self.screen(req, now)? {
            Some(answered) => Err(answered),
            None => Ok(self.begin_op(req, req.id.clone())),
        })
    }

    /// Checks a request and answers it from the in-memory front of recent completions when it
    /// can (a duplicate, a conflict), without the store; `Ok(None)` when only the store can.
    pub(crate) fn answer_from_memory(&self, req: &Request) -> Result<Option<Begin<S>>> {
        self.screen(req, self.now())
    }

    /// Checks a request, and answers it when the in-memory front can.
    fn screen(&self, req: &Request, now: Timestamp) -> Result<Option<Begin<S>>> {
        let answered = self.screen_untraced(req, now)?;
        #[cfg(feature = "otel")]
        if let Some(b) = &answered {
            self.observe(b);
        }
        Ok(answered)
    }

    /// Counts a begin's answer (telemetry).
    #[cfg(feature = "otel")]
    fn observe(&self, answer: &Begin<S>) {
        use crate::telemetry::{InboxAnswer, count_inbox};
        let kind = match answer {
            Begin::Claimed(_) => InboxAnswer::Claimed,
            Begin::Duplicate(_) => InboxAnswer::Duplicate,
            Begin::Conflict => InboxAnswer::Conflict,
            Begin::InProgress { .. } => InboxAnswer::InProgress,
        };
        count_inbox(&self.inner.config.scope, kind);
    }

    fn screen_untraced(&self, req: &Request, now: Timestamp) -> Result<Option<Begin<S>>> {
        validate_id(&req.id)?;
        if let Some(lease) = req.lease {
            require_positive("lease", lease)?;
        }
        let Some(hit) = self.inner.recent.as_ref().and_then(|r| r.get(&req.id, now)) else {
            return Ok(None);
        };
        Ok(Some(match (hit.fingerprint, req.fingerprint) {
            (Some(a), Some(b)) if a != b => Begin::Conflict,
            _ => Begin::Duplicate(Replay { status: hit.outcome.status, result: hit.outcome.result.clone() }),
        }))
    }

    /// The store operation of a checked request, for `id` (the request's own).
    fn begin_op(&self, req: &Request, id: String) -> InboxOp {
        InboxOp::Begin {
            id,
            fingerprint: req.fingerprint,
            mode: req.mode.unwrap_or(self.inner.config.mode),
            lease: req.lease.unwrap_or(self.inner.config.lease),
            retention: self.inner.config.retention,
        }
    }

    pub(crate) fn answer(&self, req: &Request, answer: OpAnswer) -> Result<Begin<S>> {
        self.answer_as(req, Cow::Borrowed(&req.id), answer)
    }

    /// [`Inbox::answer`] with the request's `id` given apart, owned when the caller can give it
    /// up (a ticket then keeps it without a copy).
    fn answer_as(&self, req: &Request, id: Cow<'_, str>, answer: OpAnswer) -> Result<Begin<S>> {
        let answered = self.answer_untraced(req, id, answer)?;
        #[cfg(feature = "otel")]
        self.observe(&answered);
        Ok(answered)
    }

    fn answer_untraced(&self, req: &Request, id: Cow<'_, str>, answer: OpAnswer) -> Result<Begin<S>> {
        Ok(match answer {
            OpAnswer::Claimed { token } => Begin::Claimed(Ticket {
                inbox: self.clone(),
                id: id.into_owned(),
                token,
                mode: req.mode.unwrap_or(self.inner.config.mode),
                fingerprint: req.fingerprint,
                lease: req.lease.unwrap_or(self.inner.config.lease),
            }),
            OpAnswer::Duplicate { outcome, fingerprint, expires_at } => {
                // Remember the stored fingerprint, never the request's: a duplicate without a
                // payload must not switch off conflict checks for later requests.
                self.remember(&id, fingerprint, outcome.clone(), expires_at);
                Begin::Duplicate(Replay { status: outcome.status, result: outcome.result })
            }
            OpAnswer::InProgress { lease_until } => Begin::InProgress { lease_until },
            OpAnswer::Conflict => Begin::Conflict,
            other => {
                return Err(Error::Storage(format!("store gave an unexpected answer: {other:?}")));
            }
        })
    }

    /// Tries to claim `req.id`. See [`Begin`] for the answers. In at-most-once the id is marked
    /// done here, before the effect; in exactly-once a fenced lease is taken; in at-least-once
    /// nothing is written until [`Ticket::finish`].
    pub async fn begin(&self, mut req: Request) -> Result<Begin<S>> {
        let mut now = self.now();
        if let Some(answered) = self.screen(&req, now)? {
            return Ok(answered);
        }
        if self.collect_garbage_if_due(now).await {
            now = self.now(); // collecting took a while: claim at the time it ended
        }
        // The request's id travels into the operation and on into the ticket, never copied.
        let id = std::mem::take(&mut req.id);
        let op = self.begin_op(&req, id);
        let (answer, _) = weather::apply_one(self, &op, now).await?;
        let InboxOp::Begin { id, .. } = op else { unreachable!("built as a begin above") };
        self.answer_as(&req, Cow::Owned(id), answer)
    }

    /// Claims many ids in one store round trip (one commit). Every request is checked first: one
    /// bad request fails the whole call and nothing is written.
    pub async fn begin_many(&self, reqs: Vec<Request>) -> Result<Vec<Begin<S>>> {
        let now = self.now();
        let mut prepared = Vec::with_capacity(reqs.len());
        for req in &reqs {
            prepared.push(self.prepare(req, now)?);
        }
        let ops: Vec<InboxOp> = prepared.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
        let mut answers = if ops.is_empty() {
            Vec::new().into_iter()
        } else {
            weather::apply(self, ops, now).await?.0.into_iter()
        };
        let mut out = Vec::with_capacity(reqs.len());
        for (req, p) in reqs.iter().zip(prepared) {
            out.push(match p {
                Err(answered) => answered,
                Ok(_) => {
                    let answer = answers
                        .next()
                        .ok_or_else(|| Error::Storage("store answered too few operations".into()))?;
                    self.answer(req, answer)?
                }
            });
        }
        Ok(out)
    }

    /// Finishes many claims in one store round trip (one commit). Each gets its own answer (a
    /// stale token fails only its own entry).
    pub async fn finish_many(&self, items: Vec<(&Ticket<S>, Vec<u8>)>) -> Result<Vec<Result<()>>> {
        let config = &self.inner.config;
        for (ticket, result) in &items {
            if !Arc::ptr_eq(&ticket.inbox.inner, &self.inner) {
                return Err(Error::invalid("ticket", "belongs to another inbox (scope); finish it there"));
            }
            crate::limits::result(result.len(), config.max_result_bytes)?;
        }
        let ops = items
            .iter()
            .map(|(t, result)| InboxOp::Finish {
                id: t.id.clone(),
                token: t.token,
                fingerprint: t.fingerprint,
                mode: t.mode,
                outcome: StoredOutcome { status: Status::Succeeded, result: Some(result.clone()) },
                retention: config.retention,
            })
            .collect();
        let (answers, now) = weather::apply(self, ops, self.now()).await?;
        Ok(items
            .into_iter()
            .zip(answers)
            .map(|((t, result), answer)| {
                t.finished(answer, StoredOutcome { status: Status::Succeeded, result: Some(result) }, now)
            })
            .collect())
    }

    /// Runs `handler` at most / at least / exactly once per id, by the request's mode:
    /// claims the id, runs the handler, then finishes (success), stores or releases (failure, by
    /// [`CachePolicy`]). A duplicate gets the stored result with `replayed: true`. A concurrent
    /// duplicate gets [`Error::InProgress`] at once, or with [`Request::wait`] waits for the first
    /// caller's result and gets [`Error::Timeout`] if it does not come in time.
    pub async fn process<F, Fut, E>(&self, req: Request, handler: F) -> Result<Processed, ProcessError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<Vec<u8>, Failure<E>>>,
        E: std::fmt::Display,
    {
        let started = Instant::now();
        let mut poll = Duration::from_millis(5);
        loop {
            match self.begin(req.clone()).await? {
                Begin::Claimed(ticket) => {
                    // Alive before the handler is even called: a handler may do all its work
                    // (blocking) in the call itself and return a ready future.
                    let alive = ticket.heartbeat();
                    let outcome = handler().await;
                    drop(alive);
                    ticket.settle(outcome.as_ref().map(Vec::clone)).await?;
                    return match outcome {
                        Ok(result) => Ok(Processed { result: Some(result), replayed: false }),
                        Err(Failure { error, .. }) => Err(ProcessError::Handler(error)),
                    };
                }
                Begin::Duplicate(replay) => return replay_result(replay),
                Begin::Conflict => return Err(Error::Conflict { id: req.id.clone() }.into()),
                Begin::InProgress { .. } => {
                    let Some(timeout) = req.wait else {
                        return Err(Error::InProgress { id: req.id.clone() }.into());
                    };
                    let waited = started.elapsed();
                    if waited >= timeout {
                        return Err(Error::Timeout {
                            what: "the first delivery of this id to finish",
                            waited_ms: waited.as_millis() as u64,
                        }
                        .into());
                    }
                    crate::clock::sleep(poll.min(timeout - waited)).await;
                    poll = (poll * 2).min(Duration::from_millis(100));
                }
            }
        }
    }

    /// The id's record as stored, for inspection (expired records included until collected).
    pub async fn get(&self, id: &str) -> Result<Option<InboxRecord>> {
        validate_id(id)?;
        self.store().get(&self.inner.config.scope, id).await
    }

    /// Deletes every expired record now and says how many went. (Expired records are also
    /// collected automatically, every `gc_interval`, during calls.)
    pub async fn purge_expired(&self) -> Result<u64> {
        self.store().purge_expired(self.now(), usize::MAX).await
    }

    /// [`Inbox::purge_expired`], at most `limit` records in one transaction: call it again while
    /// it returns `limit`, to collect a large backlog in steps that never hold the store long.
    pub async fn purge_expired_up_to(&self, limit: usize) -> Result<u64> {
        self.store().purge_expired(self.now(), limit).await
    }

    /// Collects expired records when due; says whether it did (and so took a while).
    pub(crate) async fn collect_garbage_if_due(&self, now: Timestamp) -> bool {
        let due = self.inner.next_gc.load(Ordering::Relaxed);
        if now.0 < due {
            return false;
        }
        let next = now.after(self.inner.config.gc_interval).0;
        if self.inner.next_gc.compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            return false;
        }
        if let Err(e) = self.store().purge_expired(now, 10_000).await {
            tracing::warn!(error = %e, "oncely: collecting expired inbox records failed");
        }
        true
    }
}

/// Turns a stored outcome into what [`Inbox::process`] returns for a duplicate.
pub(crate) fn replay_result<E>(replay: Replay) -> Result<Processed, ProcessError<E>> {
    match replay.status {
        Status::Failed => Err(ProcessError::ReplayedFailure(replay.result)),
        Status::Seen | Status::Succeeded => Ok(Processed { result: replay.result, replayed: true }),
    }
}

/// Extends the exactly-once claim of `id` held with `token` for `lease` from now.
async fn extend_claim<S: InboxStore>(
    inbox: &Inbox<S>,
    id: &str,
    token: u64,
    lease: Duration,
) -> Result<Timestamp> {
    let config = &inbox.inner.config;
    let op = InboxOp::Extend { id: id.to_owned(), token, lease, retention: config.retention };
    match weather::apply_one(inbox, &op, inbox.now()).await?.0 {
        OpAnswer::Extended { lease_until } => Ok(lease_until),
        OpAnswer::LeaseLost => Err(Error::LeaseLost { id: id.to_owned(), token }),
        other => Err(Error::Storage(format!("store gave an unexpected answer: {other:?}"))),
    }
}

/// Keeps one claim alive while it exists (see [`Ticket::keep_alive`]): at a third of the lease
/// the timer starts a thread that extends the claim every third of the lease until the heartbeat
/// is dropped — so two extensions in a row can be late (a loaded machine, a slow store) before
/// the claim runs out.
pub(crate) struct Heartbeat {
    _first: crate::timer::After,
    stop: Arc<HeartbeatStop>,
}

#[derive(Default)]
struct HeartbeatStop {
    stopped: parking_lot::Mutex<bool>,
    wake: parking_lot::Condvar,
}

impl Heartbeat {
    fn start<S: InboxStore>(inbox: Inbox<S>, id: String, token: u64, lease: Duration) -> Heartbeat {
        let beat = (lease / 3).max(Duration::from_millis(1));
        let stop = Arc::new(HeartbeatStop::default());
        let flag = stop.clone();
        let first = crate::timer::after(beat, move || {
            let spawned = std::thread::Builder::new().name("oncely-keep-alive".into()).spawn(move || {
                loop {
                    if *flag.stopped.lock() {
                        return; // the work ended while this thread started
                    }
                    if let Err(e) = pollster::block_on(extend_claim(&inbox, &id, token, lease)) {
                        tracing::warn!(id = %crate::text::quote(&id), error = %e, "oncely: an inbox claim could not be kept alive; another caller may run this id");
                        if e.code() == crate::ErrorCode::LeaseLost {
                            return; // taken over or settled: nothing left to keep
                        }
                    }
                    let mut stopped = flag.stopped.lock();
                    if !*stopped {
                        flag.wake.wait_for(&mut stopped, beat);
                    }
                    if *stopped {
                        return;
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "oncely: cannot start the keep-alive thread of an inbox claim");
            }
        });
        Heartbeat { _first: first, stop }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        *self.stop.stopped.lock() = true;
        self.stop.wake.notify_all();
    }
}
