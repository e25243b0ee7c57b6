//! The Rust runner of oncely's cross-language conformance scenarios.
//!
//! The scenarios are data (`scenarios/**/*.json`, format in `README.md`); the Python, Node and
//! Kotlin runners execute the same files. This runner loads every file, runs it on each backend
//! it has (`memory`, `sqlite` and, given a server, `postgres`), renders every step's actual outcome as canonical JSON with
//! [`render`] and compares it with the step's `expect` by JSON equality. The outbox steps live in
//! [`outbox`].

mod outbox;

pub use outbox::{OutboxOutcome, OutboxSpec};

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use oncely::backoff::{AttemptHistory, Backoff, GiveUp, Jitter, JitterRng, RetryDecision, RetryPolicy};
use oncely::inbox::{InboxRecord, RecordState, Status};
use oncely::{
    Begin, CachePolicy, Error, ErrorCode, Failure, Inbox, InboxConfig, InboxStore, ManualClock, MemoryStore,
    Mode, OutboxStore, ProcessError, Request, SqliteConfig, SqliteStore, Ticket, Timestamp,
};
use serde::Deserialize;
use serde_json::{Value, json};

/// Where every scenario's manual clock starts, in milliseconds since the Unix epoch.
pub const CLOCK_START_MS: i64 = 1_700_000_000_000;

/// The scope of the inbox when a scenario does not name one.
pub const DEFAULT_SCOPE: &str = "default";

/// The environment variable that restricts a run to the scenarios whose name contains it.
pub const FILTER_VAR: &str = "ONCELY_CONFORMANCE_FILTER";

// ---------------------------------------------------------------------------------------------
// The scenario format
// ---------------------------------------------------------------------------------------------

/// One scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What the scenario shows, for people; runners ignore it.
    #[serde(default)]
    pub description: Option<String>,
    /// The inbox configuration; absent fields take the core's defaults.
    #[serde(default)]
    pub inbox: InboxSpec,
    /// The outbox configuration; absent fields take the core's defaults.
    #[serde(default)]
    pub outbox: OutboxSpec,
    /// What a runner must be able to express to run this scenario (see [`CAPABILITIES`]); a
    /// runner without one of them reports the scenario as skipped, never as passed.
    #[serde(default)]
    pub requires: Vec<String>,
    /// The steps, run in order.
    pub steps: Vec<Step>,
}

/// The capabilities a scenario may require. `dynamic_handlers`: a handler can return any value
/// and give a hint of any number (negative, fractional) — true of Rust's runner (which describes
/// the handler to the core directly), Python and JavaScript; not of Kotlin, whose handler types
/// cannot express those cases at all.
pub const CAPABILITIES: &[&str] = &["dynamic_handlers"];

/// A scenario's inbox configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxSpec {
    /// The scope; default [`DEFAULT_SCOPE`].
    pub scope: Option<String>,
    /// The default mode: `at_most_once`, `at_least_once` or `exactly_once` (default).
    pub mode: Option<String>,
    /// The default exactly-once lease (default 60,000 ms).
    pub lease_ms: Option<u64>,
    /// The retention, i.e. the dedup window (default 86,400,000 ms).
    pub retention_ms: Option<u64>,
    /// `success_only` (default) or `success_and_failure`.
    pub cache_policy: Option<String>,
}

/// A handler for `process`: either returns a result or fails.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerSpec {
    /// The result the handler returns.
    pub returns: Option<String>,
    /// The error message the handler fails with.
    pub fails: Option<String>,
    /// Whether the failure is permanent (default: retryable).
    #[serde(default)]
    pub permanent: bool,
}

/// One request of a `begin_many`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeginSpec {
    /// The id.
    pub id: String,
    /// The payload (UTF-8), fingerprinted for conflict detection.
    pub payload: Option<String>,
    /// The mode for this request.
    pub mode: Option<String>,
    /// The lease for this request.
    pub lease_ms: Option<u64>,
    /// The name to keep the ticket under, if claimed.
    pub ticket: Option<String>,
}

/// One item of a `finish_many`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinishSpec {
    /// The ticket's name.
    pub ticket: String,
    /// The result to store.
    pub result: String,
}

/// What a `work` step's handler does with every message it is given: the handler contract
/// (`oncely::handler`), as a host-language handler would act it out.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "does", rename_all = "snake_case", deny_unknown_fields)]
#[allow(missing_docs)]
pub enum WorkHandler {
    /// Returns nothing (`None`, `undefined`, `Unit`).
    ReturnNothing,
    /// Returns `true`.
    ReturnTrue,
    /// Returns another value (requires `dynamic_handlers`).
    Return { value: Value },
    /// Raises oncely's `Retry` with `message` as its error and an optional hint.
    RaiseRetry { message: String, after_ms: Option<f64> },
    /// Raises oncely's `Snooze`.
    RaiseSnooze { after_ms: f64 },
    /// Raises oncely's `Permanent` with `message` as the reason.
    RaisePermanent { message: String },
    /// Raises the runner's own exception class `HandlerFailure` with `message`.
    Raise { message: String },
}

impl WorkHandler {
    /// The handler result this describes, as a binding would report it to the core.
    pub fn result(&self) -> oncely::handler::HandlerResult {
        use oncely::handler::{HandlerResult, Hint, Raised, Returned};
        let raised = |kind, message: &str, type_name: &str| HandlerResult::Raised {
            kind,
            message: Some(message.to_owned()),
            type_name: type_name.to_owned(),
        };
        let seconds = |ms: f64| Hint::Seconds(ms / 1000.0);
        match self {
            WorkHandler::ReturnNothing => HandlerResult::Returned(Returned::Nothing),
            WorkHandler::ReturnTrue => HandlerResult::Returned(Returned::True),
            WorkHandler::Return { value } => HandlerResult::Returned(Returned::Value(value.to_string())),
            WorkHandler::RaiseRetry { message, after_ms } => raised(
                Raised::Retry { error: Some(message.clone()), after: after_ms.map_or(Hint::Absent, seconds) },
                message,
                "Retry",
            ),
            WorkHandler::RaiseSnooze { after_ms } => {
                raised(Raised::Snooze { seconds: seconds(*after_ms) }, "", "Snooze")
            }
            WorkHandler::RaisePermanent { message } => raised(Raised::Permanent, message, "Permanent"),
            WorkHandler::Raise { message } => raised(Raised::Other, message, "HandlerFailure"),
        }
    }
}

