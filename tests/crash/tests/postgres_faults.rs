//! The PostgreSQL fault test: a fleet that survives its own faults.
//!
//! Per mode (at-least-once, exactly-once), in a fresh schema: the parent enqueues N payments
//! (default 5,000) and runs 5 `pg-fault-worker` processes on them, each running `Worker::run`
//! forever. Every worker reaches the server only through a fault proxy of the test's own
//! (`oncely_crash_tests::proxy`), seeded, which
//!
//! - resets connections at random moments (any packet, either direction),
//! - cuts the client off right after it sent a `COMMIT`, before any answer can reach it (the
//!   server commits: `commit_reset`), or reads the server's answer to a `COMMIT` and throws it
//!   away before resetting (`commit_reply_dropped`),
//! - delays packets by 2–30 ms.
//!
//! Meanwhile the parent SIGKILLs a random worker every 1–2.5 s (until 85% is done) and starts a
//! new one in its place, and restarts the PostgreSQL server once (`pg_ctl restart -m
//! immediate`, a crash and recovery) when about a third is done. A worker is started again only
//! after a SIGKILL: one that exits on its own is a failure, whatever its exit status. When the
//! queue is drained it checks the effects (rows in `ledger` per payment):
//!
//! - both: no worker exited on its own, every payment has a row, nothing is left in the queue,
//!   no dead letters; and every kind of fault was injected at least once (a test that injected
//!   nothing proved nothing): kills, the restart, resets, both `COMMIT` faults and delays;
//! - exactly-once: exactly one row per payment and one completed inbox mark per payment, and
//!   the inbox suppressed at least one redelivery of a committed effect (`replays`);
//! - at-least-once: every extra row is accounted for by a kill: for each row followed by
//!   another row of the same payment, the process that wrote it was SIGKILLed before the next
//!   one was written. The handler resolves its own ambiguity (a failed `COMMIT` whose row is
//!   there counts as done), so what remains is the core's part: an ack whose answer was lost is
//!   kept and settled again with its still-valid lease (the lease, 20 s, outlasts the outages),
//!   and never makes the message come back.
//!
//! First, the store is opened 200 times through a proxy that resets 3% of the packets:
//! every failure must be transient, or a worker starting during trouble would give up.
//!
//! A `harness = false` test that prints its table and a final `N passed, M failed`, and exits
//! non-zero on a broken guarantee. It needs a server (`ONCELY_POSTGRES_URL`) and a way to
//! restart it (`ONCELY_POSTGRES_PGCTL`: a `pg_ctl -D DATADIR -l LOG` command line, without the
//! action), both set by `scripts/with-postgres.sh` in `make test`; without them it skips loudly
//! — except under CI (`CI=true`), where it fails.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `ONCELY_FAULTS_MESSAGES` | 5000 | payments per mode |
//! | `ONCELY_FAULTS_WORKERS` | 5 | worker processes at once |
//! | `ONCELY_FAULTS_SEED` | from the clock | seed of the proxy's faults and of the kills |

use std::fs::File;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime};

use oncely::backoff::JitterRng;
use oncely::{Mode, NewMessage, Outbox, OutboxConfig, PostgresConfig, PostgresStore};
use oncely_crash_tests::pg::{self, env_or, sql};
use oncely_crash_tests::proxy::{FaultCounts, FaultRates, Proxy};

const WORKER: &str = env!("CARGO_BIN_EXE_pg-fault-worker");
/// Longest a mode may take before the test gives up.
const TIMEOUT: Duration = Duration::from_secs(150);

/// The proxy's fault rates.
const RATES: FaultRates = FaultRates { reset: 0.002, commit: 0.01, delay: 0.02, max_delay_ms: 30 };

struct Report {
    mode: Mode,
    messages: u64,
    secs: f64,
    kills: u32,
    restart: Option<f64>,
    exited: Vec<String>,
    faults: FaultCounts,
    rows: i64,
    distinct: i64,
    unexplained: i64,
    /// Some of the unexplained rows' payments, with all their rows and their writers' kills.
    unexplained_cases: Vec<String>,
    replays: i64,
    marks: i64,
    left: u64,
    dead: u64,
}

/// One worker process and the file its stderr goes to.
struct Life {
    child: Child,
    life: u32,
    stderr: PathBuf,
}

