//! [`InboxStore::scope_counts`] (what `inbox_scopes` reads) on every store, in the store suite's
//! style: one generic test, run against memory, SQLite (file and `:memory:`), PostgreSQL (when
//! `ONCELY_POSTGRES_URL` is set; required under CI) and [`AnyStore`].

use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "postgres")]
use super::test_stores::postgres;
use super::test_stores::rt;
use crate::clock::{Clock, ManualClock, Timestamp};
use crate::inbox::{Failure, Inbox, InboxConfig, Request};
use crate::records::{CachePolicy, ScopeCounts};
use crate::store::{AnyStore, InboxStore, MemoryStore, SqliteConfig, SqliteStore};
use crate::{Begin, Mode};

const T0: Timestamp = Timestamp(1_700_000_000_000);

fn inbox<S: InboxStore>(store: S, cfg: InboxConfig, clock: &ManualClock) -> Inbox<S> {
    Inbox::with_clock(store, cfg.recent_capacity(0), Arc::new(clock.clone())).unwrap()
}

/// Fills three scopes with records of every state, some expiring, and checks the counts before
/// and after the expiry and after garbage collection.
async fn counts_every_state_per_scope<S: InboxStore + Clone>(store: S) {
    let clock = ManualClock::new(T0);
    assert_eq!(store.scope_counts(T0).await.unwrap(), vec![]);
    let long =
        InboxConfig::new("payments").lease(Duration::from_secs(10)).retention(Duration::from_secs(3600));
    let payments = inbox(store.clone(), long.cache_policy(CachePolicy::SuccessAndFailure), &clock);
    for i in 0..3 {
        let Begin::Claimed(t) = payments.begin(Request::new(format!("ok{i}"))).await.unwrap() else {
            panic!()
        };
        t.finish(b"done".to_vec()).await.unwrap();
    }
    let fail = || async { Err::<Vec<u8>, _>(Failure { error: "declined".to_string(), permanent: true }) };
    assert!(payments.process(Request::new("bad"), fail).await.is_err());
    let Begin::Claimed(_held) = payments.begin(Request::new("running")).await.unwrap() else { panic!() };

    let short = InboxConfig::new("emails").mode(Mode::AtMostOnce).retention(Duration::from_secs(60));
    let emails = inbox(store.clone(), short, &clock);
    for i in 0..2 {
        let Begin::Claimed(t) = emails.begin(Request::new(format!("e{i}"))).await.unwrap() else { panic!() };
        t.release().await.unwrap(); // at-most-once: the mark stays (seen)
    }
    // A scope name that sorts first and needs quoting nowhere.
    let odd = inbox(store.clone(), InboxConfig::new("a \"quoted\" scope"), &clock);
    let Begin::Claimed(t) = odd.begin(Request::new("x")).await.unwrap() else { panic!() };
    t.finish(Vec::new()).await.unwrap();

    let now = clock.now();
    let want = vec![
        ScopeCounts { scope: "a \"quoted\" scope".into(), succeeded: 1, ..Default::default() },
        ScopeCounts { scope: "emails".into(), seen: 2, ..Default::default() },
        ScopeCounts {
            scope: "payments".into(),
            in_progress: 1,
            succeeded: 3,
            failed: 1,
            ..Default::default()
        },
    ];
    assert_eq!(store.scope_counts(now).await.unwrap(), want);
    assert_eq!(want[2].completed(), 4);
    assert_eq!(want[2].total(), 5);

    // Past the emails' retention (60 s) and the default one, but within the payments' hour.
    let later = Timestamp(now.0 + 24 * 3600 * 1000 + 1);
    let counts = store.scope_counts(Timestamp(now.0 + 61_000)).await.unwrap();
    assert_eq!(counts[1], ScopeCounts { scope: "emails".into(), expired: 2, ..Default::default() });
    assert_eq!(counts[2], want[2], "payments live on");
    let counts = store.scope_counts(later).await.unwrap();
    assert!(counts.iter().all(|c| c.total() == c.expired), "{counts:?}");
    // Collected records are no longer counted; reading changed nothing before that.
    store.purge_expired(later, 1000).await.unwrap();
    assert_eq!(store.scope_counts(later).await.unwrap(), vec![]);
}

#[test]
fn memory() {
    rt().block_on(counts_every_state_per_scope(Arc::new(MemoryStore::new())));
}

#[test]
fn sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("s.db"), SqliteConfig::default()).unwrap();
    rt().block_on(counts_every_state_per_scope(store));
}

#[test]
fn sqlite_in_memory_through_any_store() {
    let store = AnyStore::open("sqlite::memory:", SqliteConfig::default()).unwrap();
    rt().block_on(counts_every_state_per_scope(store));
}

#[test]
fn any_store_memory() {
    let store = AnyStore::open("memory", SqliteConfig::default()).unwrap();
    rt().block_on(counts_every_state_per_scope(store));
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_through_any_store() {
    let Some(store) = postgres("t_scopes") else { return };
    rt().block_on(counts_every_state_per_scope(store));
}
