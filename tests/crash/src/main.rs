//! `crash-worker`: the child process of the kill -9 crash test (`tests/crash.rs`).
//!
//! It opens the sender's outbox on `sender.db`, enqueues its round of payments once (inside one
//! transaction with a marker row: the transactional outbox), prints `ready`, and then leases and
//! delivers payments to the bank (`bank.db`) until the queue is drained, when it prints
//! `drained` and exits 0. The parent kills it with SIGKILL at random moments meanwhile.
//!
//! Per delivery: lease → pause → [injected failure] → effect → pause → [injected failure] →
//! settle. The effect is
//! - at-most-once and at-least-once: one ledger row, inserted with plain rusqlite on the bank's
//!   own connection (an effect outside oncely's store);
//! - exactly-once: the same row, inserted through the connection that
//!   `Inbox::process_transactional` hands over (bank.db is also the inbox's store), so the row,
//!   the processed mark and the stored result commit together; the message id is the key.
//!
//! The random pauses (seeded per life) widen the windows between the steps, so that kills land
//! there. Which driver runs is also drawn per life: the pull API (`lease` + `settle`) or the
//! push-style [`Worker`] with 1–4 deliveries in flight.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oncely::backoff::{Backoff, Jitter, RetryPolicy};
use oncely::outbox::Settle;
use oncely::rusqlite::{Connection, OptionalExtension, params};
use oncely::{
    Error, Failure, Inbox, InboxConfig, Message, Mode, NewMessage, Outbox, OutboxConfig, Outcome, Request,
    SqliteConfig, SqliteStore, Synchronous, Worker, WorkerConfig,
};
use oncely_crash_tests::{
    BANK_DB, ChildArgs, JOURNAL, LEASE, LEDGER_SCHEMA, QUEUE, ROUNDS_SCHEMA, Rng, SCOPE, SENDER_DB, amount,
    payment_id,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match ChildArgs::parse(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("crash-worker: {e}");
            return ExitCode::from(2);
        }
    };
    let life = args.life;
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("crash-worker (life {life}): cannot start a runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crash-worker (life {life}): {e}");
            ExitCode::from(1)
        }
    }
}

fn sqlite_config() -> SqliteConfig {
    SqliteConfig { synchronous: Synchronous::Normal, ..SqliteConfig::default() }
}

/// A plain connection on one of the files, as kill -9 safe as oncely's own (WAL, NORMAL).
fn plain_connection(path: &std::path::Path) -> Result<Connection, BoxError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA synchronous = NORMAL")?;
    Ok(conn)
}

struct Ctx {
    args: ChildArgs,
    rng: Mutex<Rng>,
    journal: Arc<Mutex<File>>,
    /// The bank's own connection (the effect of at-most-once and at-least-once).
    ledger: Mutex<Connection>,
    /// Exactly-once: the transactional inbox on bank.db.
    inbox: Option<Inbox<SqliteStore>>,
}

impl Ctx {
    /// Appends one line to the journal (one `write` of a short line on an O_APPEND file: it
    /// reaches the kernel at once, so it survives the kill).
    fn note(&self, what: &str) {
        note(&self.journal, self.args.life, what);
    }

    fn draw<T>(&self, f: impl FnOnce(&mut Rng) -> T) -> T {
        f(&mut self.rng.lock().unwrap())
    }

    /// Sleeps 0–3 ms half of the time: a window for the parent's kill to land in.
    async fn pause(&self) {
        let d = self.draw(|r| if r.chance(0.5) { r.millis(0, 3) } else { Duration::ZERO });
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }

    /// One delivery attempt of `m`, up to (not including) its settle.
    async fn deliver(&self, m: &Message) -> Outcome {
        let id = m.id.as_str();
        self.note(&format!("lease {id} {}", m.attempts));
        self.pause().await;
        if self.draw(|r| r.chance(self.args.fault_rate)) {
            self.note(&format!("fault-before {id}"));
            return Outcome::retry("injected: the request was dropped");
        }
        let amount: i64 = match std::str::from_utf8(&m.payload).ok().and_then(|s| s.parse().ok()) {
            Some(a) => a,
            None => {
                self.note(&format!("bad-payload {id}"));
                return Outcome::Fail("unreadable payload".into());
            }
        };
        if let Err(e) = self.effect(id, &m.payload, amount).await {
            self.note(&format!("effect-error {id} {e}"));
            return Outcome::retry(e.to_string());
        }
        self.note(&format!("effect {id}"));
        self.pause().await;
        if self.draw(|r| r.chance(self.args.fault_rate)) {
            self.note(&format!("fault-after {id}"));
            return Outcome::retry("injected: the acknowledgement was lost");
        }
        Outcome::Success
    }

