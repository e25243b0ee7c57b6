//! `Inbox` and `Ticket`: the receiver's processed-ID store. Every rule (what each mode writes
//! when, leases, fencing, retention, the in-memory front) is the core's `oncely::Inbox`.

use std::sync::Arc;

use oncely::inbox::{RecordState, Status as CoreStatus};
use oncely::{AnyStore, Failure, InboxConfig, ProcessError, Request};

use crate::errors::{HandlerError, OncelyError};
use crate::on_runtime;
use crate::store::{ManualClock, Store, clock_of};
use crate::text::{HostText, ms, opt_ms, opt_text, size};

type CoreInbox = oncely::Inbox<AnyStore>;
type CoreTicket = oncely::Ticket<AnyStore>;

/// Which guarantee a delivery gets; the only difference is when the "done" mark is written
/// relative to the effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Mode {
    /// The mark before the effect: an effect may be lost, never repeated.
    AtMostOnce,
    /// The mark after the effect: an effect may be repeated, never lost.
    AtLeastOnce,
    /// A fenced lease before the effect, completed with the stored result after it; duplicates
    /// get the stored result. Exactly once when the effect commits with the mark
    /// (`Inbox.processInTransaction`), effectively once otherwise.
    ExactlyOnce,
}

impl From<Mode> for oncely::Mode {
    fn from(m: Mode) -> Self {
        match m {
            Mode::AtMostOnce => oncely::Mode::AtMostOnce,
            Mode::AtLeastOnce => oncely::Mode::AtLeastOnce,
            Mode::ExactlyOnce => oncely::Mode::ExactlyOnce,
        }
    }
}

impl From<oncely::Mode> for Mode {
    fn from(m: oncely::Mode) -> Self {
        match m {
            oncely::Mode::AtMostOnce => Mode::AtMostOnce,
            oncely::Mode::AtLeastOnce => Mode::AtLeastOnce,
            oncely::Mode::ExactlyOnce => Mode::ExactlyOnce,
        }
    }
}

/// The stable name of a mode (`"at_most_once"`, ...), as the core spells it.
#[uniffi::export]
pub fn mode_name(mode: Mode) -> String {
    oncely::Mode::from(mode).as_str().to_string()
}

/// A mode by its stable name (`"at_most_once"`, `"at_least_once"`, `"exactly_once"`); any
/// other name is `invalid_argument`.
#[uniffi::export]
pub fn mode_from_name(name: HostText) -> Result<Mode, OncelyError> {
    Ok(name.decode("mode")?.parse::<oncely::Mode>()?.into())
}

/// Which handler outcomes the inbox stores for replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum CachePolicy {
    /// Only successes; a failure gives the id back for a retry (default).
    SuccessOnly,
    /// Successes and permanent failures; a stored failure replays as the same failure.
    SuccessAndFailure,
}

/// How an id's first delivery ended, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Status {
    /// At-most-once mark (written before the effect).
    Seen,
    /// Finished with a result.
    Succeeded,
    /// Failed permanently, stored under `SuccessAndFailure`.
    Failed,
}

fn status(s: CoreStatus) -> Status {
    match s {
        CoreStatus::Seen => Status::Seen,
        CoreStatus::Succeeded => Status::Succeeded,
        CoreStatus::Failed => Status::Failed,
    }
}

/// How an inbox behaves; every absent field has the core's default (exactly-once, lease
/// 60 s, retention 24 h, `SuccessOnly`, 10,000 recent completions, 1 MiB results).
#[derive(Debug, Clone, Default, uniffi::Record)]
pub struct InboxOptions {
    /// The mode of requests that name none.
    #[uniffi(default = None)]
    pub mode: Option<Mode>,
    /// The exactly-once lease of requests that name none.
    #[uniffi(default = None)]
    pub lease_ms: Option<i64>,
    /// How long a record counts: the dedup window.
    #[uniffi(default = None)]
    pub retention_ms: Option<i64>,
    /// Which outcomes are stored.
    #[uniffi(default = None)]
    pub cache_policy: Option<CachePolicy>,
    /// How many recent completions the in-memory front remembers (0: none).
    #[uniffi(default = None)]
    pub recent_capacity: Option<u32>,
    /// The largest result or failure reason accepted.
    #[uniffi(default = None)]
    pub max_result_bytes: Option<u64>,
}