/// One step.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
#[allow(missing_docs)]
pub enum Step {
    Begin {
        id: String,
        payload: Option<String>,
        mode: Option<String>,
        lease_ms: Option<u64>,
        scope: Option<String>,
        ticket: Option<String>,
        expect: Value,
    },
    Finish {
        ticket: String,
        result: String,
        expect: Value,
    },
    /// `fail`: the inbox's with `ticket`, the outbox's with `delivery`.
    Fail {
        ticket: Option<String>,
        delivery: Option<String>,
        reason: String,
        expect: Value,
    },
    /// `release`: the inbox's with `ticket`, the outbox's with `delivery`.
    Release {
        ticket: Option<String>,
        delivery: Option<String>,
        expect: Value,
    },
    Process {
        id: String,
        payload: Option<String>,
        mode: Option<String>,
        lease_ms: Option<u64>,
        scope: Option<String>,
        wait_ms: Option<u64>,
        handler: HandlerSpec,
        expect: Value,
    },
    Effects {
        expect: BTreeMap<String, u64>,
    },
    Advance {
        ms: u64,
    },
    Restart,
    Get {
        id: String,
        scope: Option<String>,
        expect: Value,
    },
    PurgeExpired {
        expect: Value,
    },
    BeginMany {
        requests: Vec<BeginSpec>,
        scope: Option<String>,
        expect: Value,
    },
    FinishMany {
        items: Vec<FinishSpec>,
        expect: Value,
    },
    Schedule {
        policy: Value,
        seed: u64,
        n: u32,
        expect: Value,
    },
    Decide {
        policy: Value,
        seed: u64,
        attempts: u32,
        first_attempt_at_ms: i64,
        now_ms: i64,
        last_delay_ms: Option<u64>,
        retry_after_ms: Option<u64>,
        expect: Value,
    },
    Enqueue {
        id: String,
        payload: Option<String>,
        key: Option<String>,
        headers: Option<BTreeMap<String, String>>,
        delay_ms: Option<u64>,
        queue: Option<String>,
        expect: Value,
    },
    EnqueueMany {
        messages: Vec<outbox::MessageSpec>,
        queue: Option<String>,
        expect: Value,
    },
    Lease {
        max: usize,
        #[serde(rename = "as")]
        names: Option<Vec<String>>,
        queue: Option<String>,
        expect: Value,
    },
    Ack {
        delivery: String,
        expect: Value,
    },
    Retry {
        delivery: String,
        after_ms: Option<u64>,
        error: Option<String>,
        expect: Value,
    },
    Snooze {
        delivery: String,
        after_ms: u64,
        expect: Value,
    },
    Extend {
        delivery: String,
        lease_ms: u64,
        expect: Value,
    },
    Inspect {
        delivery: String,
        expect: Value,
    },
    Cancel {
        id: String,
        queue: Option<String>,
        expect: Value,
    },
    GetMessage {
        id: String,
        queue: Option<String>,
        expect: Value,
    },
    Work {
        handler: WorkHandler,
        queue: Option<String>,
        expect: Value,
    },
    DeadLetters {
        queue: Option<String>,
        expect: Value,
    },
    Replay {
        id: String,
        queue: Option<String>,
        expect: Value,
    },
    PurgeDead {
        ids: Option<Vec<String>>,
        queue: Option<String>,
        expect: Value,
    },
    Stats {
        queue: Option<String>,
        expect: Value,
    },
    Counters {
        queue: Option<String>,
        expect: Value,
    },
    Events {
        expect: Value,
    },
}

