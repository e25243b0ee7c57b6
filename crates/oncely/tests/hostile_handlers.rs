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
