//! Handlers that misbehave: whatever a handler does, a worker run ends, nothing spins and every
//! delivery is settled by a rule the docs state.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering as AO};
use std::time::Duration;

use oncely::outbox::{MessageState, Settle};
use oncely::*;

fn outbox() -> Outbox<Arc<MemoryStore>> {
    let retry = backoff::RetryPolicy {
        max_attempts: 3,
        deadline: None,
        backoff: backoff::Backoff::Fixed { delay: Duration::from_millis(1) },
        jitter: backoff::Jitter::None,
    };
    let config = OutboxConfig::new("q").mode(Mode::AtLeastOnce).retry(retry);
    Outbox::open(Arc::new(MemoryStore::new()), config).unwrap()
}

/// Runs `run_until_idle` with `outcome` as every attempt's answer, failing the test (instead of
/// hanging it) if the run does not end; returns the handler calls made.
async fn calls_until_idle(outbox: &Outbox<Arc<MemoryStore>>, outcome: Outcome) -> usize {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let worker = Worker::new(outbox.clone(), WorkerConfig::default()).unwrap();
    let run = worker.run_until_idle(move |_m| {
        let (c, outcome) = (c.clone(), outcome.clone());
        async move {
            c.fetch_add(1, AO::SeqCst);
            outcome
        }
    });
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap_or_else(|_| {
            panic!("run_until_idle never returned ({} handler calls)", calls.load(AO::SeqCst))
        })
        .unwrap();
    calls.load(AO::SeqCst)
}

/// A zero snooze would hand the message straight back without using up an attempt, forever: it
/// is a bad hint, settled as a retryable failure that says so, so the attempt limit ends it.
#[tokio::test]
async fn a_zero_snooze_is_a_retry_that_uses_an_attempt() {
    let outbox = outbox();
    outbox.enqueue(NewMessage::new("x").id("m")).await.unwrap();
    let mut calls = 0;
    for _ in 0..20 {
        calls += calls_until_idle(&outbox, Outcome::Snooze(Duration::ZERO)).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        if outbox.stats().await.unwrap().queue.depth() == 0 {
            break;
        }
    }
    let rec = outbox.get("m").await.unwrap().expect("dead-lettered, still there");
    assert!(matches!(rec.state, MessageState::Dead { .. }), "{:?}", rec.state);
    assert_eq!(calls, 3, "one call per attempt of the policy");
    let error = rec.last_error.unwrap();
    assert_eq!(error, "bad snooze: invalid argument `snooze`: must be greater than zero");
}

/// A snooze of any positive length is honoured, but a message snoozed during `run_until_idle`
/// is not delivered again in that run: the run ends even when every handler always snoozes.
#[tokio::test]
async fn run_until_idle_ends_when_every_handler_snoozes() {
    let outbox = outbox();
    for n in 0..8 {
        outbox.enqueue(NewMessage::new("x").id(format!("m{n}"))).await.unwrap();
    }
    let calls = calls_until_idle(&outbox, Outcome::Snooze(Duration::from_micros(1000))).await;
    assert_eq!(calls, 8, "each message once per run");
    let rec = outbox.get("m0").await.unwrap().unwrap();
    assert_eq!(rec.message.attempts, 0, "a snooze uses no attempt");
    // The next run delivers them again.
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(calls_until_idle(&outbox, Outcome::Success).await, 8);
    assert_eq!(outbox.stats().await.unwrap().queue.depth(), 0);
}

/// The pull-style call refuses a zero snooze outright and leaves the lease as it was.
#[tokio::test]
async fn delivery_snooze_of_zero_is_refused() {
    let outbox = outbox();
    outbox.enqueue(NewMessage::new("x").id("m")).await.unwrap();
    let d = outbox.lease(1).await.unwrap().pop().unwrap();
    let e = d.snooze(Duration::ZERO).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    let e = d.settle(Settle::Snooze { after: Duration::from_micros(10) }).await.unwrap_err();
    assert_eq!(e.to_string(), "invalid argument `snooze`: must be at least one millisecond");
    let rec = outbox.get("m").await.unwrap().unwrap();
    assert!(matches!(rec.state, MessageState::Leased { .. }), "{:?}", rec.state);
    d.ack().await.unwrap();
}

