//! `pg-worker`: one process of the PostgreSQL fleet test (`tests/postgres_fleet.rs`).
//!
//! `pg-worker MODE URL LIFE`: opens the PostgreSQL store at URL (a schema of the test's own), and
//! runs a [`Worker`] on the shared `payments` queue until it is drained, then exits 0. The parent
//! runs eight of these at once, kills them with SIGKILL at random and restarts them, and
//! terminates their database connections (`pg_terminate_backend`) now and then.
//!
//! Per delivery, the effect is one row in `ledger` (no unique key: a duplicate is countable):
//! - at-least-once: the row in a transaction of its own, then the ack (a kill in between
//!   redelivers: a duplicate row, never a lost one);
//! - exactly-once: the row through the bank's transactional inbox on the same database
//!   (`process_in_transaction`, keyed by the message id), so row and processed mark commit
//!   together; before it, one row in `attempts`, so the parent can see redeliveries happened.
//!
//! Storage errors (a terminated connection) are survived: the attempt is retried by the outbox,
//! and a worker run that fails is started again after a short pause.

use std::process::ExitCode;
use std::time::Duration;

use oncely::backoff::{Backoff, Jitter, RetryPolicy};
use oncely::sql::{SqlValue, TransactionalStore};
use oncely::{
    Failure, Inbox, InboxConfig, Message, Mode, Outbox, OutboxConfig, Outcome, PostgresConfig, PostgresStore,
    Request, Worker, WorkerConfig,
};

/// The queue every process works on.
const QUEUE: &str = "payments";
/// The bank's inbox scope.
const SCOPE: &str = "bank";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, url, life] = args.as_slice() else {
        eprintln!("usage: pg-worker MODE URL LIFE");
        return ExitCode::from(2);
    };
    let (Ok(mode), Ok(life)) = (mode.parse::<Mode>(), life.parse::<i64>()) else {
        eprintln!("pg-worker: bad MODE or LIFE");
        return ExitCode::from(2);
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pg-worker: cannot start a runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(mode, url, life)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pg-worker (life {life}): {e}");
            ExitCode::from(1)
        }
    }
}

fn retry_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 1_000_000,
        deadline: None,
        backoff: Backoff::Exponential {
            initial: Duration::from_millis(5),
            factor: 2.0,
            max: Duration::from_millis(200),
        },
        jitter: Jitter::Full,
    }
}

/// One delivery's effect.
async fn deliver(
    mode: Mode,
    store: &PostgresStore,
    inbox: &Inbox<PostgresStore>,
    m: &Message,
    life: i64,
) -> Outcome {
    let payment = m.id.clone();
    let r: Result<(), String> = match mode {
        Mode::ExactlyOnce => {
            let id = payment.clone();
            let processed = inbox
                .process_in_transaction(Request::new(&payment).payload(&m.payload), move |tx| {
                    tx.execute(
                        "INSERT INTO ledger (payment, life) VALUES ($1, $2)",
                        &[SqlValue::Text(payment), SqlValue::Integer(life)],
                    )
                    .map_err(Failure::retryable)?;
                    Ok(Vec::new())
                })
                .await
                .map_err(|e| e.to_string());
            match processed {
                // A redelivery of an effect that already committed: the inbox answered from its
                // record instead of running the effect again. Noted, so the parent can tell that
                // duplicates were really suppressed.
                Ok(p) if p.replayed => store
                    .in_transaction(move |tx| {
                        tx.execute("INSERT INTO replays (payment) VALUES ($1)", &[SqlValue::Text(id)])
                            .map(|_| ())
                    })
                    .await
                    .map_err(|e| e.to_string()),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            }
        }
        _ => store
            .in_transaction(move |tx| {
                tx.execute(
                    "INSERT INTO ledger (payment, life) VALUES ($1, $2)",
                    &[SqlValue::Text(payment), SqlValue::Integer(life)],
                )
                .map(|_| ())
            })
            .await
            .map_err(|e| e.to_string()),
    };
    match r {
        Ok(()) => Outcome::Success,
        Err(e) => Outcome::retry(e),
    }
}

async fn run(mode: Mode, url: &str, life: i64) -> Result<(), BoxError> {
    let store = PostgresStore::open(url, PostgresConfig { pool_size: 4, ..PostgresConfig::default() })?;
    let outbox = Outbox::open(
        store.clone(),
        OutboxConfig::new(QUEUE).mode(mode).lease(Duration::from_secs(2)).retry(retry_policy()),
    )?;
    let inbox = Inbox::open(store.clone(), InboxConfig::new(SCOPE))?;
    let worker = Worker::new(
        outbox.clone(),
        WorkerConfig {
            concurrency: 8,
            poll_interval: Duration::from_millis(20),
            shutdown_timeout: Duration::from_secs(1),
        },
    )?;
    let mut failures = 0u32;
    loop {
        let (s, i) = (store.clone(), inbox.clone());
        let ran = worker
            .run_until_idle(move |m: Message| {
                let (s, i) = (s.clone(), i.clone());
                async move { deliver(mode, &s, &i, &m, life).await }
            })
            .await;
        if let Err(e) = ran {
            // A connection the parent terminated: the pool opens a new one.
            failures += 1;
            eprintln!("pg-worker (life {life}): worker run failed ({failures}): {e}");
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        match outbox.stats().await {
            Ok(s) if s.queue.ready + s.queue.scheduled + s.queue.leased == 0 => break,
            Ok(_) => {}
            Err(e) => eprintln!("pg-worker (life {life}): stats failed: {e}"),
        }
        // Leases of a killed process: wait for them to run out.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Everything is committed: exit at once.
    std::process::exit(0);
}