/// Per-call options of `begin` and `process`.
#[derive(Debug, Clone, Default, uniffi::Record)]
pub struct CallOptions {
    /// This call's mode (default: the inbox's).
    #[uniffi(default = None)]
    pub mode: Option<Mode>,
    /// This call's exactly-once lease (default: the inbox's).
    #[uniffi(default = None)]
    pub lease_ms: Option<i64>,
    /// `process` only: wait up to this long (real time) for a concurrent first delivery of the
    /// id instead of failing with `InProgress`; `Timeout` when it does not finish in time.
    #[uniffi(default = None)]
    pub wait_ms: Option<i64>,
}

/// One request of `Inbox.beginMany`.
#[derive(Debug, Clone, uniffi::Record)]
pub struct BeginRequest {
    /// The id (1–512 bytes of UTF-8, no NUL).
    pub id: HostText,
    /// Fingerprinted for conflict detection (absent: not validated).
    #[uniffi(default = None)]
    pub payload: Option<Vec<u8>>,
    /// This request's mode (default: the inbox's).
    #[uniffi(default = None)]
    pub mode: Option<Mode>,
    /// This request's lease (default: the inbox's).
    #[uniffi(default = None)]
    pub lease_ms: Option<i64>,
}

fn request(
    id: HostText,
    payload: Option<Vec<u8>>,
    mode: Option<Mode>,
    lease_ms: Option<i64>,
    wait_ms: Option<i64>,
) -> Result<Request, OncelyError> {
    let mut req = Request::new(id.decode("id")?);
    if let Some(p) = payload {
        req = req.payload(&p);
    }
    if let Some(m) = mode {
        req = req.mode(m.into());
    }
    if let Some(l) = opt_ms("lease_ms", lease_ms)? {
        req = req.lease(l);
    }
    if let Some(w) = opt_ms("wait_ms", wait_ms)? {
        req = req.wait(w);
    }
    Ok(req)
}

/// The answer to `Inbox.begin`.
#[derive(uniffi::Enum)]
pub enum BeginOutcome {
    /// You hold the id: run the effect, then `finish`, `fail` or `release` the ticket.
    Claimed {
        /// The claim.
        ticket: Arc<Ticket>,
    },
    /// Already done: the stored outcome. Do not run the effect again.
    Duplicate {
        /// How the first delivery ended.
        status: Status,
        /// Its stored result (or failure reason).
        result: Option<Vec<u8>>,
    },
    /// Another caller holds an unexpired lease on the id.
    InProgress {
        /// When that lease runs out.
        lease_until_ms: i64,
    },
    /// The id was used with a different payload.
    Conflict,
}

fn begin_outcome(b: oncely::Begin<AnyStore>) -> BeginOutcome {
    match b {
        oncely::Begin::Claimed(t) => {
            BeginOutcome::Claimed { ticket: Arc::new(Ticket { inner: Arc::new(t) }) }
        }
        oncely::Begin::Duplicate(r) => BeginOutcome::Duplicate { status: status(r.status), result: r.result },
        oncely::Begin::InProgress { lease_until } => {
            BeginOutcome::InProgress { lease_until_ms: lease_until.0 }
        }
        oncely::Begin::Conflict => BeginOutcome::Conflict,
    }
}

/// A claim on one id (from `Inbox.begin`). Settle it once: `finish`, `fail` or `release`. A
/// settle with a stale fencing token (the lease ran out and someone else claimed the id) throws
/// `LeaseLost` and writes nothing.
#[derive(uniffi::Object)]
pub struct Ticket {
    pub(crate) inner: Arc<CoreTicket>,
}

#[uniffi::export]
impl Ticket {
    /// The claimed id.
    pub fn id(&self) -> String {
        self.inner.id().to_string()
    }

    /// The fencing token: larger than every token handed out for this id before; 0 for an
    /// at-least-once claim, which holds no lease.
    pub fn token(&self) -> u64 {
        self.inner.token()
    }

    /// The claim's mode.
    pub fn mode(&self) -> Mode {
        self.inner.mode().into()
    }

    /// Marks the id done and stores `result` for duplicates; returns once durable.
    pub async fn finish(&self, result: Vec<u8>) -> Result<(), OncelyError> {
        let t = self.inner.clone();
        on_runtime(async move { Ok(t.finish(result).await?) }).await
    }

