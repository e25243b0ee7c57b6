//! The store behaviour suite: written once, run against every store backend.
//!
//! Each test is a generic async function over `InboxStore`; `store_suite!` instantiates all of
//! them for one backend. A new backend (PostgreSQL) joins by adding one `store_suite!` line.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

mod support;
use support::*;

use oncely::inbox::{RecordState, Status};
use oncely::{
    Begin, CachePolicy, ErrorCode, Failure, Inbox, InboxConfig, InboxStore, ManualClock, Mode, ProcessError,
    Request, Synchronous, Timestamp,
};

const T0: Timestamp = Timestamp(1_700_000_000_000);

fn config(mode: Mode) -> InboxConfig {
    // The in-memory front is off so that every answer comes from the store under test.
    InboxConfig::new("suite").mode(mode).lease(Duration::from_secs(10)).recent_capacity(0)
}

fn inbox<S: InboxStore>(store: S, cfg: InboxConfig) -> (Inbox<S>, ManualClock) {
    let clock = ManualClock::new(T0);
    (Inbox::with_clock(store, cfg, Arc::new(clock.clone())).unwrap(), clock)
}

fn claimed<S: InboxStore>(b: Begin<S>) -> oncely::Ticket<S> {
    match b {
        Begin::Claimed(t) => t,
        other => panic!("expected a claim, got {other:?}"),
    }
}

fn replayed<S: InboxStore>(b: Begin<S>) -> oncely::Replay {
    match b {
        Begin::Duplicate(r) => r,
        other => panic!("expected a duplicate, got {other:?}"),
    }
}

mod suite {
    use super::*;

    pub async fn exactly_once_claim_finish_duplicate<S: InboxStore>(store: S) {
        let (inbox, _) = inbox(store, config(Mode::ExactlyOnce));
        let t = claimed(inbox.begin(Request::new("a").payload(b"p")).await.unwrap());
        assert!(t.token() > 0);
        assert!(matches!(
            inbox.begin(Request::new("a").payload(b"p")).await.unwrap(),
            Begin::InProgress { .. }
        ));
        t.finish(b"r".to_vec()).await.unwrap();
        let r = replayed(inbox.begin(Request::new("a").payload(b"p")).await.unwrap());
        assert_eq!((r.status, r.result.as_deref()), (Status::Succeeded, Some(&b"r"[..])));
        // Finishing again with the same ticket is refused: the claim is over.
        assert_eq!(t.finish(b"again".to_vec()).await.unwrap_err().code(), ErrorCode::LeaseLost);
        let rec = inbox.get("a").await.unwrap().unwrap();
        assert_eq!(
            rec.state,
            RecordState::Completed(oncely::inbox::StoredOutcome {
                status: Status::Succeeded,
                result: Some(b"r".to_vec())
            })
        );
    }

    pub async fn lease_expiry_and_fencing<S: InboxStore>(store: S) {
        let (inbox, clock) = inbox(store, config(Mode::ExactlyOnce));
        let first = claimed(inbox.begin(Request::new("a")).await.unwrap());
        clock.advance(Duration::from_millis(9_999));
        assert!(matches!(inbox.begin(Request::new("a")).await.unwrap(), Begin::InProgress { .. }));
        clock.advance(Duration::from_millis(1));
        let second = claimed(inbox.begin(Request::new("a")).await.unwrap());
        assert!(second.token() > first.token(), "tokens must grow");
        // The first worker's lease is gone: neither finish nor release may touch the record.
        assert_eq!(first.finish(b"stale".to_vec()).await.unwrap_err().code(), ErrorCode::LeaseLost);
        assert_eq!(first.release().await.unwrap_err().code(), ErrorCode::LeaseLost);
        second.finish(b"fresh".to_vec()).await.unwrap();
        let r = replayed(inbox.begin(Request::new("a")).await.unwrap());
        assert_eq!(r.result.as_deref(), Some(&b"fresh"[..]));
    }

