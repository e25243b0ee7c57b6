//! What the kill -9 crash test's parent (`tests/crash.rs`) and its child (`crash-worker`,
//! `src/main.rs`) share: file names, message ids, the ledger's schema, a seeded random stream.
//!
//! The scenario: a sender's [`oncely::Outbox`] on `sender.db` holds payments; the child leases
//! each one and applies it to a bank: a `ledger` table in `bank.db`, a separate SQLite file. The
//! parent kills the child with SIGKILL at random moments, restarts it, and at the end counts the
//! ledger's rows per payment: the *effects*.

use std::time::Duration;

use oncely::backoff::JitterRng;

pub mod pg;
pub mod proxy;

/// The sender's SQLite file: the outbox (and the `crash_rounds` enqueue markers).
pub const SENDER_DB: &str = "sender.db";
/// The bank's SQLite file: the `ledger` (and, in exactly-once, the transactional inbox).
pub const BANK_DB: &str = "bank.db";
/// An append-only text journal of what the children did (one line per event).
pub const JOURNAL: &str = "journal.log";
/// Where the children's stderr goes.
pub const CHILD_STDERR: &str = "worker.stderr";

/// The outbox queue's name.
pub const QUEUE: &str = "payments";
/// The inbox scope on the bank side.
pub const SCOPE: &str = "bank";

/// The outbox lease: short, so that a killed child's messages come back quickly.
pub const LEASE: Duration = Duration::from_millis(200);

/// The bank's ledger: one row per applied payment (an effect). Deliberately no unique key on
/// `payment`: a duplicate effect must be *countable*.
pub const LEDGER_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS ledger (
    entry   INTEGER PRIMARY KEY AUTOINCREMENT,
    payment TEXT NOT NULL,
    amount  INTEGER NOT NULL,
    life    INTEGER NOT NULL
)";

/// The sender's record of which rounds of payments were enqueued. Written in the same
/// transaction as the enqueue (the transactional outbox), so a round is enqueued exactly once
/// even when the child is killed halfway through.
pub const ROUNDS_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS crash_rounds (round INTEGER PRIMARY KEY)";

/// The id of payment `i` of round `round`: the message id, hence the idempotency key.
pub fn payment_id(round: u32, i: u32) -> String {
    format!("pay-r{round:03}-{i:05}")
}

/// The amount of payment `i` (its payload).
pub fn amount(i: u32) -> i64 {
    i64::from(i % 97) + 1
}

/// A seeded random stream (oncely's own ChaCha8-based [`JitterRng`]).
pub struct Rng(JitterRng);

impl Rng {
    /// A stream for `seed`, separated by `salt` (a mode name, a life number...).
    pub fn new(seed: u64, salt: &str) -> Self {
        Rng(JitterRng::for_key(seed, salt))
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        self.0.next_unit()
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + (self.unit() * (hi - lo + 1) as f64) as u64
    }

    /// Uniform in `lo..=hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }
}

/// The child's command line, as the parent builds it and the child parses it.
#[derive(Debug, Clone)]
pub struct ChildArgs {
    /// `at_most_once`, `at_least_once` or `exactly_once`.
    pub mode: oncely::Mode,
    /// The directory holding the two SQLite files and the journal.
    pub dir: std::path::PathBuf,
    /// Which round of payments to enqueue (once) and work through.
    pub round: u32,
    /// Payments per round.
    pub messages: u32,
    /// The run's seed.
    pub seed: u64,
    /// This child's number (1 for the first spawn): seeds its choices, tags its ledger rows.
    pub life: u64,
    /// The rate of injected failures, each of before-the-effect and after-the-effect.
    pub fault_rate: f64,
}

impl ChildArgs {
    /// As command-line arguments.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            self.mode.as_str().to_owned(),
            self.dir.display().to_string(),
            self.round.to_string(),
            self.messages.to_string(),
            self.seed.to_string(),
            self.life.to_string(),
            self.fault_rate.to_string(),
        ]
    }

    /// From command-line arguments (without the program name).
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let [mode, dir, round, messages, seed, life, fault_rate] = args else {
            return Err(format!(
                "usage: crash-worker MODE DIR ROUND MESSAGES SEED LIFE FAULT_RATE (got {} arguments)",
                args.len()
            ));
        };
        let num = |name: &str, s: &str| -> Result<u64, String> {
            s.parse().map_err(|e| format!("{name} `{s}`: {e}"))
        };
        Ok(ChildArgs {
            mode: mode.parse().map_err(|e: oncely::Error| e.to_string())?,
            dir: dir.into(),
            round: u32::try_from(num("round", round)?).map_err(|e| e.to_string())?,
            messages: u32::try_from(num("messages", messages)?).map_err(|e| e.to_string())?,
            seed: num("seed", seed)?,
            life: num("life", life)?,
            fault_rate: fault_rate.parse().map_err(|e| format!("fault_rate `{fault_rate}`: {e}"))?,
        })
    }
}
