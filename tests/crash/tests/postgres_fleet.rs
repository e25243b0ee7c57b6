//! The PostgreSQL fleet test: many processes share one queue and one inbox, and are killed.
//!
//! Per mode (at-least-once, exactly-once), in a fresh schema: the parent enqueues N payments
//! (default 100,000) into one outbox queue, then runs 8 `pg-worker` processes on it. Until the
//! queue is drained it kills a random worker with SIGKILL every 0.2–1 s and starts a new one in
//! its place, and every other time also terminates one of the workers' database connections
//! (`pg_terminate_backend`, mid-transaction more often than not). Then it counts the effects
//! (rows in `ledger` per payment):
//!
//! - at-least-once: 0 lost (every payment has a row); duplicates are expected and shown;
//! - exactly-once: every payment has exactly one row, and one completed inbox mark;
//! - both: nothing left in the queue, no dead letters, and the kills landed where a broken
//!   guarantee would show: at-least-once has more rows than payments (redelivered effects), and
//!   exactly-once saw redeliveries of committed effects that the inbox suppressed (`replays`).
//!
//! A `harness = false` test that prints its table and exits non-zero on a broken guarantee.
//! It needs a server (`ONCELY_POSTGRES_URL`, set by `scripts/with-postgres.sh` in `make test`);
//! without one it skips loudly — except under CI (`CI=true`), where it fails.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `ONCELY_FLEET_MESSAGES` | 100000 | payments per mode |
//! | `ONCELY_FLEET_WORKERS` | 8 | worker processes at once |
//! | `ONCELY_FLEET_SEED` | from the clock | seed of the kill schedule |

use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use oncely::backoff::JitterRng;
use oncely::{Mode, NewMessage, Outbox, OutboxConfig, PostgresConfig, PostgresStore};
use oncely_crash_tests::pg::{self, env_or, sql};

const WORKER: &str = env!("CARGO_BIN_EXE_pg-worker");
/// Longest a mode may take before the test gives up.
const TIMEOUT: Duration = Duration::from_secs(15 * 60);

struct Report {
    mode: Mode,
    messages: u64,
    secs: f64,
    kills: u32,
    terminated: u32,
    rows: i64,
    distinct: i64,
    replays: i64,
    marks: i64,
    left: u64,
    dead: u64,
}

