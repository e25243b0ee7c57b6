//! Regression tests for faults found in review: each reproduces an interleaving or input that
//! once broke a guarantee (named in its doc comment), and fails if the fault comes back.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering as AO};
use std::time::Duration;

use oncely::outbox::{Ordering, PoisonPolicy, Settle};
use oncely::rusqlite;
use oncely::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn open(path: &std::path::Path) -> SqliteStore {
    SqliteStore::open(path, SqliteConfig::default()).unwrap()
}

fn count(path: &std::path::Path, sql: &str) -> i64 {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

async fn setup_tables(inbox: &Inbox<SqliteStore>) {
    inbox
        .process_transactional(Request::new("setup"), |c| {
            c.execute_batch(
                "CREATE TABLE u(k INTEGER PRIMARY KEY); INSERT INTO u VALUES(1);
                 CREATE TABLE effects(x TEXT);",
            )
            .unwrap();
            Ok::<_, Failure<String>>(vec![])
        })
        .await
        .unwrap();
}

/// F2: a handler statement with ON CONFLICT ROLLBACK ends the shared transaction; the handler's
/// later writes then autocommit outside the claim, and a retry runs the effect again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transactional_handler_writes_survive_after_or_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let inbox = Inbox::open(open(&path), InboxConfig::new("t")).unwrap();
    setup_tables(&inbox).await;
    for attempt in 0..2 {
        let r = inbox
            .process_transactional(Request::new("pay-1"), |c| {
                let _ = c.execute("INSERT OR ROLLBACK INTO u VALUES (1)", []); // unique violation
                c.execute("INSERT INTO effects VALUES ('debit')", []).unwrap();
                Ok::<_, Failure<String>>(b"ok".to_vec())
            })
            .await;
        println!("attempt {attempt}: {:?}", r.map_err(|e| e.to_string()));
    }
    let n = count(&path, "SELECT count(*) FROM effects");
    assert_eq!(n, 0, "handler effect committed {n} times although every call failed");
}

/// F5: the authorizer's savepoint check is case-sensitive; SQLite's savepoint names are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uppercase_release_of_oncely_savepoint_commits_a_failed_job() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let inbox = Inbox::open(open(&path), InboxConfig::new("t")).unwrap();
    setup_tables(&inbox).await;
    let r = inbox
        .process_transactional(Request::new("p"), |c| {
            c.execute_batch("INSERT INTO effects VALUES ('x'); RELEASE ONCELY_JOB;")
                .map_err(|e| Failure::retryable(e.to_string()))?;
            Ok::<_, Failure<String>>(b"ok".to_vec())
        })
        .await;
    println!("caller told: {:?}", r.as_ref().map_err(|e| e.to_string()));
    assert!(r.is_err());
    let rec = inbox.get("p").await.unwrap();
    println!("record: {rec:?}");
    let n = count(&path, "SELECT count(*) FROM effects");
    assert_eq!(n, 0, "caller was told the call failed, yet its write committed");
}