    pub async fn expired_lease_still_finishes_if_nobody_took_over<S: InboxStore>(store: S) {
        let (inbox, clock) = inbox(store, config(Mode::ExactlyOnce));
        let t = claimed(inbox.begin(Request::new("a")).await.unwrap());
        clock.advance(Duration::from_secs(60));
        t.finish(b"late".to_vec()).await.unwrap();
        assert_eq!(
            replayed(inbox.begin(Request::new("a")).await.unwrap()).result.as_deref(),
            Some(&b"late"[..])
        );
    }

    pub async fn release_gives_the_id_back<S: InboxStore>(store: S) {
        let (inbox, _) = inbox(store, config(Mode::ExactlyOnce));
        let t = claimed(inbox.begin(Request::new("a")).await.unwrap());
        t.release().await.unwrap();
        assert!(inbox.get("a").await.unwrap().is_none());
        let again = claimed(inbox.begin(Request::new("a")).await.unwrap());
        assert!(again.token() > t.token());
    }

    pub async fn fingerprint_conflict<S: InboxStore>(store: S) {
        let (inbox, _) = inbox(store, config(Mode::ExactlyOnce));
        let t = claimed(inbox.begin(Request::new("a").payload(b"one")).await.unwrap());
        assert!(matches!(inbox.begin(Request::new("a").payload(b"two")).await.unwrap(), Begin::Conflict));
        t.finish(b"r".to_vec()).await.unwrap();
        assert!(matches!(inbox.begin(Request::new("a").payload(b"two")).await.unwrap(), Begin::Conflict));
        // Without a payload there is nothing to compare: a plain duplicate.
        replayed(inbox.begin(Request::new("a")).await.unwrap());
    }

    pub async fn at_most_once_marks_before_the_effect<S: InboxStore>(store: S) {
        let (inbox, _) = inbox(store, config(Mode::AtMostOnce));
        let t = claimed(inbox.begin(Request::new("a")).await.unwrap());
        // The mark exists before the handler has done anything.
        let rec = inbox.get("a").await.unwrap().expect("at-most-once writes the mark at begin");
        assert!(matches!(rec.state, RecordState::Completed(ref o) if o.status == Status::Seen));
        assert_eq!(replayed(inbox.begin(Request::new("a")).await.unwrap()).status, Status::Seen);
        // A failed handler gives nothing back: the id is never delivered again.
        t.release().await.unwrap();
        assert_eq!(replayed(inbox.begin(Request::new("a")).await.unwrap()).status, Status::Seen);
        t.finish(b"r".to_vec()).await.unwrap();
        assert_eq!(
            replayed(inbox.begin(Request::new("a")).await.unwrap()).result.as_deref(),
            Some(&b"r"[..])
        );
    }

    pub async fn at_least_once_marks_after_the_effect<S: InboxStore>(store: S) {
        let (inbox, _) = inbox(store, config(Mode::AtLeastOnce));
        let t1 = claimed(inbox.begin(Request::new("a")).await.unwrap());
        assert_eq!(t1.token(), 0);
        assert!(inbox.get("a").await.unwrap().is_none(), "nothing is written before the effect");
        // A concurrent duplicate is delivered too (duplicates, never a loss).
        let t2 = claimed(inbox.begin(Request::new("a")).await.unwrap());
        t1.finish(b"one".to_vec()).await.unwrap();
        t2.finish(b"two".to_vec()).await.unwrap(); // first completion stands
        assert_eq!(
            replayed(inbox.begin(Request::new("a")).await.unwrap()).result.as_deref(),
            Some(&b"one"[..])
        );
    }

    pub async fn retention_expiry_and_purge<S: InboxStore>(store: S) {
        let cfg = config(Mode::ExactlyOnce).retention(Duration::from_secs(100));
        let (inbox, clock) = inbox(store, cfg);
        claimed(inbox.begin(Request::new("a")).await.unwrap()).finish(b"r".to_vec()).await.unwrap();
        clock.advance(Duration::from_millis(99_999));
        replayed(inbox.begin(Request::new("a")).await.unwrap());
        clock.advance(Duration::from_millis(1));
        assert_eq!(inbox.purge_expired().await.unwrap(), 1);
        assert!(inbox.get("a").await.unwrap().is_none());
        claimed(inbox.begin(Request::new("a")).await.unwrap());
    }

