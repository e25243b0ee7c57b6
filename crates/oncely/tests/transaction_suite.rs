//! The caller's SQL inside oncely's transaction (`oncely::sql`), as every binding uses it: on
//! each SQL store behind `AnyStore`, the handler's rows, its enqueued messages and the processed
//! mark commit together or not at all. Statements are written so both SQLite and PostgreSQL run
//! them (`$1` placeholders, plain types).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use oncely::sql::{SqlTx, SqlValue};
use oncely::{
    AnyStore, Error, ErrorCode, Failure, Inbox, InboxConfig, NewMessage, Outbox, OutboxConfig, ProcessError,
    Request,
};

mod suite {
    use super::*;

    fn ledger_rows(tx: &mut dyn SqlTx) -> oncely::Result<i64> {
        match tx.execute("SELECT count(*) FROM ledger", &[])?.as_slice() {
            [row] => match row.as_slice() {
                [SqlValue::Integer(n)] => Ok(*n),
                other => Err(Error::Storage(format!("unexpected count row {other:?}"))),
            },
            other => Err(Error::Storage(format!("unexpected count rows {other:?}"))),
        }
    }

    async fn setup(store: &AnyStore) -> (Inbox<AnyStore>, Outbox<AnyStore>) {
        store
            .in_transaction(|tx| {
                tx.execute("CREATE TABLE IF NOT EXISTS ledger (id TEXT PRIMARY KEY, amount BIGINT)", &[])?;
                tx.execute("DELETE FROM ledger", &[])
            })
            .await
            .unwrap();
        let inbox = Inbox::open(store.clone(), InboxConfig::new("payments")).unwrap();
        let outbox = Outbox::open(store.clone(), OutboxConfig::new("receipts")).unwrap();
        (inbox, outbox)
    }

    async fn count(store: &AnyStore) -> i64 {
        store.in_transaction(ledger_rows).await.unwrap()
    }

