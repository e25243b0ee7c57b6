//! The `oncely` binary, run as a user would: the demo's table, the admin commands on stores
//! prepared through the library, and the refusals (missing file, foreign file, bad usage).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use oncely::outbox::MessageState;
use oncely::rusqlite::Connection;
use oncely::{
    Failure, Inbox, InboxConfig, ManualClock, Mode, NewMessage, Outbox, OutboxConfig, Request, SqliteConfig,
    SqliteStore, Timestamp,
};

fn oncely(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oncely")).args(args).output().expect("the oncely binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    oncely::runtime::block_on(f).expect("not inside a runtime")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// One row of the demo's first table.
#[derive(Debug)]
struct DemoRow {
    requested: u64,
    applied: u64,
    lost: u64,
    duplicated: u64,
    attempts: u64,
}

fn demo_rows(out: &str) -> Vec<(String, DemoRow)> {
    let mut lines = out.lines().skip_while(|l| !l.starts_with("mode ")).skip(1);
    let mut rows = Vec::new();
    for line in lines.by_ref().take_while(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let n = |i: usize| cols[i].parse::<u64>().unwrap_or_else(|_| panic!("column {i} of {line:?}"));
        rows.push((
            cols[0].to_owned(),
            DemoRow { requested: n(1), applied: n(2), lost: n(3), duplicated: n(4), attempts: n(5) },
        ));
    }
    rows
}

#[test]
fn the_demo_shows_each_guarantee_counted_in_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("run");
    let args =
        ["demo", "payment", "--payments", "60", "--fault-rate", "0.3", "--seed", "1", "--db", s(&files)];
    let out = oncely(&args);
    let text = stdout(&out);
    assert!(out.status.success(), "demo failed:\n{text}\n{}", stderr(&out));
    let rows = demo_rows(&text);
    let names: Vec<&str> = rows.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(names, ["at-most-once", "at-least-once", "exactly-once"], "{text}");
    let [(_, amo), (_, alo), (_, eo)] = &rows[..] else { unreachable!() };
    for (_, r) in &rows {
        assert_eq!(r.requested, 60);
        assert_eq!(r.applied + r.lost, r.requested + r.duplicated, "{text}");
    }
    assert!(amo.lost > 0 && amo.duplicated == 0, "at-most-once loses, never duplicates:\n{text}");
    assert_eq!(amo.attempts, 60, "at-most-once never retries:\n{text}");
    assert!(alo.lost == 0 && alo.duplicated > 0, "at-least-once duplicates, never loses:\n{text}");
    assert!(alo.attempts > 60, "{text}");
    assert!(eo.lost == 0 && eo.duplicated == 0 && eo.applied == 60, "exactly-once does neither:\n{text}");

    // The counts come from the bank's ledger, which stays in --db.
    let ledger = Connection::open(files.join("at-least-once-bank.db")).unwrap();
    let rows_in_ledger: i64 = ledger.query_row("SELECT count(*) FROM ledger", [], |r| r.get(0)).unwrap();
    assert_eq!(rows_in_ledger as u64, alo.applied);

    // The same seed injects the same faults: at-most-once (one attempt per payment, so no timing
    // in it) loses exactly the same debits on a second run.
    let again = oncely(&[
        "demo",
        "payment",
        "--payments",
        "60",
        "--fault-rate",
        "0.3",
        "--seed",
        "1",
        "--mode",
        "at-most-once",
        "--db",
        s(&dir.path().join("again")),
    ]);
    assert!(again.status.success(), "{}", stderr(&again));
    let again = demo_rows(&stdout(&again));
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].1.applied, again[0].1.lost), (amo.applied, amo.lost));

    // The demo never reuses files: counting a ledger with earlier debits in it would lie.
    let reuse = oncely(&args);
    assert_eq!(reuse.status.code(), Some(1));
    assert!(stderr(&reuse).contains("already exists"), "{}", stderr(&reuse));
}