    pub async fn expired_records_are_claimable_before_collection<S: InboxStore>(store: S) {
        let cfg = config(Mode::ExactlyOnce).retention(Duration::from_secs(100));
        let (inbox, clock) = inbox(store, cfg);
        let t = claimed(inbox.begin(Request::new("a")).await.unwrap());
        t.finish(b"r".to_vec()).await.unwrap();
        clock.advance(Duration::from_secs(100));
        let again = claimed(inbox.begin(Request::new("a")).await.unwrap());
        assert!(again.token() > t.token());
    }

    pub async fn garbage_is_collected_automatically<S: InboxStore>(store: S) {
        let cfg = config(Mode::ExactlyOnce).retention(Duration::from_secs(100));
        let (inbox, clock) = inbox(store, cfg);
        claimed(inbox.begin(Request::new("old")).await.unwrap()).finish(b"r".to_vec()).await.unwrap();
        clock.advance(Duration::from_secs(120)); // past retention and past the 60 s gc interval
        claimed(inbox.begin(Request::new("new")).await.unwrap());
        assert!(
            inbox.get("old").await.unwrap().is_none(),
            "a call after gc_interval collects expired records"
        );
    }

    pub async fn tokens_grow_across_collection<S: InboxStore>(store: S) {
        let cfg = config(Mode::ExactlyOnce).retention(Duration::from_secs(1));
        let (inbox, clock) = inbox(store, cfg);
        let t1 = claimed(inbox.begin(Request::new("a")).await.unwrap());
        clock.advance(Duration::from_secs(30));
        assert_eq!(inbox.purge_expired().await.unwrap(), 1);
        let t2 = claimed(inbox.begin(Request::new("a")).await.unwrap());
        assert!(t2.token() > t1.token());
        // The zombie from before the collection cannot complete over the new claim.
        assert_eq!(t1.finish(b"zombie".to_vec()).await.unwrap_err().code(), ErrorCode::LeaseLost);
    }

    pub async fn scopes_do_not_collide<S: InboxStore + Clone>(store: S) {
        let clock = Arc::new(ManualClock::new(T0));
        let a =
            Inbox::with_clock(store.clone(), InboxConfig::new("tenant-a").recent_capacity(0), clock.clone())
                .unwrap();
        let b = Inbox::with_clock(store, InboxConfig::new("tenant-b").recent_capacity(0), clock).unwrap();
        claimed(a.begin(Request::new("x")).await.unwrap()).finish(b"a".to_vec()).await.unwrap();
        claimed(b.begin(Request::new("x")).await.unwrap()).finish(b"b".to_vec()).await.unwrap();
        assert_eq!(replayed(a.begin(Request::new("x")).await.unwrap()).result.as_deref(), Some(&b"a"[..]));
        assert_eq!(replayed(b.begin(Request::new("x")).await.unwrap()).result.as_deref(), Some(&b"b"[..]));
    }

