//! kill -9 crash tests (docs/design.md §1: "crash the process (kill -9) between any two steps — then
//! count effects").
//!
//! For each mode, a real child process (`crash-worker`) works through payments from an outbox on
//! `sender.db` into a ledger in `bank.db`, and is killed with SIGKILL at random moments: after it
//! said `ready` (sender and bank open, its round of payments enqueued) and a random 1–30 ms
//! more, or — one time in eight — 0–15 ms after the spawn, while it opens the files or enqueues.
//! It is restarted after every kill. When a child drains the queue before the kill budget is
//! spent, the next one enqueues a fresh round of payments, so every kill lands on live work. Once
//! the budget is spent, one last child runs to completion unkilled. Then the ledger is counted:
//!
//! - at-least-once: 0 lost;
//! - exactly-once (outbox + the bank's transactional inbox): 0 lost and 0 duplicated, one
//!   completed inbox mark per payment, no claim left behind;
//! - at-most-once: 0 duplicated;
//! - every mode: the outbox is empty at the end (no dead letters, nothing stuck).
//!
//! A `harness = false` test: it prints its table whatever cargo captures, and exits non-zero
//! when a guarantee was broken. Settings (environment variables):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `ONCELY_CRASH_KILLS` | 100 | kills per mode |
//! | `ONCELY_CRASH_MESSAGES` | 150 | payments per round |
//! | `ONCELY_CRASH_SEED` | from the clock | seed of every random choice (kill timing stays racy) |
//! | `ONCELY_CRASH_FAULTS` | 0.02 | rate of injected failures before and after the effect |
//! | `ONCELY_CRASH_MODES` | all | comma-separated subset, e.g. `exactly_once` |
//! | `ONCELY_CRASH_KEEP` | unset | keep the SQLite files and journal even on success |

use std::collections::{BTreeMap, HashSet};
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use oncely::Mode;
use oncely::rusqlite::{Connection, OpenFlags, params};
use oncely_crash_tests::{
    BANK_DB, CHILD_STDERR, ChildArgs, JOURNAL, QUEUE, Rng, SCOPE, SENDER_DB, payment_id,
};

const WORKER: &str = env!("CARGO_BIN_EXE_crash-worker");

struct Settings {
    kills: u32,
    messages: u32,
    seed: u64,
    fault_rate: f64,
    modes: Vec<Mode>,
    keep: bool,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map_err(|e| format!("{name}={v}: {e}")),
        _ => Ok(default),
    }
}

fn settings() -> Result<Settings, String> {
    let clock_seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 % 1_000_000_007)
        .unwrap_or(1);
    let modes = match std::env::var("ONCELY_CRASH_MODES") {
        Ok(v) if !v.trim().is_empty() => v
            .split(',')
            .map(|m| m.trim().parse::<Mode>().map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?,
        _ => vec![Mode::AtMostOnce, Mode::AtLeastOnce, Mode::ExactlyOnce],
    };
    let s = Settings {
        kills: env_or("ONCELY_CRASH_KILLS", 100)?,
        messages: env_or("ONCELY_CRASH_MESSAGES", 150)?,
        seed: env_or("ONCELY_CRASH_SEED", clock_seed)?,
        fault_rate: env_or("ONCELY_CRASH_FAULTS", 0.02)?,
        modes,
        keep: std::env::var_os("ONCELY_CRASH_KEEP").is_some_and(|v| !v.is_empty() && v != "0"),
    };
    if s.messages == 0 || !(0.0..=0.5).contains(&s.fault_rate) {
        return Err("ONCELY_CRASH_MESSAGES must be at least 1, ONCELY_CRASH_FAULTS within 0..=0.5".into());
    }
    Ok(s)
}

#[derive(Default)]
struct Report {
    mode: &'static str,
    kills: u32,
    early_kills: u32,
    restarts: u64,
    rounds: u32,
    messages: u64,
    attempts: u64,
    applied: u64,
    lost: u64,
    duplicated: u64,
    replays: u64,
    faults: u64,
    /// Anomalies that only a kill can explain: at-most-once losses without an injected
    /// before-the-effect failure, at-least-once duplicates and exactly-once replays without an
    /// injected lost acknowledgement. Evidence that the kills land in each mode's window.
    window_hits: u64,
    /// Where the kills landed: the last step each killed child had journaled.
    landed: BTreeMap<&'static str, u32>,
    /// The lives that were killed.
    killed: HashSet<u64>,
    secs: f64,
    broken: Vec<String>,
}