/// F1: after a handler ended the shared transaction, the writer re-BEGINs with its cached
/// counters; another process that committed in between handed out the same tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_repeats_across_handles_after_handler_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let ca = ManualClock::new(Timestamp(100_000));
    let cb = ManualClock::new(Timestamp(0));
    let a = Inbox::with_clock(open(&path), InboxConfig::new("t"), Arc::new(ca)).unwrap();
    let b = Inbox::with_clock(open(&path), InboxConfig::new("t"), Arc::new(cb)).unwrap(); // "process B"
    setup_tables(&a).await;

    // A blocker keeps A's writer busy so that T1 and T2 land in one batch.
    let a1 = a.clone();
    let blocker = tokio::spawn(async move {
        a1.process_transactional(Request::new("blk"), |_| {
            std::thread::sleep(ms(300));
            Ok::<_, Failure<String>>(vec![])
        })
        .await
        .map(drop)
        .map_err(|e| e.to_string())
    });
    tokio::time::sleep(ms(50)).await;
    let a2 = a.clone();
    let t1 = tokio::spawn(async move {
        a2.process_transactional(Request::new("t1"), |c| {
            let e = c.execute("INSERT OR ROLLBACK INTO u VALUES (1)", []).unwrap_err();
            std::thread::sleep(ms(500)); // the rest of the handler's work
            Err::<Vec<u8>, _>(Failure::retryable(e.to_string()))
        })
        .await
        .map(drop)
        .map_err(|e| e.to_string())
    });
    tokio::time::sleep(ms(20)).await;
    let a3 = a.clone();
    let t2 = tokio::spawn(async move {
        match a3.begin(Request::new("z")).await.unwrap() {
            Begin::Claimed(t) => t,
            other => panic!("{other:?}"),
        }
    });
    tokio::time::sleep(ms(20)).await;
    // Wait until the blocker is done and T1's handler has rolled the transaction back.
    println!("blocker: {:?}", blocker.await.unwrap());
    tokio::time::sleep(ms(100)).await;
    // Process B claims two ids meanwhile (its lease on z runs out at once by A's clock).
    let Begin::Claimed(ty) = b.begin(Request::new("y")).await.unwrap() else { panic!() };
    let Begin::Claimed(tz_b) = b.begin(Request::new("z").lease(ms(1))).await.unwrap() else { panic!() };
    println!("t1: {:?}", t1.await.unwrap());
    let tz_a = t2.await.unwrap();
    println!("B: y={} z={}   A took over z with token {}", ty.token(), tz_b.token(), tz_a.token());
    let stale = tz_b.finish(b"from B, whose lease A took over".to_vec()).await;
    println!("B's stale finish: {stale:?}; A's finish: {:?}", tz_a.finish(b"A".to_vec()).await);
    assert!(tz_a.token() > tz_b.token(), "takeover token {} not larger than {}", tz_a.token(), tz_b.token());
}

/// F3: enqueue_in on the connection a transactional handler gets: its own counter copy races the
/// writer's cached counter -> two messages with one seq -> FIFO per key broken.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enqueue_in_inside_transactional_handler_repeats_seq() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let st = open(&path);
    let inbox = Inbox::open(st.clone(), InboxConfig::new("t")).unwrap();
    let outbox =
        Outbox::open(st.clone(), OutboxConfig::new("q").ordering(Ordering::FifoPerKey(PoisonPolicy::Block)))
            .unwrap();
    let i1 = inbox.clone();
    let blocker = tokio::spawn(async move {
        i1.process_transactional(Request::new("blk"), |_| {
            std::thread::sleep(ms(300));
            Ok::<_, Failure<String>>(vec![])
        })
        .await
        .map(drop)
        .map_err(|e| e.to_string())
    });
    tokio::time::sleep(ms(50)).await;
    let o1 = outbox.clone();
    let e1 = tokio::spawn(async move { o1.enqueue(NewMessage::new("a").id("a").key("k")).await });
    tokio::time::sleep(ms(20)).await;
    let (i2, o2) = (inbox.clone(), outbox.clone());
    let e2 = tokio::spawn(async move {
        i2.process_transactional(Request::new("msg-1"), move |c| {
            o2.enqueue_in(c, vec![NewMessage::new("b").id("b").key("k")])
                .map_err(|e| Failure::retryable(e.to_string()))?;
            Ok::<_, Failure<String>>(vec![])
        })
        .await
        .map(drop)
        .map_err(|e| e.to_string())
    });
    blocker.await.unwrap().unwrap();
    e1.await.unwrap().unwrap();
    e2.await.unwrap().unwrap();
    let (ra, rb) = (outbox.get("a").await.unwrap().unwrap(), outbox.get("b").await.unwrap().unwrap());
    println!("seq a={} b={}", ra.seq, rb.seq);
    let leased = outbox.lease(10).await.unwrap();
    println!("FIFO(k) leased at once: {:?}", leased.iter().map(|d| d.id().to_owned()).collect::<Vec<_>>());
    assert_ne!(ra.seq, rb.seq);
    assert_eq!(leased.len(), 1, "two messages of key k in flight at once");
}