    pub async fn batch_claim_and_complete<S: InboxStore>(store: S) {
        let (inbox, _) = inbox(store, config(Mode::ExactlyOnce));
        claimed(inbox.begin(Request::new("done")).await.unwrap()).finish(b"d".to_vec()).await.unwrap();
        let answers =
            inbox.begin_many(vec![Request::new("x"), Request::new("done"), Request::new("y")]).await.unwrap();
        let mut tickets = Vec::new();
        for b in answers {
            match b {
                Begin::Claimed(t) => tickets.push(t),
                Begin::Duplicate(r) => assert_eq!(r.result.as_deref(), Some(&b"d"[..])),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(tickets.len(), 2);
        let items = tickets.iter().map(|t| (t, t.id().as_bytes().to_vec())).collect();
        for r in inbox.finish_many(items).await.unwrap() {
            r.unwrap();
        }
        assert_eq!(
            replayed(inbox.begin(Request::new("y")).await.unwrap()).result.as_deref(),
            Some(&b"y"[..])
        );
        // One bad request fails the whole batch before anything is written.
        let err = inbox.begin_many(vec![Request::new("z"), Request::new("")]).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidArgument);
        assert!(inbox.get("z").await.unwrap().is_none());
    }

    pub async fn process_runs_the_handler_once<S: InboxStore>(store: S) {
        let (inbox, _) = inbox(store, config(Mode::ExactlyOnce));
        let runs = AtomicUsize::new(0);
        for _ in 0..3 {
            let p = inbox
                .process(Request::new("a").payload(b"p"), || async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, Failure<String>>(b"r".to_vec())
                })
                .await
                .unwrap();
            assert_eq!(p.result.as_deref(), Some(&b"r"[..]));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let err = inbox
            .process(Request::new("a").payload(b"other"), || async { Ok::<_, Failure<String>>(vec![]) })
            .await
            .unwrap_err();
        assert!(matches!(err, ProcessError::Oncely(ref e) if e.code() == ErrorCode::Conflict), "{err:?}");
    }

    pub async fn retryable_failure_releases_permanent_is_stored_by_policy<S: InboxStore + Clone>(store: S) {
        let fail = |permanent: bool| {
            move || async move { Err::<Vec<u8>, _>(Failure { error: "boom".to_string(), permanent }) }
        };
        let ok = || async { Ok::<_, Failure<String>>(b"fine".to_vec()) };
        let (inbox, _) = inbox(store.clone(), config(Mode::ExactlyOnce));
        assert!(matches!(inbox.process(Request::new("a"), fail(false)).await, Err(ProcessError::Handler(_))));
        assert!(!inbox.process(Request::new("a"), ok).await.unwrap().replayed, "a retry runs again");
        // success_only: even a permanent failure gives the id back.
        assert!(matches!(inbox.process(Request::new("b"), fail(true)).await, Err(ProcessError::Handler(_))));
        assert!(!inbox.process(Request::new("b"), ok).await.unwrap().replayed);
        // success_and_failure: a permanent failure replays as the same failure.
        let cfg =
            InboxConfig::new("failures").recent_capacity(0).cache_policy(CachePolicy::SuccessAndFailure);
        let (inbox, _) = inbox_with(store, cfg);
        assert!(matches!(inbox.process(Request::new("c"), fail(true)).await, Err(ProcessError::Handler(_))));
        match inbox.process(Request::new("c"), ok).await {
            Err(ProcessError::ReplayedFailure(Some(reason))) => assert_eq!(reason, b"boom"),
            other => panic!("expected the stored failure, got {other:?}"),
        }
        // ...but a retryable failure is still given back.
        assert!(matches!(inbox.process(Request::new("d"), fail(false)).await, Err(ProcessError::Handler(_))));
        assert!(!inbox.process(Request::new("d"), ok).await.unwrap().replayed);
    }

    fn inbox_with<S: InboxStore>(store: S, cfg: InboxConfig) -> (Inbox<S>, ManualClock) {
        inbox(store, cfg)
    }

    pub async fn waiting_duplicate_gets_the_first_result<S: InboxStore>(store: S) {
        // Real time: the wait is a real wait.
        let inbox = Inbox::open(store, config(Mode::ExactlyOnce)).unwrap();
        let t = claimed(inbox.begin(Request::new("a")).await.unwrap());
        let waiter = {
            let inbox = inbox.clone();
            tokio::spawn(async move {
                inbox
                    .process(Request::new("a").wait(Duration::from_secs(5)), || async {
                        Ok::<_, Failure<String>>(b"second".to_vec())
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        t.finish(b"first".to_vec()).await.unwrap();
        let p = waiter.await.unwrap().unwrap();
        assert!(p.replayed);
        assert_eq!(p.result.as_deref(), Some(&b"first"[..]));
        // Without a finish, the wait runs out with a timeout error.
        let _held = claimed(inbox.begin(Request::new("b")).await.unwrap());
        let started = std::time::Instant::now();
        let err = inbox
            .process(Request::new("b").wait(Duration::from_millis(60)), || async {
                Ok::<_, Failure<String>>(vec![])
            })
            .await
            .unwrap_err();
        assert!(matches!(err, ProcessError::Oncely(ref e) if e.code() == ErrorCode::Timeout), "{err:?}");
        assert!(started.elapsed() >= Duration::from_millis(60));
        let err = inbox
            .process(Request::new("b"), || async { Ok::<_, Failure<String>>(vec![]) })
            .await
            .unwrap_err();
        assert!(matches!(err, ProcessError::Oncely(ref e) if e.code() == ErrorCode::InProgress), "{err:?}");
    }

    pub async fn concurrent_duplicates_run_the_effect_once<S: InboxStore>(store: S) {
        let inbox = Inbox::open(store, InboxConfig::new("race")).unwrap();
        let effects = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for worker in 0..8 {
            let (inbox, effects) = (inbox.clone(), effects.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..50 {
                    let id = format!("m{}", (i + worker * 7) % 50);
                    let effects = effects.clone();
                    let r = inbox
                        .process(Request::new(id).wait(Duration::from_secs(10)), || async move {
                            effects.fetch_add(1, Ordering::SeqCst);
                            tokio::task::yield_now().await;
                            Ok::<_, Failure<String>>(b"ok".to_vec())
                        })
                        .await;
                    r.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(effects.load(Ordering::SeqCst), 50, "each of 50 ids must take effect exactly once");
    }

    pub async fn bad_input_changes_nothing<S: InboxStore>(store: S) {
        let (inbox, _) = inbox(store, config(Mode::ExactlyOnce));
        for id in [String::new(), "x".repeat(513), "a\0b".to_string()] {
            let err = inbox.begin(Request::new(id.clone())).await.unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidArgument, "{id:?}");
        }
        let err = inbox.begin(Request::new("a").lease(Duration::ZERO)).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidArgument);
        assert!(err.to_string().contains("lease"), "{err}");
        assert!(inbox.get("a").await.unwrap().is_none(), "a refused request writes nothing");
        // An oversized result is refused and the claim stays as it was.
        let mut cfg = config(Mode::ExactlyOnce);
        cfg.max_result_bytes = 8;
        let t = claimed(inbox.begin(Request::new("b")).await.unwrap());
        let before = inbox.get("b").await.unwrap();
        let err = t.finish(vec![0u8; 1 << 21]).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidArgument);
        assert!(err.to_string().contains("limit"), "{err}");
        assert_eq!(inbox.get("b").await.unwrap(), before);
        t.finish(b"small".to_vec()).await.unwrap();
    }
}

/// Every suite test, on one backend.
macro_rules! store_suite {
    ($backend:ident, $make:expr) => {
        store_suite!(suite_tests, $backend, $make);
    };
    ($runner:ident, $backend:ident, $make:expr) => {
        $runner!($backend, $make;
            exactly_once_claim_finish_duplicate,
            lease_expiry_and_fencing,
            expired_lease_still_finishes_if_nobody_took_over,
            release_gives_the_id_back,
            fingerprint_conflict,
            at_most_once_marks_before_the_effect,
            at_least_once_marks_after_the_effect,
            retention_expiry_and_purge,
            expired_records_are_claimable_before_collection,
            garbage_is_collected_automatically,
            tokens_grow_across_collection,
            scopes_do_not_collide,
            batch_claim_and_complete,
            process_runs_the_handler_once,
            retryable_failure_releases_permanent_is_stored_by_policy,
            waiting_duplicate_gets_the_first_result,
            concurrent_duplicates_run_the_effect_once,
            bad_input_changes_nothing
        );
    };
}

store_suite!(memory_store, memory());
store_suite!(sqlite_full, sqlite(Synchronous::Full));
store_suite!(sqlite_normal, sqlite(Synchronous::Normal));
store_suite!(sqlite_memory_file, sqlite_in_memory());
store_suite!(any_store_sqlite, any_sqlite());
store_suite!(any_store_memory, any_memory());
store_suite!(pg_suite_tests, postgres_store, postgres());
store_suite!(pg_suite_tests, any_store_postgres, any_postgres());