fn main() -> ExitCode {
    let s = match settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("crash tests: {e}");
            return ExitCode::FAILURE;
        }
    };
    let base =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("crash-{}-{}", s.seed, std::process::id()));
    println!(
        "\nkill -9 crash tests: {} kills per mode, {} payments per round, injected fault rate {}, seed {} \
         (ONCELY_CRASH_SEED={} to replay the choices)",
        s.kills, s.messages, s.fault_rate, s.seed, s.seed
    );
    let started = Instant::now();
    let mut reports = Vec::new();
    let mut errors = Vec::new();
    for &mode in &s.modes {
        let dir = base.join(mode.as_str());
        match run_mode(&s, mode, &dir) {
            Ok(r) => reports.push(r),
            Err(e) => errors.push(format!("{mode}: {e} (files kept in {})", dir.display())),
        }
    }
    let wall = started.elapsed();

    println!(
        "\n{:<14} {:>5} {:>5} {:>8} {:>6} {:>8} {:>8} {:>7} {:>5} {:>10} {:>7} {:>6} {:>11} {:>6}  verdict",
        "mode",
        "kills",
        "early",
        "restarts",
        "rounds",
        "messages",
        "attempts",
        "applied",
        "lost",
        "duplicated",
        "replays",
        "faults",
        "window-hits",
        "secs"
    );
    for r in &reports {
        println!(
            "{:<14} {:>5} {:>5} {:>8} {:>6} {:>8} {:>8} {:>7} {:>5} {:>10} {:>7} {:>6} {:>11} {:>6.1}  {}",
            r.mode,
            r.kills,
            r.early_kills,
            r.restarts,
            r.rounds,
            r.messages,
            r.attempts,
            r.applied,
            r.lost,
            r.duplicated,
            r.replays,
            r.faults,
            r.window_hits,
            r.secs,
            if r.broken.is_empty() { "ok" } else { "BROKEN" }
        );
    }
    println!(
        "\nkills: SIGKILLs that hit a live child (early: before it said ready); restarts: children spawned;\n\
         applied: ledger rows (effects); replays: duplicates the exactly-once inbox suppressed;\n\
         window-hits: losses (at-most-once), duplicates (at-least-once) or replays (exactly-once)\n\
         that no injected fault explains, i.e. caused by a kill.\n\
         Required: at-most-once 0 duplicated; at-least-once 0 lost; exactly-once 0 lost and 0 duplicated.\n\
         Wall time {:.1} s.",
        wall.as_secs_f64()
    );
    println!("\nwhere the kills landed (the last step the killed child journaled):");
    for r in &reports {
        let landed: Vec<String> = r.landed.iter().map(|(w, n)| format!("{w} {n}")).collect();
        println!("  {:<14} {}", r.mode, landed.join(", "));
    }
    let mut failed = !errors.is_empty();
    for e in &errors {
        println!("ERROR {e}");
    }
    for r in &reports {
        for b in &r.broken {
            println!("BROKEN {}: {b}", r.mode);
            failed = true;
        }
    }
    if failed {
        println!("files kept in {}", base.display());
        return ExitCode::FAILURE;
    }
    if s.keep {
        println!("files kept in {}", base.display());
    } else {
        let _ = std::fs::remove_dir_all(&base);
    }
    ExitCode::SUCCESS
}

fn spawn(args: &ChildArgs) -> Result<(Child, mpsc::Receiver<String>), String> {
    let stderr = OpenOptions::new()
        .create(true)
        .append(true)
        .open(args.dir.join(CHILD_STDERR))
        .map_err(|e| format!("cannot open the child's stderr file: {e}"))?;
    let mut child = Command::new(WORKER)
        .args(args.to_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .spawn()
        .map_err(|e| format!("cannot spawn {WORKER}: {e}"))?;
    // The child's stdout lines (`ready`, `drained`), read on a thread so waits can time out.
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok((child, rx))
}

fn stderr_tail(dir: &Path) -> String {
    let Ok(mut f) = std::fs::File::open(dir.join(CHILD_STDERR)) else { return String::new() };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(2000)));
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    s
}

fn child_failed(dir: &Path, life: u64, status: ExitStatus) -> String {
    format!("child (life {life}) ended with {status}; its stderr ends with:\n{}", stderr_tail(dir))
}

