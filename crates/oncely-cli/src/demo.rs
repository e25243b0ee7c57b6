//! `oncely demo payment`: a payment service sends debits through an oncely outbox to a bank,
//! across a network with seeded faults, once per delivery mode. The bank's ledger is then counted.
//!
//! The sender is the outbox's pull-style API (`lease`, then `ack` on success or `retry` on
//! failure) in a small loop with bounded concurrency. It does not use [`oncely::Worker`] because
//! the worker heartbeats (extends the lease while a handler runs), so a slow bank would never make
//! an attempt outlive its lease; the demo shows what happens when one does (a sender stalled past
//! its lease). The loop decides nothing itself: what is written when, retries, lease expiry and
//! fencing are all the core's.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use oncely::backoff::{Backoff, Jitter, JitterRng, RetryPolicy};
use oncely::outbox::EventKind;
use oncely::rusqlite::{Connection, params};
use oncely::{
    Delivery, Failure, Inbox, InboxConfig, Mode, NewMessage, Outbox, OutboxConfig, ProcessError, Request,
    SqliteConfig, SqliteStore, Synchronous,
};
use tokio::task::JoinSet;

use crate::error::CliError;

/// How long a sender's lease on a message lasts.
const LEASE: Duration = Duration::from_millis(100);
/// How long a slow bank takes to get to a request: well past the lease.
const SLOW: Duration = Duration::from_millis(300);
/// How long the sender waits for an answer before it calls the attempt failed.
const TIMEOUT: Duration = Duration::from_millis(20);
/// Attempts in flight at once.
const CONCURRENCY: usize = 32;
/// How often the sender looks for due messages while nothing else happens.
const POLL: Duration = Duration::from_millis(5);
/// The retry policy: fast, so the demo runs in seconds; generous, so at-least-once never gives up.
const RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 100,
    deadline: None,
    backoff: Backoff::Exponential {
        initial: Duration::from_millis(5),
        factor: 2.0,
        max: Duration::from_millis(100),
    },
    jitter: Jitter::Full,
};
const QUEUE: &str = "payments";

/// A demo scenario.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Debits from a payment service to a bank over a flaky network, once per delivery mode.
    ///
    /// Faults, drawn per attempt from the seed: the request is lost (the bank never sees it), the
    /// acknowledgement is lost (the bank applied the debit, the sender sees a timeout), or the bank
    /// is slow (the attempt outlives the sender's lease, so the message is delivered again). Lost
    /// and duplicated debits are counted in the bank's ledger. Exits with status 1 if a mode
    /// breaks its guarantee.
    Payment(PaymentArgs),
}

/// Options of `oncely demo payment`.
#[derive(Debug, Clone, Args)]
pub struct PaymentArgs {
    /// How many payments the service sends.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    payments: u32,
    /// The share of attempts that meet a fault, split evenly between lost requests, lost
    /// acknowledgements and a slow bank (0 to 0.5).
    #[arg(long, default_value_t = 0.2, value_parser = parse_rate)]
    fault_rate: f64,
    /// Seed of the faults (and of the backoff jitter): the same seed injects the same faults.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// The delivery mode to run.
    #[arg(long, value_enum, default_value_t = ModeArg::All)]
    mode: ModeArg,
    /// A directory for the SQLite files (created if missing; the files must not exist yet):
    /// MODE-sender.db holds the payment service's outbox, MODE-bank.db the bank's ledger (and, for
    /// exactly-once, its inbox). Default: a temporary directory, removed at the end.
    #[arg(long, value_name = "DIR")]
    db: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    /// Every mode, one after the other.
    All,
    /// One attempt, marked done before it: can lose a debit, never repeats one.
    #[value(name = "at-most-once", alias = "at_most_once")]
    AtMostOnce,
    /// Retried until acknowledged, into a bank that does not deduplicate: never loses, can repeat.
    #[value(name = "at-least-once", alias = "at_least_once")]
    AtLeastOnce,
    /// Retried until acknowledged, into the bank's transactional inbox: neither.
    #[value(name = "exactly-once", alias = "exactly_once")]
    ExactlyOnce,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s.parse().map_err(|e| format!("not a number: {e}"))?;
    if (0.0..=0.5).contains(&rate) { Ok(rate) } else { Err(format!("must be between 0 and 0.5, got {s}")) }
}

