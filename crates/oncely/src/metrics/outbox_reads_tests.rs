//! The outbox's read-only queries on every store — [`OutboxStore::queue_names`] and the counts
//! of `stats` (by state, and the oldest pending message) — in the store suite's style: one
//! generic test, run against memory, SQLite (file and `:memory:`), PostgreSQL (when
//! `ONCELY_POSTGRES_URL` is set; required under CI) and [`AnyStore`].

use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "postgres")]
use super::test_stores::postgres;
use super::test_stores::rt;
use crate::clock::{ManualClock, Timestamp};
use crate::outbox::{NewMessage, Outbox, OutboxConfig};
use crate::store::{AnyStore, MemoryStore, OutboxStore, SqliteConfig, SqliteStore};

const T0: Timestamp = Timestamp(1_700_000_000_000);

async fn names_and_counts<S: OutboxStore + Clone>(store: S) {
    let clock = ManualClock::new(T0);
    let open = |q: &str| {
        Outbox::with_clock(
            store.clone(),
            OutboxConfig::new(q).lease(Duration::from_secs(30)),
            Arc::new(clock.clone()),
        )
        .unwrap()
    };
    assert_eq!(store.queue_names().await.unwrap(), Vec::<String>::new());
    let a = open("a");
    a.enqueue(NewMessage::new("d").id("d")).await.unwrap();
    a.lease(1).await.unwrap()[0].fail("no").await.unwrap(); // dead, created at T0
    clock.advance(Duration::from_secs(1));
    a.enqueue(NewMessage::new("l").id("l")).await.unwrap();
    let held = a.lease(1).await.unwrap(); // leased, created at T0 + 1 s
    assert_eq!(held[0].id(), "l");
    clock.advance(Duration::from_secs(1));
    a.enqueue(NewMessage::new("r").id("r")).await.unwrap();
    a.enqueue(NewMessage::new("s").id("s").delay(Duration::from_secs(3600))).await.unwrap();
    let b = open("b");
    b.enqueue(NewMessage::new("x").id("x")).await.unwrap();
    b.lease(1).await.unwrap()[0].ack().await.unwrap(); // drained, but counted
    let _ = open("c"); // opened, never used

    assert_eq!(store.queue_names().await.unwrap(), ["a", "b"]);
    let s = a.stats().await.unwrap().queue;
    assert_eq!((s.ready, s.scheduled, s.leased, s.dead), (1, 1, 1, 1));
    assert_eq!(s.oldest_created_at, Some(Timestamp(T0.0 + 1000)), "dead letters are not pending");
    // A lease that ran out counts as ready.
    clock.advance(Duration::from_secs(60));
    let s = a.stats().await.unwrap().queue;
    assert_eq!((s.ready, s.scheduled, s.leased, s.dead), (2, 1, 0, 1));
    assert_eq!(s.oldest_created_at, Some(Timestamp(T0.0 + 1000)));
    let s = b.stats().await.unwrap().queue;
    assert_eq!((s.ready, s.scheduled, s.leased, s.dead, s.oldest_created_at), (0, 0, 0, 0, None));
    assert_eq!(s.counts.delivered, 1);
}

#[test]
fn memory() {
    rt().block_on(names_and_counts(Arc::new(MemoryStore::new())));
}

#[test]
fn sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("s.db"), SqliteConfig::default()).unwrap();
    rt().block_on(names_and_counts(store));
}

#[test]
fn sqlite_in_memory_through_any_store() {
    rt().block_on(names_and_counts(AnyStore::open("sqlite::memory:", SqliteConfig::default()).unwrap()));
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_through_any_store() {
    let Some(store) = postgres("t_reads") else { return };
    rt().block_on(names_and_counts(store));
}