    async fn effect(&self, id: &str, payload: &[u8], amount: i64) -> Result<(), BoxError> {
        let life = self.args.life as i64;
        let Some(inbox) = &self.inbox else {
            let conn = self.ledger.lock().unwrap();
            conn.execute(
                "INSERT INTO ledger (payment, amount, life) VALUES (?1, ?2, ?3)",
                params![id, amount, life],
            )?;
            return Ok(());
        };
        // A kill during this pause lands inside the open transaction, after the ledger row.
        let in_tx = self.draw(|r| r.chance(0.3).then(|| r.millis(1, 3)));
        let payment = id.to_owned();
        let journal = self.journal.clone();
        let processed = inbox
            .process_transactional(Request::new(id).payload(payload), move |conn| {
                conn.execute(
                    "INSERT INTO ledger (payment, amount, life) VALUES (?1, ?2, ?3)",
                    params![payment, amount, life],
                )
                .map_err(Failure::retryable)?;
                if let Some(d) = in_tx {
                    note(&journal, life as u64, &format!("in-tx {payment}"));
                    std::thread::sleep(d);
                }
                Ok(b"applied".to_vec())
            })
            .await
            .map_err(|e| e.to_string())?;
        if processed.replayed {
            self.note(&format!("replay {id}"));
        }
        Ok(())
    }
}

fn note(journal: &Mutex<File>, life: u64, what: &str) {
    let line = format!("{life} {what}\n");
    let _ = journal.lock().unwrap().write_all(line.as_bytes());
}

fn settle_for(outcome: Outcome) -> Settle {
    match outcome {
        Outcome::Success => Settle::Ack,
        Outcome::Retry { after, error } => Settle::Retry { after, error },
        Outcome::Snooze(after) => Settle::Snooze { after },
        Outcome::Fail(reason) => Settle::Fail { reason },
    }
}

/// Nothing due, nothing scheduled, nothing leased (dead letters are the parent's to count).
async fn drained(outbox: &Outbox<SqliteStore>) -> Result<bool, Error> {
    let q = outbox.stats().await?.queue;
    Ok(q.ready == 0 && q.scheduled == 0 && q.leased == 0)
}

async fn run(args: ChildArgs) -> Result<(), BoxError> {
    let dir = args.dir.clone();
    let journal = OpenOptions::new().create(true).append(true).open(dir.join(JOURNAL))?;
    let rng = Rng::new(args.seed, &format!("{}#life{}", args.mode, args.life));

    // The sender.
    let sender = SqliteStore::open(dir.join(SENDER_DB), sqlite_config())?;
    let retry = RetryPolicy {
        max_attempts: 100_000,
        deadline: None,
        backoff: Backoff::Exponential {
            initial: Duration::from_millis(2),
            factor: 2.0,
            max: Duration::from_millis(20),
        },
        jitter: Jitter::Full,
    };
    let outbox = Outbox::open(
        sender,
        OutboxConfig::new(QUEUE).mode(args.mode).lease(LEASE).retry(retry).seed(args.seed),
    )?;

    // The bank. Exactly-once: bank.db is an oncely store first (it refuses a foreign file),
    // and the ledger lives next to the inbox's records.
    let inbox = match args.mode {
        Mode::ExactlyOnce => {
            let store = SqliteStore::open(dir.join(BANK_DB), sqlite_config())?;
            Some(Inbox::open(store, InboxConfig::new(SCOPE))?)
        }
        Mode::AtMostOnce | Mode::AtLeastOnce => None,
    };
    let ledger = plain_connection(&dir.join(BANK_DB))?;
    ledger.execute_batch(LEDGER_SCHEMA)?;

    let ctx = Arc::new(Ctx {
        args: args.clone(),
        rng: Mutex::new(rng),
        journal: Arc::new(Mutex::new(journal)),
        ledger: Mutex::new(ledger),
        inbox,
    });

    enqueue_round(&ctx, &outbox)?;
    ctx.note("ready");
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready")?;
        out.flush()?;
    }

    if ctx.draw(|r| r.chance(0.5)) {
        pull(&ctx, &outbox).await?;
    } else {
        push(&ctx, &outbox).await?;
    }

    let dead = outbox.stats().await?.queue.dead;
    ctx.note(&format!("drained dead={dead}"));
    let mut out = std::io::stdout().lock();
    writeln!(out, "drained")?;
    out.flush()?;
    // Everything is committed: exit at once rather than spend the parent's next kill on the
    // stores' orderly shutdown.
    std::process::exit(0);
}

