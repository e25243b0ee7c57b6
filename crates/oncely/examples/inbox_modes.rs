//! `make demo`: the three modes side by side on one SQLite file.
//!
//! A receiver applies N debits to a ledger. Deliveries fail in two seeded ways: the handler
//! fails *before* its effect (the bank rejected the request), or the process "crashes" *after*
//! the effect and before the inbox heard of it (the acknowledgement is lost). The sender
//! redelivers every message the receiver did not confirm, until all are confirmed. Then the
//! ledger is counted.
//!
//! Run: `cargo run -p oncely --example inbox_modes [-- MESSAGES FAULT_RATE SEED]`

use std::sync::Arc;
use std::time::Duration;

use oncely::backoff::JitterRng;
use oncely::rusqlite::{Connection, params};
use oncely::{
    Begin, Failure, Inbox, InboxConfig, ManualClock, Mode, ProcessError, Request, SqliteConfig, SqliteStore,
    Synchronous, Timestamp,
};

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    BeforeEffect,
    AfterEffect,
}

struct Row {
    mode: &'static str,
    applied: i64,
    lost: i64,
    duplicated: i64,
    deliveries: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let fault_rate: f64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(0.2);
    let seed: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(7);
    let dir = tempfile::tempdir()?;
    println!("{n} debits, fault rate {fault_rate}, seed {seed}, SQLite file in {}\n", dir.path().display());
    let mut rows = Vec::new();
    for (name, mode) in [
        ("at-most-once", Mode::AtMostOnce),
        ("at-least-once", Mode::AtLeastOnce),
        ("exactly-once", Mode::ExactlyOnce),
    ] {
        rows.push(run(name, mode, n, fault_rate, seed, &dir.path().join(format!("{name}.db"))).await?);
    }
    println!(
        "{:<14} {:>9} {:>8} {:>6} {:>11} {:>11}",
        "mode", "requested", "applied", "lost", "duplicated", "deliveries"
    );
    for r in &rows {
        println!(
            "{:<14} {:>9} {:>8} {:>6} {:>11} {:>11}",
            r.mode, n, r.applied, r.lost, r.duplicated, r.deliveries
        );
    }
    println!(
        "\nat-most-once loses and never duplicates; at-least-once duplicates and never loses;\n\
         exactly-once (the transactional inbox: debit and mark in one commit) does neither."
    );
    // The demo doubles as a check: a broken guarantee fails `make demo`.
    let [amo, alo, eo] = &rows[..] else { unreachable!() };
    if amo.duplicated != 0 || alo.lost != 0 || eo.lost != 0 || eo.duplicated != 0 {
        return Err("a delivery guarantee was broken (see the table)".into());
    }
    Ok(())
}

async fn run(
    name: &'static str,
    mode: Mode,
    n: usize,
    fault_rate: f64,
    seed: u64,
    path: &std::path::Path,
) -> Result<Row, Box<dyn std::error::Error>> {
    let store =
        SqliteStore::open(path, SqliteConfig { synchronous: Synchronous::Normal, ..Default::default() })?;
    // The bank's ledger lives in the same file, so exactly-once can commit the debit with the mark.
    let bank = Connection::open(path)?;
    bank.execute_batch("CREATE TABLE IF NOT EXISTS ledger (seq INTEGER PRIMARY KEY, payment TEXT NOT NULL)")?;
    let clock = ManualClock::new(Timestamp(1_700_000_000_000));
    let inbox = Inbox::with_clock(
        store,
        InboxConfig::new("bank").mode(mode).lease(Duration::from_secs(30)),
        Arc::new(clock.clone()),
    )?;
    let mut rng = JitterRng::new(seed);
    let mut pending: Vec<String> = (0..n).map(|i| format!("payment-{i:05}")).collect();
    let mut deliveries = 0u64;
    while !pending.is_empty() {
        let mut unconfirmed = Vec::new();
        for id in pending {
            deliveries += 1;
            let u = rng.next_unit();
            let fault = if u < fault_rate / 2.0 {
                Fault::BeforeEffect
            } else if u < fault_rate {
                Fault::AfterEffect
            } else {
                Fault::None
            };
            if !deliver(&inbox, &bank, &id, mode, fault).await? {
                unconfirmed.push(id);
            }
        }
        pending = unconfirmed;
        clock.advance(Duration::from_secs(31)); // leases of crashed deliveries run out
    }
    let (applied, distinct): (i64, i64) =
        bank.query_row("SELECT count(*), count(DISTINCT payment) FROM ledger", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    Ok(Row { mode: name, applied, lost: n as i64 - distinct, duplicated: applied - distinct, deliveries })
}

/// One delivery; `true` when the receiver confirmed it (the sender may stop redelivering).
async fn deliver(
    inbox: &Inbox<SqliteStore>,
    bank: &Connection,
    id: &str,
    mode: Mode,
    fault: Fault,
) -> Result<bool, Box<dyn std::error::Error>> {
    if mode == Mode::ExactlyOnce {
        // Transactional inbox: the debit, the mark and the result commit together.
        let payment = id.to_owned();
        let r = inbox
            .process_transactional(Request::new(id), move |tx| {
                if fault == Fault::BeforeEffect {
                    return Err(Failure::retryable("bank rejected the request".to_string()));
                }
                tx.execute("INSERT INTO ledger (payment) VALUES (?1)", params![payment])
                    .map_err(|e| Failure::retryable(e.to_string()))?;
                if fault == Fault::AfterEffect {
                    return Err(Failure::retryable("crashed before the commit".to_string()));
                }
                Ok(b"debited".to_vec())
            })
            .await;
        return match r {
            Ok(_) => Ok(true),
            Err(ProcessError::Handler(_)) => Ok(false),
            Err(e) => Err(e.into()),
        };
    }
    // At-most-once and at-least-once: the debit goes to the bank outside the inbox's commit.
    match inbox.begin(Request::new(id)).await? {
        Begin::Duplicate(_) => Ok(true),
        Begin::InProgress { .. } | Begin::Conflict => Ok(false),
        Begin::Claimed(ticket) => match fault {
            Fault::BeforeEffect => {
                ticket.release().await?;
                // At-most-once already marked the id: the sender hears "done" and the debit is lost.
                Ok(mode == Mode::AtMostOnce)
            }
            Fault::AfterEffect => {
                bank.execute("INSERT INTO ledger (payment) VALUES (?1)", params![id])?;
                // Crash: the ticket is never finished; the sender never hears back and redelivers.
                Ok(false)
            }
            Fault::None => {
                bank.execute("INSERT INTO ledger (payment) VALUES (?1)", params![id])?;
                ticket.finish(b"debited".to_vec()).await?;
                Ok(true)
            }
        },
    }
}
