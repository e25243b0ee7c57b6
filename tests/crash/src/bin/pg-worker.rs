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

use oncely::sql::{SqlValue, TransactionalStore};
use oncely::{Inbox, InboxConfig, Message, Mode, Outbox, Outcome, PostgresConfig, PostgresStore, Worker};
use oncely_crash_tests::{SCOPE, pg};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let (mode, url, life, rt) = match pg::start("pg-worker") {
        Ok(started) => started,
        Err(code) => return code,
    };
    match rt.block_on(run(mode, &url, life)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pg-worker (life {life}): {e}");
            ExitCode::from(1)
        }
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
    if mode == Mode::ExactlyOnce {
        return pg::exactly_once_effect(store, inbox, m, life).await;
    }
    let payment = m.id.clone();
    let r = store
        .in_transaction(move |tx| {
            tx.execute(
                "INSERT INTO ledger (payment, life) VALUES ($1, $2)",
                &[SqlValue::Text(payment), SqlValue::Integer(life)],
            )
            .map(|_| ())
        })
        .await;
    match r {
        Ok(()) => Outcome::Success,
        Err(e) => Outcome::retry(e.to_string()),
    }
}

async fn run(mode: Mode, url: &str, life: i64) -> Result<(), BoxError> {
    let store = PostgresStore::open(url, PostgresConfig { pool_size: 4, ..PostgresConfig::default() })?;
    let outbox = Outbox::open(store.clone(), pg::outbox_config(mode, Duration::from_secs(2)))?;
    let inbox = Inbox::open(store.clone(), InboxConfig::new(SCOPE))?;
    let worker = Worker::new(outbox.clone(), pg::worker_config())?;
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