fn label(mode: Mode) -> &'static str {
    match mode {
        Mode::AtMostOnce => "at-most-once",
        Mode::AtLeastOnce => "at-least-once",
        Mode::ExactlyOnce => "exactly-once",
    }
}

/// What the network does to one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// The bank never sees the request; the sender times out.
    RequestLost,
    /// The bank applies the debit; its answer is lost and the sender times out.
    AckLost,
    /// The bank gets to the request only after the sender's lease ran out.
    Slow,
}

/// The fault of attempt `attempt` of message `id`: a pure function of the seed, so every run with
/// the same seed injects the same faults, whatever the timing.
fn fault(seed: u64, rate: f64, id: &str, attempt: u32) -> Fault {
    let u = JitterRng::for_key(seed, &format!("network/{id}#{attempt}")).next_unit();
    if u < rate / 3.0 {
        Fault::RequestLost
    } else if u < rate * 2.0 / 3.0 {
        Fault::AckLost
    } else if u < rate {
        Fault::Slow
    } else {
        Fault::None
    }
}

/// Counts kept while a mode runs.
#[derive(Default)]
struct Tally {
    /// Deliveries handed out by the outbox (`Leased` events).
    attempts: AtomicU64,
    /// Messages done with: acked, dropped (at-most-once) or dead-lettered.
    settled: AtomicU64,
    dead: AtomicU64,
    lease_expired: AtomicU64,
    request_lost: AtomicU64,
    ack_lost: AtomicU64,
    slow: AtomicU64,
    /// Settles refused because the lease had been taken over (fencing).
    late_refused: AtomicU64,
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// One mode's results.
struct Row {
    mode: Mode,
    requested: u64,
    applied: u64,
    lost: u64,
    duplicated: u64,
    attempts: u64,
    wall: Duration,
    dead: u64,
    lease_expired: u64,
    request_lost: u64,
    ack_lost: u64,
    slow: u64,
    late_refused: u64,
}

/// The bank: a ledger of debits in its own SQLite file.
enum Bank {
    /// At-most-once and at-least-once: the bank applies every debit request it receives.
    Plain(Arc<std::sync::Mutex<Connection>>),
    /// Exactly-once: the bank's transactional inbox; the debit is written through the inbox's
    /// own transaction, keyed by the message id.
    Transactional(Inbox<SqliteStore>),
}

const LEDGER: &str = "CREATE TABLE IF NOT EXISTS ledger (
    entry        INTEGER PRIMARY KEY,
    payment      TEXT NOT NULL,
    account      TEXT NOT NULL,
    amount_cents INTEGER NOT NULL
)";

/// A debit request: `debit ACCOUNT CENTS`.
fn parse_debit(payload: &[u8]) -> Result<(String, i64), String> {
    let text = std::str::from_utf8(payload).map_err(|_| "the request is not text".to_owned())?;
    let mut words = text.split(' ');
    match (words.next(), words.next(), words.next().map(str::parse::<i64>), words.next()) {
        (Some("debit"), Some(account), Some(Ok(cents)), None) => Ok((account.to_owned(), cents)),
        _ => Err(format!("malformed request {text:?}")),
    }
}