fn run_mode(s: &Settings, mode: Mode, dir: &Path) -> Result<Report, String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let started = Instant::now();
    let mut rng = Rng::new(s.seed, &format!("parent#{mode}"));
    let mut report = Report { mode: mode.as_str(), ..Report::default() };
    let mut args = ChildArgs {
        mode,
        dir: dir.to_path_buf(),
        round: 0,
        messages: s.messages,
        seed: s.seed,
        life: 0,
        fault_rate: s.fault_rate,
    };
    while report.kills < s.kills {
        args.life += 1;
        if args.life > u64::from(s.kills) * 20 + 100 {
            return Err(format!("{} children spawned for {} kills: no progress", args.life, report.kills));
        }
        let (mut child, lines) = spawn(&args)?;
        let early = rng.chance(0.125);
        if early {
            std::thread::sleep(rng.millis(0, 15));
        } else {
            // Wait for `ready` (or for the child to end, which closes its stdout).
            match lines.recv_timeout(Duration::from_secs(30)) {
                Ok(_) | Err(mpsc::RecvTimeoutError::Disconnected) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("child (life {}) not ready after 30 s", args.life));
                }
            }
            std::thread::sleep(rng.millis(1, 30));
        }
        // A child that already said `drained` is about to exit by itself: let it.
        let said_drained = lines.try_iter().any(|l| l == "drained");
        let status = match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => status,
            None if said_drained => child.wait().map_err(|e| format!("wait: {e}"))?,
            None => {
                child.kill().map_err(|e| format!("kill: {e}"))?;
                child.wait().map_err(|e| format!("wait: {e}"))?
            }
        };
        if status.signal() == Some(9) {
            report.kills += 1;
            report.early_kills += u32::from(early);
            report.killed.insert(args.life);
        } else if status.success() {
            // It drained the queue before the kill came: the next child works on a new round.
            args.round += 1;
        } else {
            return Err(child_failed(dir, args.life, status));
        }
    }
    // The kill budget is spent: one more child runs to completion.
    args.life += 1;
    let (mut child, _lines) = spawn(&args)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("the final child (life {}) did not drain the queue within 120 s", args.life));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if !status.success() {
        return Err(child_failed(dir, args.life, status));
    }
    report.restarts = args.life;
    report.rounds = args.round + 1;
    report.secs = started.elapsed().as_secs_f64();
    count(s, mode, dir, &mut report).map_err(|e| format!("counting: {e}"))?;
    Ok(report)
}

/// What the journal says the children did, per payment.
#[derive(Default)]
struct Journal {
    /// Per life: whether it said ready, and the last step it journaled.
    lives: BTreeMap<u64, (bool, String)>,
    attempts: u64,
    faults: u64,
    fault_before: HashSet<String>,
    fault_after: HashSet<String>,
    replays: Vec<String>,
}

fn read_journal(dir: &Path) -> Result<Journal, String> {
    let text = std::fs::read_to_string(dir.join(JOURNAL)).map_err(|e| format!("journal: {e}"))?;
    let mut j = Journal::default();
    for line in text.lines() {
        let mut all = line.split(' ');
        if let (Some(life), Some(kind)) = (all.next().and_then(|l| l.parse::<u64>().ok()), all.next()) {
            let entry = j.lives.entry(life).or_insert((false, String::new()));
            entry.0 |= kind == "ready";
            entry.1 = kind.to_owned();
        }
        let mut words = line.split(' ').skip(1);
        let (Some(kind), id) = (words.next(), words.next().unwrap_or("").to_owned()) else { continue };
        match kind {
            "lease" => j.attempts += 1,
            "fault-before" => {
                j.faults += 1;
                j.fault_before.insert(id);
            }
            "fault-after" => {
                j.faults += 1;
                j.fault_after.insert(id);
            }
            "replay" => j.replays.push(id),
            _ => {}
        }
    }
    Ok(j)
}

fn open_read(path: &Path) -> Result<Connection, oncely::rusqlite::Error> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    Ok(conn)
}

