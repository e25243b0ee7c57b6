//! The store behind the dashboard's browser tests, screenshot and load measurement
//! (tests/dashboard/), written only through the core's public API:
//!
//! - `fill LOCATION`: three queues (ready, scheduled, leased and dead messages, counted
//!   deliveries) and three inbox scopes (in progress, succeeded, failed, seen);
//! - `stats LOCATION`: the core's numbers as JSON (`Outbox::stats` per queue,
//!   `InboxStore::scope_counts` per scope), for the tests to compare with the page;
//! - `deliver LOCATION QUEUE ID`: one worker step: lease the queue's due messages, acknowledge
//!   `ID`, release the others; fails when `ID` was not due;
//! - `schema-url URL NAME`: a fresh PostgreSQL schema on the server at `URL`, printed as the
//!   URL that uses it (`PostgresStore::schema_url`);
//! - `traffic LOCATION SECONDS`: a few messages enqueued, delivered and failed every 100 ms, so
//!   that the dashboard's throughput charts have something to draw (for the screenshot);
//! - `big LOCATION N`: `N` messages in one queue (`bulk`), 10,000 per `enqueue_many` call, plus
//!   100 dead letters, for the page-load measurement.
//!
//! `cargo run -q -p oncely-cli --example dashboard_store -- fill store.db`

use std::time::Duration;

use oncely::records::CachePolicy;
use oncely::{
    AnyStore, Begin, Failure, Inbox, InboxConfig, Mode, NewMessage, Outbox, OutboxConfig, OutboxStore,
    Request, SqliteConfig,
};
use serde_json::json;

type R<T> = Result<T, Box<dyn std::error::Error>>;

fn open(location: &str) -> R<AnyStore> {
    Ok(AnyStore::open(location, SqliteConfig::default())?)
}

/// Leases `n` due messages of `outbox` and makes each a dead letter with a last error.
async fn kill(outbox: &Outbox<AnyStore>, n: usize, why: &str) -> R<()> {
    for d in outbox.lease(n).await? {
        d.fail(why).await?;
    }
    Ok(())
}

async fn fill(location: &str) -> R<()> {
    let store = open(location)?;
    let payments = Outbox::open(store.clone(), OutboxConfig::new("payments"))?;
    for i in 0..6 {
        let m = NewMessage::new(format!("{{\"amount\": {}, \"card\": \"4111 1111 1111 1111\"}}", 100 + i))
            .id(format!("pay-{i}"))
            .header("tenant", "acme")
            .header("trace-id", format!("00-4bf92f3577b34da6a3ce929d0e0e{i:04}-00f067aa0ba902b7-01"));
        payments.enqueue(m).await?;
    }
    kill(&payments, 2, "card declined by issuer (51: insufficient funds)").await?;
    for d in payments.lease(2).await? {
        d.ack().await?;
    }
    let _held = payments.lease(1).await?; // one stays leased (its worker "crashed")
    payments.enqueue(NewMessage::new("later").id("pay-later").delay(Duration::from_secs(3600))).await?;

    let emails = Outbox::open(store.clone(), OutboxConfig::new("emails"))?;
    for i in 0..5 {
        emails
            .enqueue(
                NewMessage::new(format!("Dear customer {i}"))
                    .id(format!("mail-{i}"))
                    .header("template", "receipt"),
            )
            .await?;
    }
    kill(&emails, 5, "SMTP 550 5.1.1 mailbox unavailable").await?;
    emails.enqueue(NewMessage::new("digest").id("mail-digest").delay(Duration::from_secs(7200))).await?;

    let webhooks = Outbox::open(store.clone(), OutboxConfig::new("webhooks"))?;
    for i in 0..4 {
        webhooks
            .enqueue(NewMessage::new(format!("event {i}")).id(format!("hook-{i}")).key("customer-7"))
            .await?;
    }
    for d in webhooks.lease(2).await? {
        d.ack().await?;
    }

    let orders = Inbox::open(
        store.clone(),
        InboxConfig::new("orders")
            .cache_policy(CachePolicy::SuccessAndFailure)
            .lease(Duration::from_secs(600)),
    )?;
    for i in 0..4 {
        if let Begin::Claimed(t) = orders.begin(Request::new(format!("order-{i}"))).await? {
            t.finish(format!("{{\"order\": {i}, \"status\": \"accepted\"}}").into_bytes()).await?;
        }
    }
    let refuse =
        || async { Err::<Vec<u8>, _>(Failure { error: "out of stock".to_string(), permanent: true }) };
    let _ = orders.process(Request::new("order-bad"), refuse).await;
    if let Begin::Claimed(t) = orders.begin(Request::new("order-running")).await? {
        std::mem::forget(t); // stays in progress until its lease runs out
    }
    let notices = Inbox::open(store.clone(), InboxConfig::new("notifications").mode(Mode::AtMostOnce))?;
    for i in 0..3 {
        if let Begin::Claimed(t) = notices.begin(Request::new(format!("n-{i}"))).await? {
            t.release().await?;
        }
    }
    let refunds = Inbox::open(store.clone(), InboxConfig::new("refunds"))?;
    if let Begin::Claimed(t) = refunds.begin(Request::new("refund-1")).await? {
        t.finish(b"refunded".to_vec()).await?;
    }
    Ok(())
}

