//! Bad input gets a typed error with a clear message and changes nothing (docs/design.md §6).

use std::sync::Arc;
use std::time::Duration;

use oncely::backoff::{Backoff, Jitter, RetryPolicy};
use oncely::clock::duration_from_secs_f64;
use oncely::{ErrorCode, Inbox, InboxConfig, MemoryStore, Request, SqliteConfig, SqliteStore};

#[test]
fn durations_from_bindings_refuse_nan_negative_and_infinite() {
    for (v, says) in
        [(f64::NAN, "finite"), (-1.0, "negative"), (f64::INFINITY, "finite"), (1e30, "too large")]
    {
        let e = duration_from_secs_f64("lease", v).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
        assert!(e.to_string().contains(says) && e.to_string().contains("lease"), "{v}: {e}");
    }
    assert_eq!(duration_from_secs_f64("lease", 1.5).unwrap(), Duration::from_millis(1500));
}

#[test]
fn inbox_configuration_is_checked() {
    let cases: Vec<(InboxConfig, &str)> = vec![
        (InboxConfig::new("s").retention(Duration::ZERO), "retention"),
        (InboxConfig::new("s").lease(Duration::ZERO), "lease"),
        (InboxConfig::new("s").lease(Duration::from_micros(10)), "lease"),
        (InboxConfig::new(""), "scope"),
        (InboxConfig::new("x".repeat(129)), "scope"),
        (InboxConfig::new("a\0b"), "scope"),
    ];
    for (cfg, field) in cases {
        let e = Inbox::open(Arc::new(MemoryStore::new()), cfg).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
        assert!(e.to_string().contains(field), "{e}");
    }
}

#[test]
fn retry_policy_is_checked() {
    let zero_attempts = RetryPolicy { max_attempts: 0, ..RetryPolicy::default() };
    assert!(zero_attempts.validate().unwrap_err().to_string().contains("max_attempts"));
    let zero_delay = RetryPolicy {
        backoff: Backoff::Fixed { delay: Duration::ZERO },
        jitter: Jitter::None,
        ..RetryPolicy::default()
    };
    assert_eq!(zero_delay.validate().unwrap_err().code(), ErrorCode::InvalidArgument);
    let nan_factor = RetryPolicy {
        backoff: Backoff::Exponential {
            initial: Duration::from_millis(1),
            factor: f64::NAN,
            max: Duration::from_secs(1),
        },
        ..RetryPolicy::default()
    };
    assert!(nan_factor.validate().unwrap_err().to_string().contains("factor"));
    let bad_json = r#"{"max_attempts": 0, "backoff": {"kind": "fixed", "delay_ms": 10}, "jitter": "none"}"#;
    assert!(serde_json::from_str::<RetryPolicy>(bad_json).is_err());
}

#[tokio::test]
async fn bad_ids_write_nothing_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let inbox =
        Inbox::open(SqliteStore::open(&path, SqliteConfig::default()).unwrap(), InboxConfig::new("s"))
            .unwrap();
    for id in [String::new(), "é".repeat(257), "nul\0".into()] {
        assert_eq!(inbox.begin(Request::new(id)).await.unwrap_err().code(), ErrorCode::InvalidArgument);
    }
    drop(inbox);
    let conn = oncely::rusqlite::Connection::open(&path).unwrap();
    let rows: i64 = conn.query_row("SELECT count(*) FROM oncely_inbox", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 0);
}

#[test]
fn bad_mode_names_are_refused() {
    let e = "exactly-twice".parse::<oncely::Mode>().unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    assert!(e.to_string().contains("exactly-twice"));
    assert_eq!("exactly-once".parse::<oncely::Mode>().unwrap(), oncely::Mode::ExactlyOnce);
}

#[test]
fn zero_max_batch_is_refused() {
    let e =
        SqliteStore::open(":memory:", SqliteConfig { max_batch: 0, ..SqliteConfig::default() }).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
}

#[test]
fn every_code_has_a_stable_distinct_name() {
    let names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(
        names,
        [
            "invalid_argument",
            "conflict",
            "in_progress",
            "lease_lost",
            "storage",
            "corrupt_store",
            "closed",
            "timeout"
        ]
    );
}

#[test]
fn store_locations_are_checked() {
    for bad in ["", "sqlite:", "sqlite://"] {
        let e = oncely::AnyStore::open(bad, SqliteConfig::default()).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidArgument, "{bad:?}");
    }
    let e = oncely::AnyStore::open("/nonexistent-dir-for-oncely/x.db", SqliteConfig::default()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Storage);
}