fn spawn(mode: Mode, url: &str, life: u32, dir: &Path) -> Result<Life, String> {
    let stderr = dir.join(format!("{}-life-{life}.stderr", mode.as_str()));
    let file = File::create(&stderr).map_err(|e| format!("cannot create {}: {e}", stderr.display()))?;
    let child = Command::new(WORKER)
        .args([mode.as_str(), url, &life.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .map_err(|e| format!("cannot start {WORKER}: {e}"))?;
    Ok(Life { child, life, stderr })
}

/// The server's address, from its URL (`postgres://user@host:port/db...`).
fn upstream(server: &str) -> Result<(String, SocketAddr), String> {
    let authority = server.split_once("://").map_or(server, |(_, rest)| rest);
    let authority = authority.split(['/', '?']).next().unwrap_or_default();
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let with_port = if hostport.contains(':') { hostport.to_string() } else { format!("{hostport}:5432") };
    let addr = with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("cannot resolve the server's address {with_port:?}"))?;
    Ok((hostport.to_string(), addr))
}

/// A fault proxy to `server`, and `url` (a URL of that server) leading through it, in plaintext
/// (the proxy reads the protocol).
fn through_proxy(server: &str, url: &str, rates: FaultRates, seed: u64) -> Result<(Proxy, String), String> {
    let (hostport, addr) = upstream(server)?;
    let proxy = Proxy::start(addr, rates, seed).map_err(|e| format!("cannot start the proxy: {e}"))?;
    let url = format!("{}&sslmode=disable", url.replacen(&hostport, &proxy.addr().to_string(), 1));
    Ok((proxy, url))
}

/// Restarts the server the hard way: an immediate shutdown (no checkpoint, crash recovery at
/// start), then a start with its previous options. Returns how long it took.
fn restart_server(pgctl: &str) -> Result<f64, String> {
    let started = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("{pgctl} -m immediate -w -t 60 restart"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run pg_ctl: {e}"))?;
    if !status.success() {
        return Err(format!("pg_ctl restart failed: {status}"));
    }
    Ok(started.elapsed().as_secs_f64())
}

fn enqueue(outbox: &Outbox<PostgresStore>, messages: u64) -> Result<(), String> {
    oncely::runtime::block_on(async {
        for start in (0..messages).step_by(1000) {
            let batch = (start..(start + 1000).min(messages))
                .map(|i| NewMessage::new(format!("{}", i % 97 + 1)).id(format!("pay-{i:07}")))
                .collect();
            outbox.enqueue_many(batch).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?
}

/// Settings of one run.
struct Run<'a> {
    server: &'a str,
    pgctl: &'a str,
    messages: u64,
    workers: usize,
    seed: u64,
    dir: &'a Path,
}

fn run_mode(run: &Run, mode: Mode) -> Result<Report, String> {
    let schema = format!("faults_{}_{}", mode.as_str(), std::process::id());
    let url = PostgresStore::schema_url(run.server, &schema).map_err(|e| e.to_string())?;
    let store = PostgresStore::open(&url, PostgresConfig::default()).map_err(|e| e.to_string())?;
    sql(&url, |c| {
        c.batch_execute(
            "CREATE TABLE ledger (seq BIGSERIAL PRIMARY KEY, payment TEXT NOT NULL, life BIGINT NOT NULL,
                                  attempt TEXT, at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp());
             CREATE TABLE replays (payment TEXT NOT NULL);
             CREATE TABLE kills (life BIGINT NOT NULL, at TIMESTAMPTZ NOT NULL);",
        )
        .map_err(|e| e.to_string())
    })?;
    let outbox = Outbox::open(store, OutboxConfig::new("payments").mode(mode)).map_err(|e| e.to_string())?;
    enqueue(&outbox, run.messages)?;

    // The workers see the server only through the proxy.
    let (proxy, worker_url) = through_proxy(run.server, &url, RATES, run.seed ^ mode.as_str().len() as u64)?;

    let started = Instant::now();
    let mut rng = JitterRng::for_key(run.seed, mode.as_str());
    let mut life = 0u32;
    let mut lives = Vec::with_capacity(run.workers);
    for _ in 0..run.workers {
        life += 1;
        lives.push(spawn(mode, &worker_url, life, run.dir)?);
    }
    let mut kills: Vec<(u32, SystemTime)> = Vec::new();
    let mut exited = Vec::new();
    let mut restart = None;
    let pause = |rng: &mut JitterRng| Duration::from_millis(1000 + (rng.next_unit() * 1500.0) as u64);
    let mut next_kill = Instant::now() + pause(&mut rng);
    let total = run.messages;
    let drained = loop {
        if started.elapsed() > TIMEOUT {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
        // A worker that ended on its own broke the rule: it is reported and not replaced.
        lives.retain_mut(|l| match l.child.try_wait() {
            Ok(Some(status)) => {
                let said = std::fs::read_to_string(&l.stderr).unwrap_or_default();
                let last = said.lines().last().unwrap_or("(nothing on stderr)").to_string();
                exited.push(format!("life {} exited ({status}): {last}", l.life));
                false
            }
            _ => true,
        });
        if lives.is_empty() {
            break false;
        }
        // The parent's own view goes straight to the server; it too may find it restarting.
        let Ok(stats) = oncely::runtime::block_on(outbox.stats()) else { continue };
        let Ok(stats) = stats.map(|s| s.queue) else { continue };
        let left = stats.ready + stats.scheduled + stats.leased;
        if left == 0 {
            break true;
        }
        if restart.is_none() && left * 3 <= total * 2 {
            restart = Some(restart_server(run.pgctl)?);
        }
        // Kills stop near the end: a killed worker's leases take 20 s to run out.
        if Instant::now() >= next_kill && left * 100 > total * 15 {
            let victim = (rng.next_unit() * lives.len() as f64) as usize % lives.len();
            let l = &mut lives[victim];
            let _ = l.child.kill(); // SIGKILL
            let _ = l.child.wait();
            // Taken once it is dead: a row written before this moment is never explained by it.
            kills.push((l.life, SystemTime::now()));
            life += 1;
            *l = spawn(mode, &worker_url, life, run.dir)?;
            next_kill = Instant::now() + pause(&mut rng);
        }
    };
    for mut l in lives {
        let _ = l.child.kill();
        let _ = l.child.wait();
    }
    let secs = started.elapsed().as_secs_f64();
    let faults = proxy.counts();
    drop(proxy);
    if !drained {
        return Err(format!(
            "the queue was not drained ({:.0} s; {})",
            secs,
            if exited.is_empty() { "timeout".to_string() } else { exited.join("; ") }
        ));
    }
    let stats =
        oncely::runtime::block_on(outbox.stats()).map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    let kill_rows: Vec<(i64, f64)> = kills
        .iter()
        .map(|(l, at)| {
            (i64::from(*l), at.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()))
        })
        .collect();
    let (rows, distinct, unexplained, unexplained_cases, replays, marks) = sql(&url, move |c| {
        for (l, at) in kill_rows {
            c.execute("INSERT INTO kills (life, at) VALUES ($1, to_timestamp($2))", &[&l, &at])
                .map_err(|e| e.to_string())?;
        }
        let r = c
            .query_one(
                // A row followed by another of the same payment is accounted for when the process
                // that wrote it was killed before the next one was written.
                "WITH o AS (SELECT life, lead(at) OVER (PARTITION BY payment ORDER BY at, seq) AS next_at
                            FROM ledger)
                 SELECT (SELECT count(*) FROM ledger), (SELECT count(DISTINCT payment) FROM ledger),
                        (SELECT count(*) FROM o WHERE next_at IS NOT NULL AND NOT EXISTS
                            (SELECT 1 FROM kills k WHERE k.life = o.life AND k.at < o.next_at)),
                        (SELECT count(*) FROM replays),
                        (SELECT count(*) FROM oncely_inbox WHERE scope = 'bank' AND state <> 0)",
                &[],
            )
            .map_err(|e| e.to_string())?;
        let cases = c
            .query(
                "WITH o AS (SELECT payment, life, lead(at) OVER (PARTITION BY payment ORDER BY at, seq) AS next_at
                            FROM ledger)
                 SELECT l.payment, string_agg(l.life || '/' || coalesce(l.attempt, '-') || ' at '
                            || to_char(l.at, 'HH24:MI:SS.US') || coalesce(' (killed '
                            || (SELECT to_char(min(k.at), 'HH24:MI:SS.US') FROM kills k WHERE k.life = l.life)
                            || ')', ''), ', ' ORDER BY l.at, l.seq)
                 FROM ledger l
                 WHERE l.payment IN (SELECT payment FROM o WHERE next_at IS NOT NULL AND NOT EXISTS
                            (SELECT 1 FROM kills k WHERE k.life = o.life AND k.at < o.next_at) LIMIT 5)
                 GROUP BY l.payment",
                &[],
            )
            .map_err(|e| e.to_string())?
            .iter()
            .map(|r| format!("{}: {}", r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect();
        Ok((r.get(0), r.get(1), r.get(2), cases, r.get(3), r.get(4)))
    })?;
    Ok(Report {
        mode,
        messages: run.messages,
        secs,
        kills: kills.len() as u32,
        restart,
        exited,
        faults,
        rows,
        distinct,
        unexplained,
        unexplained_cases,
        replays,
        marks,
        left: stats.queue.ready + stats.queue.scheduled + stats.queue.leased,
        dead: stats.queue.dead,
    })
}

/// What the report breaks, if anything.
fn violations(r: &Report) -> Vec<String> {
    let n = r.messages as i64;
    let mut v: Vec<String> = r.exited.iter().map(|e| format!("a worker ended on its own: {e}")).collect();
    if r.distinct != n {
        v.push(format!("{} payments lost", n - r.distinct));
    }
    if r.left != 0 || r.dead != 0 {
        v.push(format!("{} left in the queue, {} dead letters", r.left, r.dead));
    }
    let f = &r.faults;
    for (kind, count) in [
        ("SIGKILL", u64::from(r.kills)),
        ("server restart", u64::from(r.restart.is_some())),
        ("reset", f.reset),
        ("commit_reset", f.commit_reset),
        ("commit_reply_dropped", f.commit_reply_dropped),
        ("delay", f.delay),
    ] {
        if count == 0 {
            v.push(format!("no {kind} was injected: the test proved nothing about it"));
        }
    }
    if r.restart.is_some_and(|secs| secs * 2.0 > pg::FAULT_LEASE.as_secs_f64()) {
        // The accounting below counts on leases outlasting every outage.
        v.push(format!(
            "the server restart took {:.1} s: too long for the lease to outlast",
            r.restart.unwrap_or(0.0)
        ));
    }
    match r.mode {
        Mode::ExactlyOnce => {
            v.extend(pg::exactly_once_violations(n, r.rows, r.distinct, r.marks, r.replays, "faults"))
        }
        _ => {
            if r.unexplained != 0 {
                v.push(format!("{} extra effects not accounted for by a kill", r.unexplained));
            }
        }
    }
    v
}

/// Opens through a proxy that resets often.
const OPEN_RATES: FaultRates = FaultRates { reset: 0.03, commit: 0.5, delay: 0.05, max_delay_ms: 10 };
/// How many times the store is opened through it.
const OPENS: u32 = 200;

/// Opens an existing store through a proxy that resets 3% of the packets, again and again:
/// every failure must be transient (a lost connection is weather, never a damaged store), or a
/// worker that is starting would give up. Returns (opened, transient failures, other failures).
fn open_through_faults(server: &str, seed: u64) -> Result<(u32, u32, Vec<String>), String> {
    let url = PostgresStore::schema_url(server, &format!("faults_open_{}", std::process::id()))
        .map_err(|e| e.to_string())?;
    drop(PostgresStore::open(&url, PostgresConfig::default()).map_err(|e| e.to_string())?);
    let (_proxy, url) = through_proxy(server, &url, OPEN_RATES, seed)?;
    let (mut opened, mut transient, mut other) = (0, 0, Vec::new());
    for _ in 0..OPENS {
        match PostgresStore::open(&url, PostgresConfig { pool_size: 1, ..PostgresConfig::default() }) {
            Ok(_) => opened += 1,
            Err(e) if e.is_transient() => transient += 1,
            Err(e) => other.push(e.to_string()),
        }
    }
    Ok((opened, transient, other))
}

/// The reason the test cannot run here, if any.
fn missing() -> Option<&'static str> {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty());
    if !set("ONCELY_POSTGRES_URL") {
        return Some("ONCELY_POSTGRES_URL is not set");
    }
    if !set("ONCELY_POSTGRES_PGCTL") {
        return Some("ONCELY_POSTGRES_PGCTL (how to restart the server) is not set");
    }
    None
}

fn main() -> ExitCode {
    if let Some(why) = missing() {
        if std::env::var("CI").as_deref() == Ok("true") {
            println!("postgres faults: {why} under CI; this test must not skip");
            println!("0 passed, 1 failed");
            return ExitCode::FAILURE;
        }
        println!("!! SKIPPED: postgres fault test: {why} (run it through scripts/with-postgres.sh)");
        return ExitCode::SUCCESS;
    }
    let server = std::env::var("ONCELY_POSTGRES_URL").unwrap_or_default();
    let pgctl = std::env::var("ONCELY_POSTGRES_PGCTL").unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("oncely-faults-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        println!("postgres faults: cannot create {}: {e}", dir.display());
        println!("0 passed, 1 failed");
        return ExitCode::FAILURE;
    }
    let run = Run {
        server: &server,
        pgctl: &pgctl,
        messages: env_or("ONCELY_FAULTS_MESSAGES", 5000u64).max(1),
        workers: env_or("ONCELY_FAULTS_WORKERS", 5usize).max(1),
        seed: env_or(
            "ONCELY_FAULTS_SEED",
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(1, |d| d.as_secs()),
        ),
        dir: &dir,
    };
    println!(
        "postgres faults: {} payments per mode, {} worker processes through a fault proxy, seed {}",
        run.messages, run.workers, run.seed
    );
    println!(
        "{:<14} {:>6} {:>5} {:>8} {:>8} {:>6} {:>6} {:>7} {:>7} {:>6} {:>6} {:>6}  verdict",
        "mode",
        "secs",
        "kills",
        "restart",
        "payments",
        "rows",
        "dups",
        "unexpl",
        "replays",
        "marks",
        "exited",
        "conns"
    );
    let (mut passed, mut failed) = (0, 0);
    match open_through_faults(&server, run.seed) {
        Ok((opened, transient, other)) => {
            let mut v = other.iter().take(3).map(|e| format!("not transient: {e}")).collect::<Vec<_>>();
            if opened == 0 || transient == 0 {
                v.push("the proxy's resets never (or always) broke an open: nothing was tested".into());
            }
            println!(
                "{:<14} {OPENS} opens through resets: {opened} opened, {transient} transient errors, {} other  {}",
                "open",
                other.len(),
                if v.is_empty() { "ok".to_string() } else { format!("BROKEN: {}", v.join("; ")) }
            );
            if v.is_empty() { passed += 1 } else { failed += 1 }
        }
        Err(e) => {
            println!("{:<14} FAILED: {e}", "open");
            failed += 1;
        }
    }
    let mut faults = Vec::new();
    for mode in [Mode::AtLeastOnce, Mode::ExactlyOnce] {
        match run_mode(&run, mode) {
            Ok(r) => {
                let v = violations(&r);
                println!(
                    "{:<14} {:>6.1} {:>5} {:>7.1}s {:>8} {:>6} {:>6} {:>7} {:>7} {:>6} {:>6} {:>6}  {}",
                    r.mode.as_str(),
                    r.secs,
                    r.kills,
                    r.restart.unwrap_or(0.0),
                    r.messages,
                    r.rows,
                    r.rows - r.distinct,
                    r.unexplained,
                    r.replays,
                    r.marks,
                    r.exited.len(),
                    r.faults.connections,
                    if v.is_empty() { "ok".to_string() } else { format!("BROKEN: {}", v.join("; ")) }
                );
                for case in &r.unexplained_cases {
                    println!("  unexplained: {case}");
                }
                faults.push((mode, r.faults));
                if v.is_empty() { passed += 1 } else { failed += 1 }
            }
            Err(e) => {
                println!("{:<14} FAILED: {e}", mode.as_str());
                failed += 1;
            }
        }
    }
    for (mode, f) in faults {
        println!(
            "faults injected ({}): reset {}, commit_reset {}, commit_reply_dropped {}, delay {}; \
             connections refused while the server was down {}",
            mode.as_str(),
            f.reset,
            f.commit_reset,
            f.commit_reply_dropped,
            f.delay,
            f.upstream_down
        );
    }
    if failed == 0 {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("the workers' stderr: {}", dir.display());
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