/// `Inbox::process` keeps its exactly-once claim alive while the handler runs: a handler that
/// takes several leases' time is never joined by a second run of the same id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_keeps_its_claim_alive_past_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("s.db"), SqliteConfig::default()).unwrap();
    let inbox = Inbox::open(store, InboxConfig::new("s").lease(Duration::from_millis(150))).unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let slow = {
        let (inbox, runs) = (inbox.clone(), runs.clone());
        tokio::spawn(async move {
            inbox
                .process(Request::new("m"), || async move {
                    runs.fetch_add(1, AO::SeqCst);
                    tokio::time::sleep(Duration::from_millis(700)).await;
                    Ok::<_, Failure<String>>(b"first".to_vec())
                })
                .await
        })
    };
    // Every 100 ms for 600 ms (four leases' time), a duplicate: always "in progress".
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = inbox
            .process(Request::new("m"), || async {
                runs.fetch_add(1, AO::SeqCst);
                Ok::<_, Failure<String>>(b"second".to_vec())
            })
            .await;
        match r {
            Err(ProcessError::Oncely(e)) if e.code() == ErrorCode::InProgress => {}
            other => panic!("a duplicate during the first run got {other:?}"),
        }
    }
    let first = slow.await.unwrap().unwrap();
    assert_eq!(first.result.as_deref(), Some(&b"first"[..]));
    assert_eq!(runs.load(AO::SeqCst), 1, "the handler ran more than once");
}

/// A claim whose lease ran out and was taken over cannot be kept alive by its old holder.
#[tokio::test]
async fn a_stale_claim_cannot_be_extended() {
    let clock = ManualClock::new(Timestamp(1_700_000_000_000));
    let inbox = Inbox::with_clock(
        Arc::new(MemoryStore::new()),
        InboxConfig::new("s").lease(Duration::from_secs(1)),
        Arc::new(clock.clone()),
    )
    .unwrap();
    let Begin::Claimed(first) = inbox.begin(Request::new("m")).await.unwrap() else { panic!() };
    let until = first.extend(Duration::from_secs(5)).await.unwrap();
    assert_eq!(until, Timestamp(1_700_000_005_000));
    clock.advance(Duration::from_secs(6));
    let Begin::Claimed(second) = inbox.begin(Request::new("m")).await.unwrap() else { panic!() };
    assert_eq!(first.extend(Duration::from_secs(5)).await.unwrap_err().code(), ErrorCode::LeaseLost);
    second.finish(b"r".to_vec()).await.unwrap();
    assert_eq!(second.extend(Duration::from_secs(5)).await.unwrap_err().code(), ErrorCode::LeaseLost);
    let at_least = inbox.begin(Request::new("n").mode(Mode::AtLeastOnce)).await.unwrap();
    let Begin::Claimed(t) = at_least else { panic!() };
    assert_eq!(t.extend(Duration::from_secs(5)).await.unwrap_err().code(), ErrorCode::InvalidArgument);
}

/// The keep-alive does not depend on the handler's future being polled: a handler that blocks
/// its thread (a synchronous handler in a binding, run inside `block_on`) keeps its claim too.
#[test]
fn a_blocking_handler_keeps_its_claim_alive() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("s.db"), SqliteConfig::default()).unwrap();
    let inbox = Inbox::open(store, InboxConfig::new("s").lease(Duration::from_millis(150))).unwrap();
    let slow = {
        let inbox = inbox.clone();
        std::thread::spawn(move || {
            pollster::block_on(inbox.process(Request::new("m"), || {
                std::thread::sleep(Duration::from_millis(700)); // blocks: nothing polls meanwhile
                std::future::ready(Ok::<_, Failure<String>>(b"first".to_vec()))
            }))
        })
    };
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(100));
        let r = pollster::block_on(
            inbox.process(Request::new("m"), || async { Ok::<_, Failure<String>>(b"second".to_vec()) }),
        );
        match r {
            Err(ProcessError::Oncely(e)) if e.code() == ErrorCode::InProgress => {}
            other => panic!("a duplicate during the blocking run got {other:?}"),
        }
    }
    assert_eq!(slow.join().unwrap().unwrap().result.as_deref(), Some(&b"first"[..]));
}

/// A transactional handler that calls its own store (instead of the transaction it was given)
/// gets a typed error at once, not a deadlock: the store's writer is running that very handler.
#[test]
fn a_transactional_handler_calling_its_own_store_is_refused_not_deadlocked() {
    let dir = tempfile::tempdir().unwrap();
    let store = AnyStore::open(dir.path().join("t.db").to_str().unwrap(), SqliteConfig::default()).unwrap();
    let inbox = Inbox::open(store.clone(), InboxConfig::new("s")).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let inner = inbox.clone();
    std::thread::spawn(move || {
        let r = pollster::block_on(inbox.process_in_transaction(Request::new("m"), move |_sql| {
            let nested = pollster::block_on(inner.get("other"));
            Err::<Vec<u8>, _>(Failure::permanent(match nested {
                Err(e) => format!("{}: {e}", e.code().as_str()),
                Ok(_) => "the nested call answered".to_string(),
            }))
        }));
        tx.send(format!("{r:?}")).unwrap();
    });
    let answer = rx.recv_timeout(Duration::from_secs(10)).expect("the nested store call deadlocked");
    assert!(answer.contains("invalid_argument: invalid argument `store`: was called from inside a handler of its own transaction"), "{answer}");
}