    /// A permanent failure: stored (and replayed) under `SuccessAndFailure`, otherwise the id is
    /// given back as by `release`.
    pub async fn fail(&self, reason: Vec<u8>) -> Result<(), OncelyError> {
        let t = self.inner.clone();
        on_runtime(async move { Ok(t.fail(reason).await?) }).await
    }

    /// Gives the id back so a retry can claim it at once (at-most-once keeps its mark).
    pub async fn release(&self) -> Result<(), OncelyError> {
        let t = self.inner.clone();
        on_runtime(async move { Ok(t.release().await?) }).await
    }

    /// Settles the claim by a handler's outcome, exactly as `process` settles one (the core's
    /// `Ticket::settle`): without `error`, finishes it with `result` (empty when null); with
    /// `error`, a `permanent` failure is stored or released by the cache policy and a retryable
    /// one gives the id back.
    #[uniffi::method(default(result = None, error = None, permanent = false))]
    pub async fn settle(
        &self,
        result: Option<Vec<u8>>,
        error: Option<HostText>,
        permanent: bool,
    ) -> Result<(), OncelyError> {
        let error = opt_text("error", error)?;
        let t = self.inner.clone();
        on_runtime(async move {
            Ok(match error {
                None => t.settle::<String>(Ok(result.unwrap_or_default())).await?,
                Some(error) => t.settle(Err(&oncely::Failure { error, permanent })).await?,
            })
        })
        .await
    }
}

/// One item of `Inbox.finishMany`.
#[derive(uniffi::Record)]
pub struct FinishItem {
    /// A ticket of this inbox.
    pub ticket: Arc<Ticket>,
    /// Its result.
    pub result: Vec<u8>,
}

/// The outcome of one item of a batch call.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum ItemOutcome {
    /// Done.
    Ok,
    /// Refused or failed, with the stable code and the core's message.
    Failed {
        /// The stable code (`"lease_lost"`, ...).
        code: String,
        /// The core's message.
        message: String,
    },
}

/// What `Inbox.process` returns on success.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Processed {
    /// The handler's result, or the stored one for a replay.
    pub result: Option<Vec<u8>>,
    /// `true` when the handler did not run because the id was already done.
    pub replayed: bool,
}

/// The handler of `Inbox.process`: runs the effect once the id is claimed and returns its result
/// (stored for duplicates). Throw `HandlerException.Permanent` for a failure no retry will cure
/// (stored under `SuccessAndFailure`); any other exception is retryable (the id is given back).
/// Called on one of oncely's threads; it may block.
#[uniffi::export(callback_interface)]
pub trait ProcessHandler: Send + Sync {
    /// Runs the effect.
    fn handle(&self) -> Result<Vec<u8>, HandlerError>;
}

/// The handler of `Inbox.processSuspending`: [`ProcessHandler`] as a suspend function (Kotlin) /
/// async function (Swift), for effects that wait without holding a thread. Runs in the host's
/// coroutine scope (Kotlin: `GlobalScope`, on `Dispatchers.Default`).
#[uniffi::export(callback_interface)]
#[async_trait::async_trait]
pub trait SuspendProcessHandler: Send + Sync {
    /// Runs the effect.
    async fn handle(&self) -> Result<Vec<u8>, HandlerError>;
}

/// The state of a stored inbox record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum RecordStatus {
    /// Leased by an exactly-once claim that has not finished.
    InProgress,
    /// At-most-once mark.
    Seen,
    /// Finished with a result.
    Succeeded,
    /// A stored permanent failure.
    Failed,
}

/// An inbox record as stored, for inspection.
#[derive(Debug, Clone, uniffi::Record)]
pub struct InboxRecord {
    /// Its state.
    pub status: RecordStatus,
    /// The stored result or failure reason.
    pub result: Option<Vec<u8>>,
    /// The fencing token of the latest claim (0 for an unfenced completion).
    pub token: u64,
    /// The payload fingerprint (hex), when the claim had a payload.
    pub fingerprint: Option<String>,
    /// When the record stops counting.
    pub expires_at_ms: i64,
    /// For `InProgress`: when the lease runs out.
    pub lease_until_ms: Option<i64>,
}

