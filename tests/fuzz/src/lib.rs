//! The bodies of oncely's fuzz targets. Each takes arbitrary bytes and must return without
//! panicking, whatever the bytes; a target that finds a panic has found a bug. `fuzz/` runs them
//! under libFuzzer (`make fuzz`, and a short run in `make test`); `tests/replay.rs` runs every
//! committed corpus seed and crash input through them on stable Rust as regression tests.
//!
//! - [`options`]: the option forms read from JSON (the retry policy) and store locations;
//! - [`scenario`]: the conformance scenario reader;
//! - [`store_file`]: the schema check, on a file of arbitrary bytes opened as a store;
//! - [`records`]: the store decoders, on an oncely store whose rows hold arbitrary column values.

use oncely::backoff::RetryPolicy;
use oncely::{
    AnyStore, Inbox, InboxConfig, NewMessage, Outbox, OutboxConfig, Request, SqliteConfig, SqliteStore,
};

/// The targets by name, as `fuzz/fuzz_targets/*.rs` and the replay test call them.
pub const TARGETS: &[(&str, fn(&[u8]))] =
    &[("options", options), ("scenario", scenario), ("store_file", store_file), ("records", records)];

/// A retry policy parsed from JSON is either refused or valid, and a valid one computes a
/// schedule; a location string's form is accepted or refused (never opened: a run must not
/// create files named by its input); UTF-16 decodes and round-trips, or is refused.
pub fn options(data: &[u8]) {
    if let Ok(policy) = serde_json::from_slice::<RetryPolicy>(data) {
        assert!(policy.validate().is_ok(), "a deserialized policy must be valid: {policy:?}");
        let n = policy.max_attempts.min(64);
        let schedule = policy.schedule(u64::from(data.len() as u32), n);
        assert!(schedule.len() <= n as usize);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        // The form check only: opening a location the check accepts would create a file.
        if AnyStore::check_location(text).is_ok() && text == "memory" {
            let _ = AnyStore::open(text, SqliteConfig::default());
        }
        let _ = oncely::text::quote(text);
    }
    let units: Vec<u16> = data.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    if let Ok(s) = oncely::text::from_utf16("id", &units) {
        assert_eq!(s.encode_utf16().collect::<Vec<_>>(), units, "UTF-16 must round-trip");
    }
}

/// The conformance scenario reader accepts or refuses any bytes without panicking.
pub fn scenario(data: &[u8]) {
    let _ = serde_json::from_slice::<oncely_conformance::Scenario>(data);
}

/// Arbitrary bytes as a store file: opened (and then used) or refused with a typed error.
pub fn store_file(data: &[u8]) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("s.db");
    std::fs::write(&path, data).expect("write the file");
    if let Ok(store) = SqliteStore::open(&path, SqliteConfig::default()) {
        exercise(store);
    }
}

/// Runs the calls that read every column of both tables on `store`; each may fail, none may panic.
fn exercise(store: SqliteStore) {
    pollster::block_on(async {
        if let Ok(inbox) = Inbox::open(store.clone(), InboxConfig::new("s")) {
            let _ = inbox.get("a").await;
            let _ = inbox.begin(Request::new("a").payload(b"p")).await;
            let _ = inbox.purge_expired().await;
        }
        if let Ok(outbox) = Outbox::open(store, OutboxConfig::new("q")) {
            let _ = outbox.get("a").await;
            let _ = outbox.stats().await;
            let _ = outbox.dead_letters(None, 10).await;
            if let Ok(leased) = outbox.lease(4).await {
                for d in leased {
                    let _ = d.ack().await;
                }
            }
            let _ = outbox.enqueue(NewMessage::new("x").id("a")).await;
        }
    });
}

/// Reads a little-endian i64 from `data` at `*at` (zero past the end) and moves on.
fn take_i64(data: &[u8], at: &mut usize) -> i64 {
    let mut b = [0u8; 8];
    for (i, slot) in b.iter_mut().enumerate() {
        *slot = data.get(*at + i).copied().unwrap_or(0);
    }
    *at += 8;
    i64::from_le_bytes(b)
}

/// An oncely store whose inbox and outbox rows hold arbitrary column values (as a damaged or
/// hand-edited file could): every read decodes them into a record or refuses with a typed error.
pub fn records(data: &[u8]) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("s.db");
    drop(SqliteStore::open(&path, SqliteConfig::default()).expect("a new store"));
    let mut at = 0;
    let ints: Vec<i64> = (0..12).map(|_| take_i64(data, &mut at)).collect();
    let rest = data.get(at..).unwrap_or_default();
    let (blob, text) = rest.split_at(rest.len() / 2);
    let text = String::from_utf8_lossy(text).into_owned();
    {
        let conn = oncely::rusqlite::Connection::open(&path).expect("open the file");
        let blob_or_null = |flag: i64| if flag & 1 == 1 { Some(blob.to_vec()) } else { None };
        conn.execute(
            "INSERT INTO oncely_inbox (scope, id, fingerprint, token, state, lease_until, result, expires_at)
             VALUES ('s', 'a', ?1, ?2, ?3, ?4, ?5, ?6)",
            oncely::rusqlite::params![
                blob_or_null(ints[0]),
                ints[1],
                ints[2],
                ints[3],
                blob_or_null(ints[0] >> 1),
                ints[4]
            ],
        )
        .expect("insert an inbox row");
        conn.execute(
            "INSERT INTO oncely_outbox (queue, id, seq, key, state, token, lease_until, dead_reason, available_at,
               created_at, attempts, first_attempt_at, last_delay_ms, last_error, payload, headers)
             VALUES ('q', 'a', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            oncely::rusqlite::params![
                ints[5],
                (ints[6] & 1 == 1).then(|| text.clone()),
                ints[7],
                ints[8],
                ints[9],
                (ints[6] & 2 == 2).then(|| text.clone()),
                ints[10],
                ints[11],
                ints[2],
                (ints[6] & 4 == 4).then_some(ints[3]),
                (ints[6] & 8 == 8).then_some(ints[4]),
                (ints[6] & 16 == 16).then(|| text.clone()),
                blob,
                (ints[6] & 32 == 32).then(|| text.clone()),
            ],
        )
        .expect("insert an outbox row");
    }
    let store = SqliteStore::open(&path, SqliteConfig::default()).expect("the store still opens");
    exercise(store);
}