#[test]
fn demo_usage_errors_are_clap_errors() {
    let out = oncely(&["demo", "payment", "--fault-rate", "0.9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("between 0 and 0.5"), "{}", stderr(&out));
    let out = oncely(&["demo", "payment", "--mode", "twice"]);
    assert_eq!(out.status.code(), Some(2));
    let out = oncely(&["stats"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--db"), "{}", stderr(&out));
}

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path, SqliteConfig::default()).unwrap()
}

fn outbox(store: &SqliteStore, queue: &str) -> Outbox<SqliteStore> {
    Outbox::open(store.clone(), OutboxConfig::new(queue).mode(Mode::AtLeastOnce)).unwrap()
}

/// Fills a store with two queues: `orders` holds dead letters `o-1` and `o-2` and a pending
/// `o-3`; `mail` holds a dead letter `m-1`.
fn fill<S: oncely::OutboxStore + Clone>(store: &S) {
    block(async {
        let outbox =
            |q: &str| Outbox::open(store.clone(), OutboxConfig::new(q).mode(Mode::AtLeastOnce)).unwrap();
        let orders = outbox("orders");
        for (id, payload) in [("o-1", "order one"), ("o-2", "order two"), ("o-3", "order three")] {
            orders.enqueue(NewMessage::new(payload).id(id).header("tenant", "acme")).await.unwrap();
        }
        let mail = outbox("mail");
        mail.enqueue(NewMessage::new(vec![0xde, 0xad, 0xbe, 0xef]).id("m-1")).await.unwrap();
        for d in orders.lease(2).await.unwrap() {
            d.fail(format!("card declined for {}", d.id())).await.unwrap();
        }
        for d in mail.lease(1).await.unwrap() {
            d.fail("mailbox full").await.unwrap();
        }
    });
}

/// [`fill`] on a new SQLite file.
fn prepared_store(dir: &Path) -> PathBuf {
    let path = dir.join("store.db");
    fill(&open(&path));
    path
}

/// The admin commands on a PostgreSQL URL (skipped loudly without a server; failed under CI).
#[test]
fn admin_commands_work_on_postgres_and_never_create_a_store() {
    let Some(server) = std::env::var("ONCELY_POSTGRES_URL").ok().filter(|u| !u.is_empty()) else {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "ONCELY_POSTGRES_URL is not set under CI");
        eprintln!("!! SKIPPED: CLI on PostgreSQL (set ONCELY_POSTGRES_URL)");
        return;
    };
    let schema = format!("cli_{}", std::process::id());
    let url = oncely::PostgresStore::schema_url(&server, &schema).unwrap();
    // An empty schema is not a store: refused, and nothing is created there.
    let out = oncely(&["stats", "--db", &url]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no oncely store"), "{}", stderr(&out));
    fill(&oncely::PostgresStore::open(&url, Default::default()).unwrap());

    let out = oncely(&["stats", "--db", &url]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let orders = text.lines().find(|l| l.starts_with("orders")).unwrap_or_else(|| panic!("{text}"));
    assert_eq!(orders.split_whitespace().collect::<Vec<_>>()[1..6], ["1", "0", "0", "2", "1"], "{text}");
    let out = oncely(&["dead-letters", "list", "--db", &url]);
    assert!(stdout(&out).contains("3 dead letters"), "{}", stdout(&out));
    let out = oncely(&["dead-letters", "replay", "m-1", "--db", &url]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = oncely(&["gc", "--db", &url]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A password never shows in messages.
    let secret = server.replacen("://", "://oncely:hunter2@", 1).replacen("oncely@", "", 1);
    let out = oncely(&["stats", "--db", &format!("{secret}?options=-csearch_path%3Dnowhere_{schema}")]);
    assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));
}

#[test]
fn stats_shows_every_queue_or_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = prepared_store(dir.path());
    let out = oncely(&["stats", "--db", s(&path)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let row = |q: &str| -> Vec<String> {
        let line = text.lines().find(|l| l.starts_with(q)).unwrap_or_else(|| panic!("no {q} row:\n{text}"));
        line.split_whitespace().map(str::to_owned).collect()
    };
    // queue, ready, scheduled, leased, dead, depth
    assert_eq!(row("orders")[1..6], ["1", "0", "0", "2", "1"], "{text}");
    assert_eq!(row("mail")[1..6], ["0", "0", "0", "1", "0"], "{text}");

    let out = oncely(&["stats", "--db", s(&path), "--queue", "mail"]);
    assert!(out.status.success());
    assert!(!stdout(&out).contains("orders") && stdout(&out).contains("mail"), "{}", stdout(&out));
}

#[test]
fn dead_letters_list_show_replay_purge() {
    let dir = tempfile::tempdir().unwrap();
    let path = prepared_store(dir.path());
    let db = s(&path);

    let out = oncely(&["dead-letters", "list", "--db", db]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in ["o-1", "o-2", "m-1", "failed permanently: card declined for o-1", "3 dead letters"] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
    assert!(!text.contains("o-3"), "a pending message is not a dead letter:\n{text}");
    let out = oncely(&["dead-letters", "list", "--db", db, "--queue", "mail"]);
    assert!(stdout(&out).contains("m-1") && !stdout(&out).contains("o-1"), "{}", stdout(&out));

    let out = oncely(&["dead-letters", "show", "o-2", "--db", db]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "queue:         orders",
        "card declined for o-2",
        "tenant: acme",
        "text: order two",
        "attempts:      1",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
    let out = oncely(&["dead-letters", "show", "m-1", "--db", db]);
    assert!(stdout(&out).contains("hex: de ad be ef"), "{}", stdout(&out));

    let out = oncely(&["dead-letters", "replay", "o-1", "--db", db]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("replayed `o-1` in queue `orders`"), "{}", stdout(&out));
    let out = oncely(&["dead-letters", "replay", "o-1", "--db", db]);
    assert_eq!(out.status.code(), Some(1), "o-1 is no longer dead");
    assert!(stderr(&out).contains("no dead letter `o-1`"), "{}", stderr(&out));

    let out = oncely(&["dead-letters", "purge", "o-2", "nope", "--db", db]);
    assert_eq!(out.status.code(), Some(1), "one id was not a dead letter");
    assert!(stdout(&out).contains("purged `o-2` from queue `orders`"), "{}", stdout(&out));
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));

    // What the library sees afterwards.
    let store = open(&path);
    block(async {
        let orders = outbox(&store, "orders");
        let o1 = orders.get("o-1").await.unwrap().expect("replayed, still queued");
        assert_eq!((o1.state, o1.message.attempts), (MessageState::Ready, 0));
        assert!(orders.get("o-2").await.unwrap().is_none(), "purged");
        assert_eq!(orders.stats().await.unwrap().queue.dead, 0);
        assert_eq!(outbox(&store, "mail").stats().await.unwrap().queue.dead, 1);
    });
    drop(store);

    let out = oncely(&["dead-letters", "purge", "--db", db]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("purged 1 dead letter in total"), "{}", stdout(&out));
    let out = oncely(&["dead-letters", "list", "--db", db]);
    assert!(stdout(&out).contains("no dead letters"), "{}", stdout(&out));
}

#[test]
fn an_id_dead_in_two_queues_needs_queue() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two.db");
    let store = open(&path);
    block(async {
        for q in ["a", "b"] {
            let ob = outbox(&store, q);
            ob.enqueue(NewMessage::new("x").id("same")).await.unwrap();
            ob.lease(1).await.unwrap()[0].fail("no").await.unwrap();
        }
    });
    drop(store);
    let out = oncely(&["dead-letters", "show", "same", "--db", s(&path)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("several queues (a, b)"), "{}", stderr(&out));
    let out = oncely(&["dead-letters", "replay", "same", "--db", s(&path), "--queue", "b"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("queue `b`"));
}

#[test]
fn gc_purges_expired_inbox_records_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.db");
    let store = open(&path);
    let ok = || async { Ok::<_, Failure<String>>(b"done".to_vec()) };
    block(async {
        // Done in 1970 with a one-second retention: long expired by the system clock.
        let old = Inbox::with_clock(
            store.clone(),
            InboxConfig::new("payments").retention(Duration::from_secs(1)),
            Arc::new(ManualClock::new(Timestamp(1_000_000))),
        )
        .unwrap();
        old.process(Request::new("old"), ok).await.unwrap();
        let fresh = Inbox::open(store.clone(), InboxConfig::new("payments")).unwrap();
        fresh.process(Request::new("fresh"), ok).await.unwrap();
    });
    drop(store);

    let out = oncely(&["gc", "--db", s(&path), "--scope", "payments"]);
    assert_eq!(out.status.code(), Some(2), "a scope of its own is not supported by the core yet");
    assert!(stderr(&out).contains("every scope"), "{}", stderr(&out));

    let out = oncely(&["gc", "--db", s(&path)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("purged 1 expired inbox record "), "{}", stdout(&out));

    let store = open(&path);
    block(async {
        let inbox = Inbox::open(store, InboxConfig::new("payments").recent_capacity(0)).unwrap();
        assert!(inbox.get("old").await.unwrap().is_none());
        assert!(inbox.get("fresh").await.unwrap().is_some());
    });
    let out = oncely(&["gc", "--db", s(&path)]);
    assert!(stdout(&out).contains("purged 0 expired inbox records"), "{}", stdout(&out));
}

#[test]
fn a_missing_file_is_an_error_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nothing-here.db");
    for args in [
        vec!["stats", "--db", s(&path)],
        vec!["dead-letters", "list", "--db", s(&path)],
        vec!["dead-letters", "purge", "--db", s(&path)],
        vec!["gc", "--db", s(&path)],
    ] {
        let out = oncely(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains("no such file"), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty());
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "nothing was created: {left:?}");
}

fn assert_refused_untouched(dir: &Path, path: &Path) {
    let before = std::fs::read(path).unwrap();
    for args in [
        vec!["stats", "--db", s(path)],
        vec!["dead-letters", "purge", "--db", s(path)],
        vec!["gc", "--db", s(path)],
    ] {
        let out = oncely(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("corrupt_store") && err.contains("not a usable oncely store"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(std::fs::read(path).unwrap(), before, "the file is unchanged");
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "no journal or WAL files appeared: {names:?}");
}

#[test]
fn a_foreign_sqlite_file_is_corrupt_store_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES ('ada');",
    )
    .unwrap();
    drop(conn);
    assert_refused_untouched(dir.path(), &path);
}

#[test]
fn a_file_that_is_not_sqlite_or_is_empty_is_corrupt_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(
        &path,
        "these are not the bytes of a database, just a text file that is long enough ".repeat(20),
    )
    .unwrap();
    assert_refused_untouched(dir.path(), &path);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").unwrap();
    assert_refused_untouched(dir.path(), &path);
}

/// `n` dead letters in `queue` of the SQLite store at `path`.
fn fill_dead(path: &Path, queue: &str, n: usize) {
    block(async {
        let store = SqliteStore::open(path, SqliteConfig::default()).unwrap();
        let outbox = Outbox::open(store, OutboxConfig::new(queue)).unwrap();
        let messages = (0..n).map(|i| NewMessage::new("p").id(format!("{queue}-{i}"))).collect();
        outbox.enqueue_many(messages).await.unwrap();
        loop {
            let leased = outbox.lease(500).await.unwrap();
            if leased.is_empty() {
                break;
            }
            for d in leased {
                d.fail("declined").await.unwrap();
            }
        }
    });
}

/// Bulk work shows progress: plain lines on stderr when it is not a terminal (here, a pipe),
/// and no plain lines but the bar when it is one (a pseudo-terminal from `script`). The results
/// go to stdout either way.
#[test]
fn bulk_replay_and_purge_show_progress() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bulk.db");
    fill_dead(&path, "a", 1200);
    fill_dead(&path, "b", 1200);
    let db = s(&path);

    let out = oncely(&["dead-letters", "replay", "--all", "--db", db, "--queue", "a"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("replayed 1200 dead letters"), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("replaying dead letters: 1000/1200\n"), "{err}");
    assert!(err.contains("replaying dead letters: 1200/1200\n"), "{err}");
    let stats = stdout(&oncely(&["stats", "--db", db, "--queue", "a"]));
    assert!(
        stats.lines().nth(1).unwrap().split_whitespace().collect::<Vec<_>>()[1..5] == ["1200", "0", "0", "0"],
        "{stats}"
    );

    let usage = oncely(&["dead-letters", "replay", "--db", db]);
    assert_eq!(usage.status.code(), Some(2), "{}", stderr(&usage));

    // On a terminal: the bar, not the plain lines.
    let cmd = format!("{} dead-letters purge --db {db} --queue b", env!("CARGO_BIN_EXE_oncely"));
    let tty = Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().expect("script runs");
    let shown = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{shown}");
    assert!(shown.contains("purged 1200 dead letters in total"), "{shown}");
    assert!(!shown.contains("purging dead letters: 1000/1200"), "plain lines on a terminal: {shown}");
    let stats = stdout(&oncely(&["stats", "--db", db, "--queue", "b"]));
    assert!(stats.lines().nth(1).unwrap().split_whitespace().collect::<Vec<_>>()[4] == "0", "{stats}");
}