    /// The handler's row, its message and the processed mark land together; a duplicate
    /// replays the stored result without running the handler again.
    pub async fn rows_messages_and_mark_commit_together(store: AnyStore) {
        let (inbox, outbox) = setup(&store).await;
        let runs = Arc::new(AtomicUsize::new(0));
        for attempt in 0..2 {
            let (ob, runs) = (outbox.clone(), runs.clone());
            let done = inbox
                .process_in_transaction(Request::new("pay-1").payload(b"10"), move |tx| {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tx.execute(
                        "INSERT INTO ledger (id, amount) VALUES ($1, $2)",
                        &[SqlValue::Text("pay-1".into()), SqlValue::Integer(10)],
                    )
                    .map_err(Failure::retryable)?;
                    tx.enqueue(&ob, vec![NewMessage::new("receipt for pay-1").id("r-1")])
                        .map_err(Failure::retryable)?;
                    Ok(b"paid".to_vec())
                })
                .await
                .unwrap();
            assert_eq!(done.result.as_deref(), Some(&b"paid"[..]));
            assert_eq!(done.replayed, attempt == 1);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(count(&store).await, 1);
        assert!(outbox.get("r-1").await.unwrap().is_some());
        assert!(inbox.get("pay-1").await.unwrap().is_some());
    }

    /// A handler error undoes its row, its message and the claim: the id is claimable again
    /// and the retry is the only effect.
    pub async fn handler_error_leaves_nothing(store: AnyStore) {
        let (inbox, outbox) = setup(&store).await;
        let ob = outbox.clone();
        let err = inbox
            .process_in_transaction(Request::new("pay-2"), move |tx| {
                tx.execute(
                    "INSERT INTO ledger (id, amount) VALUES ($1, 5)",
                    &[SqlValue::Text("pay-2".into())],
                )
                .map_err(|e| Failure::retryable(e.to_string()))?;
                tx.enqueue(&ob, vec![NewMessage::new("r").id("r-2")])
                    .map_err(|e| Failure::retryable(e.to_string()))?;
                Err(Failure::retryable("bank said no".to_string()))
            })
            .await
            .unwrap_err();
        assert!(matches!(err, ProcessError::Handler(ref e) if e == "bank said no"), "{err:?}");
        assert_eq!(count(&store).await, 0);
        assert!(outbox.get("r-2").await.unwrap().is_none());
        assert!(inbox.get("pay-2").await.unwrap().is_none());
        let ok = inbox
            .process_in_transaction(Request::new("pay-2"), |tx| {
                tx.execute(
                    "INSERT INTO ledger (id, amount) VALUES ($1, 5)",
                    &[SqlValue::Text("pay-2".into())],
                )
                .map_err(|e| Failure::retryable(e.to_string()))?;
                Ok(Vec::new())
            })
            .await
            .unwrap();
        assert!(!ok.replayed);
        assert_eq!(count(&store).await, 1);
    }

    /// `in_transaction` returning an error keeps none of its writes.
    pub async fn failed_work_is_rolled_back(store: AnyStore) {
        let (_inbox, outbox) = setup(&store).await;
        let ob = outbox.clone();
        let err = store
            .in_transaction(move |tx| {
                tx.execute("INSERT INTO ledger (id, amount) VALUES ('a', 1)", &[])?;
                tx.enqueue(&ob, vec![NewMessage::new("x").id("m-a")])?;
                Err::<(), _>(Error::invalid("test", "changed my mind"))
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidArgument);
        assert_eq!(count(&store).await, 0);
        assert!(outbox.get("m-a").await.unwrap().is_none());
        let ob = outbox.clone();
        store
            .in_transaction(move |tx| {
                tx.execute("INSERT INTO ledger (id, amount) VALUES ('a', 1)", &[])?;
                tx.enqueue(&ob, vec![NewMessage::new("x").id("m-a")])
            })
            .await
            .unwrap();
        assert_eq!(count(&store).await, 1);
        assert!(outbox.get("m-a").await.unwrap().is_some());
    }

    /// Values of every kind go in and come back unchanged.
    pub async fn values_round_trip(store: AnyStore) {
        setup(&store).await;
        // PostgreSQL knows these type names; SQLite takes any.
        store
            .in_transaction(|tx| {
                tx.execute(
                    "CREATE TABLE IF NOT EXISTS kinds (i BIGINT, r DOUBLE PRECISION, t TEXT, b BYTEA)",
                    &[],
                )
            })
            .await
            .unwrap();
        let back = store
            .in_transaction(|tx| {
                tx.execute(
                    "INSERT INTO kinds (i, r, t, b) VALUES ($1, $2, $3, $4)",
                    &[
                        SqlValue::Integer(-7),
                        SqlValue::Real(2.5),
                        SqlValue::Text("héllo".into()),
                        SqlValue::Blob(vec![0, 255, 1]),
                    ],
                )?;
                tx.execute("INSERT INTO kinds (i, r, t, b) VALUES (NULL, NULL, NULL, NULL)", &[])?;
                tx.execute("SELECT i, r, t, b FROM kinds ORDER BY i NULLS LAST", &[])
            })
            .await
            .unwrap();
        assert_eq!(
            back,
            vec![
                vec![
                    SqlValue::Integer(-7),
                    SqlValue::Real(2.5),
                    SqlValue::Text("héllo".into()),
                    SqlValue::Blob(vec![0, 255, 1])
                ],
                vec![SqlValue::Null, SqlValue::Null, SqlValue::Null, SqlValue::Null],
            ]
        );
    }

    /// A value that does not fit its parameter is a typed error, never stored garbage.
    pub async fn mismatched_parameters_are_errors(store: AnyStore) {
        setup(&store).await;
        let err = store
            .in_transaction(|tx| {
                tx.execute(
                    "INSERT INTO ledger (id, amount) VALUES ($1, $2)",
                    &[SqlValue::Text("x".into()), SqlValue::Blob(vec![1])],
                )
            })
            .await;
        // SQLite stores what it is given (dynamic typing); PostgreSQL refuses.
        if let Err(e) = err {
            assert_eq!(e.code(), ErrorCode::Storage, "{e}");
            assert_eq!(count(&store).await, 0);
        }
        let rows = store
            .in_transaction(|tx| {
                tx.execute(
                    "SELECT CAST($1 AS TEXT), CAST($2 AS TEXT)",
                    &[SqlValue::Integer(7), SqlValue::Real(1.5)],
                )
            })
            .await
            .unwrap();
        assert_eq!(rows, vec![vec![SqlValue::Text("7".into()), SqlValue::Text("1.5".into())]]);
    }

    /// The handler cannot end oncely's transaction: COMMIT is refused and the claim and the
    /// handler's writes still commit or vanish together.
    pub async fn handler_cannot_commit(store: AnyStore) {
        let (inbox, _outbox) = setup(&store).await;
        let err = inbox
            .process_in_transaction(Request::new("pay-3"), |tx| {
                tx.execute("INSERT INTO ledger (id, amount) VALUES ('pay-3', 1)", &[])
                    .map_err(|e| Failure::retryable(e.to_string()))?;
                tx.execute("COMMIT", &[]).map_err(|e| Failure::retryable(e.to_string()))?;
                Ok(Vec::new())
            })
            .await
            .unwrap_err();
        assert!(matches!(err, ProcessError::Handler(_)), "{err:?}");
        assert_eq!(count(&store).await, 0);
        assert!(inbox.get("pay-3").await.unwrap().is_none());
    }

    /// An outbox of another store is refused, and nothing is written.
    pub async fn outbox_of_another_store_is_refused(store: AnyStore) {
        setup(&store).await;
        let other = Outbox::open(
            AnyStore::open("sqlite::memory:", oncely::SqliteConfig::default()).unwrap(),
            OutboxConfig::new("receipts"),
        )
        .unwrap();
        let err = store
            .in_transaction(move |tx| {
                tx.execute("INSERT INTO ledger (id, amount) VALUES ('b', 1)", &[])?;
                tx.enqueue(&other, vec![NewMessage::new("x").id("m-b")])
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidArgument);
        assert_eq!(count(&store).await, 0);
    }
}

suite_tests!(any_sqlite, support::any_sqlite();
    rows_messages_and_mark_commit_together, handler_error_leaves_nothing, failed_work_is_rolled_back,
    values_round_trip, handler_cannot_commit, outbox_of_another_store_is_refused, mismatched_parameters_are_errors);

suite_tests!(any_sqlite_in_memory, (AnyStore::open("sqlite::memory:", oncely::SqliteConfig::default()).unwrap(), ());
    rows_messages_and_mark_commit_together, handler_error_leaves_nothing, failed_work_is_rolled_back,
    values_round_trip, handler_cannot_commit, outbox_of_another_store_is_refused, mismatched_parameters_are_errors);

pg_suite_tests!(any_postgres, support::any_postgres();
    rows_messages_and_mark_commit_together, handler_error_leaves_nothing, failed_work_is_rolled_back,
    values_round_trip, handler_cannot_commit, outbox_of_another_store_is_refused, mismatched_parameters_are_errors);

/// The memory store has no transactions to join: a typed refusal, nothing run.
#[tokio::test]
async fn memory_store_refuses_transactions() {
    let store = AnyStore::open("memory", oncely::SqliteConfig::default()).unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let err = store
        .in_transaction(move |_| {
            r.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument);
    let inbox = Inbox::open(store, InboxConfig::new("s")).unwrap();
    let err = inbox
        .process_in_transaction(Request::new("a"), |_| Ok::<_, Failure<String>>(Vec::new()))
        .await
        .unwrap_err();
    assert!(matches!(err, ProcessError::Oncely(ref e) if e.code() == ErrorCode::InvalidArgument), "{err:?}");
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert!(inbox.get("a").await.unwrap().is_none());
}
