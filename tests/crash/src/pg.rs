//! What the PostgreSQL workers (`pg-worker` of the fleet test, `pg-fault-worker` of the fault
//! test) share: the outbox's retry policy and configuration, the worker's configuration, and the
//! exactly-once effect through the bank's transactional inbox.

use std::time::Duration;

use oncely::backoff::{Backoff, Jitter, RetryPolicy};
use oncely::sql::{SqlValue, TransactionalStore};
use oncely::{Failure, Inbox, Message, Mode, OutboxConfig, Outcome, PostgresStore, Request, WorkerConfig};

/// The fault test's outbox lease: longer than any outage a worker rides out (a server restart,
/// a run of resets), so that a settle kept through the outage still holds its lease and only a
/// killed process's messages are delivered again.
pub const FAULT_LEASE: Duration = Duration::from_secs(20);

/// Retries without end (the queue must drain), quickly.
pub fn retry_policy() -> RetryPolicy {
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

/// The shared queue's outbox in `mode`, with leases of `lease`.
pub fn outbox_config(mode: Mode, lease: Duration) -> OutboxConfig {
    OutboxConfig::new(crate::QUEUE).mode(mode).lease(lease).retry(retry_policy())
}

/// Eight handlers at once, polling every 20 ms.
pub fn worker_config() -> WorkerConfig {
    WorkerConfig {
        concurrency: 8,
        poll_interval: Duration::from_millis(20),
        shutdown_timeout: Duration::from_secs(1),
    }
}

/// The exactly-once effect: a row in `ledger (payment, life)` through the bank's transactional
/// inbox on the same database (`process_in_transaction`, keyed by the message id), so row and
/// processed mark commit together. A redelivery of an effect that already committed is answered
/// from the inbox's record instead of running again; it is noted in `replays`, so the parent
/// can tell that duplicates were really suppressed.
pub async fn exactly_once_effect(
    store: &PostgresStore,
    inbox: &Inbox<PostgresStore>,
    m: &Message,
    life: i64,
) -> Outcome {
    let payment = m.id.clone();
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
    let r = match processed {
        Ok(p) if p.replayed => store
            .in_transaction(move |tx| {
                tx.execute("INSERT INTO replays (payment) VALUES ($1)", &[SqlValue::Text(id)]).map(|_| ())
            })
            .await
            .map_err(|e| e.to_string()),
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    };
    match r {
        Ok(()) => Outcome::Success,
        Err(e) => Outcome::retry(e),
    }
}

/// Runs `f` with a connection of its own to `url`, on a thread of its own (the synchronous
/// client must not run inside a runtime).
pub fn sql<T: Send + 'static>(
    url: &str,
    f: impl FnOnce(&mut oncely::postgres::Client) -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let mut c = oncely::postgres::Client::connect(&url, oncely::postgres::NoTls)
            .map_err(|e| format!("connect: {e}"))?;
        f(&mut c)
    })
    .join()
    .map_err(|_| "the SQL thread panicked".to_string())?
}

/// The value of the environment variable `name`, or `default` when unset or unparsable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A worker process's start: its arguments `MODE URL LIFE` and a runtime, or the exit code of a
/// process that cannot start (said on stderr, as `name: ...`).
pub fn start(name: &str) -> Result<(Mode, String, i64, tokio::runtime::Runtime), std::process::ExitCode> {
    let fail = |why: String| {
        eprintln!("{name}: {why}");
        std::process::ExitCode::from(2)
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, url, life] = args.as_slice() else {
        return Err(fail("usage: MODE URL LIFE".into()));
    };
    let (Ok(mode), Ok(life)) = (mode.parse::<Mode>(), life.parse::<i64>()) else {
        return Err(fail("bad MODE or LIFE".into()));
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| fail(format!("cannot start a runtime: {e}")))?;
    Ok((mode, url.clone(), life, rt))
}

/// What breaks exactly-once, given `n` payments, the effects (`rows`, `distinct` payments among
/// them), the inbox's completed marks and its suppressed redeliveries (`replays`; `cause` is
/// what should have caused some).
pub fn exactly_once_violations(
    n: i64,
    rows: i64,
    distinct: i64,
    marks: i64,
    replays: i64,
    cause: &str,
) -> Vec<String> {
    let mut v = Vec::new();
    if rows != n || rows != distinct {
        v.push(format!("{} duplicate effects", rows - distinct));
    }
    if marks != n {
        v.push(format!("{marks} completed inbox marks for {n} payments"));
    }
    if replays == 0 {
        v.push(format!("no redelivery of a committed effect: the {cause} never tested the inbox"));
    }
    v
}
