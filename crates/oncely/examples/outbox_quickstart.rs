//! The README's outbox example: enqueue payments, then a worker delivers them, retrying a flaky
//! receiver; the message id travels as the idempotency key.
//!
//! Run: `cargo run -p oncely --example outbox_quickstart`

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use oncely::{
    Message, Mode, NewMessage, Outbox, OutboxConfig, Outcome, SqliteConfig, SqliteStore, Worker, WorkerConfig,
};

/// A receiver that fails every third call.
async fn send_to_bank(calls: &AtomicU32, id: &str, payload: &[u8]) -> Result<(), String> {
    if calls.fetch_add(1, Ordering::SeqCst) % 3 == 2 {
        return Err("bank timed out".into());
    }
    println!("  bank: applied {} (idempotency key {id})", String::from_utf8_lossy(payload));
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("app.db");
    let calls = Arc::new(AtomicU32::new(0));
    // ANCHOR: outbox
    let store = SqliteStore::open(&path, SqliteConfig::default())?;
    let outbox = Outbox::open(store, OutboxConfig::new("payments").mode(Mode::ExactlyOnce))?;
    for n in 1..=5 {
        outbox.enqueue(NewMessage::new(format!("debit {n}0 EUR")).id(format!("payment-{n}"))).await?;
    }

    // A worker leases messages, runs the handler with bounded concurrency and settles each one
    // by its outcome: a failure is retried with backoff, then dead-lettered when exhausted.
    let worker = Worker::new(outbox.clone(), WorkerConfig::default())?;
    let handler = move |message: Message| {
        let calls = calls.clone();
        async move {
            match send_to_bank(&calls, &message.id, &message.payload).await {
                Ok(()) => Outcome::Success,
                Err(e) => Outcome::retry(e),
            }
        }
    };
    // `worker.run(handler, shutdown)` goes on until shut down; here: deliver what is due, wait
    // out the backoff, repeat until the queue is empty.
    while outbox.stats().await?.queue.depth() > 0 {
        let round = worker.run_until_idle(handler.clone()).await?;
        println!("delivered {} in {} attempts", round.succeeded, round.attempts);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // ANCHOR_END: outbox
    assert_eq!(outbox.stats().await?.counters.delivered, 5, "every payment delivered");
    Ok(())
}
