//! What only the SQLite store promises: files, schema versions, group commit and the
//! transactional inbox.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use oncely::inbox::Status;
use oncely::rusqlite::{self, Connection};
use oncely::{
    Begin, CachePolicy, ErrorCode, Failure, Inbox, InboxConfig, ProcessError, Request, SqliteConfig,
    SqliteStore,
};

fn open(path: &std::path::Path) -> oncely::Result<SqliteStore> {
    SqliteStore::open(path, SqliteConfig::default())
}

fn inbox(store: SqliteStore) -> Inbox<SqliteStore> {
    Inbox::open(store, InboxConfig::new("bank").recent_capacity(0)).unwrap()
}

fn ledger(conn: &Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM ledger", [], |r| r.get(0)).unwrap()
}

fn bank_schema(path: &std::path::Path) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch("CREATE TABLE IF NOT EXISTS ledger (id TEXT PRIMARY KEY, amount INTEGER)").unwrap();
}

#[tokio::test]
async fn completions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let token = {
        let inbox = inbox(open(&path).unwrap());
        let Begin::Claimed(t) = inbox.begin(Request::new("a")).await.unwrap() else { panic!() };
        t.finish(b"done".to_vec()).await.unwrap();
        let Begin::Claimed(held) = inbox.begin(Request::new("b")).await.unwrap() else { panic!() };
        held.token()
    };
    let inbox = inbox(open(&path).unwrap());
    let Begin::Duplicate(r) = inbox.begin(Request::new("a")).await.unwrap() else { panic!() };
    assert_eq!(r.result.as_deref(), Some(&b"done"[..]));
    // The claim on "b" outlived the process: still in progress, and tokens keep growing.
    assert!(matches!(inbox.begin(Request::new("b")).await.unwrap(), Begin::InProgress { .. }));
    let Begin::Claimed(c) = inbox.begin(Request::new("c")).await.unwrap() else { panic!() };
    assert!(c.token() > token);
}

#[test]
fn a_foreign_sqlite_file_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('ada');").unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = open(&path).unwrap_err();
    assert_eq!(err.code(), ErrorCode::CorruptStore);
    assert!(err.to_string().contains("not an oncely store"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "the file must not change");
    assert!(!dir.path().join("app.db-wal").exists());
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let text = b"these are my notes, not a database; ".repeat(200);
    std::fs::write(&path, &text).unwrap();
    let err = open(&path).unwrap_err();
    assert_eq!(err.code(), ErrorCode::CorruptStore, "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), text);
}

#[test]
fn a_store_from_a_newer_oncely_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    drop(open(&path).unwrap());
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = open(&path).unwrap_err();
    assert_eq!(err.code(), ErrorCode::CorruptStore);
    assert!(err.to_string().contains("schema version 99"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_missing_directory_is_a_storage_error() {
    let err = open(std::path::Path::new("/nonexistent-dir-for-oncely/x.db")).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Storage);
    assert!(err.to_string().contains("/nonexistent-dir-for-oncely/x.db"), "{err}");
}

#[test]
fn a_new_store_records_its_identity_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    drop(open(&path).unwrap());
    let conn = Connection::open(&path).unwrap();
    let app: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0)).unwrap();
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(
        (app, version),
        (oncely::store::sqlite::APPLICATION_ID, oncely::store::sqlite::SCHEMA_VERSION)
    );
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn transactional_inbox_commits_effect_and_mark_together() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bank.db");
    let store = open(&path).unwrap();
    bank_schema(&path);
    let inbox = inbox(store);
    let runs = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let runs = runs.clone();
        let p = inbox
            .process_transactional(Request::new("debit-1").payload(b"10"), move |tx| {
                runs.fetch_add(1, Ordering::SeqCst);
                tx.execute("INSERT INTO ledger (id, amount) VALUES ('debit-1', 10)", [])
                    .map_err(|e| Failure::retryable(e.to_string()))?;
                Ok(b"applied".to_vec())
            })
            .await
            .unwrap();
        assert_eq!(p.result.as_deref(), Some(&b"applied"[..]));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(ledger(&Connection::open(&path).unwrap()), 1);
}