fn inbox_record(r: oncely::inbox::InboxRecord) -> InboxRecord {
    let (status, result, lease_until_ms) = match r.state {
        RecordState::InProgress { lease_until } => (RecordStatus::InProgress, None, Some(lease_until.0)),
        RecordState::Completed(o) => (
            match o.status {
                CoreStatus::Seen => RecordStatus::Seen,
                CoreStatus::Succeeded => RecordStatus::Succeeded,
                CoreStatus::Failed => RecordStatus::Failed,
            },
            o.result,
            None,
        ),
    };
    InboxRecord {
        status,
        result,
        token: r.token,
        fingerprint: r.fingerprint.map(|f| f.to_hex()),
        expires_at_ms: r.expires_at.0,
        lease_until_ms,
    }
}

/// The receiver's processed-ID store in one `scope` (an inbox name or a tenant: ids of two scopes
/// never collide). Cheap to share between threads and coroutines.
#[derive(uniffi::Object)]
pub struct Inbox {
    pub(crate) inner: CoreInbox,
}

#[uniffi::export]
impl Inbox {
    /// An inbox on `store` for `scope`. `clock`: a `ManualClock` for tests (default: the system
    /// clock). Bad options throw `InvalidArgument`.
    #[uniffi::constructor(default(options = None, clock = None))]
    pub fn new(
        store: Arc<Store>,
        scope: HostText,
        options: Option<InboxOptions>,
        clock: Option<Arc<ManualClock>>,
    ) -> Result<Arc<Self>, OncelyError> {
        let o = options.unwrap_or_default();
        let mut cfg = InboxConfig::new(scope.decode("scope")?);
        if let Some(m) = o.mode {
            cfg = cfg.mode(m.into());
        }
        if let Some(l) = o.lease_ms {
            cfg = cfg.lease(ms("lease_ms", l)?);
        }
        if let Some(r) = o.retention_ms {
            cfg = cfg.retention(ms("retention_ms", r)?);
        }
        if let Some(p) = o.cache_policy {
            cfg = cfg.cache_policy(match p {
                CachePolicy::SuccessOnly => oncely::CachePolicy::SuccessOnly,
                CachePolicy::SuccessAndFailure => oncely::CachePolicy::SuccessAndFailure,
            });
        }
        if let Some(n) = o.recent_capacity {
            cfg = cfg.recent_capacity(n as usize);
        }
        if let Some(n) = o.max_result_bytes {
            cfg.max_result_bytes = size("max_result_bytes", n)?;
        }
        let inner = CoreInbox::with_clock(store.inner.clone(), cfg, clock_of(clock))?;
        Ok(Arc::new(Inbox { inner }))
    }

    /// The inbox's scope.
    pub fn scope(&self) -> String {
        self.inner.config().scope.clone()
    }

    /// The inbox's default mode (a call's `CallOptions.mode` overrides it).
    pub fn mode(&self) -> Mode {
        self.inner.config().mode.into()
    }

    /// Claims `id` (pull style): `Claimed` (run the effect, then settle the ticket),
    /// `Duplicate`, `InProgress` or `Conflict`. `payload` is fingerprinted to detect reuse of an
    /// id for a different payload.
    #[uniffi::method(default(payload = None, options = None))]
    pub async fn begin(
        &self,
        id: HostText,
        payload: Option<Vec<u8>>,
        options: Option<CallOptions>,
    ) -> Result<BeginOutcome, OncelyError> {
        let o = options.unwrap_or_default();
        let req = request(id, payload, o.mode, o.lease_ms, o.wait_ms)?;
        let inbox = self.inner.clone();
        on_runtime(async move { Ok(begin_outcome(inbox.begin(req).await?)) }).await
    }

    /// Claims several ids in one store round trip; answers in request order.
    pub async fn begin_many(&self, requests: Vec<BeginRequest>) -> Result<Vec<BeginOutcome>, OncelyError> {
        let reqs = requests
            .into_iter()
            .map(|r| request(r.id, r.payload, r.mode, r.lease_ms, None))
            .collect::<Result<Vec<_>, _>>()?;
        let inbox = self.inner.clone();
        on_runtime(async move { Ok(inbox.begin_many(reqs).await?.into_iter().map(begin_outcome).collect()) })
            .await
    }