/// F4: a worker re-leases an id it is still running (its lease ran out); the first attempt's
/// outcome settles the second lease, the second's is dropped, and `free` underflows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_relapse_overruns_concurrency_and_panics() {
    let clock = ManualClock::new(Timestamp(1_000_000));
    let outbox = Outbox::with_clock(
        Arc::new(MemoryStore::new()),
        OutboxConfig::new("q").mode(Mode::AtLeastOnce).lease(Duration::from_secs(1)),
        Arc::new(clock.clone()),
    )
    .unwrap();
    for id in ["m1", "m2"] {
        outbox.enqueue(NewMessage::new("x").id(id)).await.unwrap();
    }
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (r, p) = (running.clone(), peak.clone());
    let worker = Worker::new(
        outbox.clone(),
        WorkerConfig { concurrency: 2, poll_interval: ms(10), ..Default::default() },
    )
    .unwrap();
    let run = tokio::spawn(async move {
        worker
            .run_until_idle(move |m: Message| {
                let (r, p) = (r.clone(), p.clone());
                async move {
                    let now = r.fetch_add(1, AO::SeqCst) + 1;
                    p.fetch_max(now, AO::SeqCst);
                    if m.id == "m1" {
                        tokio::time::sleep(ms(400)).await;
                    } else if m.id.starts_with("slow") {
                        tokio::time::sleep(ms(1500)).await;
                    }
                    r.fetch_sub(1, AO::SeqCst);
                    Outcome::Success
                }
            })
            .await
    });
    tokio::time::sleep(ms(100)).await;
    clock.advance(Duration::from_secs(2)); // m1's lease (1 s) runs out while its handler runs
    for i in 0..6 {
        outbox.enqueue(NewMessage::new("x").id(format!("slow{i}"))).await.unwrap();
    }
    let res = tokio::time::timeout(Duration::from_secs(20), run).await.unwrap();
    println!("peak concurrent handlers: {} (concurrency 2)", peak.load(AO::SeqCst));
    match res {
        Err(e) if e.is_panic() => panic!("worker panicked: {e}"),
        other => println!("worker returned {other:?}"),
    }
    assert!(peak.load(AO::SeqCst) <= 2);
}

/// Worker shutdown: the attempt task is aborted but the handler task it spawned keeps running;
/// the lease is released ("unattempted", attempts decremented) while the effect still happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_while_handler_still_runs() {
    let outbox =
        Outbox::open(Arc::new(MemoryStore::new()), OutboxConfig::new("q").mode(Mode::AtLeastOnce)).unwrap();
    outbox.enqueue(NewMessage::new("x").id("m")).await.unwrap();
    let effects = Arc::new(AtomicUsize::new(0));
    let e = effects.clone();
    let worker =
        Worker::new(outbox.clone(), WorkerConfig { shutdown_timeout: ms(50), ..Default::default() }).unwrap();
    let summary = worker
        .run(
            move |_m| {
                let e = e.clone();
                async move {
                    tokio::time::sleep(ms(300)).await;
                    e.fetch_add(1, AO::SeqCst);
                    Outcome::Success
                }
            },
            tokio::time::sleep(ms(50)),
        )
        .await
        .unwrap();
    let rec = outbox.get("m").await.unwrap().unwrap();
    println!("summary {summary:?}; after run(): state {:?} attempts {}", rec.state, rec.message.attempts);
    tokio::time::sleep(ms(500)).await;
    println!("effects after the worker returned: {}", effects.load(AO::SeqCst));
    assert_eq!(effects.load(AO::SeqCst), 0, "handler ran on after its lease was released");
}

/// A huge Retry-After hint: SQLite stores last_delay as `as_millis() as i64` (wraps), memory keeps it.
#[tokio::test]
async fn huge_retry_after_diverges_between_stores() {
    let dir = tempfile::tempdir().unwrap();
    let sq = SqliteStore::open(dir.path().join("s.db"), SqliteConfig::default()).unwrap();
    async fn run<S: OutboxStore>(s: S) -> Option<Duration> {
        let ob = Outbox::open(s, OutboxConfig::new("q")).unwrap();
        ob.enqueue(NewMessage::new("x").id("m")).await.unwrap();
        let d = ob.lease(1).await.unwrap().pop().unwrap();
        d.settle(Settle::Retry { after: Some(Duration::from_millis(u64::MAX)), error: "e".into() })
            .await
            .unwrap();
        ob.get("m").await.unwrap().unwrap().last_delay
    }
    let m = run(MemoryStore::new()).await;
    let s = run(sq).await;
    println!("memory last_delay {m:?}, sqlite last_delay {s:?}");
    assert_eq!(m, s);
}