fn spawn(mode: Mode, url: &str, life: u32) -> Result<Child, String> {
    Command::new(WORKER)
        .args([mode.as_str(), url, &life.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {WORKER}: {e}"))
}

fn run_mode(server: &str, mode: Mode, messages: u64, workers: usize, seed: u64) -> Result<Report, String> {
    let schema = format!("fleet_{}_{}", mode.as_str(), std::process::id());
    let url = PostgresStore::schema_url(server, &schema).map_err(|e| e.to_string())?;
    let store = PostgresStore::open(&url, PostgresConfig::default()).map_err(|e| e.to_string())?;
    sql(&url, |c| {
        c.batch_execute(
            "CREATE TABLE ledger (payment TEXT NOT NULL, life BIGINT NOT NULL);
             CREATE TABLE replays (payment TEXT NOT NULL);",
        )
        .map_err(|e| e.to_string())
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let outbox = Outbox::open(store, OutboxConfig::new("payments").mode(mode)).map_err(|e| e.to_string())?;
    rt.block_on(async {
        for start in (0..messages).step_by(1000) {
            let batch = (start..(start + 1000).min(messages))
                .map(|i| NewMessage::new(format!("{}", i % 97 + 1)).id(format!("pay-{i:07}")))
                .collect();
            outbox.enqueue_many(batch).await.map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(())
    })?;

    let started = Instant::now();
    let mut rng = JitterRng::for_key(seed, mode.as_str());
    let mut life = 0u32;
    let mut children = Vec::with_capacity(workers);
    for _ in 0..workers {
        life += 1;
        children.push(spawn(mode, &url, life)?);
    }
    let (mut kills, mut terminated) = (0u32, 0u32);
    let mut next_kill = Instant::now() + Duration::from_millis(200 + (rng.next_unit() * 800.0) as u64);
    let drained = loop {
        if started.elapsed() > TIMEOUT {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
        let stats = rt.block_on(outbox.stats()).map_err(|e| e.to_string())?.queue;
        if stats.ready + stats.scheduled + stats.leased == 0 {
            break true;
        }
        // A worker that finished (it saw an empty queue while others held leases) or failed
        // is replaced, so that the fleet stays at full strength until the end.
        for child in children.iter_mut() {
            if let Ok(Some(_)) = child.try_wait() {
                life += 1;
                *child = spawn(mode, &url, life)?;
            }
        }
        if Instant::now() >= next_kill {
            let victim = (rng.next_unit() * workers as f64) as usize % workers;
            let _ = children[victim].kill(); // SIGKILL
            let _ = children[victim].wait();
            kills += 1;
            life += 1;
            children[victim] = spawn(mode, &url, life)?;
            if kills % 2 == 0 {
                // End one of the workers' sessions, whatever it is doing.
                let n = sql(server, |c| {
                    c.query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE application_name = 'oncely' AND pid <> pg_backend_pid()
                           AND datname = current_database()
                         ORDER BY state = 'idle in transaction' DESC, random() LIMIT 1",
                        &[],
                    )
                    .map(|rows| rows.len() as u32)
                    .map_err(|e| e.to_string())
                })?;
                terminated += n;
            }
            next_kill = Instant::now() + Duration::from_millis(200 + (rng.next_unit() * 800.0) as u64);
        }
    };
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    let secs = started.elapsed().as_secs_f64();
    if !drained {
        return Err(format!("{mode}: the queue was not drained within {TIMEOUT:?}"));
    }
    let stats = rt.block_on(outbox.stats()).map_err(|e| e.to_string())?.queue;
    let (rows, distinct, replays, marks) = sql(&url, |c| {
        let r = c
            .query_one(
                "SELECT (SELECT count(*) FROM ledger), (SELECT count(DISTINCT payment) FROM ledger),
                        (SELECT count(*) FROM replays),
                        (SELECT count(*) FROM oncely_inbox WHERE scope = 'bank' AND state <> 0)",
                &[],
            )
            .map_err(|e| e.to_string())?;
        Ok((r.get(0), r.get(1), r.get(2), r.get(3)))
    })?;
    Ok(Report {
        mode,
        messages,
        secs,
        kills,
        terminated,
        rows,
        distinct,
        replays,
        marks,
        left: stats.ready + stats.scheduled + stats.leased,
        dead: stats.dead,
    })
}

/// What the report breaks, if anything.
fn violations(r: &Report) -> Vec<String> {
    let n = r.messages as i64;
    let mut v = Vec::new();
    if r.distinct != n {
        v.push(format!("{} payments lost", n - r.distinct));
    }
    if r.left != 0 || r.dead != 0 {
        v.push(format!("{} left in the queue, {} dead letters", r.left, r.dead));
    }
    if r.kills == 0 {
        v.push("no worker was killed: the test proved nothing".into());
    }
    match r.mode {
        Mode::ExactlyOnce => {
            v.extend(pg::exactly_once_violations(n, r.rows, r.distinct, r.marks, r.replays, "kills"))
        }
        _ => {
            if r.rows <= n {
                v.push(format!("{} rows for {n} payments: no redelivery was exercised", r.rows));
            }
        }
    }
    v
}

fn main() -> ExitCode {
    let Some(server) = std::env::var("ONCELY_POSTGRES_URL").ok().filter(|u| !u.is_empty()) else {
        if std::env::var("CI").as_deref() == Ok("true") {
            println!("postgres fleet: ONCELY_POSTGRES_URL is not set under CI; this test must not skip");
            println!("0 passed, 1 failed");
            return ExitCode::FAILURE;
        }
        println!(
            "!! SKIPPED: postgres fleet test (set ONCELY_POSTGRES_URL, or run through scripts/with-postgres.sh)"
        );
        return ExitCode::SUCCESS;
    };
    let messages = env_or("ONCELY_FLEET_MESSAGES", 100_000u64).max(1);
    let workers = env_or("ONCELY_FLEET_WORKERS", 8usize).max(1);
    let seed = env_or(
        "ONCELY_FLEET_SEED",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs()),
    );
    println!("postgres fleet: {messages} payments per mode, {workers} worker processes, seed {seed}");
    println!(
        "{:<14} {:>8} {:>6} {:>5} {:>10} {:>8} {:>8} {:>8} {:>8}  verdict",
        "mode", "secs", "kills", "term", "payments", "rows", "distinct", "replays", "marks"
    );
    let (mut passed, mut failed) = (0, 0);
    for mode in [Mode::AtLeastOnce, Mode::ExactlyOnce] {
        match run_mode(&server, mode, messages, workers, seed) {
            Ok(r) => {
                let v = violations(&r);
                println!(
                    "{:<14} {:>8.1} {:>6} {:>5} {:>10} {:>8} {:>8} {:>8} {:>8}  {}",
                    r.mode.as_str(),
                    r.secs,
                    r.kills,
                    r.terminated,
                    r.messages,
                    r.rows,
                    r.distinct,
                    r.replays,
                    r.marks,
                    if v.is_empty() { "ok".to_string() } else { format!("BROKEN: {}", v.join("; ")) }
                );
                if v.is_empty() { passed += 1 } else { failed += 1 }
            }
            Err(e) => {
                println!("{:<14} FAILED: {e}", mode.as_str());
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