    /// Finishes several tickets of this inbox in one store round trip; one outcome per item, in
    /// order.
    pub async fn finish_many(&self, items: Vec<FinishItem>) -> Result<Vec<ItemOutcome>, OncelyError> {
        let batch: Vec<(Arc<CoreTicket>, Vec<u8>)> =
            items.into_iter().map(|i| (i.ticket.inner.clone(), i.result)).collect();
        let inbox = self.inner.clone();
        on_runtime(async move {
            let refs = batch.iter().map(|(t, r)| (&**t, r.clone())).collect();
            let results = inbox.finish_many(refs).await?;
            Ok(results
                .into_iter()
                .map(|r| match r {
                    Ok(()) => ItemOutcome::Ok,
                    Err(e) => {
                        ItemOutcome::Failed { code: e.code().as_str().to_string(), message: e.to_string() }
                    }
                })
                .collect())
        })
        .await
    }

    /// Runs `handler` at most / at least / exactly once for `id`, by the mode: claims the id,
    /// runs the handler, then stores its result (or, on failure, gives the id back or stores the
    /// failure by the cache policy). A duplicate returns the stored result with
    /// `replayed = true` without running the handler. Throws `HandlerFailed` when the handler
    /// failed in this call, `ReplayedFailure` for a stored failure, `Conflict`, `InProgress`
    /// (or `Timeout` with `waitMs`), or a storage error.
    #[uniffi::method(default(payload = None, options = None))]
    pub async fn process(
        &self,
        id: HostText,
        payload: Option<Vec<u8>>,
        handler: Box<dyn ProcessHandler>,
        options: Option<CallOptions>,
    ) -> Result<Processed, OncelyError> {
        let o = options.unwrap_or_default();
        let req = request(id, payload, o.mode, o.lease_ms, o.wait_ms)?;
        let inbox = self.inner.clone();
        on_runtime(async move {
            let outcome = inbox
                .process(req, move || async move {
                    match tokio::task::spawn_blocking(move || handler.handle()).await {
                        Ok(r) => r.map_err(Failure::from),
                        Err(e) => Err(HandlerError::Retry {
                            error: Some(format!("the handler did not return: {e}").into()),
                            type_name: "JoinError".into(),
                        }
                        .into()),
                    }
                })
                .await;
            process_result(outcome)
        })
        .await
    }

    /// `process` with a suspending handler (the same rules).
    #[uniffi::method(default(payload = None, options = None))]
    pub async fn process_suspending(
        &self,
        id: HostText,
        payload: Option<Vec<u8>>,
        handler: Box<dyn SuspendProcessHandler>,
        options: Option<CallOptions>,
    ) -> Result<Processed, OncelyError> {
        let o = options.unwrap_or_default();
        let req = request(id, payload, o.mode, o.lease_ms, o.wait_ms)?;
        let inbox = self.inner.clone();
        on_runtime(async move {
            let outcome = inbox
                .process(req, move || async move { handler.handle().await.map_err(Failure::from) })
                .await;
            process_result(outcome)
        })
        .await
    }

    /// The id's record as stored (expired records included until collected), or null.
    pub async fn get(&self, id: HostText) -> Result<Option<InboxRecord>, OncelyError> {
        let id = id.decode("id")?;
        let inbox = self.inner.clone();
        on_runtime(async move { Ok(inbox.get(&id).await?.map(inbox_record)) }).await
    }

    /// Deletes every expired record (of every scope) now; returns how many.
    pub async fn purge_expired(&self) -> Result<u64, OncelyError> {
        let inbox = self.inner.clone();
        on_runtime(async move { Ok(inbox.purge_expired().await?) }).await
    }
}

pub(crate) fn process_result(
    outcome: Result<oncely::Processed, ProcessError<String>>,
) -> Result<Processed, OncelyError> {
    match outcome {
        Ok(p) => Ok(Processed { result: p.result, replayed: p.replayed }),
        Err(ProcessError::Handler(reason)) => Err(OncelyError::HandlerFailed(reason)),
        Err(ProcessError::ReplayedFailure(reason)) => Err(OncelyError::ReplayedFailure(
            String::from_utf8_lossy(reason.as_deref().unwrap_or_default()).into_owned(),
        )),
        Err(ProcessError::Oncely(e)) => Err(e.into()),
    }
}
