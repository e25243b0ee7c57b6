//! Inbox throughput and memory, printed as a table (see docs/benchmarks.md).
//!
//! `cargo bench -p oncely --bench inbox` measures; `-- --quick` runs every cell briefly (a
//! smoke test that `make test` uses, in debug, with no numbers worth reading).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use oncely::rusqlite::{Connection, OptionalExtension, params};
use oncely::{
    Begin, Inbox, InboxConfig, InboxStore, MemoryStore, Mode, Request, SqliteConfig, SqliteStore, Synchronous,
};

struct Settings {
    cell: Duration,
    retained: usize,
}

/// `--only SUBSTRING` runs only the cases whose name contains it (for profiling one case).
fn wanted(name: &str) -> bool {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--only") {
        Some(i) => args.get(i + 1).is_some_and(|f| name.contains(f.as_str())),
        None => true,
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let s = if quick {
        Settings { cell: Duration::from_millis(40), retained: 20_000 }
    } else {
        Settings { cell: Duration::from_millis(2_000), retained: 1_000_000 }
    };
    let dir = tempfile::tempdir().unwrap();
    println!(
        "oncely inbox benchmark ({} per cell{})",
        fmt_dur(s.cell),
        if quick { ", quick smoke run" } else { "" }
    );
    println!("{:<58} {:>14} {:>10}", "case", "ops/s", "vs base");

    // Baselines: plain rusqlite, one INSERT OR IGNORE transaction per operation.
    // Every ratio is against a baseline measured in the same run (skipped only when profiling
    // one case with `--only`).
    let (base_full, base_normal) = if wanted("baseline") {
        (
            baseline(&dir.path().join("base-full.db"), "FULL", s.cell),
            baseline(&dir.path().join("base-normal.db"), "NORMAL", s.cell),
        )
    } else {
        (f64::NAN, f64::NAN)
    };
    row("baseline rusqlite INSERT OR IGNORE, 1 txn/op, FULL", base_full, None);
    row("baseline rusqlite INSERT OR IGNORE, 1 txn/op, NORMAL", base_normal, None);
    // The peer of a begin+finish pair: plain rusqlite writing the claim and the completion as
    // two transactions (what a hand-written inbox does), and the floor: the very statements
    // oncely runs for a pair, on its own schema, with no oncely around them.
    let mut pair_base = [f64::NAN; 2];
    let mut floor = [f64::NAN; 2];
    for (i, sync) in ["FULL", "NORMAL"].into_iter().enumerate() {
        let case = format!("baseline rusqlite claim + completion, 2 txns/pair, {sync}");
        if wanted(&case) {
            pair_base[i] = two_transactions(&dir.path().join(format!("pair-{sync}.db")), sync, s.cell);
        }
        row(&case, pair_base[i], None);
        let case = format!("floor: oncely's SQL for a pair, 512 pairs/txn, {sync}");
        if wanted(&case) {
            floor[i] = floor_pairs(&dir.path().join(format!("floor-{sync}.db")), sync, s.cell);
        }
        row(&case, floor[i], None);
    }

    for conc in [1, 8, 64] {
        let name = format!("memory begin+finish, concurrency {conc}");
        if wanted(&name) {
            row(&name, memory_threads(conc, s.cell), None);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!();
    println!("{:<58} {:>14} {:>10} {:>10}", "case", "pairs/s", "vs 2 txns", "vs floor");
    for (i, (sync, name)) in
        [(Synchronous::Full, "FULL"), (Synchronous::Normal, "NORMAL")].into_iter().enumerate()
    {
        let open = |tag: &str| {
            let path = dir.path().join(format!("oncely-{name}-{tag}.db"));
            SqliteStore::open(&path, SqliteConfig { synchronous: sync, ..Default::default() }).unwrap()
        };
        // A lone caller on its own thread (a blocking call from Python, Kotlin or Rust).
        let case = format!("sqlite {name} begin+finish, 1 caller thread");
        if wanted(&case) {
            pair_row(&case, lone_thread(open("thread"), s.cell), pair_base[i], floor[i]);
        }
        for conc in [1, 8, 64] {
            let case = format!("sqlite {name} begin+finish, {conc} async tasks");
            if wanted(&case) {
                let store = open(&conc.to_string());
                pair_row(&case, rt.block_on(tasks(store, conc, s.cell)), pair_base[i], floor[i]);
            }
        }
    }
    println!();
    let case = "sqlite duplicate of a recent id (in-memory front), 1 thread";
    if wanted(case) {
        let store = SqliteStore::open(dir.path().join("dup.db"), SqliteConfig::default()).unwrap();
        row(case, duplicates(store, s.cell), Some(base_full));
    }
    if !wanted("retained") {
        return;
    }
    let (rss, heap) = retained_bytes(s.retained);
    println!();
    println!("memory store, {} retained ids of 36 bytes (completed, with fingerprint):", s.retained);
    println!("  overhead per id beyond the id's bytes: {rss:.1} B by RSS, {heap:.1} B by live heap");
}

fn row(name: &str, ops: f64, base: Option<f64>) {
    let ratio = base.map_or(String::from("-"), |b| format!("{:.1}x", ops / b));
    println!("{name:<58} {ops:>14.0} {ratio:>10}");
}

fn pair_row(name: &str, pairs: f64, two_txns: f64, floor: f64) {
    println!("{name:<58} {pairs:>14.0} {:>9.2}x {:>9.2}x", pairs / two_txns, pairs / floor);
}

fn fmt_dur(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn config(mode: Mode) -> InboxConfig {
    InboxConfig::new("bench").mode(mode)
}

fn baseline(path: &std::path::Path, sync: &str, cell: Duration) -> f64 {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync};
         CREATE TABLE processed (id TEXT PRIMARY KEY, result BLOB) WITHOUT ROWID;"
    ))
    .unwrap();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < cell {
        for _ in 0..16 {
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            conn.prepare_cached("INSERT OR IGNORE INTO processed (id, result) VALUES (?1, ?2)")
                .unwrap()
                .execute(params![format!("id-{n}"), &b"ok"[..]])
                .unwrap();
            conn.execute_batch("COMMIT").unwrap();
            n += 1;
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Plain rusqlite: a claim (INSERT) and a completion (UPDATE) per id, each its own transaction.
fn two_transactions(path: &std::path::Path, sync: &str, cell: Duration) -> f64 {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync};
         CREATE TABLE processed (id TEXT PRIMARY KEY, done INTEGER NOT NULL, result BLOB) WITHOUT ROWID;"
    ))
    .unwrap();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < cell {
        for _ in 0..16 {
            let id = format!("id-{n}");
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            let claimed = conn
                .prepare_cached("INSERT OR IGNORE INTO processed (id, done) VALUES (?1, 0)")
                .unwrap()
                .execute(params![id])
                .unwrap();
            conn.execute_batch("COMMIT").unwrap();
            assert_eq!(claimed, 1);
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            conn.prepare_cached("UPDATE processed SET done = 1, result = ?2 WHERE id = ?1")
                .unwrap()
                .execute(params![id, &b"ok"[..]])
                .unwrap();
            conn.execute_batch("COMMIT").unwrap();
            n += 1;
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// The floor: the statements oncely's SQLite store runs for a begin+finish pair (read the id's
/// record, bump the token counter, write the claim; read it again, write the completion; save
/// the counter), on oncely's own schema, for the ids the 64-task cells use (`{task}-{n}`, so
/// each commit touches as many index pages as theirs do), 512 pairs per transaction — the cost of
/// the SQL alone, with no oncely code around it.
fn floor_pairs(path: &std::path::Path, sync: &str, cell: Duration) -> f64 {
    drop(SqliteStore::open(path, SqliteConfig::default()).unwrap()); // creates oncely's schema
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(&format!("PRAGMA synchronous = {sync}; PRAGMA cache_size = -65536;")).unwrap();
    let read = "SELECT fingerprint, token, state, lease_until, result, expires_at
                FROM oncely_inbox WHERE scope = ?1 AND id = ?2";
    let write = "INSERT INTO oncely_inbox
         (scope, id, fingerprint, token, state, lease_until, result, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (scope, id) DO UPDATE SET
           fingerprint = excluded.fingerprint, token = excluded.token, state = excluded.state,
           lease_until = excluded.lease_until, result = excluded.result, expires_at = excluded.expires_at";
    let fingerprint = [9u8; 16];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < cell {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        let mut token: i64 = conn
            .query_row("SELECT value FROM oncely_meta WHERE key = 'last_token'", [], |r| r.get(0))
            .unwrap();
        for _ in 0..512 {
            let id = format!("{}-{}", n % 64, n / 64);
            let found = |conn: &Connection| {
                conn.prepare_cached(read)
                    .unwrap()
                    .query_row(params!["bench", id], |_| Ok(()))
                    .optional()
                    .unwrap()
            };
            let put = |token: i64, state: i64, result: Option<&[u8]>| {
                conn.prepare_cached(write)
                    .unwrap()
                    .execute(params!["bench", id, &fingerprint[..], token, state, 1i64, result, 2i64])
                    .unwrap();
            };
            assert!(found(&conn).is_none());
            token += 1;
            put(token, 0, None);
            assert!(found(&conn).is_some());
            put(token, 1, Some(&b"ok"[..]));
            n += 1;
        }
        conn.prepare_cached("UPDATE oncely_meta SET value = max(value, ?1) WHERE key = 'last_token'")
            .unwrap()
            .execute([token])
            .unwrap();
        conn.execute_batch("COMMIT").unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// One OS thread claiming and finishing fresh ids with blocking calls (no async runtime).
fn lone_thread(store: SqliteStore, cell: Duration) -> f64 {
    let inbox = Inbox::open(store, config(Mode::ExactlyOnce).recent_capacity(0)).unwrap();
    let start = Instant::now();
    let mut n = 0u64;
    pollster::block_on(async {
        while start.elapsed() < cell {
            for _ in 0..16 {
                let req = Request::new(format!("lone-{n}")).payload(b"payload");
                let Begin::Claimed(ticket) = inbox.begin(req).await.unwrap() else {
                    panic!("fresh ids are claimed")
                };
                ticket.finish(b"ok".to_vec()).await.unwrap();
                n += 1;
            }
        }
    });
    n as f64 / start.elapsed().as_secs_f64()
}

/// `conc` OS threads each claiming and finishing fresh ids on one memory store.
fn memory_threads(conc: usize, cell: Duration) -> f64 {
    let inbox =
        Inbox::open(Arc::new(MemoryStore::new()), config(Mode::ExactlyOnce).recent_capacity(0)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..conc)
        .map(|t| {
            let (inbox, stop, done) = (inbox.clone(), stop.clone(), done.clone());
            // One executor call per thread: the loop measures the library, not `block_on`.
            std::thread::spawn(move || {
                pollster::block_on(async {
                    let mut n = 0u64;
                    let payload = [7u8; 64];
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..256 {
                            let req = Request::new(format!("{t}-{n}")).payload(&payload);
                            let Begin::Claimed(ticket) = inbox.begin(req).await.unwrap() else {
                                panic!("fresh ids are claimed")
                            };
                            ticket.finish(b"ok".to_vec()).await.unwrap();
                            n += 1;
                        }
                    }
                    done.fetch_add(n, Ordering::Relaxed);
                })
            })
        })
        .collect();
    std::thread::sleep(cell);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// `conc` concurrent tasks each claiming and finishing fresh ids (exactly-once: two commits).
async fn tasks<S: InboxStore>(store: S, conc: usize, cell: Duration) -> f64 {
    let inbox = Inbox::open(store, config(Mode::ExactlyOnce).recent_capacity(0)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = (0..conc)
        .map(|t| {
            let (inbox, stop) = (inbox.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let req = Request::new(format!("{t}-{n}")).payload(b"payload");
                    let Begin::Claimed(ticket) = inbox.begin(req).await.unwrap() else {
                        panic!("fresh ids are claimed")
                    };
                    ticket.finish(b"ok".to_vec()).await.unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    tokio::time::sleep(cell).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for h in handles {
        total += h.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// Duplicates of recently completed ids: answered by the in-memory front.
fn duplicates(store: SqliteStore, cell: Duration) -> f64 {
    let inbox = Inbox::open(store, config(Mode::ExactlyOnce)).unwrap();
    let ids: Vec<String> = (0..1000).map(|i| format!("recent-{i}")).collect();
    for id in &ids {
        let Begin::Claimed(t) = pollster::block_on(inbox.begin(Request::new(id.as_str()))).unwrap() else {
            panic!()
        };
        pollster::block_on(t.finish(b"ok".to_vec())).unwrap();
    }
    let start = Instant::now();
    let mut n = 0u64;
    pollster::block_on(async {
        while start.elapsed() < cell {
            for id in &ids {
                match inbox.begin(Request::new(id.as_str())).await.unwrap() {
                    Begin::Duplicate(_) => n += 1,
                    other => panic!("expected a duplicate, got {other:?}"),
                }
            }
        }
    });
    n as f64 / start.elapsed().as_secs_f64()
}

fn rss_bytes() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0.0);
    pages * 4096.0
}

/// Bytes per retained id beyond its own 36 bytes, by RSS and by the allocator's live bytes.
fn retained_bytes(n: usize) -> (f64, f64) {
    let ids: Vec<String> = (0..n).map(|i| format!("{:08x}-0000-7000-8000-{:012x}", i, i)).collect();
    ALLOC.on.store(true, Ordering::SeqCst);
    let store = Arc::new(MemoryStore::new());
    let inbox = Inbox::open(store.clone(), config(Mode::ExactlyOnce).recent_capacity(0)).unwrap();
    let heap_before = ALLOC.live();
    let rss_before = rss_bytes();
    for id in &ids {
        let req = Request::new(id.as_str()).payload(id.as_bytes());
        let Begin::Claimed(t) = pollster::block_on(inbox.begin(req)).unwrap() else { panic!() };
        pollster::block_on(t.finish(Vec::new())).unwrap();
    }
    let rss = (rss_bytes() - rss_before) / n as f64 - 36.0;
    let heap = (ALLOC.live() - heap_before) as f64 / n as f64 - 36.0;
    ALLOC.on.store(false, Ordering::SeqCst);
    assert_eq!(store.len(), n);
    (rss, heap)
}

/// Counts live heap bytes while `on`, to measure the memory store's footprint exactly without
/// slowing the throughput cases (which run with it off).
struct Counting {
    live: AtomicU64,
    on: AtomicBool,
}

impl Counting {
    fn live(&self) -> i64 {
        self.live.load(Ordering::Relaxed) as i64
    }
}

#[global_allocator]
static ALLOC: Counting = Counting { live: AtomicU64::new(0), on: AtomicBool::new(false) };

unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if self.on.load(Ordering::Relaxed) {
            self.live.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        if self.on.load(Ordering::Relaxed) {
            self.live.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        }
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        if self.on.load(Ordering::Relaxed) {
            self.live.fetch_add(new_size as u64, Ordering::Relaxed);
            self.live.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        }
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}