/// Enqueues this round's payments unless an earlier life did: the enqueue and its marker row
/// commit together (the transactional outbox), so a kill in between leaves neither.
fn enqueue_round(ctx: &Ctx, outbox: &Outbox<SqliteStore>) -> Result<(), BoxError> {
    let args = &ctx.args;
    let conn = plain_connection(&args.dir.join(SENDER_DB))?;
    conn.execute_batch(ROUNDS_SCHEMA)?;
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let done: Option<i64> = conn
        .query_row("SELECT round FROM crash_rounds WHERE round = ?1", [args.round], |r| r.get(0))
        .optional()?;
    if done.is_some() {
        conn.execute_batch("COMMIT")?;
        return Ok(());
    }
    let messages: Vec<NewMessage> = (0..args.messages)
        .map(|i| NewMessage::new(amount(i).to_string()).id(payment_id(args.round, i)))
        .collect();
    let answers = outbox.enqueue_in(&conn, messages)?;
    conn.execute("INSERT INTO crash_rounds (round) VALUES (?1)", [args.round])?;
    // A kill during this pause lands inside the enqueue's open transaction.
    let d = ctx.draw(|r| if r.chance(0.3) { r.millis(1, 5) } else { Duration::ZERO });
    std::thread::sleep(d);
    conn.execute_batch("COMMIT")?;
    let queued = answers.iter().filter(|a| **a == oncely::outbox::Enqueued::Queued).count();
    ctx.note(&format!("enqueued round={} queued={queued} already={}", args.round, answers.len() - queued));
    Ok(())
}

/// The pull API: lease a few, deliver each, settle each.
async fn pull(ctx: &Arc<Ctx>, outbox: &Outbox<SqliteStore>) -> Result<(), BoxError> {
    ctx.note("driver pull");
    loop {
        let max = ctx.draw(|r| r.range(1, 4)) as usize;
        let leased = outbox.lease(max).await?;
        if leased.is_empty() {
            if drained(outbox).await? {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        for delivery in leased {
            let outcome = ctx.deliver(delivery.message()).await;
            match delivery.settle(settle_for(outcome)).await {
                Ok(_) => ctx.note(&format!("settled {}", delivery.id())),
                Err(Error::LeaseLost { id, token }) => ctx.note(&format!("lease-lost {id} {token}")),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The push-style worker, 1–4 deliveries in flight.
async fn push(ctx: &Arc<Ctx>, outbox: &Outbox<SqliteStore>) -> Result<(), BoxError> {
    let concurrency = ctx.draw(|r| r.range(1, 4)) as usize;
    ctx.note(&format!("driver worker concurrency={concurrency}"));
    let config = WorkerConfig {
        concurrency,
        poll_interval: Duration::from_millis(5),
        shutdown_timeout: Duration::from_secs(1),
    };
    let worker = Worker::new(outbox.clone(), config)?;
    loop {
        let c = ctx.clone();
        worker
            .run_until_idle(move |m: Message| {
                let c = c.clone();
                async move { c.deliver(&m).await }
            })
            .await?;
        if drained(outbox).await? {
            return Ok(());
        }
        // Leases of a killed predecessor: wait for them to run out.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
