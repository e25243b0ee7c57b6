//! Hostile input and hostile handlers, each case in a child process of its own.
//!
//! proptest draws cases over the public API — ids, keys, scopes and headers that are empty, huge,
//! hold NUL or arbitrary Unicode; payloads of up to 20 MB; durations and integers at their limits;
//! arbitrary retry-policy JSON and enum names; and handlers that succeed, fail, panic, stall past
//! their lease, re-enter their own id or exit the process. The parent runs each case by starting
//! this test binary again with the case on standard input, so a crash (a signal, an abort, a
//! panic of the core) or a hang (no answer within [`CASE_TIMEOUT`]) is caught and counted instead
//! of ending the suite. Every case must end in a typed error whose message is bounded, or in a
//! documented result; a refused call must leave the SQLite store's rows as they were.
//!
//! `ONCELY_HOSTILE_CASES=N` sets the number of cases (default 160, about 15 s here);
//! `ONCELY_HOSTILE_SEED=S` replays one run exactly.

use std::io::{Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oncely::backoff::RetryPolicy;
use oncely::outbox::{Settle, SettleFields};
use oncely::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde::{Deserialize, Serialize};

/// How long one case may take before it counts as a hang.
const CASE_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest error message a case may produce (inputs are quoted by a bounded prefix).
const MAX_MESSAGE: usize = 600;
/// What a hostile handler's panic says, so the child can tell it from a panic of the core.
const HANDLER_PANIC: &str = "hostile handler panic";
const ENV_CHILD: &str = "ONCELY_HOSTILE_CHILD";

/// Text as a case carries it: small text literally, huge text by its length.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Text {
    Is(String),
    Repeat(char, usize),
}