async fn stats(location: &str) -> R<()> {
    let store = open(location)?;
    let mut queues = serde_json::Map::new();
    for name in store.queue_names().await? {
        let s = Outbox::open(store.clone(), OutboxConfig::new(name.clone()))?.stats().await?.queue;
        queues.insert(
            name,
            json!({
                "ready": s.ready, "scheduled": s.scheduled, "leased": s.leased, "dead": s.dead, "depth": s.depth(),
                "enqueued": s.counts.enqueued, "delivered": s.counts.delivered, "retried": s.counts.retried,
                "dead_lettered": s.counts.dead_lettered, "dropped": s.counts.dropped,
            }),
        );
    }
    let mut scopes = serde_json::Map::new();
    for c in oncely::metrics::inbox_scopes(&store).await? {
        scopes.insert(
            c.scope.clone(),
            json!({
                "in_progress": c.in_progress, "completed": c.completed(), "succeeded": c.succeeded,
                "failed": c.failed, "seen": c.seen, "expired": c.expired,
            }),
        );
    }
    println!("{}", json!({ "queues": queues, "scopes": scopes }));
    Ok(())
}

async fn deliver(location: &str, queue: &str, id: &str) -> R<()> {
    let store = open(location)?;
    let outbox = Outbox::open(store, OutboxConfig::new(queue))?;
    let mut found = false;
    for d in outbox.lease(100).await? {
        if d.id() == id {
            d.ack().await?;
            found = true;
        } else {
            d.release().await?;
        }
    }
    if !found {
        return Err(format!("`{id}` was not due in queue `{queue}`").into());
    }
    println!("delivered {id}");
    Ok(())
}

async fn big(location: &str, n: usize) -> R<()> {
    let store = open(location)?;
    let outbox = Outbox::open(store.clone(), OutboxConfig::new("bulk"))?;
    let started = std::time::Instant::now();
    let mut done = 0;
    while done < n {
        let batch: Vec<NewMessage> = (done..n.min(done + 10_000))
            .map(|i| {
                NewMessage::new(format!("{{\"n\": {i}}}"))
                    .id(format!("b{i:08}"))
                    .header("source", "bulk-fill")
            })
            .collect();
        done += batch.len();
        outbox.enqueue_many(batch).await?;
    }
    let dead = Outbox::open(store, OutboxConfig::new("bulk-dead"))?;
    dead.enqueue_many((0..100).map(|i| NewMessage::new("x").id(format!("d{i}"))).collect()).await?;
    kill(&dead, 100, "gave up").await?;
    eprintln!("enqueued {n} messages in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn traffic(location: &str, seconds: f64) -> R<()> {
    let store = open(location)?;
    let webhooks = Outbox::open(store.clone(), OutboxConfig::new("webhooks"))?;
    let payments = Outbox::open(store, OutboxConfig::new("payments"))?;
    let until = std::time::Instant::now() + Duration::from_secs_f64(seconds);
    let mut i = 0u64;
    while std::time::Instant::now() < until {
        let wave = 3.0 + 2.5 * ((i as f64) / 12.0).sin();
        let n = wave.round() as u64 + 1;
        webhooks
            .enqueue_many((0..n * 2).map(|k| NewMessage::new("event").id(format!("t-{i}-{k}"))).collect())
            .await?;
        payments
            .enqueue_many((0..n).map(|k| NewMessage::new("{}").id(format!("tp-{i}-{k}"))).collect())
            .await?;
        for d in webhooks.lease(n as usize * 2).await? {
            d.ack().await?;
        }
        for (k, d) in payments.lease(n as usize).await?.into_iter().enumerate() {
            if d.id().starts_with("tp-") {
                if i % 15 == 0 && k == 0 {
                    d.fail("bank timeout after 3 attempts").await?;
                } else {
                    d.ack().await?;
                }
            } else {
                d.release().await?;
            }
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> R<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["fill", location] => fill(location).await,
        ["stats", location] => stats(location).await,
        ["deliver", location, queue, id] => deliver(location, queue, id).await,
        ["big", location, n] => big(location, n.parse()?).await,
        ["schema-url", url, name] => {
            println!("{}", oncely::PostgresStore::schema_url(url, name)?);
            Ok(())
        }
        ["traffic", location, seconds] => traffic(location, seconds.parse()?).await,
        _ => {
            Err("usage: dashboard_store fill|stats LOCATION | deliver LOCATION QUEUE ID | big LOCATION N"
                .into())
        }
    }
}
