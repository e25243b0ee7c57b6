//! What only the PostgreSQL store has: a schema it must recognise, connections that die, many
//! pools on one database, and the caller's own transaction. (Everything the stores share runs in
//! the store, outbox and transaction suites.) Needs `ONCELY_POSTGRES_URL`; skips loudly without
//! it, fails under CI.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use oncely::outbox::Enqueued;
use oncely::postgres::{Client, NoTls};
use oncely::sql::SqlValue;
use oncely::{
    AnyStore, Begin, ErrorCode, Inbox, InboxConfig, NewMessage, Outbox, OutboxConfig, PostgresConfig,
    PostgresStore, Request,
};

/// Runs `f` with a plain client on a thread of its own (the sync client must not run inside the
/// test's runtime).
fn with_client<T: Send + 'static>(url: &str, f: impl FnOnce(&mut Client) -> T + Send + 'static) -> T {
    let url = url.to_owned();
    std::thread::spawn(move || f(&mut Client::connect(&url, NoTls).unwrap())).join().unwrap()
}

fn open(url: &str) -> oncely::Result<PostgresStore> {
    PostgresStore::open(url, PostgresConfig::default())
}

fn with_app_name(url: &str, name: &str) -> String {
    format!("{url}&application_name={name}")
}

/// Terminates every session of `application_name` (other than the caller's).
fn terminate(url: &str, app: &str) -> usize {
    let app = app.to_owned();
    with_client(url, move |c| {
        c.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()",
            &[&app],
        )
        .unwrap()
        .len()
    })
}

#[tokio::test]
async fn reopening_a_current_schema_writes_nothing_and_keeps_data() {
    let Some(url) = support::postgres_schema_url() else { return };
    let ob = Outbox::open(open(&url).unwrap(), OutboxConfig::new("q")).unwrap();
    ob.enqueue(NewMessage::new("kept").id("a")).await.unwrap();
    let before = with_client(&url, |c| {
        c.query_one("SELECT n_tup_ins + n_tup_upd FROM pg_stat_user_tables WHERE relname = 'oncely_meta' AND schemaname = current_schema()", &[])
            .unwrap()
            .get::<_, i64>(0)
    });
    let ob = Outbox::open(open(&url).unwrap(), OutboxConfig::new("q")).unwrap();
    assert_eq!(ob.lease(5).await.unwrap().len(), 1);
    let version: i64 = with_client(&url, |c| {
        c.query_one("SELECT value FROM oncely_meta WHERE key = 'schema_version'", &[]).unwrap().get(0)
    });
    assert_eq!(version, oncely::store::postgres::SCHEMA_VERSION);
    let after = with_client(&url, |c| {
        c.query_one("SELECT n_tup_ins + n_tup_upd FROM pg_stat_user_tables WHERE relname = 'oncely_meta' AND schemaname = current_schema()", &[])
            .unwrap()
            .get::<_, i64>(0)
    });
    assert!(after <= before, "reopening wrote to oncely_meta ({before} -> {after})");
}

#[tokio::test]
async fn a_newer_schema_is_refused_untouched() {
    let Some(url) = support::postgres_schema_url() else { return };
    drop(open(&url).unwrap());
    with_client(&url, |c| {
        c.batch_execute("UPDATE oncely_meta SET value = 99 WHERE key = 'schema_version'").unwrap()
    });
    let err = open(&url).unwrap_err();
    assert_eq!(err.code(), ErrorCode::CorruptStore);
    assert!(err.to_string().contains("newer"), "{err}");
    let v: i64 = with_client(&url, |c| {
        c.query_one("SELECT value FROM oncely_meta WHERE key = 'schema_version'", &[]).unwrap().get(0)
    });
    assert_eq!(v, 99);
}