impl Text {
    fn get(&self) -> String {
        match self {
            Text::Is(s) => s.clone(),
            Text::Repeat(c, n) => std::iter::repeat_n(*c, *n).collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Handler {
    Succeed(usize),
    Retryable(Text),
    Permanent(Text),
    Panic,
    /// Sleeps this many leases; meanwhile a second caller of the same id must be refused.
    Stall(u8),
    ReEnter,
    Exit(u8),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum WorkerAnswer {
    Success,
    Retry(Option<u64>, Text),
    Snooze(u64),
    Fail(Text),
    Panic,
    Sleep(u64),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Case {
    OpenStore(Text),
    InboxConfig {
        scope: Text,
        lease_ms: u64,
        retention_ms: u64,
        recent_capacity: usize,
    },
    Begin {
        id: Text,
        payload: usize,
        lease_ms: Option<u64>,
        wait_ms: Option<u64>,
    },
    Process {
        id: Text,
        lease_ms: u64,
        handler: Handler,
    },
    Enqueue {
        id: Option<Text>,
        key: Option<Text>,
        payload: usize,
        headers: Vec<(Text, Text)>,
        delay_ms: Option<u64>,
        at: Option<i64>,
    },
    Lease(usize),
    Settle {
        id: Text,
        token: u64,
        action: Text,
        after_ms: Option<u64>,
        lease_ms: Option<u64>,
        text: Text,
    },
    DeadLetters(Option<u64>, usize),
    ByIdCalls(Text),
    Policy(String),
    Schedule(u64, u64),
    Names(Text),
    Clock(u64, i64),
    Worker {
        concurrency: usize,
        poll_ms: u64,
        messages: u8,
        answer: WorkerAnswer,
    },
}

// ---------------------------------------------------------------------------------------------
// Strategies

fn text() -> impl Strategy<Value = Text> {
    prop_oneof![
        4 => "[a-z0-9-]{1,12}".prop_map(Text::Is),
        3 => any::<String>().prop_map(Text::Is),
        1 => Just(Text::Is(String::new())),
        1 => Just(Text::Is("a\0b".into())),
        1 => Just(Text::Is("\u{FEFF}\u{202E}é\u{1F600}".into())),
        1 => (prop::sample::select(vec!['x', 'é', '\u{1F600}']), 0usize..3_000_000).prop_map(|(c, n)| Text::Repeat(c, n)),
    ]
}

fn millis() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        1u64..10_000,
        Just(u64::MAX),
        Just((1 << 53) - 1),
        Just(1 << 53),
        any::<u64>()
    ]
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![Just(0), 1usize..5000, Just(usize::MAX), any::<usize>()]
}

fn payload() -> impl Strategy<Value = usize> {
    prop_oneof![4 => 0usize..64, 1 => Just(1 << 20), 1 => Just((1 << 20) + 1), 1 => Just(20 << 20)]
}

fn handler() -> impl Strategy<Value = Handler> {
    prop_oneof![
        payload().prop_map(Handler::Succeed),
        text().prop_map(Handler::Retryable),
        text().prop_map(Handler::Permanent),
        Just(Handler::Panic),
        (2u8..4).prop_map(Handler::Stall),
        Just(Handler::ReEnter),
        (1u8..100).prop_map(Handler::Exit),
    ]
}

fn worker_answer() -> impl Strategy<Value = WorkerAnswer> {
    prop_oneof![
        Just(WorkerAnswer::Success),
        (prop::option::of(millis()), text()).prop_map(|(a, t)| WorkerAnswer::Retry(a, t)),
        millis().prop_map(WorkerAnswer::Snooze),
        text().prop_map(WorkerAnswer::Fail),
        Just(WorkerAnswer::Panic),
        (0u64..300).prop_map(WorkerAnswer::Sleep),
    ]
}

fn policy_json() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        Just("0".to_string()),
        Just("-1".into()),
        Just("1e308".into()),
        Just("1.5".into()),
        Just("9007199254740993".into()),
        Just("18446744073709551616".into()),
        Just("null".into()),
        Just("\"5\"".into()),
        (1u64..100_000).prop_map(|n| n.to_string()),
    ];
    let field = prop::sample::select(vec![
        "max_attempts",
        "deadline_ms",
        "backoff",
        "jitter",
        "delay_ms",
        "initial_ms",
        "factor",
        "max_ms",
        "kind",
        "maxAttempts",
        "",
    ]);
    let kind = prop::sample::select(vec![
        "\"fixed\"",
        "\"exponential\"",
        "\"full\"",
        "\"none\"",
        "\"equal\"",
        "\"FIXED\"",
        "1",
        "[]",
    ]);
    prop_oneof![
        any::<String>(),
        (number.clone(), number.clone(), kind.clone()).prop_map(|(a, d, k)| format!(
            r#"{{"max_attempts": {a}, "backoff": {{"kind": {k}, "delay_ms": {d}}}, "jitter": "none"}}"#
        )),
        (prop::collection::vec((field, number), 0..6), kind).prop_map(|(fields, k)| {
            let body: Vec<String> = fields.iter().map(|(f, v)| format!("\"{f}\": {v}")).collect();
            format!(r#"{{"backoff": {{"kind": {k}}}, {}}}"#, body.join(", "))
        }),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    prop_oneof![
        1 => text().prop_map(Case::OpenStore),
        1 => (text(), millis(), millis(), size()).prop_map(|(scope, lease_ms, retention_ms, recent_capacity)| Case::InboxConfig { scope, lease_ms, retention_ms, recent_capacity }),
        1 => (text(), payload(), prop::option::of(millis()), prop::option::of(0u64..200)).prop_map(|(id, payload, lease_ms, wait_ms)| Case::Begin { id, payload, lease_ms, wait_ms }),
        3 => (text(), 60u64..300, handler()).prop_map(|(id, lease_ms, handler)| Case::Process { id, lease_ms, handler }),
        1 => (prop::option::of(text()), prop::option::of(text()), payload(), prop::collection::vec((text(), text()), 0..3), prop::option::of(millis()), prop::option::of(any::<i64>()))
            .prop_map(|(id, key, payload, headers, delay_ms, at)| Case::Enqueue { id, key, payload, headers, delay_ms, at }),
        1 => size().prop_map(Case::Lease),
        1 => (text(), any::<u64>(), prop_oneof![prop::sample::select(Settle::ACTIONS.to_vec()).prop_map(|a| Text::Is(a.into())), text()], prop::option::of(millis()), prop::option::of(millis()), text())
            .prop_map(|(id, token, action, after_ms, lease_ms, text)| Case::Settle { id, token, action, after_ms, lease_ms, text }),
        1 => (prop::option::of(any::<u64>()), size()).prop_map(|(a, l)| Case::DeadLetters(a, l)),
        1 => text().prop_map(Case::ByIdCalls),
        1 => policy_json().prop_map(Case::Policy),
        1 => (any::<u64>(), prop_oneof![0u64..200, Just(100_000), Just(100_001), Just(u64::from(u32::MAX) + 1), any::<u64>()]).prop_map(|(s, n)| Case::Schedule(s, n)),
        1 => text().prop_map(Case::Names),
        1 => (millis(), any::<i64>()).prop_map(|(a, s)| Case::Clock(a, s)),
        1 => (prop_oneof![Just(0usize), 1usize..8, Just(usize::MAX)], prop_oneof![Just(0u64), 1u64..50, Just(u64::MAX)], 1u8..6, worker_answer())
            .prop_map(|(concurrency, poll_ms, messages, answer)| Case::Worker { concurrency, poll_ms, messages, answer }),
    ]
}

// ---------------------------------------------------------------------------------------------
// The child: runs one case and prints its class

/// What a case ended in, as the child reports it.
#[derive(Debug, Serialize, Deserialize)]
enum Ended {
    Typed(String),
    Documented(String),
    /// A typed error whose message was not bounded, a refused call that changed the store, or a
    /// guarantee that broke: a defect.
    Defect(String),
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// Every row of the store, for "a refused call changes nothing".
fn rows(path: &std::path::Path) -> Vec<String> {
    let db = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut out = Vec::new();
    for t in tables {
        let mut q = db.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
        let n = q.column_count();
        let mut r = q.query([]).unwrap();
        while let Some(row) = r.next().unwrap() {
            let cells: Vec<String> = (0..n).map(|i| format!("{:?}", row.get_ref(i).unwrap())).collect();
            out.push(format!("{t}: {}", cells.join(" | ")));
        }
    }
    out
}

/// A typed error: bounded message, or a defect.
fn typed(e: &Error) -> Ended {
    let text = e.to_string();
    if text.len() > MAX_MESSAGE {
        return Ended::Defect(format!("{} message of {} bytes", e.code().as_str(), text.len()));
    }
    Ended::Typed(e.code().as_str().into())
}

fn settled<T>(r: Result<T>, what: &str) -> Ended {
    match r {
        Ok(_) => Ended::Documented(what.into()),
        Err(e) => typed(&e),
    }
}

struct Fixture {
    path: std::path::PathBuf,
    store: SqliteStore,
    clock: ManualClock,
}

impl Fixture {
    fn new(dir: &std::path::Path) -> Fixture {
        let path = dir.join("h.db");
        let store = SqliteStore::open(&path, SqliteConfig::default()).unwrap();
        Fixture { path, store, clock: ManualClock::default() }
    }
    fn inbox(&self, lease: Duration) -> Inbox<SqliteStore> {
        let cfg = InboxConfig::new("rx").lease(lease);
        Inbox::with_clock(self.store.clone(), cfg, Arc::new(SystemClock)).unwrap()
    }
    fn outbox(&self) -> Outbox<SqliteStore> {
        let retry = RetryPolicy { max_attempts: 3, ..RetryPolicy::default() };
        let cfg = OutboxConfig::new("q").retry(retry);
        Outbox::with_clock(self.store.clone(), cfg, Arc::new(self.clock.clone())).unwrap()
    }
}

async fn run_case(case: Case, dir: &std::path::Path) -> Ended {
    let fx = Fixture::new(dir);
    match case {
        Case::OpenStore(loc) => {
            let loc = loc.get();
            // Relative names land in the case's own directory, never the checkout.
            std::env::set_current_dir(dir).unwrap();
            settled(AnyStore::open(&loc, SqliteConfig::default()), "store opened")
        }
        Case::InboxConfig { scope, lease_ms, retention_ms, recent_capacity } => {
            let cfg = InboxConfig::new(scope.get())
                .lease(ms(lease_ms))
                .retention(ms(retention_ms))
                .recent_capacity(recent_capacity);
            settled(Inbox::open(fx.store.clone(), cfg), "inbox opened")
        }
        Case::Begin { id, payload, lease_ms, wait_ms } => {
            let inbox = fx.inbox(ms(5_000));
            let mut req = Request::new(id.get()).payload(&vec![7u8; payload]);
            if let Some(l) = lease_ms {
                req = req.lease(ms(l));
            }
            if let Some(w) = wait_ms {
                req = req.wait(ms(w));
            }
            let before = rows(&fx.path);
            refused_changes_nothing(&fx.path, &before, inbox.begin(req).await.map(|_| ()), "claimed")
        }
        Case::Process { id, lease_ms, handler } => process_case(&fx, id.get(), ms(lease_ms), handler).await,
        Case::Enqueue { id, key, payload, headers, delay_ms, at } => {
            let mut m = NewMessage::new(vec![1u8; payload]);
            if let Some(id) = id {
                m = m.id(id.get());
            }
            if let Some(k) = key {
                m = m.key(k.get());
            }
            for (n, v) in headers {
                m = m.header(n.get(), v.get());
            }
            if let Some(d) = delay_ms {
                m = m.delay(ms(d));
            }
            if let Some(t) = at {
                m = m.available_at(Timestamp(t));
            }
            let outbox = fx.outbox();
            let before = rows(&fx.path);
            refused_changes_nothing(&fx.path, &before, outbox.enqueue(m).await.map(|_| ()), "enqueued")
        }
        Case::Lease(max) => {
            let outbox = fx.outbox();
            outbox.enqueue(NewMessage::new(b"p".to_vec())).await.unwrap();
            let before = rows(&fx.path);
            refused_changes_nothing(&fx.path, &before, outbox.lease(max).await.map(|_| ()), "leased")
        }
        Case::Settle { id, token, action, after_ms, lease_ms, text } => {
            let outbox = fx.outbox();
            outbox.enqueue(NewMessage::new(b"p".to_vec()).id("m")).await.unwrap();
            let _held = outbox.lease(1).await.unwrap();
            let before = rows(&fx.path);
            let fields = SettleFields {
                after: after_ms.map(ms),
                lease: lease_ms.map(ms),
                error: Some(text.get()),
                reason: Some(text.get()),
            };
            let r = match Settle::from_action(&action.get(), fields) {
                Ok(how) => outbox.settle(&id.get(), token, how).await.map(|_| ()),
                Err(e) => Err(e),
            };
            refused_changes_nothing(&fx.path, &before, r, "settled")
        }
        Case::DeadLetters(after, limit) => settled(fx.outbox().dead_letters(after, limit).await, "listed"),
        Case::ByIdCalls(id) => {
            let (outbox, inbox, id) = (fx.outbox(), fx.inbox(ms(5_000)), id.get());
            let before = rows(&fx.path);
            for r in [
                outbox.get(&id).await.map(|_| ()),
                outbox.cancel(&id).await.map(|_| ()),
                outbox.replay(&id).await.map(|_| ()),
                outbox.purge_dead(Some(vec![id.clone()])).await.map(|_| ()),
                inbox.get(&id).await.map(|_| ()),
            ] {
                if let Err(e) = r {
                    return refused_changes_nothing(&fx.path, &before, Err(e), "");
                }
            }
            Ended::Documented("by-id calls answered".into())
        }
        Case::Policy(json) => match serde_json::from_str::<RetryPolicy>(&json) {
            Err(e) if e.to_string().len() > MAX_MESSAGE => {
                Ended::Defect(format!("serde message of {} bytes", e.to_string().len()))
            }
            Err(_) => Ended::Typed("invalid_argument".into()),
            Ok(p) => settled(p.validate(), "policy accepted"),
        },
        Case::Schedule(seed, n) => settled(RetryPolicy::default().schedule_checked(seed, n), "schedule"),
        Case::Names(t) => {
            let t = t.get();
            let parsed = [
                t.parse::<Mode>().map(|_| ()),
                t.parse::<CachePolicy>().map(|_| ()),
                Settle::from_action(&t, SettleFields::default()).map(|_| ()),
            ];
            for r in parsed {
                if let Err(e) = r {
                    if let Ended::Defect(d) = typed(&e) {
                        return Ended::Defect(d);
                    }
                }
            }
            Ended::Documented("names parsed".into())
        }
        Case::Clock(advance, set) => {
            // A manual clock moves as told; an overflowing move saturates instead of wrapping.
            fx.clock.advance(ms(advance));
            fx.clock.set(Timestamp(set));
            fx.clock.advance(ms(advance));
            let outbox = fx.outbox();
            let r = outbox.enqueue(NewMessage::new(b"p".to_vec())).await.map(|_| ());
            let r = r.and(outbox.lease(4).await.map(|_| ()));
            settled(r, "clock moved")
        }
        Case::Worker { concurrency, poll_ms, messages, answer } => {
            worker_case(&fx, concurrency, poll_ms, messages, answer).await
        }
    }
}

/// A refused call must leave every row as it was before it (`before`).
fn refused_changes_nothing(path: &std::path::Path, before: &[String], r: Result<()>, what: &str) -> Ended {
    match r {
        Ok(()) => Ended::Documented(what.into()),
        Err(e) if rows(path) != before => Ended::Defect(format!("refused ({e}) but the store changed")),
        Err(e) => typed(&e),
    }
}

async fn process_case(fx: &Fixture, id: String, lease: Duration, handler: Handler) -> Ended {
    let inbox = fx.inbox(lease);
    let before = rows(&fx.path);
    let second = inbox.clone();
    let id2 = id.clone();
    let r = inbox
        .process(Request::new(id.clone()), || async move {
            match handler {
                Handler::Succeed(n) => Ok(vec![3u8; n]),
                Handler::Retryable(t) => Err(inbox::Failure::retryable(t.get())),
                Handler::Permanent(t) => Err(inbox::Failure::permanent(t.get())),
                Handler::Panic => panic!("{HANDLER_PANIC}"),
                Handler::Stall(k) => {
                    let racer = std::thread::spawn(move || {
                        std::thread::sleep(lease * 3 / 2);
                        pollster::block_on(second.begin(Request::new(id2)))
                            .map(|b| matches!(b, Begin::InProgress { .. }))
                    });
                    std::thread::sleep(lease * u32::from(k));
                    match racer.join().unwrap() {
                        Ok(true) => Ok(b"stalled".to_vec()),
                        Ok(false) => Err(inbox::Failure::permanent(
                            "BROKEN: a second caller claimed a live id".to_string(),
                        )),
                        Err(e) => {
                            Err(inbox::Failure::permanent(format!("BROKEN: the racer's begin failed: {e}")))
                        }
                    }
                }
                Handler::ReEnter => match pollster::block_on(
                    second.process(Request::new(id2), || async { Ok::<_, inbox::Failure<String>>(vec![]) }),
                ) {
                    Err(ProcessError::Oncely(Error::InProgress { .. })) => Ok(b"re-entered".to_vec()),
                    Err(ProcessError::Oncely(e)) => {
                        Err(inbox::Failure::permanent(format!("BROKEN: re-entry answered {e}")))
                    }
                    other => Err(inbox::Failure::permanent(format!("BROKEN: re-entry ran: {other:?}"))),
                },
                Handler::Exit(code) => std::process::exit(i32::from(code)),
            }
        })
        .await;
    match r {
        Ok(_) => Ended::Documented("processed".into()),
        Err(ProcessError::Handler(t)) if t.starts_with("BROKEN") => Ended::Defect(t),
        Err(ProcessError::Handler(_)) | Err(ProcessError::ReplayedFailure(_)) => {
            Ended::Documented("handler failure settled".into())
        }
        Err(ProcessError::Oncely(e)) => {
            // A claim that was made and then given back (an oversized result) leaves only the
            // fencing-token counter advanced: tokens are never reused.
            let unfenced =
                |v: Vec<String>| v.into_iter().filter(|r| !r.starts_with("oncely_meta:")).collect::<Vec<_>>();
            let (before, after) = (unfenced(before), unfenced(rows(&fx.path)));
            if after != before {
                let new: Vec<_> = after
                    .iter()
                    .filter(|r| !before.contains(r))
                    .map(|r| r.chars().take(200).collect::<String>())
                    .collect();
                return Ended::Defect(format!("refused ({e}) but the store changed: {new:?}"));
            }
            typed(&e)
        }
    }
}

async fn worker_case(
    fx: &Fixture,
    concurrency: usize,
    poll_ms: u64,
    messages: u8,
    answer: WorkerAnswer,
) -> Ended {
    let outbox = fx.outbox();
    for _ in 0..messages {
        outbox.enqueue(NewMessage::new(b"p".to_vec())).await.unwrap();
    }
    let cfg = WorkerConfig { concurrency, poll_interval: ms(poll_ms), ..WorkerConfig::default() };
    let worker = match Worker::new(outbox.clone(), cfg) {
        Ok(w) => w,
        Err(e) => return typed(&e),
    };
    let run = worker.run_until_idle(move |_m| {
        let answer = answer.clone();
        async move {
            match answer {
                WorkerAnswer::Success => Outcome::Success,
                WorkerAnswer::Retry(after, t) => Outcome::Retry { after: after.map(ms), error: t.get() },
                WorkerAnswer::Snooze(v) => Outcome::Snooze(ms(v)),
                WorkerAnswer::Fail(t) => Outcome::Fail(t.get()),
                WorkerAnswer::Panic => panic!("{HANDLER_PANIC}"),
                WorkerAnswer::Sleep(v) => {
                    tokio::time::sleep(ms(v)).await;
                    Outcome::Success
                }
            }
        }
    });
    match tokio::time::timeout(Duration::from_secs(20), run).await {
        Err(_) => Ended::Defect("run_until_idle did not return within 20 s".into()),
        Ok(r) => settled(r, "worker ran until idle"),
    }
}

fn child() -> ! {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).unwrap();
    let case: Case = serde_json::from_str(&input).unwrap();
    let dir = std::path::PathBuf::from(std::env::var_os(ENV_CHILD).unwrap());
    // A panic that is not the hostile handler's own is a crash of the core: say so and abort.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        if msg != HANDLER_PANIC {
            eprintln!("core panic: {info}");
            std::process::abort();
        }
    }));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let ended = match catch_unwind(AssertUnwindSafe(|| rt.block_on(run_case(case, &dir)))) {
        Ok(e) => e,
        // Rust's convention: a handler's panic goes on to the caller of `process`.
        Err(_) => Ended::Documented("handler panic propagated".into()),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "\nHOSTILE-ENDED {}", serde_json::to_string(&ended).unwrap()).unwrap();
    out.flush().unwrap();
    std::process::exit(0)
}