/// Names parsed from caller text (a mode, an ordering, a poison policy) quote the caller's text
/// by a bounded prefix: a 20 MB mode string makes a short error, not a 20 MB one.
#[test]
fn huge_names_make_short_errors() {
    let huge = "x".repeat(20 << 20);
    let mode = huge.parse::<oncely::Mode>().unwrap_err();
    let ordering = oncely::outbox::Ordering::from_names(Some(&huge), None, None).unwrap_err();
    let poison = oncely::outbox::Ordering::from_names(Some("fifo_per_key"), Some(&huge), None).unwrap_err();
    for e in [mode, ordering, poison] {
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
        assert!(e.to_string().len() < 300, "{} bytes", e.to_string().len());
    }
}

/// The largest lease a caller can ask for is answered, not a panic: a FIFO outbox pages through
/// `4 × max` candidates, which overflowed for `usize::MAX` (found by tests/hostile_isolated.rs).
#[test]
fn lease_of_usize_max_is_answered() {
    let fifo = oncely::outbox::Ordering::from_names(Some("fifo_per_key"), None, None).unwrap();
    let outbox =
        oncely::Outbox::open(Arc::new(MemoryStore::new()), oncely::OutboxConfig::new("q").ordering(fifo))
            .unwrap();
    pollster::block_on(outbox.enqueue(oncely::NewMessage::new(b"p".to_vec()).key("k"))).unwrap();
    assert_eq!(pollster::block_on(outbox.lease(usize::MAX)).unwrap().len(), 1);
}

/// A message over `max_result_bytes` cannot be kept for replay: `process` gives the claim back
/// (so the id is not left claimed by a caller that has gone) and answers the limit's error.
#[test]
fn an_oversized_result_releases_the_claim() {
    let inbox = Inbox::open(Arc::new(MemoryStore::new()), InboxConfig::new("s")).unwrap();
    let r =
        pollster::block_on(inbox.process(Request::new("m"), || async {
            Ok::<_, oncely::Failure<String>>(vec![0u8; (1 << 20) + 1])
        }));
    match r {
        Err(oncely::ProcessError::Oncely(e)) => assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(pollster::block_on(inbox.get("m")).unwrap().is_none(), "the claim was left behind");
}

/// A manual clock moved past the end of time stops there instead of wrapping into the past.
#[test]
fn a_manual_clock_never_wraps() {
    use oncely::Clock;
    let clock = oncely::ManualClock::new(oncely::Timestamp(i64::MAX - 10));
    clock.advance(Duration::from_millis(u64::MAX));
    assert_eq!(clock.now(), oncely::Timestamp(i64::MAX));
}

/// Found by the Kotlin hostile suite: a busy timeout SQLite cannot take (over i32::MAX ms) is a
/// typed error, not a panic in rusqlite; a huge SQL statement or PostgreSQL URL makes a short
/// error, not one that repeats it whole.
#[test]
fn huge_sqlite_and_postgres_inputs_make_short_typed_errors() {
    let cfg =
        SqliteConfig { busy_timeout: Duration::from_millis(u64::from(u32::MAX)), ..SqliteConfig::default() };
    let e = SqliteStore::open(":memory:", cfg).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    assert_eq!(
        e.to_string(),
        "invalid argument `busy_timeout`: must be a whole number from 0 to 2147483647, got 4294967295"
    );
    let store = oncely::AnyStore::open("sqlite::memory:", SqliteConfig::default()).unwrap();
    // A bad statement, a statement that is one huge token (SQLite's message repeats the token),
    // and a huge table name (its message repeats the name): each a short storage error.
    let x = "x".repeat(4 << 20);
    for huge in [format!("SELEC {x}"), x.clone(), format!("SELECT * FROM {x}")] {
        let e = pollster::block_on(oncely::sql::TransactionalStore::in_transaction(&store, move |tx| {
            tx.execute(&huge, &[]).map(|_| ())
        }))
        .unwrap_err();
        assert_eq!(e.code(), ErrorCode::Storage);
        assert!(e.to_string().len() < 400, "{} bytes", e.to_string().len());
    }
    let url = format!("postgres://h/{}?x=\u{0}{}", "d".repeat(4 << 20), "y");
    let e = oncely::PostgresStore::schema_url(&url, "s").unwrap_err();
    assert!(e.to_string().len() < 400, "{} bytes", e.to_string().len());
}
