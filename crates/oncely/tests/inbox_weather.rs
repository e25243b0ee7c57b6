//! The inbox rides out passing store trouble inside its own calls: a transient error on `begin`,
//! `finish` or `release` is retried by the core, and a retry after an *ambiguous commit* (the
//! write was applied but its answer lost) is answered as the first try's success — never as a
//! stale claim (`lease_lost`), which would make a finished effect look failed and run it again.
//! A store that stays down is reported as a transient error, so the caller knows a retry is safe.
//!
//! The faults come from a store wrapper with a script: for the next calls, fail before applying
//! (nothing written) or after applying (written, answer lost), with `StorageUnavailable`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use oncely::records::{InboxOp, InboxRecord, OpAnswer};
use oncely::*;
use parking_lot::Mutex;

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Refused before anything was written.
    Before,
    /// Applied and committed, but the caller is told it failed.
    After,
    /// Succeeds.
    None,
}

/// A memory store whose next `apply` calls fail as scripted.
struct Flaky {
    store: MemoryStore,
    script: Mutex<VecDeque<Fault>>,
    /// Every fault injected until the script runs dry, then every call fails `Before`.
    down: std::sync::atomic::AtomicBool,
}

impl Flaky {
    fn new(script: &[Fault]) -> Arc<Flaky> {
        Arc::new(Flaky {
            store: MemoryStore::new(),
            script: Mutex::new(script.iter().copied().collect()),
            down: Default::default(),
        })
    }

    fn next(&self) -> Fault {
        if self.down.load(Ordering::SeqCst) {
            return Fault::Before;
        }
        self.script.lock().pop_front().unwrap_or(Fault::None)
    }
}

fn unavailable() -> Error {
    Error::StorageUnavailable("connection reset by the test".into())
}

impl InboxStore for Flaky {
    async fn apply(&self, scope: &str, now: Timestamp, ops: Vec<InboxOp>) -> Result<Vec<OpAnswer>> {
        match self.next() {
            Fault::Before => Err(unavailable()),
            Fault::After => {
                self.store.apply(scope, now, ops).await?;
                Err(unavailable())
            }
            Fault::None => self.store.apply(scope, now, ops).await,
        }
    }

    async fn get(&self, scope: &str, id: &str) -> Result<Option<InboxRecord>> {
        self.store.get(scope, id).await
    }

    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64> {
        self.store.purge_expired(now, limit).await
    }
}

fn inbox(store: &Arc<Flaky>, mode: Mode) -> Inbox<Arc<Flaky>> {
    let cfg = InboxConfig::new("weather").mode(mode);
    Inbox::with_clock(store.clone(), cfg, Arc::new(ManualClock::new(Timestamp(1_700_000_000_000)))).unwrap()
}

/// `process` once, counting the handler's runs; the handler answers `outcome`.
async fn process(
    inbox: &Inbox<Arc<Flaky>>,
    id: &str,
    runs: &Arc<AtomicUsize>,
    outcome: std::result::Result<&'static str, &'static str>,
) -> std::result::Result<Processed, ProcessError<&'static str>> {
    let runs = runs.clone();
    inbox
        .process(Request::new(id).payload(b"p"), move || async move {
            runs.fetch_add(1, Ordering::SeqCst);
            outcome.map(|r| r.as_bytes().to_vec()).map_err(Failure::retryable)
        })
        .await
}

#[tokio::test]
async fn a_claim_refused_and_a_completion_whose_answer_was_lost_still_process_once() {
    for mode in [Mode::ExactlyOnce, Mode::AtMostOnce, Mode::AtLeastOnce] {
        // begin: refused twice; finish: applied, answer lost; then the store is well.
        let store = Flaky::new(&[Fault::Before, Fault::Before, Fault::None, Fault::After]);
        let inbox = inbox(&store, mode);
        let runs = Arc::new(AtomicUsize::new(0));
        let first = process(&inbox, "pay-1", &runs, Ok("charged")).await;
        let first = first.unwrap_or_else(|e| panic!("{mode}: the delivery failed on a passing fault: {e}"));
        assert_eq!((first.result.as_deref(), first.replayed), (Some(&b"charged"[..]), false), "{mode}");
        let again = process(&inbox, "pay-1", &runs, Ok("twice")).await.unwrap();
        assert!(again.replayed, "{mode}: the completion was not kept");
        assert_eq!(runs.load(Ordering::SeqCst), 1, "{mode}: the effect ran more than once");
    }
}

#[tokio::test]
async fn a_release_whose_answer_was_lost_gives_the_id_back() {
    // begin ok; the handler fails; release: applied, answer lost.
    let store = Flaky::new(&[Fault::None, Fault::After]);
    let inbox = inbox(&store, Mode::ExactlyOnce);
    let runs = Arc::new(AtomicUsize::new(0));
    let err = process(&inbox, "pay-2", &runs, Err("bank down")).await.unwrap_err();
    assert!(
        matches!(err, ProcessError::Handler("bank down")),
        "the handler's failure, not the store's: {err:?}"
    );
    // The id is free at once for the retry (not held until the lease runs out).
    let retried = process(&inbox, "pay-2", &runs, Ok("charged")).await.unwrap();
    assert!(!retried.replayed);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_store_that_stays_down_is_a_transient_error_after_a_bounded_wait() {
    let store = Flaky::new(&[]);
    store.down.store(true, Ordering::SeqCst);
    let inbox = inbox(&store, Mode::ExactlyOnce);
    let started = std::time::Instant::now();
    let err = inbox.begin(Request::new("pay-3").payload(b"p")).await.err().unwrap();
    assert!(err.is_transient(), "typed as transient, so the caller may retry the delivery: {err:?}");
    assert_eq!(err.code(), ErrorCode::Storage);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(2) && waited < Duration::from_secs(5), "waited {waited:?}");
}