impl Step {
    fn op(&self) -> &'static str {
        match self {
            Step::Begin { .. } => "begin",
            Step::Finish { .. } => "finish",
            Step::Fail { .. } => "fail",
            Step::Release { .. } => "release",
            Step::Process { .. } => "process",
            Step::Effects { .. } => "effects",
            Step::Advance { .. } => "advance",
            Step::Restart => "restart",
            Step::Get { .. } => "get",
            Step::PurgeExpired { .. } => "purge_expired",
            Step::BeginMany { .. } => "begin_many",
            Step::FinishMany { .. } => "finish_many",
            Step::Schedule { .. } => "schedule",
            Step::Decide { .. } => "decide",
            Step::Enqueue { .. } => "enqueue",
            Step::EnqueueMany { .. } => "enqueue_many",
            Step::Lease { .. } => "lease",
            Step::Ack { .. } => "ack",
            Step::Retry { .. } => "retry",
            Step::Snooze { .. } => "snooze",
            Step::Extend { .. } => "extend",
            Step::Inspect { .. } => "inspect",
            Step::Cancel { .. } => "cancel",
            Step::GetMessage { .. } => "get_message",
            Step::Work { .. } => "work",
            Step::DeadLetters { .. } => "dead_letters",
            Step::Replay { .. } => "replay",
            Step::PurgeDead { .. } => "purge_dead",
            Step::Stats { .. } => "stats",
            Step::Counters { .. } => "counters",
            Step::Events { .. } => "events",
        }
    }

    fn expect(&self) -> Option<Value> {
        match self {
            Step::Begin { expect, .. }
            | Step::Finish { expect, .. }
            | Step::Fail { expect, .. }
            | Step::Release { expect, .. }
            | Step::Process { expect, .. }
            | Step::Get { expect, .. }
            | Step::PurgeExpired { expect, .. }
            | Step::BeginMany { expect, .. }
            | Step::FinishMany { expect, .. }
            | Step::Schedule { expect, .. }
            | Step::Decide { expect, .. }
            | Step::Enqueue { expect, .. }
            | Step::EnqueueMany { expect, .. }
            | Step::Lease { expect, .. }
            | Step::Ack { expect, .. }
            | Step::Retry { expect, .. }
            | Step::Snooze { expect, .. }
            | Step::Extend { expect, .. }
            | Step::Inspect { expect, .. }
            | Step::Cancel { expect, .. }
            | Step::GetMessage { expect, .. }
            | Step::Work { expect, .. }
            | Step::DeadLetters { expect, .. }
            | Step::Replay { expect, .. }
            | Step::PurgeDead { expect, .. }
            | Step::Stats { expect, .. }
            | Step::Counters { expect, .. }
            | Step::Events { expect } => Some(expect.clone()),
            Step::Effects { expect } => Some(json!(expect)),
            Step::Advance { .. } | Step::Restart => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Outcomes and their one canonical rendering
// ---------------------------------------------------------------------------------------------

/// A stored record as a scenario sees it.
#[derive(Debug)]
pub struct RecordView {
    /// `in_progress`, `seen`, `succeeded` or `failed`.
    pub state: &'static str,
    /// The stored result or failure reason.
    pub result: Option<Vec<u8>>,
    /// The name of the ticket whose claim issued the record's fencing token; `None` for an
    /// unfenced (token 0) record; `Some("other")` for a token no named ticket holds.
    pub token: Option<String>,
}

/// The actual outcome of one step, in language-neutral terms.
#[derive(Debug)]
pub enum Outcome {
    /// `begin`: the caller holds the id; `fenced` when the claim carries a fencing token.
    Claimed {
        /// Whether the claim carries a (non-zero) fencing token.
        fenced: bool,
    },
    /// `begin`: already done.
    Duplicate {
        /// How the first delivery ended.
        status: Status,
        /// Its stored result.
        result: Option<Vec<u8>>,
    },
    /// `begin`: another caller holds an unexpired lease.
    InProgress,
    /// `begin`: same id, different payload.
    Conflict,
    /// `finish` / `fail` / `release` succeeded.
    Ok,
    /// An oncely error, by its stable code.
    Error(ErrorCode),
    /// `process` returned a result.
    Processed {
        /// The result.
        result: Option<Vec<u8>>,
        /// Whether it is a replay.
        replayed: bool,
    },
    /// `process`: the handler ran and failed with this message.
    HandlerError(String),
    /// `process`: the stored permanent failure of the first delivery, replayed.
    ReplayedFailure(Option<Vec<u8>>),
    /// `get`.
    Record(Option<RecordView>),
    /// `purge_expired`.
    Purged(u64),
    /// `begin_many` / `finish_many`: one outcome per entry.
    Many(Vec<Outcome>),
    /// `effects`: handler runs per id.
    Effects(BTreeMap<String, u64>),
    /// `schedule`.
    Delays(Vec<u64>),
    /// `decide`: retry after this many milliseconds.
    RetryIn(u64),
    /// `decide`: stop.
    GiveUp(GiveUp),
    /// An outbox step's outcome (see [`outbox::OutboxOutcome`]).
    Outbox(outbox::OutboxOutcome),
    /// `advance` and `restart` have no result.
    Nothing,
}

fn text(bytes: &Option<Vec<u8>>) -> Value {
    match bytes {
        Some(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
        None => Value::Null,
    }
}

/// Renders an outcome as the canonical JSON that scenario `expect`s are compared with.
pub fn render(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Claimed { fenced } => json!({"outcome": "claimed", "fenced": fenced}),
        Outcome::Duplicate { status, result } => {
            json!({"outcome": "duplicate", "status": status.as_str(), "result": text(result)})
        }
        Outcome::InProgress => json!({"outcome": "in_progress"}),
        Outcome::Conflict => json!({"outcome": "conflict"}),
        Outcome::Ok => json!({"ok": true}),
        Outcome::Error(code) => json!({"error": code.as_str()}),
        Outcome::Processed { result, replayed } => {
            json!({"result": text(result), "replayed": replayed})
        }
        Outcome::HandlerError(msg) => json!({"handler_error": msg}),
        Outcome::ReplayedFailure(reason) => json!({"replayed_failure": text(reason)}),
        Outcome::Record(None) => json!({"record": null}),
        Outcome::Record(Some(r)) => json!({"record": {
            "state": r.state,
            "result": text(&r.result),
            "token": r.token,
        }}),
        Outcome::Purged(n) => json!({"purged": n}),
        Outcome::Many(items) => json!({"results": items.iter().map(render).collect::<Vec<_>>()}),
        Outcome::Effects(counts) => json!(counts),
        Outcome::Delays(d) => json!({"delays_ms": d}),
        Outcome::RetryIn(ms) => json!({"retry_in_ms": ms}),
        Outcome::GiveUp(GiveUp::MaxAttempts) => json!({"give_up": "max_attempts"}),
        Outcome::GiveUp(GiveUp::Deadline) => json!({"give_up": "deadline"}),
        Outcome::Outbox(o) => outbox::render(o),
        Outcome::Nothing => Value::Null,
    }
}

// ---------------------------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------------------------

/// A store the scenarios run on, with what `restart` means for it.
pub trait Backend {
    /// The store type.
    type Store: InboxStore + OutboxStore + Clone;
    /// The name printed in the report.
    const NAME: &'static str;
    /// A fresh, empty backend for one scenario.
    fn fresh() -> Result<Self, String>
    where
        Self: Sized;
    /// A handle on the store, opening it if needed.
    fn store(&mut self) -> Result<Self::Store, String>;
    /// Drops the handles this backend owns that a crashed process would lose. Called after the
    /// runner dropped every inbox and ticket.
    fn restart(&mut self);
}

/// The memory store: one `Arc<MemoryStore>` lives through restarts (only the inboxes, with
/// their in-memory front, are rebuilt).
pub struct MemoryBackend(Arc<MemoryStore>);

impl Backend for MemoryBackend {
    type Store = Arc<MemoryStore>;
    const NAME: &'static str = "memory";

    fn fresh() -> Result<Self, String> {
        Ok(MemoryBackend(Arc::new(MemoryStore::new())))
    }

    fn store(&mut self) -> Result<Self::Store, String> {
        Ok(self.0.clone())
    }

    fn restart(&mut self) {}
}

/// The SQLite store in a temporary file; `restart` closes the store and reopens the file.
pub struct SqliteBackend {
    dir: tempfile::TempDir,
    store: Option<SqliteStore>,
}

impl SqliteBackend {
    fn path(&self) -> PathBuf {
        self.dir.path().join("oncely.db")
    }
}

impl Backend for SqliteBackend {
    type Store = SqliteStore;
    const NAME: &'static str = "sqlite";

    fn fresh() -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temp dir: {e}"))?;
        Ok(SqliteBackend { dir, store: None })
    }

    fn store(&mut self) -> Result<Self::Store, String> {
        if self.store.is_none() {
            let store = SqliteStore::open(self.path(), SqliteConfig::default())
                .map_err(|e| format!("cannot open the SQLite store: {e}"))?;
            self.store = Some(store);
        }
        Ok(self.store.clone().expect("just opened"))
    }

    fn restart(&mut self) {
        // The last handle: dropping it stops the writer thread and closes the file.
        self.store = None;
    }
}

/// The PostgreSQL store in a fresh schema of its own on the server named by
/// `ONCELY_POSTGRES_URL`; `restart` closes the store (its connections) and reopens it.
pub struct PostgresBackend {
    url: String,
    store: Option<oncely::PostgresStore>,
}

/// The server the PostgreSQL backend uses, if one is configured.
pub fn postgres_server() -> Option<String> {
    std::env::var(POSTGRES_VAR).ok().filter(|u| !u.is_empty())
}

impl Backend for PostgresBackend {
    type Store = oncely::PostgresStore;
    const NAME: &'static str = "postgres";

    fn fresh() -> Result<Self, String> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let server = postgres_server().ok_or_else(|| format!("{POSTGRES_VAR} is not set"))?;
        let schema = format!("conformance_{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let url = oncely::PostgresStore::schema_url(&server, &schema)
            .map_err(|e| format!("cannot make a PostgreSQL schema: {e}"))?;
        Ok(PostgresBackend { url, store: None })
    }

    fn store(&mut self) -> Result<Self::Store, String> {
        if self.store.is_none() {
            let store = oncely::PostgresStore::open(&self.url, oncely::PostgresConfig::default())
                .map_err(|e| format!("cannot open the PostgreSQL store: {e}"))?;
            self.store = Some(store);
        }
        Ok(self.store.clone().expect("just opened"))
    }

    fn restart(&mut self) {
        // The last handle: dropping it closes the pool's connections.
        self.store = None;
    }
}

// ---------------------------------------------------------------------------------------------
// Running one scenario
// ---------------------------------------------------------------------------------------------

/// Why a scenario run failed.
#[derive(Debug)]
pub struct Failed {
    /// The index (from 0) of the step that failed, if a step did.
    pub step: Option<usize>,
    /// What went wrong.
    pub message: String,
}

fn parse_mode(s: &str) -> Result<Mode, Error> {
    s.parse()
}

fn base_config(spec: &InboxSpec) -> Result<InboxConfig, String> {
    let mut cfg = InboxConfig::new(spec.scope.clone().unwrap_or_else(|| DEFAULT_SCOPE.into()));
    if let Some(m) = &spec.mode {
        cfg = cfg.mode(parse_mode(m).map_err(|e| format!("inbox.mode: {e}"))?);
    }
    if let Some(ms) = spec.lease_ms {
        cfg = cfg.lease(Duration::from_millis(ms));
    }
    if let Some(ms) = spec.retention_ms {
        cfg = cfg.retention(Duration::from_millis(ms));
    }
    if let Some(p) = &spec.cache_policy {
        cfg = cfg.cache_policy(match p.as_str() {
            "success_only" => CachePolicy::SuccessOnly,
            "success_and_failure" => CachePolicy::SuccessAndFailure,
            other => return Err(format!("inbox.cache_policy: unknown policy `{other}`")),
        });
    }
    Ok(cfg)
}

struct Run<B: Backend> {
    backend: B,
    clock: ManualClock,
    config: InboxConfig,
    inboxes: HashMap<String, Inbox<B::Store>>,
    tickets: HashMap<String, (String, Ticket<B::Store>)>,
    token_names: HashMap<u64, String>,
    max_token: HashMap<(String, String), u64>,
    effects: BTreeMap<String, u64>,
    /// The outbox side: outboxes, held deliveries, collected events.
    out: outbox::OutboxState<B::Store>,
    /// A broken invariant noticed while running the current step.
    violation: Option<String>,
}

/// A request built from a scenario step, or the error its fields give.
fn request(
    id: &str,
    payload: &Option<String>,
    mode: &Option<String>,
    lease_ms: Option<u64>,
) -> Result<Request, Error> {
    let mut req = Request::new(id);
    if let Some(p) = payload {
        req = req.payload(p.as_bytes());
    }
    if let Some(m) = mode {
        req = req.mode(parse_mode(m)?);
    }
    if let Some(ms) = lease_ms {
        req = req.lease(Duration::from_millis(ms));
    }
    Ok(req)
}

fn code_of<T>(r: Result<T, Error>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(e) => Outcome::Error(e.code()),
    }
}