// ---------------------------------------------------------------------------------------------
// The parent

#[derive(Default, Debug)]
struct Counts {
    cases: usize,
    typed: usize,
    documented: usize,
    exits: usize,
    crashes: usize,
    hangs: usize,
    defects: usize,
}

enum Verdict {
    Ended(Ended),
    /// The handler ended the process, and the store kept its claim as a crash would.
    HandlerExited,
    Exited(i32),
    Crashed(String),
    Hung,
}

fn run_in_child(case: &Case, dir: &std::path::Path) -> Verdict {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["hostile_cases_in_child_processes", "--exact", "--nocapture", "--test-threads=1"])
        .env(ENV_CHILD, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(serde_json::to_string(case).unwrap().as_bytes()).unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > CASE_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Verdict::Hung;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    if let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("HOSTILE-ENDED ")) {
        if status.success() {
            return Verdict::Ended(serde_json::from_str(line).unwrap());
        }
    }
    match status.code() {
        Some(code) if code != 0 && code != 101 => Verdict::Exited(code),
        _ => Verdict::Crashed(format!(
            "{status}: {}",
            stderr.lines().rev().take(3).collect::<Vec<_>>().join(" / ")
        )),
    }
}

/// A handler that ends its process leaves what a crash leaves: the store opens, and the id is
/// claimed (in progress) until its lease runs out — never completed, never lost from the store.
fn after_exit(case: &Case, code: i32, dir: &std::path::Path) -> Verdict {
    let Case::Process { id, handler: Handler::Exit(want), .. } = case else { return Verdict::Exited(code) };
    if i32::from(*want) != code {
        return Verdict::Exited(code);
    }
    let store = match SqliteStore::open(dir.join("h.db"), SqliteConfig::default()) {
        Ok(s) => s,
        Err(e) => return Verdict::Crashed(format!("store did not open after the handler's exit: {e}")),
    };
    let inbox = Inbox::open(store, InboxConfig::new("rx")).unwrap();
    match pollster::block_on(inbox.get(&id.get())) {
        Ok(Some(r)) if matches!(r.state, oncely::inbox::RecordState::InProgress { .. }) => {
            Verdict::HandlerExited
        }
        other => Verdict::Crashed(format!("after the handler's exit the id is {other:?}")),
    }
}