impl Bank {
    fn open(mode: Mode, path: &Path) -> Result<Bank, CliError> {
        let config = SqliteConfig { synchronous: Synchronous::Normal, ..Default::default() };
        if mode == Mode::ExactlyOnce {
            // The oncely store first (it must find the file empty or its own), then the ledger in it.
            let store = SqliteStore::open(path, config).map_err(|e| CliError::store(path, e))?;
            Connection::open(path)?.execute_batch(LEDGER)?;
            let inbox = Inbox::open(store, InboxConfig::new("bank"))?;
            return Ok(Bank::Transactional(inbox));
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")?;
        conn.execute_batch(LEDGER)?;
        Ok(Bank::Plain(Arc::new(std::sync::Mutex::new(conn))))
    }

    /// Handles one debit request. `Ok(Err(_))` is the bank's refusal (the sender retries);
    /// `Err(_)` stops the demo.
    async fn debit(&self, id: &str, payload: &[u8]) -> Result<Result<(), String>, CliError> {
        let (account, cents) = match parse_debit(payload) {
            Ok(debit) => debit,
            Err(e) => return Ok(Err(e)),
        };
        match self {
            Bank::Plain(conn) => {
                let (conn, id) = (conn.clone(), id.to_owned());
                tokio::task::spawn_blocking(move || {
                    let conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    conn.execute(
                        "INSERT INTO ledger (payment, account, amount_cents) VALUES (?1, ?2, ?3)",
                        params![id, account, cents],
                    )
                    .map(drop)
                })
                .await
                .map_err(|e| CliError::Failed(format!("the bank crashed: {e}")))??;
                Ok(Ok(()))
            }
            Bank::Transactional(inbox) => {
                let payment = id.to_owned();
                let request = Request::new(id).payload(payload);
                let answer = inbox
                    .process_transactional(request, move |tx| {
                        tx.execute(
                            "INSERT INTO ledger (payment, account, amount_cents) VALUES (?1, ?2, ?3)",
                            params![payment, account, cents],
                        )
                        .map_err(|e| Failure::retryable(e.to_string()))?;
                        Ok(b"debited".to_vec())
                    })
                    .await;
                match answer {
                    // Applied now, or a duplicate answered with the stored result.
                    Ok(_) => Ok(Ok(())),
                    Err(ProcessError::Handler(e)) => Ok(Err(format!("the bank failed: {e}"))),
                    Err(ProcessError::Oncely(e)) if e.code() == oncely::ErrorCode::InProgress => {
                        Ok(Err(e.to_string()))
                    }
                    Err(ProcessError::Oncely(e)) => Err(e.into()),
                    Err(e @ ProcessError::ReplayedFailure(_)) => Err(CliError::Failed(e.to_string())),
                }
            }
        }
    }
}

/// The settings of one run.
#[derive(Clone, Copy)]
struct Net {
    seed: u64,
    rate: f64,
}

/// One attempt: send the debit across the network, then settle the delivery by what the sender
/// saw. A settle refused because the lease was taken over is counted, not an error.
async fn attempt(
    delivery: Delivery<SqliteStore>,
    bank: Arc<Bank>,
    net: Net,
    tally: Arc<Tally>,
) -> Result<(), CliError> {
    let id = delivery.id().to_owned();
    let payload = delivery.payload().to_vec();
    let seen: Result<(), String> = match fault(net.seed, net.rate, &id, delivery.attempt()) {
        Fault::None => bank.debit(&id, &payload).await?,
        Fault::RequestLost => {
            bump(&tally.request_lost);
            tokio::time::sleep(TIMEOUT).await;
            Err("timed out: the request was lost".into())
        }
        Fault::AckLost => {
            bump(&tally.ack_lost);
            let _applied = bank.debit(&id, &payload).await?;
            tokio::time::sleep(TIMEOUT).await;
            Err("timed out: the acknowledgement was lost".into())
        }
        Fault::Slow => {
            bump(&tally.slow);
            tokio::time::sleep(SLOW).await;
            bank.debit(&id, &payload).await?
        }
    };
    let settled = match seen {
        Ok(()) => delivery.ack().await,
        Err(error) => delivery.retry(None, error).await.map(drop),
    };
    match settled {
        Ok(()) => Ok(()),
        Err(oncely::Error::LeaseLost { .. }) => {
            bump(&tally.late_refused);
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn joined(done: Result<Result<(), CliError>, tokio::task::JoinError>) -> Result<(), CliError> {
    done.map_err(|e| CliError::Failed(format!("an attempt crashed: {e}")))?
}

async fn run_mode(mode: Mode, args: &PaymentArgs, dir: &Path, bar: &ProgressBar) -> Result<Row, CliError> {
    let (sender_path, bank_path) = files(dir, mode);
    let n = u64::from(args.payments);
    let net = Net { seed: args.seed, rate: args.fault_rate };
    let store = SqliteStore::open(
        &sender_path,
        SqliteConfig { synchronous: Synchronous::Normal, ..Default::default() },
    )
    .map_err(|e| CliError::store(&sender_path, e))?;
    let outbox =
        Outbox::open(store, OutboxConfig::new(QUEUE).mode(mode).retry(RETRY).lease(LEASE).seed(args.seed))?;
    let bank = Arc::new(Bank::open(mode, &bank_path)?);
    let tally = Arc::new(Tally::default());
    {
        let tally = tally.clone();
        outbox.on_event(move |e| match e.kind {
            EventKind::Leased { .. } => bump(&tally.attempts),
            EventKind::Acked | EventKind::Dropped => bump(&tally.settled),
            EventKind::DeadLettered { .. } => {
                bump(&tally.settled);
                bump(&tally.dead);
            }
            EventKind::LeaseExpired => bump(&tally.lease_expired),
            _ => {}
        });
    }

    bar.reset();
    bar.set_length(n);
    bar.set_prefix(label(mode));
    let started = Instant::now();
    let mut batch = Vec::with_capacity(1000);
    for i in 1..=n {
        let payload = format!("debit acct-{:04} {}", i % 997, 100 + (i * 7_919) % 99_900);
        batch.push(NewMessage::new(payload).id(format!("payment-{i:07}")));
        if batch.len() == 1000 || i == n {
            outbox.enqueue_many(std::mem::take(&mut batch)).await?;
        }
    }

    let mut tasks = JoinSet::new();
    loop {
        while let Some(done) = tasks.try_join_next() {
            joined(done)?;
        }
        let free = CONCURRENCY - tasks.len();
        let leased = if free > 0 { outbox.lease(free).await? } else { Vec::new() };
        let got = leased.len();
        for delivery in leased {
            tasks.spawn(attempt(delivery, bank.clone(), net, tally.clone()));
        }
        bar.set_position(get(&tally.settled));
        if got == free && got > 0 {
            continue;
        }
        if tasks.is_empty() {
            if got == 0 && outbox.stats().await?.queue.depth() == 0 {
                break;
            }
            tokio::time::sleep(POLL).await;
        } else {
            tokio::select! {
                Some(done) = tasks.join_next() => joined(done)?,
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }
    let wall = started.elapsed();
    bar.set_position(get(&tally.settled));
    drop(outbox);
    drop(bank);

    // Count effects, not calls: rows in the bank's ledger.
    let ledger = Connection::open(&bank_path)?;
    let (applied, distinct): (i64, i64) =
        ledger.query_row("SELECT count(*), count(DISTINCT payment) FROM ledger", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let (applied, distinct) = (applied as u64, distinct as u64);
    Ok(Row {
        mode,
        requested: n,
        applied,
        lost: n.saturating_sub(distinct),
        duplicated: applied - distinct,
        attempts: get(&tally.attempts),
        wall,
        dead: get(&tally.dead),
        lease_expired: get(&tally.lease_expired),
        request_lost: get(&tally.request_lost),
        ack_lost: get(&tally.ack_lost),
        slow: get(&tally.slow),
        late_refused: get(&tally.late_refused),
    })
}

/// The sender's and the bank's files of `mode` in `dir`.
fn files(dir: &Path, mode: Mode) -> (PathBuf, PathBuf) {
    (dir.join(format!("{}-sender.db", label(mode))), dir.join(format!("{}-bank.db", label(mode))))
}

/// What each mode promises, checked against its row; `None` when it held.
fn broken(row: &Row) -> Option<String> {
    let m = label(row.mode);
    match row.mode {
        Mode::AtMostOnce if row.duplicated > 0 => Some(format!("{m} duplicated {} debits", row.duplicated)),
        Mode::AtMostOnce if row.request_lost > 0 && row.lost == 0 => Some(format!(
            "{m} lost nothing although {} requests were lost and it never retries",
            row.request_lost
        )),
        Mode::AtLeastOnce if row.lost > 0 => Some(format!("{m} lost {} debits", row.lost)),
        Mode::AtLeastOnce if row.ack_lost > 0 && row.duplicated == 0 => Some(format!(
            "{m} duplicated nothing although {} acknowledgements were lost and the bank does not deduplicate",
            row.ack_lost
        )),
        Mode::ExactlyOnce if row.lost > 0 || row.duplicated > 0 => {
            Some(format!("{m} lost {} and duplicated {} debits", row.lost, row.duplicated))
        }
        _ => None,
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// `oncely demo ...`.
pub async fn run(scenario: Scenario) -> Result<(), CliError> {
    let Scenario::Payment(args) = scenario;
    let modes: Vec<Mode> = match args.mode {
        ModeArg::All => vec![Mode::AtMostOnce, Mode::AtLeastOnce, Mode::ExactlyOnce],
        ModeArg::AtMostOnce => vec![Mode::AtMostOnce],
        ModeArg::AtLeastOnce => vec![Mode::AtLeastOnce],
        ModeArg::ExactlyOnce => vec![Mode::ExactlyOnce],
    };
    let temp;
    let dir: PathBuf = match &args.db {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| CliError::Failed(format!("{}: {e}", dir.display())))?;
            dir.clone()
        }
        None => {
            temp = tempfile::Builder::new().prefix("oncely-demo-").tempdir()?;
            temp.path().to_path_buf()
        }
    };

    for &mode in &modes {
        let (sender, bank) = files(&dir, mode);
        for path in [sender, bank] {
            if path.exists() {
                return Err(CliError::Failed(format!(
                    "{} already exists: the demo needs fresh files (remove them or pick another --db directory)",
                    path.display()
                )));
            }
        }
    }

    println!(
        "oncely demo payment: {} debits from a payment service's outbox to a bank, over a network\n\
         where {:.0}% of attempts meet a fault (seed {}): a third each lose the request, lose the\n\
         acknowledgement, or find the bank slower than the sender's {} ms lease. Lost and duplicated\n\
         debits are counted in the bank's ledger.\nFiles: {}{}\n",
        args.payments,
        args.fault_rate * 100.0,
        args.seed,
        LEASE.as_millis(),
        dir.display(),
        if args.db.is_some() { "" } else { " (temporary)" }
    );

    // A progress bar on stderr, shown only on a terminal and only once a run takes a moment.
    let tty = std::io::stderr().is_terminal();
    let bar = ProgressBar::with_draw_target(Some(u64::from(args.payments)), ProgressDrawTarget::hidden());
    bar.set_style(
        ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} payments settled ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let reveal = {
        let bar = bar.clone();
        tokio::spawn(async move {
            if !tty {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            bar.set_draw_target(ProgressDrawTarget::stderr());
            bar.enable_steady_tick(Duration::from_millis(100));
        })
    };

    let mut rows = Vec::new();
    for mode in modes {
        rows.push(run_mode(mode, &args, &dir, &bar).await?);
    }
    reveal.abort();
    bar.finish_and_clear();

    println!(
        "{:<14}  {:>9}  {:>7}  {:>5}  {:>10}  {:>8}  {:>9}",
        "mode", "requested", "applied", "lost", "duplicated", "attempts", "wall time"
    );
    for r in &rows {
        println!(
            "{:<14}  {:>9}  {:>7}  {:>5}  {:>10}  {:>8}  {:>9}",
            label(r.mode),
            r.requested,
            r.applied,
            r.lost,
            r.duplicated,
            r.attempts,
            seconds(r.wall)
        );
    }
    println!(
        "\n{:<14}  {:>12}  {:>8}  {:>9}  {:>13}  {:>16}  {:>12}",
        "what happened",
        "request lost",
        "ack lost",
        "bank slow",
        "lease expired",
        "late ack refused",
        "dead letters"
    );
    for r in &rows {
        println!(
            "{:<14}  {:>12}  {:>8}  {:>9}  {:>13}  {:>16}  {:>12}",
            label(r.mode),
            r.request_lost,
            r.ack_lost,
            r.slow,
            r.lease_expired,
            r.late_refused,
            r.dead
        );
    }
    println!();
    for r in &rows {
        let line = match r.mode {
            Mode::AtMostOnce => {
                "at-most-once:  one attempt, marked done before it: a lost request is a lost debit;\n\
                 \x20              never a duplicate."
            }
            Mode::AtLeastOnce => {
                "at-least-once: retried until acknowledged: never a loss, but a lost acknowledgement or\n\
                 \x20              an expired lease repeats the debit."
            }
            Mode::ExactlyOnce => {
                "exactly-once:  at-least-once delivery into the bank's transactional inbox (the debit\n\
                 \x20              and the processed mark commit together, keyed by the message id):\n\
                 \x20              neither."
            }
        };
        println!("{line}");
    }

    let failures: Vec<String> = rows.iter().filter_map(broken).collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(format!("a delivery guarantee was broken: {}", failures.join("; "))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(mode: Mode, lost: u64, duplicated: u64) -> Row {
        Row {
            mode,
            requested: 100,
            applied: 100 - lost + duplicated,
            lost,
            duplicated,
            attempts: 100,
            wall: Duration::ZERO,
            dead: 0,
            lease_expired: 0,
            request_lost: 5,
            ack_lost: 5,
            slow: 5,
            late_refused: 0,
        }
    }

    #[test]
    fn each_mode_is_held_to_its_own_promise() {
        assert_eq!(broken(&row(Mode::AtMostOnce, 5, 0)), None);
        assert!(broken(&row(Mode::AtMostOnce, 5, 1)).is_some(), "a duplicate");
        assert!(broken(&row(Mode::AtMostOnce, 0, 0)).is_some(), "lost requests must show as losses");
        assert_eq!(broken(&row(Mode::AtLeastOnce, 0, 10)), None);
        assert!(broken(&row(Mode::AtLeastOnce, 1, 10)).is_some(), "a loss");
        assert!(broken(&row(Mode::AtLeastOnce, 0, 0)).is_some(), "lost acks must show as duplicates");
        assert_eq!(broken(&row(Mode::ExactlyOnce, 0, 0)), None);
        assert!(broken(&row(Mode::ExactlyOnce, 1, 0)).is_some());
        assert!(broken(&row(Mode::ExactlyOnce, 0, 1)).is_some());
        // No faults injected: nothing to lose or duplicate, and that is fine.
        let calm = |mode| Row { request_lost: 0, ack_lost: 0, slow: 0, ..row(mode, 0, 0) };
        for mode in [Mode::AtMostOnce, Mode::AtLeastOnce, Mode::ExactlyOnce] {
            assert_eq!(broken(&calm(mode)), None);
        }
    }

    #[test]
    fn faults_are_a_function_of_the_seed_and_split_evenly() {
        let draws: Vec<Fault> = (0..3000).map(|i| fault(7, 0.3, &format!("p-{i}"), 1)).collect();
        assert_eq!(draws, (0..3000).map(|i| fault(7, 0.3, &format!("p-{i}"), 1)).collect::<Vec<_>>());
        let count = |f| draws.iter().filter(|&&d| d == f).count();
        for f in [Fault::RequestLost, Fault::AckLost, Fault::Slow] {
            assert!((220..380).contains(&count(f)), "{f:?}: {}", count(f));
        }
        assert!((0..100).all(|i| fault(7, 0.0, &format!("p-{i}"), 1) == Fault::None));
        assert_ne!(draws, (0..3000).map(|i| fault(8, 0.3, &format!("p-{i}"), 1)).collect::<Vec<_>>());
    }

    #[test]
    fn the_bank_reads_only_well_formed_debits() {
        assert_eq!(parse_debit(b"debit acct-0001 250"), Ok(("acct-0001".to_owned(), 250)));
        assert!(parse_debit(b"credit acct-0001 250").is_err());
        assert!(parse_debit(b"debit acct-0001").is_err());
        assert!(parse_debit(&[0xff]).is_err());
    }
}
