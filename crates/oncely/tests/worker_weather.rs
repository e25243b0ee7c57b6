//! A worker rides out a store that is unavailable for a while — SQLite locked by another
//! connection past its busy timeout, PostgreSQL sessions terminated under it — instead of dying
//! of the first error: it keeps the outcomes it has, backs off, reconnects, settles them and goes
//! on, publishing one `store_unavailable` and one `store_recovered` event per outage. A
//! permanent error still ends the run.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use oncely::outbox::EventKind;
use oncely::*;
use parking_lot::Mutex;

/// Effects per message id, and the store events seen.
#[derive(Default)]
struct Ledger {
    effects: Mutex<HashMap<String, usize>>,
    store_events: Mutex<Vec<&'static str>>,
}

fn watch<S: OutboxStore>(outbox: &Outbox<S>, ledger: &Arc<Ledger>) {
    let l = ledger.clone();
    outbox.on_event(move |e| {
        if matches!(e.kind, EventKind::StoreUnavailable { .. } | EventKind::StoreRecovered { .. }) {
            l.store_events.lock().push(e.kind.name());
        }
    });
}

/// Runs a worker over `outbox` until every one of `n` messages had its effect, while `fault`
/// runs beside it; the worker must never return early. Returns the run's summary.
async fn deliver_through<S: OutboxStore + Clone>(
    outbox: Outbox<S>,
    n: usize,
    ledger: Arc<Ledger>,
    fault: impl FnOnce() + Send + 'static,
) -> oncely::worker::RunSummary {
    let worker = Worker::new(
        outbox.clone(),
        WorkerConfig { concurrency: 4, poll_interval: Duration::from_millis(5), ..WorkerConfig::default() },
    )
    .unwrap();
    let l = ledger.clone();
    let done = Arc::new(tokio::sync::Notify::new());
    let all = done.clone();
    let handler = move |m: Message| {
        let (l, all) = (l.clone(), all.clone());
        async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let mut effects = l.effects.lock();
            *effects.entry(m.id.clone()).or_default() += 1;
            if effects.len() == n {
                all.notify_one();
            }
            Outcome::Success
        }
    };
    let faults = std::thread::spawn(fault);
    let run = worker.run(handler, async move {
        done.notified().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    });
    let summary = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the worker did not deliver every message within 60 s")
        .expect("the worker stopped on a passing store error");
    faults.join().unwrap();
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_rides_out_an_sqlite_store_locked_past_its_busy_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let cfg = SqliteConfig { busy_timeout: Duration::from_millis(20), ..SqliteConfig::default() };
    let store = SqliteStore::open(&path, cfg).unwrap();
    let outbox = Outbox::open(store, OutboxConfig::new("q").mode(Mode::AtLeastOnce)).unwrap();
    let n = 300;
    for i in 0..n {
        outbox.enqueue(NewMessage::new(b"p".to_vec()).id(format!("m{i}"))).await.unwrap();
    }
    let ledger = Arc::new(Ledger::default());
    watch(&outbox, &ledger);
    // Another process's connection takes the write lock three times, each for 300 ms — fifteen
    // busy timeouts — while the worker is delivering.
    let summary = deliver_through(outbox, n, ledger.clone(), move || {
        let other = rusqlite::Connection::open(&path).unwrap();
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(60));
            other.execute_batch("BEGIN EXCLUSIVE").unwrap();
            std::thread::sleep(Duration::from_millis(300));
            other.execute_batch("COMMIT").unwrap();
        }
    })
    .await;
    let effects = ledger.effects.lock();
    assert_eq!(effects.len(), n, "every message was delivered");
    // At-least-once: an outcome that waited past its lease may be redelivered, never lost.
    assert!(summary.attempts >= n as u64);
    let events = ledger.store_events.lock();
    assert!(events.contains(&"store_unavailable") && events.contains(&"store_recovered"), "{events:?}");
    assert_eq!(events.first(), Some(&"store_unavailable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_rides_out_terminated_postgres_sessions() {
    let Some(url) = support::postgres_schema_url() else { return };
    let app = format!("weather_{}", std::process::id());
    let with_app = format!("{url}&application_name={app}");
    let store = PostgresStore::open(&with_app, PostgresConfig::default()).unwrap();
    let outbox = Outbox::open(store, OutboxConfig::new("q").mode(Mode::AtLeastOnce)).unwrap();
    let n = 300;
    let batch: Vec<NewMessage> = (0..n).map(|i| NewMessage::new(b"p".to_vec()).id(format!("m{i}"))).collect();
    outbox.enqueue_many(batch).await.unwrap();
    let ledger = Arc::new(Ledger::default());
    watch(&outbox, &ledger);
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let killed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let k = killed.clone();
    let summary = deliver_through(outbox, n, ledger.clone(), move || {
        let mut admin = oncely::postgres::Client::connect(&url, oncely::postgres::NoTls).unwrap();
        // Every 40 ms, end every session of the worker's pool, whatever it is doing.
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(40));
            let rows = admin
                .query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                    &[&app],
                )
                .unwrap();
            k.fetch_add(rows.len(), Ordering::SeqCst);
            if stopped.load(Ordering::SeqCst) {
                break;
            }
        }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    assert!(killed.load(Ordering::SeqCst) > 0, "the test terminated no session");
    assert_eq!(ledger.effects.lock().len(), n, "every message was delivered");
    assert!(summary.attempts >= n as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_store_error_still_ends_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let store = SqliteStore::open(&path, SqliteConfig::default()).unwrap();
    let outbox = Outbox::open(store.clone(), OutboxConfig::new("q")).unwrap();
    outbox.enqueue(NewMessage::new(b"p".to_vec())).await.unwrap();
    // The queue's table vanishes under the worker: no retry can help.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("DROP TABLE oncely_outbox").unwrap();
    let worker = Worker::new(outbox, WorkerConfig::default()).unwrap();
    let run = worker.run(|_m| async { Outcome::Success }, std::future::pending::<()>());
    let e =
        tokio::time::timeout(Duration::from_secs(10), run).await.expect("the run did not end").unwrap_err();
    assert!(!e.is_transient(), "{e}");
    assert_eq!(e.code(), ErrorCode::Storage, "{e}");
}