#[tokio::test]
async fn transactional_failure_rolls_back_effect_and_claim() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bank.db");
    let store = open(&path).unwrap();
    bank_schema(&path);
    let inbox = inbox(store);
    let err = inbox
        .process_transactional(Request::new("d"), |tx| {
            tx.execute("INSERT INTO ledger (id, amount) VALUES ('d', 1)", []).unwrap();
            Err(Failure::retryable("bank offline".to_string()))
        })
        .await
        .unwrap_err();
    assert!(matches!(err, ProcessError::Handler(ref m) if m == "bank offline"), "{err:?}");
    assert_eq!(ledger(&Connection::open(&path).unwrap()), 0, "the handler's write must be rolled back");
    assert!(inbox.get("d").await.unwrap().is_none(), "the claim must be rolled back too");

    // A panic is contained: nothing committed, the store keeps working.
    let err = inbox
        .process_transactional(Request::new("d"), |tx| -> Result<Vec<u8>, Failure<String>> {
            tx.execute("INSERT INTO ledger (id, amount) VALUES ('d', 1)", []).unwrap();
            panic!("handler bug")
        })
        .await
        .unwrap_err();
    assert!(matches!(err, ProcessError::Oncely(ref e) if e.code() == ErrorCode::Storage), "{err:?}");
    assert_eq!(ledger(&Connection::open(&path).unwrap()), 0);

    // Ending the transaction from inside the handler is refused by SQLite itself.
    for sql in ["COMMIT", "ROLLBACK", "RELEASE oncely_job", "ROLLBACK TO oncely_handler", "BEGIN"] {
        let err = inbox
            .process_transactional(Request::new("d"), move |tx| {
                tx.execute("INSERT INTO ledger (id, amount) VALUES ('d', 1)", []).unwrap();
                tx.execute_batch(sql).map_err(|e| Failure::retryable(e.to_string()))?;
                Ok(vec![])
            })
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProcessError::Handler(ref m) if m.contains("not authorized")),
            "{sql}: {err:?}"
        );
        assert_eq!(ledger(&Connection::open(&path).unwrap()), 0, "{sql}");
        assert!(inbox.get("d").await.unwrap().is_none(), "{sql}");
    }

    // And then the delivery goes through once.
    inbox
        .process_transactional(Request::new("d"), |tx| {
            tx.execute("INSERT INTO ledger (id, amount) VALUES ('d', 1)", [])
                .map_err(|e| Failure::retryable(e.to_string()))?;
            Ok(b"ok".to_vec())
        })
        .await
        .unwrap();
    assert_eq!(ledger(&Connection::open(&path).unwrap()), 1);
}

#[tokio::test]
async fn transactional_permanent_failure_is_stored_without_the_effect() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bank.db");
    let store = open(&path).unwrap();
    bank_schema(&path);
    let cfg = InboxConfig::new("bank").recent_capacity(0).cache_policy(CachePolicy::SuccessAndFailure);
    let inbox = Inbox::open(store, cfg).unwrap();
    let err = inbox
        .process_transactional(Request::new("d"), |tx| {
            tx.execute("INSERT INTO ledger (id, amount) VALUES ('d', 1)", []).unwrap();
            Err(Failure::permanent("insufficient funds".to_string()))
        })
        .await
        .unwrap_err();
    assert!(matches!(err, ProcessError::Handler(_)));
    assert_eq!(ledger(&Connection::open(&path).unwrap()), 0);
    let err = inbox
        .process_transactional(Request::new("d"), |_| Ok::<_, Failure<String>>(vec![]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProcessError::ReplayedFailure(Some(ref r)) if r == b"insufficient funds"),
        "{err:?}"
    );
    let rec = inbox.get("d").await.unwrap().unwrap();
    assert!(matches!(rec.state, oncely::inbox::RecordState::Completed(ref o) if o.status == Status::Failed));
}