fn count(s: &Settings, mode: Mode, dir: &Path, r: &mut Report) -> Result<(), Box<dyn std::error::Error>> {
    let expected: HashSet<String> =
        (0..r.rounds).flat_map(|round| (0..s.messages).map(move |i| payment_id(round, i))).collect();
    r.messages = expected.len() as u64;

    let bank = open_read(&dir.join(BANK_DB))?;
    let mut effects: BTreeMap<String, u64> = BTreeMap::new();
    {
        let mut stmt = bank.prepare("SELECT payment, count(*) FROM ledger GROUP BY payment")?;
        let rows = stmt.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))?;
        for row in rows {
            let (payment, n) = row?;
            effects.insert(payment, n as u64);
        }
    }
    r.applied = effects.values().sum();
    let lost: Vec<&String> = expected.iter().filter(|id| !effects.contains_key(*id)).collect();
    let duplicated: Vec<(&String, u64)> =
        effects.iter().filter(|(_, n)| **n > 1).map(|(id, n)| (id, *n)).collect();
    let unexpected: Vec<&String> = effects.keys().filter(|id| !expected.contains(*id)).collect();
    r.lost = lost.len() as u64;
    r.duplicated = duplicated.iter().map(|(_, n)| n - 1).sum();

    let journal = read_journal(dir)?;
    r.attempts = journal.attempts;
    r.faults = journal.faults;
    r.replays = journal.replays.len() as u64;
    for life in &r.killed {
        let window = match journal.lives.get(life) {
            None | Some((false, _)) => "startup",
            Some((true, last)) => match last.as_str() {
                "lease" | "fault-before" => "lease>effect",
                "in-tx" => "in-effect-tx",
                "effect" | "replay" | "fault-after" | "effect-error" => "effect>settle",
                "drained" => "drained",
                _ => "idle/leasing",
            },
        };
        *r.landed.entry(window).or_default() += 1;
    }
    r.window_hits = match mode {
        Mode::AtMostOnce => lost.iter().filter(|id| !journal.fault_before.contains(**id)).count() as u64,
        Mode::AtLeastOnce => {
            duplicated.iter().filter(|(id, _)| !journal.fault_after.contains(*id)).map(|(_, n)| n - 1).sum()
        }
        Mode::ExactlyOnce => {
            journal.replays.iter().filter(|id| !journal.fault_after.contains(*id)).count() as u64
        }
    };

    let sample = |ids: Vec<String>| -> String {
        let mut ids = ids;
        ids.sort();
        let more = ids.len().saturating_sub(5);
        ids.truncate(5);
        if more > 0 { format!("{} and {more} more", ids.join(", ")) } else { ids.join(", ") }
    };
    if !unexpected.is_empty() {
        r.broken.push(format!(
            "ledger rows for unknown payments: {}",
            sample(unexpected.iter().map(|s| s.to_string()).collect())
        ));
    }
    let must_not_lose = matches!(mode, Mode::AtLeastOnce | Mode::ExactlyOnce);
    let must_not_duplicate = matches!(mode, Mode::AtMostOnce | Mode::ExactlyOnce);
    if must_not_lose && !lost.is_empty() {
        r.broken.push(format!(
            "{} payments lost: {}",
            lost.len(),
            sample(lost.iter().map(|s| s.to_string()).collect())
        ));
    }
    if must_not_duplicate && !duplicated.is_empty() {
        r.broken.push(format!(
            "{} payments applied more than once: {}",
            duplicated.len(),
            sample(duplicated.iter().map(|(id, n)| format!("{id} x{n}")).collect())
        ));
    }

    // The sender: nothing left behind (no dead letters, nothing pending or leased), and every
    // round enqueued exactly once.
    let sender = open_read(&dir.join(SENDER_DB))?;
    let left: Vec<(i64, i64)> = {
        let mut stmt =
            sender.prepare("SELECT state, count(*) FROM oncely_outbox WHERE queue = ?1 GROUP BY state")?;
        stmt.query_map(params![QUEUE], |row| Ok((row.get(0)?, row.get(1)?)))?.collect::<Result<_, _>>()?
    };
    if !left.is_empty() {
        r.broken.push(format!("messages left in the outbox (state, count): {left:?}"));
    }
    let rounds: i64 = sender.query_row("SELECT count(*) FROM crash_rounds", [], |row| row.get(0))?;
    if rounds != i64::from(r.rounds) {
        r.broken.push(format!("{rounds} rounds marked enqueued, {} expected", r.rounds));
    }

    // Exactly-once: one completed mark per payment, no claim left in progress.
    if mode == Mode::ExactlyOnce {
        let (marks, in_progress): (i64, i64) = bank.query_row(
            "SELECT coalesce(sum(state <> 0), 0), coalesce(sum(state = 0), 0) FROM oncely_inbox WHERE scope = ?1",
            params![SCOPE],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        if marks as u64 != r.messages || in_progress != 0 {
            r.broken.push(format!(
                "inbox: {marks} completed marks and {in_progress} claims in progress for {} payments",
                r.messages
            ));
        }
    }
    Ok(())
}