#[tokio::test]
async fn foreign_tables_are_refused_untouched() {
    let Some(url) = support::postgres_schema_url() else { return };
    // Somebody else's table called oncely_meta.
    with_client(&url, |c| {
        c.batch_execute("CREATE TABLE oncely_meta (key TEXT PRIMARY KEY, value BIGINT); INSERT INTO oncely_meta VALUES ('x', 1)")
            .unwrap()
    });
    let err = open(&url).unwrap_err();
    assert_eq!(err.code(), ErrorCode::CorruptStore, "{err}");
    let (rows, inbox): (i64, bool) = with_client(&url, |c| {
        let r = c
            .query_one(
                "SELECT (SELECT count(*) FROM oncely_meta), to_regclass('oncely_inbox') IS NOT NULL",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    });
    assert_eq!((rows, inbox), (1, false));

    // oncely's tables without their meta table.
    let Some(url) = support::postgres_schema_url() else { return };
    with_client(&url, |c| c.batch_execute("CREATE TABLE oncely_outbox (x INT)").unwrap());
    assert_eq!(open(&url).unwrap_err().code(), ErrorCode::CorruptStore);
}

#[tokio::test]
async fn bad_locations_are_typed_errors() {
    let err = AnyStore::open("postgres://", Default::default()).unwrap_err();
    assert!(matches!(err.code(), ErrorCode::InvalidArgument | ErrorCode::Storage), "{err}");
    let err = PostgresStore::open("postgres://u@127.0.0.1:1/db?connect_timeout=2", PostgresConfig::default())
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Storage, "{err}");
    let err =
        PostgresStore::open("postgres://u:secret@127.0.0.1:1/db", PostgresConfig::default()).unwrap_err();
    assert!(!err.to_string().contains("secret"), "the password leaked into {err}");
    let err = PostgresStore::open("postgres://u@h/db?bogus_option=1", PostgresConfig::default()).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument, "{err}");
    let err = PostgresStore::open("postgres://u@h/db", PostgresConfig { pool_size: 0, ..Default::default() })
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument);
    let err = PostgresStore::schema_url("postgres://u@h/db", "x; DROP TABLE y").unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument);
}

/// A session the server ended between two calls: the next call runs on a new connection.
#[tokio::test]
async fn a_terminated_idle_connection_is_replaced() {
    let Some(url) = support::postgres_schema_url() else { return };
    let app = format!("oncely_idle_{}", std::process::id());
    let url = with_app_name(&url, &app);
    let store = PostgresStore::open(&url, PostgresConfig { pool_size: 1, ..Default::default() }).unwrap();
    let inbox = Inbox::open(store.clone(), InboxConfig::new("s")).unwrap();
    assert!(matches!(inbox.begin(Request::new("a")).await.unwrap(), Begin::Claimed(_)));
    assert_eq!(terminate(&url, &app), 1);
    // The pool's only connection is dead; the call must still succeed.
    assert!(matches!(inbox.begin(Request::new("b")).await.unwrap(), Begin::Claimed(_)));
    assert!(matches!(inbox.begin(Request::new("a")).await.unwrap(), Begin::InProgress { .. }));
}

/// A session that dies inside a transaction: that call fails with a storage error and nothing
/// of it is committed; the store goes on working.
#[tokio::test]
async fn a_connection_lost_mid_transaction_commits_nothing() {
    let Some(url) = support::postgres_schema_url() else { return };
    let store = AnyStore::open(&url, Default::default()).unwrap();
    store.in_transaction(|tx| tx.execute("CREATE TABLE t (x BIGINT)", &[]).map(|_| ())).await.unwrap();
    let inbox = Inbox::open(store.clone(), InboxConfig::new("s")).unwrap();
    let err = inbox
        .process_in_transaction(Request::new("p"), |tx| {
            tx.execute("INSERT INTO t VALUES (1)", &[]).map_err(oncely::Failure::retryable)?;
            // The server ends this very session, mid-transaction.
            tx.execute("SELECT pg_terminate_backend(pg_backend_pid())", &[])
                .map_err(oncely::Failure::retryable)?;
            Ok(Vec::new())
        })
        .await
        .unwrap_err();
    let text = format!("{err:?}");
    assert!(text.contains("Storage") || text.contains("Handler"), "{text}");
    let rows = store.in_transaction(|tx| tx.execute("SELECT count(*) FROM t", &[])).await.unwrap();
    assert_eq!(rows, vec![vec![SqlValue::Integer(0)]]);
    assert!(inbox.get("p").await.unwrap().is_none());
    // And the id is processed normally afterwards.
    let done = inbox
        .process_in_transaction(Request::new("p"), |tx| {
            tx.execute("INSERT INTO t VALUES (1)", &[]).map_err(oncely::Failure::retryable)?;
            Ok(b"ok".to_vec())
        })
        .await
        .unwrap();
    assert!(!done.replayed);
}