impl<B: Backend> Run<B> {
    fn new(spec: &InboxSpec, outbox: &OutboxSpec) -> Result<Self, String> {
        Ok(Run {
            out: outbox::OutboxState::new(outbox)?,
            backend: B::fresh()?,
            clock: ManualClock::new(Timestamp(CLOCK_START_MS)),
            config: base_config(spec)?,
            inboxes: HashMap::new(),
            tickets: HashMap::new(),
            token_names: HashMap::new(),
            max_token: HashMap::new(),
            effects: BTreeMap::new(),
            violation: None,
        })
    }

    fn scope_of(&self, scope: &Option<String>) -> String {
        scope.clone().unwrap_or_else(|| self.config.scope.clone())
    }

    /// The inbox for `scope` (built on first use, over the shared store and clock).
    fn inbox(&mut self, scope: &str) -> Result<Result<Inbox<B::Store>, Error>, String> {
        if let Some(i) = self.inboxes.get(scope) {
            return Ok(Ok(i.clone()));
        }
        let store = self.backend.store()?;
        let mut config = self.config.clone();
        config.scope = scope.to_owned();
        match Inbox::with_clock(store, config, Arc::new(self.clock.clone())) {
            Ok(inbox) => {
                self.inboxes.insert(scope.to_owned(), inbox.clone());
                Ok(Ok(inbox))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    fn ticket(&self, name: &str) -> Result<&Ticket<B::Store>, String> {
        self.tickets
            .get(name)
            .map(|(_, t)| t)
            .ok_or_else(|| format!("scenario error: no ticket named `{name}` is held"))
    }

    /// Renders a begin answer, keeping a claimed ticket under `name` and checking that fencing
    /// tokens grow per id.
    fn begin_outcome(&mut self, scope: &str, name: &Option<String>, begin: Begin<B::Store>) -> Outcome {
        match begin {
            Begin::Claimed(ticket) => {
                let token = ticket.token();
                if token > 0 {
                    let key = (scope.to_owned(), ticket.id().to_owned());
                    let max = self.max_token.entry(key).or_insert(0);
                    if token <= *max && self.violation.is_none() {
                        self.violation = Some(format!(
                            "invariant: the claim of `{}` got fencing token {token}, not larger than \
                             the earlier token {max} of that id",
                            ticket.id()
                        ));
                    }
                    *max = (*max).max(token);
                    if let Some(n) = name {
                        self.token_names.insert(token, n.clone());
                    }
                }
                if let Some(n) = name {
                    self.tickets.insert(n.clone(), (scope.to_owned(), ticket));
                }
                Outcome::Claimed { fenced: token > 0 }
            }
            Begin::Duplicate(replay) => Outcome::Duplicate { status: replay.status, result: replay.result },
            Begin::InProgress { .. } => Outcome::InProgress,
            Begin::Conflict => Outcome::Conflict,
        }
    }

    fn record_view(&self, rec: InboxRecord) -> RecordView {
        let (state, result) = match rec.state {
            RecordState::InProgress { .. } => ("in_progress", None),
            RecordState::Completed(o) => (o.status.as_str(), o.result),
        };
        let token = (rec.token > 0)
            .then(|| self.token_names.get(&rec.token).cloned().unwrap_or_else(|| "other".into()));
        RecordView { state, result, token }
    }

    async fn step(&mut self, step: &Step) -> Result<Outcome, String> {
        Ok(match step {
            Step::Begin { id, payload, mode, lease_ms, scope, ticket, expect: _ } => {
                let scope = self.scope_of(scope);
                let inbox = match self.inbox(&scope)? {
                    Ok(i) => i,
                    Err(e) => return Ok(Outcome::Error(e.code())),
                };
                let req = match request(id, payload, mode, *lease_ms) {
                    Ok(r) => r,
                    Err(e) => return Ok(Outcome::Error(e.code())),
                };
                match inbox.begin(req).await {
                    Ok(b) => self.begin_outcome(&scope, ticket, b),
                    Err(e) => Outcome::Error(e.code()),
                }
            }
            Step::Finish { ticket, result, .. } => {
                code_of(self.ticket(ticket)?.finish(result.as_bytes()).await)
            }
            Step::Fail { ticket: Some(ticket), delivery: None, reason, .. } => {
                code_of(self.ticket(ticket)?.fail(reason.as_bytes()).await)
            }
            Step::Release { ticket: Some(ticket), delivery: None, .. } => {
                code_of(self.ticket(ticket)?.release().await)
            }
            Step::Fail { ticket: None, delivery: Some(_), .. }
            | Step::Release { ticket: None, delivery: Some(_), .. } => return self.outbox_step(step).await,
            Step::Fail { .. } | Step::Release { .. } => {
                return Err(format!(
                    "scenario error: `{}` needs exactly one of `ticket` (inbox) and `delivery` (outbox)",
                    step.op()
                ));
            }
            Step::Process { id, payload, mode, lease_ms, scope, wait_ms, handler, expect: _ } => {
                let ret = match (&handler.returns, &handler.fails) {
                    (Some(r), None) => Ok(r.clone().into_bytes()),
                    (None, Some(f)) => Err(Failure { error: f.clone(), permanent: handler.permanent }),
                    _ => {
                        return Err("scenario error: a handler needs exactly one of `returns` \
                                    and `fails`"
                            .into());
                    }
                };
                let scope = self.scope_of(scope);
                let inbox = match self.inbox(&scope)? {
                    Ok(i) => i,
                    Err(e) => return Ok(Outcome::Error(e.code())),
                };
                let mut req = match request(id, payload, mode, *lease_ms) {
                    Ok(r) => r,
                    Err(e) => return Ok(Outcome::Error(e.code())),
                };
                if let Some(ms) = wait_ms {
                    req = req.wait(Duration::from_millis(*ms));
                }
                let effects = &mut self.effects;
                let handler = || {
                    *effects.entry(id.clone()).or_insert(0) += 1;
                    async move { ret }
                };
                match inbox.process(req, handler).await {
                    Ok(p) => Outcome::Processed { result: p.result, replayed: p.replayed },
                    Err(ProcessError::Handler(msg)) => Outcome::HandlerError(msg),
                    Err(ProcessError::ReplayedFailure(reason)) => Outcome::ReplayedFailure(reason),
                    Err(ProcessError::Oncely(e)) => Outcome::Error(e.code()),
                }
            }
            Step::Effects { expect } => Outcome::Effects(
                expect.keys().map(|id| (id.clone(), self.effects.get(id).copied().unwrap_or(0))).collect(),
            ),
            Step::Advance { ms } => {
                self.clock.advance(Duration::from_millis(*ms));
                Outcome::Nothing
            }
            Step::Restart => {
                // A crash: every ticket and inbox (with its in-memory front) is lost, then the
                // backend drops what a dead process would.
                self.tickets.clear();
                self.inboxes.clear();
                self.out.crash();
                self.backend.restart();
                Outcome::Nothing
            }
            Step::Get { id, scope, .. } => {
                let scope = self.scope_of(scope);
                let inbox = match self.inbox(&scope)? {
                    Ok(i) => i,
                    Err(e) => return Ok(Outcome::Error(e.code())),
                };
                match inbox.get(id).await {
                    Ok(rec) => Outcome::Record(rec.map(|r| self.record_view(r))),
                    Err(e) => Outcome::Error(e.code()),
                }
            }
            Step::PurgeExpired { .. } => {
                let scope = self.config.scope.clone();
                let inbox = match self.inbox(&scope)? {
                    Ok(i) => i,
                    Err(e) => return Ok(Outcome::Error(e.code())),
                };
                match inbox.purge_expired().await {
                    Ok(n) => Outcome::Purged(n),
                    Err(e) => Outcome::Error(e.code()),
                }
            }
            Step::BeginMany { requests, scope, .. } => {
                let scope = self.scope_of(scope);
                let inbox = match self.inbox(&scope)? {
                    Ok(i) => i,
                    Err(e) => return Ok(Outcome::Error(e.code())),
                };
                let mut reqs = Vec::with_capacity(requests.len());
                for r in requests {
                    match request(&r.id, &r.payload, &r.mode, r.lease_ms) {
                        Ok(req) => reqs.push(req),
                        Err(e) => return Ok(Outcome::Error(e.code())),
                    }
                }
                match inbox.begin_many(reqs).await {
                    Ok(answers) => {
                        if answers.len() != requests.len() {
                            return Err(format!(
                                "begin_many answered {} of {} requests",
                                answers.len(),
                                requests.len()
                            ));
                        }
                        Outcome::Many(
                            answers
                                .into_iter()
                                .zip(requests)
                                .map(|(b, r)| self.begin_outcome(&scope, &r.ticket, b))
                                .collect(),
                        )
                    }
                    Err(e) => Outcome::Error(e.code()),
                }
            }
            Step::FinishMany { items, .. } => {
                // All tickets of one finish_many must come from one inbox (scope).
                let mut scope = None;
                let mut batch = Vec::with_capacity(items.len());
                for item in items {
                    let (s, t) = self.tickets.get(&item.ticket).ok_or_else(|| {
                        format!("scenario error: no ticket named `{}` is held", item.ticket)
                    })?;
                    match scope {
                        None => scope = Some(s),
                        Some(first) if first != s => {
                            return Err("scenario error: finish_many mixes scopes".into());
                        }
                        Some(_) => {}
                    }
                    batch.push((t, item.result.clone().into_bytes()));
                }
                let Some(scope) = scope.cloned() else {
                    return Err("scenario error: finish_many needs at least one item".into());
                };
                let inbox =
                    self.inboxes.get(&scope).cloned().ok_or("scenario error: the tickets' inbox is gone")?;
                match inbox.finish_many(batch).await {
                    Ok(results) => Outcome::Many(results.into_iter().map(code_of).collect()),
                    Err(e) => Outcome::Error(e.code()),
                }
            }
            Step::Schedule { policy, seed, n, .. } => {
                let policy: RetryPolicy = match serde_json::from_value(policy.clone()) {
                    Ok(p) => p,
                    Err(_) => return Ok(Outcome::Error(ErrorCode::InvalidArgument)),
                };
                let delays: Vec<u64> =
                    policy.schedule(*seed, *n).iter().map(|d| d.as_millis() as u64).collect();
                if let Err(msg) = check_schedule_bounds(&policy, &delays) {
                    self.violation.get_or_insert(msg);
                }
                Outcome::Delays(delays)
            }
            Step::Decide {
                policy,
                seed,
                attempts,
                first_attempt_at_ms,
                now_ms,
                last_delay_ms,
                retry_after_ms,
                ..
            } => {
                let policy: RetryPolicy = match serde_json::from_value(policy.clone()) {
                    Ok(p) => p,
                    Err(_) => return Ok(Outcome::Error(ErrorCode::InvalidArgument)),
                };
                let history = AttemptHistory {
                    attempts: *attempts,
                    first_attempt_at: Timestamp(*first_attempt_at_ms),
                    last_delay: last_delay_ms.map(Duration::from_millis),
                };
                let mut rng = JitterRng::new(*seed);
                match policy.decide(
                    &history,
                    Timestamp(*now_ms),
                    retry_after_ms.map(Duration::from_millis),
                    &mut rng,
                ) {
                    RetryDecision::RetryIn(d) => {
                        Outcome::RetryIn(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                    }
                    RetryDecision::GiveUp(why) => Outcome::GiveUp(why),
                }
            }
            Step::Enqueue { .. }
            | Step::EnqueueMany { .. }
            | Step::Lease { .. }
            | Step::Ack { .. }
            | Step::Retry { .. }
            | Step::Snooze { .. }
            | Step::Extend { .. }
            | Step::Inspect { .. }
            | Step::Cancel { .. }
            | Step::GetMessage { .. }
            | Step::Work { .. }
            | Step::DeadLetters { .. }
            | Step::Replay { .. }
            | Step::PurgeDead { .. }
            | Step::Stats { .. }
            | Step::Counters { .. }
            | Step::Events { .. } => return self.outbox_step(step).await,
        })
    }
}

/// The documented bounds `[lo, hi]` (whole milliseconds) of the delay before attempt `n + 1`,
/// i.e. after `n` attempts were made (README, "retry"): computed here independently of the core.
/// `prev` is the previous delay for decorrelated backoff: `Some(Some(d))` known, `Some(None)`
/// none yet (the first retry: the core uses `base`), `None` unknown (only `[base, max]` is
/// checked).
pub fn delay_bounds(policy: &RetryPolicy, n: u32, prev: Option<Option<u64>>) -> (f64, f64) {
    let ms = |d: Duration| d.as_millis() as f64;
    let n = f64::from(n.max(1));
    match policy.backoff {
        Backoff::Decorrelated { base, max } => {
            let base = ms(base);
            let top = match prev {
                Some(p) => (p.map_or(base, |p| p as f64) * 3.0).max(base).min(ms(max)),
                None => ms(max),
            };
            (base.floor(), top.floor())
        }
        backoff => {
            let base = match backoff {
                Backoff::Fixed { delay } => ms(delay),
                Backoff::Linear { initial, step, max } => (ms(initial) + ms(step) * (n - 1.0)).min(ms(max)),
                Backoff::Exponential { initial, factor, max } => {
                    (ms(initial) * factor.powf(n - 1.0)).min(ms(max))
                }
                Backoff::Decorrelated { .. } => unreachable!(),
            };
            match policy.jitter {
                Jitter::None => (base.floor(), base.floor()),
                Jitter::Full => (0.0, base.floor()),
                Jitter::Equal => ((base / 2.0).floor(), base.floor()),
            }
        }
    }
}

/// Checks a schedule against the documented bounds of its backoff and jitter ([`delay_bounds`]),
/// so that the jittered numbers pinned in the scenarios are known to be plausible and not merely
/// reproduced.
pub fn check_schedule_bounds(policy: &RetryPolicy, delays: &[u64]) -> Result<(), String> {
    let mut prev: Option<u64> = None;
    for (i, &d) in delays.iter().enumerate() {
        let (lo, hi) = delay_bounds(policy, (i + 1) as u32, Some(prev));
        let df = d as f64;
        if df < lo || df > hi {
            return Err(format!(
                "invariant: delay {} of the schedule is {d} ms, outside the documented [{lo}, {hi}] ms",
                i + 1
            ));
        }
        prev = Some(d);
    }
    Ok(())
}

/// Runs one scenario on backend `B`.
pub fn run_scenario<B: Backend>(scenario: &Scenario) -> Result<(), Failed> {
    if let Some(unknown) = scenario.requires.iter().find(|r| !CAPABILITIES.contains(&r.as_str())) {
        return Err(Failed {
            step: None,
            message: format!("malformed scenario: unknown capability `{unknown}`"),
        });
    }
    let mut run =
        Run::<B>::new(&scenario.inbox, &scenario.outbox).map_err(|message| Failed { step: None, message })?;
    for (i, step) in scenario.steps.iter().enumerate() {
        let fail = |message: String| Failed { step: Some(i), message };
        let outcome = pollster::block_on(run.step(step)).map_err(fail)?;
        if let Some(v) = run.violation.take() {
            return Err(fail(format!("({}): {v}", step.op())));
        }
        let actual = render(&outcome);
        match step.expect() {
            Some(expected) if expected != actual => {
                return Err(fail(format!("({}): expected {expected}, actual {actual}", step.op())));
            }
            _ => {}
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Loading and reporting
// ---------------------------------------------------------------------------------------------

/// The directory holding the scenario files.
pub fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(())
}

/// Every scenario file under `dir`, as (name, path), sorted by name. The name is the path
/// relative to `dir`, with `/` separators and without `.json`.
pub fn list_scenarios(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut paths = Vec::new();
    collect(dir, &mut paths)?;
    let mut named: Vec<(String, PathBuf)> = paths
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(dir).unwrap_or(&p).with_extension("");
            let name = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            (name, p)
        })
        .collect();
    named.sort();
    Ok(named)
}

fn report(status: &str, backend: &str, name: &str, detail: &str) {
    if detail.is_empty() {
        println!("{status:<4} {backend:<8}  {name}");
    } else {
        println!("{status:<4} {backend:<8}  {name}  {detail}");
    }
}

fn run_on<B: Backend>(name: &str, scenario: &Scenario) -> bool {
    match run_scenario::<B>(scenario) {
        Ok(()) => {
            report("ok", B::NAME, name, "");
            true
        }
        Err(Failed { step, message }) => {
            let at = step.map(|s| format!("step {s} ")).unwrap_or_default();
            report("FAIL", B::NAME, name, &format!("{at}{message}"));
            false
        }
    }
}

const BACKENDS: [&str; 3] = [MemoryBackend::NAME, SqliteBackend::NAME, PostgresBackend::NAME];

/// The environment variable naming the PostgreSQL server for the `postgres` backend.
pub const POSTGRES_VAR: &str = "ONCELY_POSTGRES_URL";

/// Runs every scenario (whose name contains `filter`, if given) on every backend, prints one
/// line per run and the totals, and returns the process exit code.
pub fn main_with(filter: Option<&str>) -> i32 {
    let dir = scenarios_dir();
    let scenarios = match list_scenarios(&dir) {
        Ok(s) => s,
        Err(e) => {
            println!("cannot list {}: {e}", dir.display());
            println!("0 passed, 1 failed");
            return 1;
        }
    };
    let (mut passed, mut failed) = (0u32, 0u32);
    let with_postgres = postgres_server().is_some();
    if !with_postgres {
        if std::env::var("CI").as_deref() == Ok("true") {
            println!("FAIL postgres: {POSTGRES_VAR} is not set under CI; the PostgreSQL runs must not skip");
            failed += 1;
        } else {
            println!(
                "!! SKIPPED: the postgres backend ({POSTGRES_VAR} is not set; scripts/with-postgres.sh sets it)"
            );
        }
    }
    for (name, path) in &scenarios {
        if filter.is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let parsed = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|s| serde_json::from_str::<Scenario>(&s).map_err(|e| e.to_string()));
        let scenario = match parsed {
            Ok(s) => s,
            Err(e) => {
                for backend in BACKENDS {
                    report("FAIL", backend, name, &format!("cannot load the scenario: {e}"));
                    failed += 1;
                }
                continue;
            }
        };
        let mut runs =
            vec![run_on::<MemoryBackend>(name, &scenario), run_on::<SqliteBackend>(name, &scenario)];
        if with_postgres {
            runs.push(run_on::<PostgresBackend>(name, &scenario));
        }
        for ok in runs {
            if ok {
                passed += 1;
            } else {
                failed += 1;
            }
        }
    }
    if passed + failed == 0 && filter.is_none() {
        println!("no scenarios found under {}", dir.display());
        failed += 1;
    }
    println!("{passed} passed, {failed} failed");
    i32::from(failed > 0)
}

/// [`main_with`], filtered by the `ONCELY_CONFORMANCE_FILTER` environment variable.
pub fn main_from_env() -> i32 {
    let filter = std::env::var(FILTER_VAR).ok().filter(|f| !f.is_empty());
    main_with(filter.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> RetryPolicy {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn bounds_accept_documented_ranges_and_reject_others() {
        let exp = policy(
            r#"{"max_attempts":9,"backoff":{"kind":"exponential","initial_ms":100,"factor":2.0,"max_ms":1000},"jitter":"full"}"#,
        );
        assert!(check_schedule_bounds(&exp, &[0, 200, 400, 800, 1000]).is_ok());
        assert!(check_schedule_bounds(&exp, &[101]).is_err());
        assert!(check_schedule_bounds(&exp, &[0, 0, 0, 0, 1001]).is_err());
        let equal = RetryPolicy { jitter: Jitter::Equal, ..exp };
        assert!(check_schedule_bounds(&equal, &[50, 100]).is_ok());
        assert!(check_schedule_bounds(&equal, &[49]).is_err());
        assert!(check_schedule_bounds(&equal, &[50, 99]).is_err());
        let none = RetryPolicy { jitter: Jitter::None, ..exp };
        assert!(check_schedule_bounds(&none, &[100, 200]).is_ok());
        assert!(check_schedule_bounds(&none, &[100, 199]).is_err());
        let dec = policy(
            r#"{"max_attempts":9,"backoff":{"kind":"decorrelated","base_ms":100,"max_ms":500},"jitter":"none"}"#,
        );
        assert!(check_schedule_bounds(&dec, &[300, 500, 100, 300]).is_ok());
        assert!(check_schedule_bounds(&dec, &[301]).is_err());
        assert!(check_schedule_bounds(&dec, &[99]).is_err());
        assert!(check_schedule_bounds(&dec, &[120, 361]).is_err());
        assert!(check_schedule_bounds(&dec, &[300, 501]).is_err());
    }

    #[test]
    fn scenario_typos_are_rejected() {
        let bad = [
            r#"{"steps":[{"op":"begin","id":"a","expcet":{}}]}"#,
            r#"{"steps":[{"op":"begin","id":"a"}]}"#,
            r#"{"steps":[{"op":"advance","ms":1,"expect":null}]}"#,
            r#"{"steps":[{"op":"teleport"}]}"#,
            r#"{"inbox":{"retention":5},"steps":[]}"#,
            r#"{"steps":[{"op":"process","id":"a","handler":{"return":"x"},"expect":{}}]}"#,
        ];
        for s in bad {
            assert!(serde_json::from_str::<Scenario>(s).is_err(), "{s}");
        }
        let good = r#"{"description":"d","inbox":{"mode":"at_least_once"},"steps":[{"op":"restart"},{"op":"advance","ms":5},{"op":"purge_expired","expect":{"purged":0}}]}"#;
        assert_eq!(serde_json::from_str::<Scenario>(good).unwrap().steps.len(), 3);
    }

    #[test]
    fn decorrelated_retry_bounds_use_the_previous_delay_when_known() {
        let dec = policy(
            r#"{"max_attempts":9,"backoff":{"kind":"decorrelated","base_ms":100,"max_ms":1000},"jitter":"none"}"#,
        );
        assert_eq!(delay_bounds(&dec, 1, Some(None)), (100.0, 300.0));
        assert_eq!(delay_bounds(&dec, 2, Some(Some(200))), (100.0, 600.0));
        assert_eq!(delay_bounds(&dec, 3, Some(Some(900))), (100.0, 1000.0));
        assert_eq!(delay_bounds(&dec, 3, None), (100.0, 1000.0));
        let lin = policy(
            r#"{"max_attempts":9,"backoff":{"kind":"linear","initial_ms":100,"step_ms":50,"max_ms":200},"jitter":"none"}"#,
        );
        assert_eq!(delay_bounds(&lin, 2, None), (150.0, 150.0));
        assert_eq!(delay_bounds(&lin, 7, None), (200.0, 200.0));
    }

    #[test]
    fn outbox_scenario_typos_are_rejected() {
        let bad = [
            r#"{"outbox":{"lease":5},"steps":[]}"#,
            r#"{"outbox":{"retry_budget":{"ratio":1,"bust":2}},"steps":[]}"#,
            r#"{"steps":[{"op":"lease","max":1,"expcet":{}}]}"#,
            r#"{"steps":[{"op":"ack","delivery":"a"}]}"#,
            r#"{"steps":[{"op":"enqueue","id":"a","delay":5,"expect":{}}]}"#,
            r#"{"steps":[{"op":"enqueue_many","messages":[{"id":"a","paylod":"x"}],"expect":{}}]}"#,
            r#"{"steps":[{"op":"events"}]}"#,
        ];
        for s in bad {
            assert!(serde_json::from_str::<Scenario>(s).is_err(), "{s}");
        }
        let good = r#"{"outbox":{"mode":"at_least_once","ordering":{"fifo_per_key":{"park_ms":5}}},"steps":[
            {"op":"lease","max":2,"as":["a","b"],"queue":"q","expect":{"leased":[]}},
            {"op":"fail","delivery":"a","reason":"r","expect":{}},
            {"op":"release","ticket":"t","expect":{}},
            {"op":"events","expect":[]}]}"#;
        assert_eq!(serde_json::from_str::<Scenario>(good).unwrap().steps.len(), 4);
        for (ordering, ok) in [
            (json!("unordered"), true),
            (json!({"fifo_per_key": "block"}), true),
            (json!({"fifo_per_key": "dead_letter"}), true),
            (json!({"fifo_per_key": {"park_ms": 10}}), true),
            (json!("fifo"), false),
            (json!({"fifo_per_key": "park"}), false),
            (json!({"fifo_per_key": {"park_ms": 10, "x": 1}}), false),
            (json!({"fifo_per_key": "block", "x": 1}), false),
        ] {
            let spec = OutboxSpec { ordering: Some(ordering.clone()), ..Default::default() };
            assert_eq!(outbox::OutboxState::<Arc<MemoryStore>>::new(&spec).is_ok(), ok, "{ordering}");
        }
    }

    #[test]
    fn outbox_rendering_is_canonical() {
        use oncely::outbox::{Cancelled, Enqueued, Event, EventKind, Settled};
        let at = |ms: i64| Timestamp(CLOCK_START_MS + ms);
        let r = |o| render(&Outcome::Outbox(o));
        assert_eq!(
            r(OutboxOutcome::Enqueued(Enqueued::AlreadyQueued)),
            json!({"enqueued": "already_queued"})
        );
        assert_eq!(
            r(OutboxOutcome::Leased(vec![("m".into(), 2, true)])),
            json!({"leased": [{"id": "m", "attempt": 2, "fenced": true}]})
        );
        assert_eq!(
            r(OutboxOutcome::Settled(Settled::Retrying { at: at(150) })),
            json!({"settled": {"retrying_at_ms": 150}})
        );
        assert_eq!(r(OutboxOutcome::Settled(Settled::GaveUp)), json!({"settled": "gave_up"}));
        assert_eq!(r(OutboxOutcome::Cancel(Cancelled::InFlight)), json!({"cancel": "in_flight"}));
        assert_eq!(r(OutboxOutcome::Error(ErrorCode::LeaseLost)), json!({"error": "lease_lost"}));
        assert_eq!(
            r(OutboxOutcome::Events(vec![
                Event {
                    id: "m".into(),
                    at: at(5),
                    kind: EventKind::Retried { at: at(105), error: "e".into() }
                },
                Event { id: "m".into(), at: at(5), kind: EventKind::Parked { until: at(9) } },
            ])),
            json!([
                {"kind": "retried", "id": "m", "retry_at_ms": 105, "error": "e"},
                {"kind": "parked", "id": "m", "until_ms": 9},
            ])
        );
    }

    #[test]
    fn rendering_is_canonical() {
        assert_eq!(
            render(&Outcome::Duplicate { status: Status::Seen, result: None }).to_string(),
            r#"{"outcome":"duplicate","result":null,"status":"seen"}"#
        );
        assert_eq!(
            render(&Outcome::Many(vec![Outcome::Ok, Outcome::Error(ErrorCode::LeaseLost)])),
            json!({"results": [{"ok": true}, {"error": "lease_lost"}]})
        );
    }
}