#[test]
fn hostile_cases_in_child_processes() {
    if std::env::var_os(ENV_CHILD).is_some() {
        child();
    }
    let n: u32 = std::env::var("ONCELY_HOSTILE_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(160);
    let seed: u64 =
        std::env::var("ONCELY_HOSTILE_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x6f6e63656c79);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut runner =
        TestRunner::new_with_rng(Config { cases: n, failure_persistence: None, ..Config::default() }, rng);
    let strategy = case();
    let cases: Vec<Case> = (0..n).map(|_| strategy.new_tree(&mut runner).unwrap().current()).collect();

    let started = Instant::now();
    let verdicts: Vec<(Case, Verdict)> = std::thread::scope(|s| {
        let chunks: Vec<&[Case]> = cases.chunks(cases.len().div_ceil(2).max(1)).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|c| {
                            let dir = tempfile::tempdir().unwrap();
                            let verdict = match run_in_child(c, dir.path()) {
                                Verdict::Exited(code) => after_exit(c, code, dir.path()),
                                v => v,
                            };
                            (c.clone(), verdict)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let mut counts = Counts { cases: verdicts.len(), ..Counts::default() };
    let mut bad = Vec::new();
    for (case, verdict) in &verdicts {
        let short = format!("{case:?}").chars().take(300).collect::<String>();
        match verdict {
            Verdict::Ended(Ended::Typed(_)) => counts.typed += 1,
            Verdict::Ended(Ended::Documented(_)) => counts.documented += 1,
            Verdict::Ended(Ended::Defect(d)) => {
                counts.defects += 1;
                bad.push(format!("defect: {d}: {short}"));
            }
            Verdict::HandlerExited => counts.exits += 1,
            Verdict::Exited(code) => {
                counts.crashes += 1;
                bad.push(format!("exited {code}: {short}"));
            }
            Verdict::Crashed(how) => {
                counts.crashes += 1;
                bad.push(format!("crash {how}: {short}"));
            }
            Verdict::Hung => {
                counts.hangs += 1;
                bad.push(format!("hang: {short}"));
            }
        }
    }
    println!(
        "hostile (rust, seed {seed}): {} cases in {:.1} s — typed errors {}, documented results {}, handler exits {}, crashes {}, hangs {}, defects {}",
        counts.cases,
        started.elapsed().as_secs_f64(),
        counts.typed,
        counts.documented,
        counts.exits,
        counts.crashes,
        counts.hangs,
        counts.defects
    );
    assert!(bad.is_empty(), "{} hostile cases failed:\n{}", bad.len(), bad.join("\n"));
    assert_eq!(counts.typed + counts.documented + counts.exits, counts.cases);
}
