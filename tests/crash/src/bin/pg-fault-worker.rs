//! `pg-fault-worker`: one process of the PostgreSQL fault test (`tests/postgres_faults.rs`).
//!
//! `pg-fault-worker MODE URL LIFE`: opens the PostgreSQL store at URL — the test's fault proxy,
//! which resets connections, cuts them right after a `COMMIT` and delays packets — and runs
//! [`Worker::run`] on the shared `payments` queue forever. It never gives up and never starts
//! itself again: storage errors are the worker's business (it backs off, keeps its outcomes and
//! goes on). If `run` returns at all, this process prints why and exits 1, which the parent
//! counts as a broken guarantee. Only a SIGKILL from the parent ends it otherwise.
//!
//! Opening the store is retried on transient errors (the proxy may cut the first connection too,
//! and the server may be restarting): that is before the worker exists. Any other error there
//! ends the process too (the store must not call a lost connection anything but transient).
//!
//! Per delivery, the effect is one row in `ledger` (no unique key), written with this process's
//! LIFE and an attempt id of its own:
//! - at-least-once: the row in a transaction of its own, then the ack. When that transaction
//!   fails, its `COMMIT` may have committed anyway (the proxy dropped the answer): the handler
//!   asks the database whether its attempt's row is there (retrying through the weather) and
//!   answers success if it is, so a row is never written twice for one surviving attempt. A
//!   duplicate row then has one cause only: the process that wrote the earlier one was killed
//!   before its ack — or the core redelivered what it should not have;
//! - exactly-once: the row through the bank's transactional inbox, as in `pg-worker`.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use oncely::sql::{SqlValue, TransactionalStore};
use oncely::{
    Error, Inbox, InboxConfig, Message, Mode, Outbox, Outcome, PostgresConfig, PostgresStore, Worker,
};
use oncely_crash_tests::pg;

/// Attempts made by this process, for their ids.
static ATTEMPTS: AtomicU64 = AtomicU64::new(0);

/// Locks an attempt id until the transaction ends (a two-key advisory lock of class 4242: apart
/// from oncely's own locks).
const LOCK_ATTEMPT: &str = "SELECT 1 FROM (SELECT pg_advisory_xact_lock(4242, hashtext($1))) AS locked";

fn main() -> ExitCode {
    let (mode, url, life, rt) = match pg::start("pg-fault-worker") {
        Ok(started) => started,
        Err(code) => return code,
    };
    let e = rt.block_on(run(mode, &url, life));
    eprintln!("pg-fault-worker (life {life}): the worker stopped: {e}");
    ExitCode::from(1)
}

/// Opens the store, retrying transient errors (the proxy and the restarting server cause them)
/// for up to a minute; any other error is the store's to explain.
fn open(url: &str, life: i64) -> Result<PostgresStore, Error> {
    let mut tries = 0u32;
    loop {
        match PostgresStore::open(url, PostgresConfig { pool_size: 4, ..PostgresConfig::default() }) {
            Ok(store) => return Ok(store),
            Err(e) if e.is_transient() && tries < 600 => {
                tries += 1;
                if tries % 20 == 1 {
                    eprintln!("pg-fault-worker (life {life}): opening the store failed ({tries}): {e}");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// What ended the worker (it should never end).
async fn run(mode: Mode, url: &str, life: i64) -> String {
    let store = match open(url, life) {
        Ok(s) => s,
        Err(e) => return format!("cannot open the store: {e}"),
    };
    let opened = Outbox::open(store.clone(), pg::outbox_config(mode, pg::FAULT_LEASE))
        .and_then(|outbox| {
            Ok((Inbox::open(store.clone(), InboxConfig::new(oncely_crash_tests::SCOPE))?, outbox))
        })
        .and_then(|(inbox, outbox)| Ok((inbox, Worker::new(outbox, pg::worker_config())?)));
    let (inbox, worker) = match opened {
        Ok(v) => v,
        Err(e) => return format!("cannot open the outbox: {e}"),
    };
    let ran = worker
        .run(
            move |m: Message| {
                let (s, i) = (store.clone(), inbox.clone());
                async move {
                    match mode {
                        Mode::ExactlyOnce => pg::exactly_once_effect(&s, &i, &m, life).await,
                        _ => at_least_once_effect(&s, &m, life).await,
                    }
                }
            },
            std::future::pending::<()>(),
        )
        .await;
    match ran {
        Ok(summary) => format!("Worker::run returned Ok({summary:?}) without being asked to stop"),
        Err(e) => format!("Worker::run failed: {e}"),
    }
}

/// The at-least-once effect: the row, then (by the worker) the ack. A failed transaction whose
/// row is there committed after all: that attempt succeeded. The transaction holds an advisory
/// lock on its attempt id, which the check takes first: when the client was cut off right after
/// its COMMIT, the server may not have run that COMMIT yet, and a check that ran before it would
/// see no row and write a second one.
async fn at_least_once_effect(store: &PostgresStore, m: &Message, life: i64) -> Outcome {
    let attempt = format!("{life}.{}", ATTEMPTS.fetch_add(1, Ordering::Relaxed));
    let (payment, id) = (m.id.clone(), attempt.clone());
    let written = store
        .in_transaction(move |tx| {
            tx.execute(LOCK_ATTEMPT, &[SqlValue::Text(id.clone())])?;
            tx.execute(
                "INSERT INTO ledger (payment, life, attempt) VALUES ($1, $2, $3)",
                &[SqlValue::Text(payment), SqlValue::Integer(life), SqlValue::Text(id)],
            )
            .map(|_| ())
        })
        .await;
    let Err(error) = written else { return Outcome::Success };
    let mut wait = Duration::from_millis(20);
    loop {
        let id = attempt.clone();
        let found = store
            .in_transaction(move |tx| {
                // Waits for the failed transaction if the server still runs it (its COMMIT may
                // be on its way): the row's absence is only an answer once it has ended.
                tx.execute(LOCK_ATTEMPT, &[SqlValue::Text(id.clone())])?;
                tx.execute("SELECT count(*) FROM ledger WHERE attempt = $1", &[SqlValue::Text(id)])
            })
            .await;
        match found {
            Ok(rows) if rows.first().and_then(|r| r.first()) == Some(&SqlValue::Integer(1)) => {
                return Outcome::Success;
            }
            Ok(_) => return Outcome::retry(error.to_string()),
            Err(_) => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(500));
            }
        }
    }
}