/// Many pools (as many processes would) enqueue the same ids at once: one copy each, no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_enqueues_of_one_id_from_many_pools_keep_one_copy() {
    let Some(url) = support::postgres_schema_url() else { return };
    let outboxes: Vec<_> =
        (0..4).map(|_| Outbox::open(open(&url).unwrap(), OutboxConfig::new("q")).unwrap()).collect();
    let queued = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (w, ob) in outboxes.iter().enumerate() {
        for _ in 0..4 {
            let (ob, queued) = (ob.clone(), queued.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..50 {
                    // Each task enqueues the same 50 ids, in a different order per pool.
                    let id = format!("m{}", (i * 7 + w * 13) % 50);
                    if ob.enqueue(NewMessage::new("p").id(id)).await.unwrap() == Enqueued::Queued {
                        queued.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(queued.load(Ordering::SeqCst), 50);
    assert_eq!(outboxes[0].stats().await.unwrap().queue.ready, 50);
}

/// Many pools claim the same ids at once: each id is claimed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_from_many_pools_claim_each_id_once() {
    let Some(url) = support::postgres_schema_url() else { return };
    let inboxes: Vec<_> =
        (0..4).map(|_| Inbox::open(open(&url).unwrap(), InboxConfig::new("s")).unwrap()).collect();
    let claimed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for inbox in &inboxes {
        for t in 0..4 {
            let (inbox, claimed) = (inbox.clone(), claimed.clone());
            tasks.push(tokio::spawn(async move {
                // Batches in different orders: the sorted advisory locks must not deadlock.
                let mut ids: Vec<String> = (0..40).map(|i| format!("id{i}")).collect();
                if t % 2 == 1 {
                    ids.reverse();
                }
                for chunk in ids.chunks(8) {
                    let reqs = chunk.iter().map(Request::new).collect();
                    for b in inbox.begin_many(reqs).await.unwrap() {
                        if matches!(b, Begin::Claimed(_)) {
                            claimed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(claimed.load(Ordering::SeqCst), 40);
}

/// The transactional outbox on the caller's own PostgreSQL transaction.
#[tokio::test]
async fn enqueue_in_the_callers_own_transaction() {
    let Some(url) = support::postgres_schema_url() else { return };
    let ob = Outbox::open(open(&url).unwrap(), OutboxConfig::new("q")).unwrap();
    let (ob2, url2) = (ob.clone(), url.clone());
    std::thread::spawn(move || {
        let mut c = Client::connect(&url2, NoTls).unwrap();
        c.batch_execute("CREATE TABLE orders (id TEXT PRIMARY KEY)").unwrap();
        let mut tx = c.transaction().unwrap();
        tx.execute("INSERT INTO orders VALUES ('o1')", &[]).unwrap();
        ob2.enqueue_in(&mut tx, vec![NewMessage::new("ship o1").id("o1")]).unwrap();
        tx.rollback().unwrap();
        let mut tx = c.transaction().unwrap();
        tx.execute("INSERT INTO orders VALUES ('o2')", &[]).unwrap();
        assert_eq!(
            ob2.enqueue_in(&mut tx, vec![NewMessage::new("ship o2").id("o2")]).unwrap(),
            [Enqueued::Queued]
        );
        tx.commit().unwrap();
    })
    .join()
    .unwrap();
    let leased: Vec<String> = ob.lease(10).await.unwrap().iter().map(|d| d.id().to_owned()).collect();
    assert_eq!(leased, ["o2"]);
}

/// Storage errors say what the server said: a missing database is its message and SQLSTATE,
/// not "db error"; a role without rights on oncely's tables is told so, with code `storage`,
/// never `corrupt_store`.
#[tokio::test]
async fn errors_say_what_the_server_said() {
    let Some(url) = support::postgres_url() else { return };
    let missing = url.rsplit_once('/').map(|(base, _)| format!("{base}/no_such_database")).unwrap();
    let e = open(&missing).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Storage, "{e}");
    assert!(e.to_string().contains("3D000") && e.to_string().contains("no_such_database"), "{e}");

    let Some(schema_url) = support::postgres_schema_url() else { return };
    drop(open(&schema_url).unwrap()); // oncely's tables, made by a role that may
    let role = format!("norights_{}", std::process::id());
    let ddl = format!("CREATE ROLE {role} LOGIN");
    with_client(&url, move |c| c.batch_execute(&ddl).unwrap());
    let schema = schema_url.split("search_path%3D").nth(1).unwrap().to_owned();
    let grant = format!("GRANT USAGE ON SCHEMA {schema} TO {role}");
    with_client(&url, move |c| c.batch_execute(&grant).unwrap());
    let as_role = schema_url.replacen("oncely@", &format!("{role}@"), 1);
    let e = open(&as_role).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Storage, "{e}");
    assert!(e.to_string().contains("may not use oncely's tables") && e.to_string().contains("42501"), "{e}");
}
