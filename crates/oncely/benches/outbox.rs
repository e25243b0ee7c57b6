//! Outbox throughput and memory, printed as a table (see docs/benchmarks.md).
//!
//! `cargo bench -p oncely --bench outbox` measures; `-- --quick` is the smoke run `make test`
//! uses (debug build, tiny sizes, numbers meaningless).

use std::time::{Duration, Instant};

use oncely::rusqlite::{Connection, OptionalExtension, params};
use oncely::{
    NewMessage, Outbox, OutboxConfig, Outcome, SqliteConfig, SqliteStore, Synchronous, Worker, WorkerConfig,
};

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (messages, naive_messages, pending) =
        if quick { (2_000, 500, 20_000) } else { (100_000, 20_000, 1_000_000) };
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!(
        "oncely outbox benchmark: enqueue -> lease -> no-op handler -> ack{}",
        if quick { " (quick smoke run)" } else { "" }
    );
    println!("{:<52} {:>10} {:>12} {:>9}", "case", "messages", "msgs/s", "vs naive");
    let mut naive = std::collections::HashMap::new();
    // `--only NORMAL` (or FULL) measures one durability level, for profiling.
    let args: Vec<String> = std::env::args().collect();
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).cloned();
    for (sync, name) in [(Synchronous::Full, "FULL"), (Synchronous::Normal, "NORMAL")] {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let rate = naive_queue(&dir.path().join(format!("naive-{name}.db")), name, naive_messages);
        naive.insert(name, rate);
        println!(
            "{:<52} {:>10} {:>12.0} {:>9}",
            format!("naive rusqlite queue, 1 txn per step, {name}"),
            naive_messages,
            rate,
            "-"
        );
        let open = |file: String| {
            SqliteStore::open(dir.path().join(file), SqliteConfig { synchronous: sync, ..Default::default() })
                .unwrap()
        };
        for conc in [1, 8, 64] {
            let n = if conc == 1 { messages / 5 } else { messages };
            let rate = rt.block_on(outbox_run(open(format!("outbox-{name}-{conc}.db")), conc, n, None));
            println!(
                "{:<52} {:>10} {:>12.0} {:>8.1}x",
                format!("oncely outbox + worker, {name}, concurrency {conc}"),
                n,
                rate,
                rate / naive[name]
            );
        }
        // What the dedup window's sent marks cost: the same run without them (window 0) and with
        // the default window, interleaved twice; the best of each.
        let (mut with, mut without) = (0f64, 0f64);
        for round in 0..2 {
            let off = Some(Duration::ZERO);
            without = without.max(rt.block_on(outbox_run(
                open(format!("nomarks-{name}-{round}.db")),
                64,
                messages,
                off,
            )));
            with = with.max(rt.block_on(outbox_run(
                open(format!("marks-{name}-{round}.db")),
                64,
                messages,
                None,
            )));
        }
        for (case, rate) in
            [("dedup window 0 (no sent marks)", without), ("default dedup window (5 min)", with)]
        {
            println!(
                "{:<52} {:>10} {:>12.0} {:>8.1}x",
                format!("  {name}, concurrency 64, {case}"),
                messages,
                rate,
                rate / naive[name]
            );
        }
        println!(
            "{:<52} {:>10} {:>12} {:>8.2}x",
            format!("  {name}: with marks / without"),
            "",
            "",
            with / without
        );
    }
    if only.is_some() {
        return;
    }
    let (rss, secs) = rt.block_on(hold_pending(&dir.path().join("pending.db"), pending));
    println!();
    println!(
        "{pending} pending messages (100-byte payloads) enqueued in {secs:.1} s; process RSS {:.0} MB",
        rss / 1e6
    );
}

/// Enqueues `n` messages (batches of 500, as a producer would), then a worker with `conc`
/// handlers drains them (with the given dedup window, else the default); the rate is messages fully delivered (enqueued, leased, handled, acked)
/// per second of the whole run. Producing first and then draining keeps the measurement stable
/// (a producer racing the worker makes it idle and poll).
async fn outbox_run(store: SqliteStore, conc: usize, n: usize, dedup_window: Option<Duration>) -> f64 {
    let mut config = OutboxConfig::new("bench");
    if let Some(w) = dedup_window {
        config = config.dedup_window(w);
    }
    let outbox = Outbox::open(store, config).unwrap();
    let start = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let batch = chunk.iter().map(|i| NewMessage::new(vec![7u8; 100]).id(format!("m{i}"))).collect();
        outbox.enqueue_many(batch).await.unwrap();
    }
    let worker = Worker::new(
        outbox.clone(),
        WorkerConfig { concurrency: conc, poll_interval: Duration::from_millis(1), ..Default::default() },
    )
    .unwrap();
    let delivered = worker.run_until_idle(|_| async { Outcome::Success }).await.unwrap().succeeded;
    assert_eq!(delivered, n as u64);
    n as f64 / start.elapsed().as_secs_f64()
}

/// The naive queue: enqueue, "select the oldest + mark it taken", and delete are each their own
/// transaction on one connection.
fn naive_queue(path: &std::path::Path, sync: &str, n: usize) -> f64 {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync};
         CREATE TABLE q (seq INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, taken INTEGER NOT NULL DEFAULT 0, payload BLOB);"
    ))
    .unwrap();
    let start = Instant::now();
    for i in 0..n {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        conn.prepare_cached("INSERT INTO q (id, payload) VALUES (?1, ?2)")
            .unwrap()
            .execute(params![format!("m{i}"), vec![7u8; 100]])
            .unwrap();
        conn.execute_batch("COMMIT").unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        let seq: Option<i64> = conn
            .prepare_cached("SELECT seq FROM q WHERE taken = 0 ORDER BY seq LIMIT 1")
            .unwrap()
            .query_row([], |r| r.get(0))
            .optional()
            .unwrap();
        let seq = seq.unwrap();
        conn.prepare_cached("UPDATE q SET taken = 1 WHERE seq = ?1").unwrap().execute([seq]).unwrap();
        conn.execute_batch("COMMIT").unwrap();
        // (the no-op handler)
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        conn.prepare_cached("DELETE FROM q WHERE seq = ?1").unwrap().execute([seq]).unwrap();
        conn.execute_batch("COMMIT").unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn rss_bytes() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<f64>().ok()).unwrap_or(0.0) * 4096.0
}

/// Enqueues `n` messages and reports the process's resident memory while they are pending.
async fn hold_pending(path: &std::path::Path, n: usize) -> (f64, f64) {
    let store =
        SqliteStore::open(path, SqliteConfig { synchronous: Synchronous::Normal, ..Default::default() })
            .unwrap();
    let outbox = Outbox::open(store, OutboxConfig::new("pending")).unwrap();
    let start = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let batch = chunk.iter().map(|i| NewMessage::new(vec![7u8; 100]).id(format!("p{i}"))).collect();
        outbox.enqueue_many(batch).await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let stats = outbox.stats().await.unwrap();
    assert_eq!(stats.queue.depth(), n as u64);
    (rss_bytes(), secs)
}