#[tokio::test]
async fn transactional_inbox_refuses_other_modes() {
    let inbox = inbox(SqliteStore::open(":memory:", SqliteConfig::default()).unwrap());
    let err = inbox
        .process_transactional(Request::new("x").mode(oncely::Mode::AtLeastOnce), |_| {
            Ok::<_, Failure<String>>(vec![])
        })
        .await
        .unwrap_err();
    assert!(matches!(err, ProcessError::Oncely(ref e) if e.code() == ErrorCode::InvalidArgument));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_caller_never_rolls_back_another_in_the_same_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bank.db");
    let store = open(&path).unwrap();
    bank_schema(&path);
    let inbox = inbox(store);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let inbox = inbox.clone();
        tasks.push(tokio::spawn(async move {
            inbox
                .process_transactional(Request::new(format!("d{i}")), move |tx| {
                    tx.execute("INSERT INTO ledger (id, amount) VALUES (?1, 1)", [format!("d{i}")])
                        .map_err(|e| Failure::retryable(e.to_string()))?;
                    if i % 3 == 0 { Err(Failure::retryable("odd one out".to_string())) } else { Ok(vec![]) }
                })
                .await
                .is_ok()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap());
    }
    assert_eq!(ok, 133);
    assert_eq!(ledger(&Connection::open(&path).unwrap()), 133, "every success committed, no failure did");
}

#[tokio::test]
async fn two_handles_on_one_file_never_share_a_token() {
    // Two handles are two writers, as two processes would be.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let a = inbox(open(&path).unwrap());
    let b = inbox(open(&path).unwrap());
    let mut tokens = Vec::new();
    for i in 0..20 {
        let which = if i % 2 == 0 { &a } else { &b };
        let Begin::Claimed(t) = which.begin(Request::new(format!("id{i}"))).await.unwrap() else { panic!() };
        tokens.push(t.token());
    }
    let mut sorted = tokens.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted, tokens, "tokens must be unique and increasing across writers");
}

#[tokio::test]
async fn a_closed_rusqlite_error_maps_to_storage() {
    let e: oncely::Error = rusqlite::Error::InvalidQuery.into();
    assert_eq!(e.code(), ErrorCode::Storage);
}

#[tokio::test]
async fn waiting_is_bounded_even_without_a_runtime_timer() {
    // `process` with `wait` works under a plain block_on (no tokio timer) too.
    let inbox = inbox(SqliteStore::open(":memory:", SqliteConfig::default()).unwrap());
    let Begin::Claimed(_held) = inbox.begin(Request::new("x")).await.unwrap() else { panic!() };
    let inbox2 = inbox.clone();
    let err = std::thread::spawn(move || {
        pollster::block_on(inbox2.process(Request::new("x").wait(Duration::from_millis(30)), || async {
            Ok::<_, Failure<String>>(vec![])
        }))
    })
    .join()
    .unwrap()
    .unwrap_err();
    assert!(matches!(err, ProcessError::Oncely(ref e) if e.code() == ErrorCode::Timeout));
}

/// A store written by schema version 1 (inbox only, before the outbox existed) is migrated in
/// place on open, and keeps its records and its token counter.
#[tokio::test]
async fn a_version_1_store_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE oncely_meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID;
             INSERT INTO oncely_meta (key, value) VALUES ('last_token', 41);
             CREATE TABLE oncely_inbox (scope TEXT NOT NULL, id TEXT NOT NULL, fingerprint BLOB, token INTEGER NOT NULL,
                 state INTEGER NOT NULL, lease_until INTEGER NOT NULL, result BLOB, expires_at INTEGER NOT NULL,
                 PRIMARY KEY (scope, id)) WITHOUT ROWID;
             CREATE INDEX oncely_inbox_expiry ON oncely_inbox (expires_at);
             INSERT INTO oncely_inbox VALUES ('bank', 'old', NULL, 41, 2, 0, x'6f6b', 9223372036854775807);
             PRAGMA application_id = 1869505381; PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let store = open(&path).unwrap();
    let inbox = inbox(store.clone());
    let Begin::Duplicate(r) = inbox.begin(Request::new("old")).await.unwrap() else { panic!() };
    assert_eq!(r.result.as_deref(), Some(&b"ok"[..]));
    let Begin::Claimed(t) = inbox.begin(Request::new("new")).await.unwrap() else { panic!() };
    assert_eq!(t.token(), 42, "the token counter carries over");
    let ob = oncely::Outbox::open(store, oncely::OutboxConfig::new("q")).unwrap();
    ob.enqueue(oncely::NewMessage::new("p").id("m")).await.unwrap();
    assert_eq!(ob.lease(1).await.unwrap().len(), 1);
    let version: i64 =
        Connection::open(&path).unwrap().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, oncely::store::sqlite::SCHEMA_VERSION);
}

/// Opening an up-to-date store writes nothing to it (inspection tools open stores too).
#[test]
fn opening_a_current_store_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    drop(open(&path).unwrap());
    let watcher = Connection::open(&path).unwrap();
    let version = |c: &Connection| -> i64 { c.query_row("PRAGMA data_version", [], |r| r.get(0)).unwrap() };
    let before = version(&watcher);
    drop(open(&path).unwrap());
    assert_eq!(version(&watcher), before, "the reopen committed a write");
}
