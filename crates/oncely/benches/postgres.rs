//! PostgreSQL outbox throughput with 1, 4 and 8 workers against a naive queue measured in the
//! same run, printed as a table (see docs/benchmarks.md).
//!
//! `scripts/with-postgres.sh cargo bench -p oncely --bench postgres` measures on a throwaway
//! local cluster (or set `ONCELY_POSTGRES_URL`); `-- --quick` is the smoke run `make test` uses
//! (debug build, tiny sizes, numbers meaningless). Without a server it says so and exits 0
//! (under CI, 1).
//!
//! Both sides do the same work per message: enqueue (in batches of 500) → lease → no-op
//! handler → ack, every step durable (synchronous_commit on). A "worker" is one process's
//! worth of machinery: for oncely, a [`Worker`] on its own [`PostgresStore`] (its own pool);
//! for the naive queue, a thread with its own connection that runs one transaction per step:
//! SELECT the next ready row, UPDATE it to leased, DELETE it when handled.

use std::time::{Duration, Instant};

use oncely::postgres::{Client, NoTls};
use oncely::{
    NewMessage, Outbox, OutboxConfig, Outcome, PostgresConfig, PostgresStore, Worker, WorkerConfig,
};

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let Some(server) = std::env::var("ONCELY_POSTGRES_URL").ok().filter(|u| !u.is_empty()) else {
        println!(
            "!! SKIPPED: the PostgreSQL benchmark needs ONCELY_POSTGRES_URL (scripts/with-postgres.sh sets it)"
        );
        if std::env::var("CI").as_deref() == Ok("true") {
            std::process::exit(1);
        }
        return;
    };
    let (messages, naive_messages) = if quick { (2_000, 400) } else { (60_000, 10_000) };
    let messages =
        std::env::var("ONCELY_BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(messages);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!(
        "oncely PostgreSQL benchmark: enqueue -> lease -> no-op handler -> ack{}",
        if quick { " (quick smoke run)" } else { "" }
    );
    println!("{:<10} {:>14} {:>14} {:>9}", "workers", "oncely msgs/s", "naive msgs/s", "ratio");
    for workers in [1usize, 4, 8] {
        let naive = naive_queue(&server, workers, naive_messages);
        let ours = rt.block_on(oncely_queue(&server, workers, messages));
        println!("{:<10} {:>14.0} {:>14.0} {:>8.1}x", workers, ours, naive, ours / naive);
    }
}

fn fresh_schema(server: &str, name: &str) -> String {
    let schema = format!("bench_{name}_{}", std::process::id());
    PostgresStore::schema_url(server, &schema).unwrap()
}

/// oncely: enqueue `n` messages, then `workers` workers drain them; messages per second of
/// the whole run.
async fn oncely_queue(server: &str, workers: usize, n: usize) -> f64 {
    let url = fresh_schema(server, &format!("oncely_{workers}"));
    let outboxes: Vec<Outbox<PostgresStore>> = (0..workers)
        .map(|_| {
            let store =
                PostgresStore::open(&url, PostgresConfig { pool_size: 2, ..Default::default() }).unwrap();
            Outbox::open(store, OutboxConfig::new("bench")).unwrap()
        })
        .collect();
    let start = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let batch = chunk.iter().map(|i| NewMessage::new(vec![7u8; 100]).id(format!("m{i}"))).collect();
        outboxes[0].enqueue_many(batch).await.unwrap();
    }
    let enqueued = start.elapsed().as_secs_f64();
    let mut runs = Vec::new();
    for outbox in &outboxes {
        let worker = Worker::new(
            outbox.clone(),
            WorkerConfig { concurrency: 64, poll_interval: Duration::from_millis(2), ..Default::default() },
        )
        .unwrap();
        runs.push(tokio::spawn(async move {
            worker.run_until_idle(|_m| async { Outcome::Success }).await.unwrap();
        }));
    }
    for r in runs {
        r.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    if std::env::var_os("ONCELY_BENCH_VERBOSE").is_some() {
        eprintln!("  oncely, {workers} workers: enqueue {enqueued:.2} s, drain {:.2} s", secs - enqueued);
    }
    let left = outboxes[0].stats().await.unwrap().queue;
    assert_eq!(left.ready + left.leased + left.scheduled, 0, "the oncely queue was not drained");
    n as f64 / secs
}

/// The naive queue: one transaction per SELECT / UPDATE / DELETE, one connection per worker.
fn naive_queue(server: &str, workers: usize, n: usize) -> f64 {
    let url = fresh_schema(server, &format!("naive_{workers}"));
    let mut c = Client::connect(&url, NoTls).unwrap();
    c.batch_execute(
        "CREATE TABLE naive (id TEXT PRIMARY KEY, seq BIGSERIAL, state INT NOT NULL DEFAULT 0, payload BYTEA NOT NULL);
         CREATE INDEX naive_ready ON naive (seq) WHERE state = 0;",
    )
    .unwrap();
    let start = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let mut tx = c.transaction().unwrap();
        for i in chunk {
            tx.execute(
                "INSERT INTO naive (id, payload) VALUES ($1, $2)",
                &[&format!("m{i}"), &vec![7u8; 100]],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&url, NoTls).unwrap();
                loop {
                    let row = c
                        .query_opt("SELECT id FROM naive WHERE state = 0 ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED", &[])
                        .unwrap();
                    let Some(row) = row else { break };
                    let id: String = row.get(0);
                    let leased = c.execute("UPDATE naive SET state = 1 WHERE id = $1 AND state = 0", &[&id]).unwrap();
                    if leased == 0 {
                        continue; // another worker took it between our two transactions
                    }
                    // the no-op handler
                    c.execute("DELETE FROM naive WHERE id = $1", &[&id]).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let left: i64 = c.query_one("SELECT count(*) FROM naive", &[]).unwrap().get(0);
    assert_eq!(left, 0, "the naive queue was not drained");
    n as f64 / secs
}
