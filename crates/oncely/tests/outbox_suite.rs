//! The outbox behaviour suite, written once and run on every store (as `store_suite.rs` is for
//! the inbox), plus the worker and the SQLite-only transactional enqueue.

use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod support;
use support::*;

use oncely::backoff::{Backoff, Jitter, RetryPolicy};
use oncely::outbox::{
    Cancelled, Enqueued, EventKind, MessageState, Ordering, PoisonPolicy, RetryBudget, Settled,
};
use oncely::{
    ErrorCode, ManualClock, MemoryStore, Mode, NewMessage, Outbox, OutboxConfig, OutboxStore, Outcome,
    SqliteConfig, SqliteStore, Synchronous, Timestamp, Worker, WorkerConfig,
};

const T0: Timestamp = Timestamp(1_700_000_000_000);

fn fixed(ms: u64, attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts: attempts,
        deadline: None,
        backoff: Backoff::Fixed { delay: Duration::from_millis(ms) },
        jitter: Jitter::None,
    }
}

fn outbox<S: OutboxStore>(store: S, cfg: OutboxConfig) -> (Outbox<S>, ManualClock) {
    let clock = ManualClock::new(T0);
    (Outbox::with_clock(store, cfg, Arc::new(clock.clone())).unwrap(), clock)
}

fn cfg(mode: Mode) -> OutboxConfig {
    OutboxConfig::new("q").mode(mode).retry(fixed(1_000, 3)).lease(Duration::from_secs(10))
}

fn ids<S: OutboxStore>(ds: &[oncely::Delivery<S>]) -> Vec<String> {
    ds.iter().map(|d| d.id().to_owned()).collect()
}

mod suite {
    use super::*;

    pub async fn enqueue_is_idempotent_per_id<S: OutboxStore>(store: S) {
        let (ob, _) = outbox(store, cfg(Mode::ExactlyOnce));
        assert_eq!(ob.enqueue(NewMessage::new("p").id("a")).await.unwrap(), Enqueued::Queued);
        assert_eq!(ob.enqueue(NewMessage::new("p").id("a")).await.unwrap(), Enqueued::AlreadyQueued);
        let r =
            ob.enqueue_many(vec![NewMessage::new("x").id("b"), NewMessage::new("x").id("b")]).await.unwrap();
        assert_eq!(r, [Enqueued::Queued, Enqueued::AlreadyQueued]);
        let leased = ob.lease(10).await.unwrap();
        assert_eq!(ids(&leased), ["a", "b"]);
        assert_eq!(leased[0].payload(), b"p");
        assert!(ob.lease(10).await.unwrap().is_empty(), "no second copy");
    }

    /// An id is remembered for the dedup window after its message left the queue: enqueueing it
    /// again is answered `already_delivered` (acked, or attempted once under at-most-once), a
    /// different payload under a known id is a conflict that writes nothing, and once the window
    /// ends the id can be queued again. A zero window remembers nothing.
    pub async fn dedup_window_outlives_delivery<S: OutboxStore + Clone>(store: S) {
        let clock = ManualClock::new(T0);
        let open =
            |cfg: OutboxConfig| Outbox::with_clock(store.clone(), cfg, Arc::new(clock.clone())).unwrap();
        let ob = open(cfg(Mode::AtLeastOnce).dedup_window(Duration::from_secs(60)));
        let code = |r: oncely::Result<_>| r.map(|_: Vec<Enqueued>| ()).unwrap_err().code();
        assert_eq!(ob.enqueue(NewMessage::new("p").id("a")).await.unwrap(), Enqueued::Queued);
        // A live id with another payload, alone or later in a batch: a conflict, nothing written.
        let clash = ob.enqueue(NewMessage::new("other").id("a")).await.map(|e| vec![e]);
        assert_eq!(code(clash), ErrorCode::Conflict);
        let batch =
            vec![NewMessage::new("n").id("n1"), NewMessage::new("x").id("b"), NewMessage::new("y").id("b")];
        assert_eq!(code(ob.enqueue_many(batch).await), ErrorCode::Conflict);
        assert!(ob.get("n1").await.unwrap().is_none() && ob.get("b").await.unwrap().is_none());
        assert_eq!(ob.stats().await.unwrap().queue.ready, 1);

        let [d] = <[_; 1]>::try_from(ob.lease(10).await.unwrap()).ok().unwrap();
        d.ack().await.unwrap();
        assert_eq!(ob.enqueue(NewMessage::new("p").id("a")).await.unwrap(), Enqueued::AlreadyDelivered);
        let clash = ob.enqueue_many(vec![NewMessage::new("n").id("n1"), NewMessage::new("q").id("a")]).await;
        assert_eq!(code(clash), ErrorCode::Conflict);
        assert!(ob.get("n1").await.unwrap().is_none(), "a conflict rolls back the whole batch");
        assert!(ob.lease(10).await.unwrap().is_empty(), "a delivered id is not queued again");

        // At-most-once: a message whose one attempt failed left the queue for good too.
        let amo =
            open(OutboxConfig::new("q-amo").mode(Mode::AtMostOnce).dedup_window(Duration::from_secs(60)));
        amo.enqueue(NewMessage::new("p").id("c")).await.unwrap();
        let [d] = <[_; 1]>::try_from(amo.lease(10).await.unwrap()).ok().unwrap();
        assert_eq!(d.retry(None, "down").await.unwrap(), Settled::Dropped);
        assert_eq!(amo.enqueue(NewMessage::new("p").id("c")).await.unwrap(), Enqueued::AlreadyDelivered);

        // A dead letter is still in the queue (a replay brings it back).
        ob.enqueue(NewMessage::new("p").id("d")).await.unwrap();
        let [d] = <[_; 1]>::try_from(ob.lease(10).await.unwrap()).ok().unwrap();
        d.fail("bad").await.unwrap();
        assert_eq!(ob.enqueue(NewMessage::new("p").id("d")).await.unwrap(), Enqueued::AlreadyQueued);
        assert_eq!(
            code(ob.enqueue(NewMessage::new("q").id("d")).await.map(|e| vec![e])),
            ErrorCode::Conflict
        );

        // The window ends: the id is new again (and the lease that finds the queue idle
        // collects the ended marks).
        clock.advance(Duration::from_secs(60));
        assert!(ob.lease(10).await.unwrap().is_empty());
        assert_eq!(ob.enqueue(NewMessage::new("other").id("a")).await.unwrap(), Enqueued::Queued);
        assert_eq!(amo.enqueue(NewMessage::new("p").id("c")).await.unwrap(), Enqueued::Queued);

        // No window: nothing is remembered.
        let forgetful = open(OutboxConfig::new("q0").dedup_window(Duration::ZERO));
        forgetful.enqueue(NewMessage::new("p").id("e")).await.unwrap();
        let [d] = <[_; 1]>::try_from(forgetful.lease(10).await.unwrap()).ok().unwrap();
        d.ack().await.unwrap();
        assert_eq!(forgetful.enqueue(NewMessage::new("p").id("e")).await.unwrap(), Enqueued::Queued);
    }

    /// The counters are the store's: a handle opened afterwards (another process, the CLI,
    /// another language) reads the totals of every handle's changes.
    pub async fn counters_are_kept_by_the_store<S: OutboxStore + Clone>(store: S) {
        let clock = ManualClock::new(T0);
        let open = |mode| Outbox::with_clock(store.clone(), cfg(mode), Arc::new(clock.clone())).unwrap();
        let (a, b) = (open(Mode::AtLeastOnce), open(Mode::AtMostOnce));
        a.enqueue_many(vec![NewMessage::new("p").id("a1"), NewMessage::new("p").id("a2")]).await.unwrap();
        b.enqueue(NewMessage::new("p").id("b1")).await.unwrap();
        for d in a.lease(10).await.unwrap() {
            match d.id() {
                "a1" => assert_eq!(d.ack().await.unwrap(), ()),
                "a2" => drop(d.retry(None, "busy").await.unwrap()),
                _ => drop(d.fail("no").await.unwrap()), // b1 is at-most-once: dropped
            }
        }
        let fresh = open(Mode::ExactlyOnce);
        let c = fresh.stats().await.unwrap().counters;
        assert_eq!(
            (c.enqueued, c.delivered, c.retried, c.dead_lettered, c.dropped),
            (3, 1, 1, 0, 1),
            "a fresh handle must see every handle's counts: {c:?}"
        );
        assert_eq!(a.stats().await.unwrap().counters.enqueued, 3);
    }

    /// The mode belongs to the message, not to the handle: two handles on one queue with
    /// different modes (a rolling deploy, an admin script) each apply the message's own mode.
    pub async fn the_mode_travels_with_the_message<S: OutboxStore + Clone>(store: S) {
        let clock = ManualClock::new(T0);
        let open = |mode| Outbox::with_clock(store.clone(), cfg(mode), Arc::new(clock.clone())).unwrap();
        let (most, least) = (open(Mode::AtMostOnce), open(Mode::AtLeastOnce));
        // An at-most-once message whose lease ran out is lost, never delivered again — also
        // when an at-least-once handle finds it.
        most.enqueue(NewMessage::new("p").id("once")).await.unwrap();
        assert_eq!(ids(&most.lease(1).await.unwrap()), ["once"]);
        clock.advance(Duration::from_secs(11));
        assert!(
            least.lease(10).await.unwrap().is_empty(),
            "an at-least-once handle delivered an at-most-once message twice"
        );
        assert!(least.get("once").await.unwrap().is_none());
        // An at-least-once message whose lease ran out is delivered again — also when an
        // at-most-once handle reaps it — and its failed attempt is retried, not dropped.
        least.enqueue(NewMessage::new("p").id("sure")).await.unwrap();
        assert_eq!(ids(&least.lease(1).await.unwrap()), ["sure"]);
        clock.advance(Duration::from_secs(11));
        let again = most.lease(10).await.unwrap();
        assert_eq!(ids(&again), ["sure"], "an at-most-once handle dropped an at-least-once message");
        let settled = again[0].retry(None, "busy").await.unwrap();
        assert!(matches!(settled, Settled::Retrying { .. }), "{settled:?}");
        assert!(most.get("sure").await.unwrap().is_some());
    }

    /// The attempt limit and the dedup window a message was enqueued under are kept with it: a
    /// handle with a more generous policy does not retry it past its limit (nor a stingier one
    /// dead-letter it early), and the window it was enqueued with is the one its id is
    /// remembered for, whichever handle acks it.
    pub async fn the_limits_travel_with_the_message<S: OutboxStore + Clone>(store: S) {
        let clock = ManualClock::new(T0);
        let open =
            |cfg: OutboxConfig| Outbox::with_clock(store.clone(), cfg, Arc::new(clock.clone())).unwrap();
        let strict = open(cfg(Mode::AtLeastOnce).retry(fixed(1, 1)).dedup_window(Duration::ZERO));
        let lenient = open(cfg(Mode::AtLeastOnce).retry(fixed(1, 5)).dedup_window(Duration::from_secs(600)));
        strict.enqueue(NewMessage::new("p").id("one-try")).await.unwrap();
        lenient.enqueue(NewMessage::new("p").id("five-tries")).await.unwrap();
        assert_eq!(strict.get("one-try").await.unwrap().unwrap().max_attempts, Some(1));
        // The lenient handle fails the strict message's only attempt: it is a dead letter.
        let mut leased = lenient.lease(10).await.unwrap();
        leased.sort_by(|a, b| a.id().cmp(b.id()));
        assert_eq!(ids(&leased), ["five-tries", "one-try"]);
        assert_eq!(leased[1].retry(None, "down").await.unwrap(), Settled::GaveUp, "retried past its limit");
        // The strict handle fails the lenient message's first attempt: it is retried.
        let settled = strict.settle(
            "five-tries",
            leased[0].token(),
            oncely::outbox::Settle::Retry { after: None, error: "down".into() },
        );
        assert!(matches!(settled.await.unwrap(), Settled::Retrying { .. }), "dead-lettered before its limit");
        clock.advance(Duration::from_millis(1));
        // Acked by the strict handle (no window of its own), remembered for the lenient window.
        let [d] = <[_; 1]>::try_from(strict.lease(10).await.unwrap()).ok().unwrap();
        d.ack().await.unwrap();
        clock.advance(Duration::from_secs(300));
        assert_eq!(
            strict.enqueue(NewMessage::new("p").id("five-tries")).await.unwrap(),
            Enqueued::AlreadyDelivered
        );
    }

    pub async fn ack_removes_and_stale_ack_is_refused<S: OutboxStore>(store: S) {
        let (ob, clock) = outbox(store, cfg(Mode::AtLeastOnce));
        ob.enqueue(NewMessage::new("p").id("a")).await.unwrap();
        let first = ob.lease(1).await.unwrap().pop().unwrap();
        assert_eq!(first.attempt(), 1);
        // The worker hangs; its lease runs out and the message is delivered again.
        clock.advance(Duration::from_secs(10));
        let second = ob.lease(1).await.unwrap().pop().unwrap();
        assert_eq!((second.id(), second.attempt()), ("a", 2));
        assert!(second.token() > first.token());
        assert_eq!(first.ack().await.unwrap_err().code(), ErrorCode::LeaseLost, "a stale ack writes nothing");
        second.ack().await.unwrap();
        assert!(ob.get("a").await.unwrap().is_none());
        assert_eq!(ob.stats().await.unwrap().queue.depth(), 0);
    }

    pub async fn retries_follow_the_policy_then_dead_letter<S: OutboxStore>(store: S) {
        let (ob, clock) = outbox(store, cfg(Mode::ExactlyOnce));
        ob.enqueue(NewMessage::new("p").id("a")).await.unwrap();
        for attempt in 1..=2 {
            let d = ob.lease(1).await.unwrap().pop().unwrap();
            assert_eq!(d.attempt(), attempt);
            let at = T0.0 + (attempt as i64 - 1) * 1_000 + 1_000;
            assert_eq!(d.retry(None, "bank down").await.unwrap(), Settled::Retrying { at: Timestamp(at) });
            assert!(ob.lease(1).await.unwrap().is_empty(), "not before the backoff");
            clock.advance(Duration::from_millis(1_000));
        }
        let d = ob.lease(1).await.unwrap().pop().unwrap();
        assert_eq!(d.attempt(), 3);
        assert_eq!(d.retry(None, "still down").await.unwrap(), Settled::GaveUp);
        let dead = ob.dead_letters(None, 10).await.unwrap();
        assert_eq!(dead.len(), 1);
        let MessageState::Dead { reason } = &dead[0].state else { panic!() };
        assert!(reason.contains("3 attempts") && reason.contains("still down"), "{reason}");
        // Replay resets the attempts; purge removes.
        assert!(ob.replay("a").await.unwrap());
        let d = ob.lease(1).await.unwrap().pop().unwrap();
        assert_eq!(d.attempt(), 1);
        d.fail("bad request").await.unwrap();
        assert_eq!(ob.purge_dead(None).await.unwrap(), 1);
        assert!(ob.get("a").await.unwrap().is_none());
        assert!(!ob.replay("a").await.unwrap());
    }

    pub async fn retry_after_hint_and_deadline<S: OutboxStore>(store: S) {
        let mut policy = fixed(1_000, 100);
        policy.deadline = Some(Duration::from_secs(5));
        let (ob, clock) = outbox(store, cfg(Mode::ExactlyOnce).retry(policy));
        ob.enqueue(NewMessage::new("p").id("a")).await.unwrap();
        let d = ob.lease(1).await.unwrap().pop().unwrap();
        let r = d.retry(Some(Duration::from_secs(4)), "429").await.unwrap();
        assert_eq!(r, Settled::Retrying { at: T0.after(Duration::from_secs(4)) });
        clock.advance(Duration::from_secs(4));
        let d = ob.lease(1).await.unwrap().pop().unwrap();
        // The next retry would start past the 5 s deadline: give up now.
        clock.advance(Duration::from_millis(500));
        assert_eq!(d.retry(None, "again").await.unwrap(), Settled::GaveUp);
        assert_eq!(ob.stats().await.unwrap().queue.dead, 1);
    }

    pub async fn lease_running_out_on_the_last_attempt_dead_letters<S: OutboxStore>(store: S) {
        let (ob, clock) = outbox(store, cfg(Mode::AtLeastOnce).retry(fixed(10, 1)));
        ob.enqueue(NewMessage::new("p").id("a")).await.unwrap();
        let d = ob.lease(1).await.unwrap().pop().unwrap();
        clock.advance(Duration::from_secs(10));
        assert!(ob.lease(1).await.unwrap().is_empty());
        assert_eq!(ob.stats().await.unwrap().queue.dead, 1);
        assert_eq!(d.ack().await.unwrap_err().code(), ErrorCode::LeaseLost);
    }

    pub async fn at_most_once_never_redelivers<S: OutboxStore>(store: S) {
        let (ob, clock) = outbox(store, cfg(Mode::AtMostOnce));
        let msgs = ["a", "b", "c"].map(|id| NewMessage::new("p").id(id));
        ob.enqueue_many(msgs.to_vec()).await.unwrap();
        let ds = ob.lease(3).await.unwrap();
        // The lease is the "done" mark, written before the attempt: a failure loses the message,
        assert_eq!(ds[0].retry(None, "lost").await.unwrap(), Settled::Dropped);
        assert!(ob.get("a").await.unwrap().is_none());
        ds[1].ack().await.unwrap();
        // and so does a crash: "c" is never settled; its lease runs out and it is dropped.
        clock.advance(Duration::from_secs(3600));
        assert!(ob.lease(10).await.unwrap().is_empty(), "at-most-once never delivers again");
        assert_eq!(ds[2].ack().await.unwrap_err().code(), ErrorCode::LeaseLost);
        let s = ob.stats().await.unwrap();
        assert_eq!((s.counters.dropped, s.counters.delivered, s.queue.depth()), (2, 1, 0));
    }

    pub async fn snooze_does_not_use_an_attempt<S: OutboxStore>(store: S) {
        let (ob, clock) = outbox(store, cfg(Mode::ExactlyOnce).retry(fixed(10, 1)));
        ob.enqueue(NewMessage::new("p").id("a")).await.unwrap();
        for _ in 0..5 {
            let d = ob.lease(1).await.unwrap().pop().unwrap();
            assert_eq!(d.attempt(), 1);
            d.snooze(Duration::from_secs(2)).await.unwrap();
            assert!(ob.lease(1).await.unwrap().is_empty());
            clock.advance(Duration::from_secs(2));
        }
        ob.lease(1).await.unwrap().pop().unwrap().ack().await.unwrap();
    }

    pub async fn delayed_delivery_and_cancel<S: OutboxStore>(store: S) {
        let (ob, clock) = outbox(store, cfg(Mode::ExactlyOnce));
        ob.enqueue(NewMessage::new("p").id("later").delay(Duration::from_secs(60))).await.unwrap();
        ob.enqueue(NewMessage::new("p").id("now")).await.unwrap();
        ob.enqueue(NewMessage::new("p").id("never")).await.unwrap();
        assert_eq!(ob.cancel("never").await.unwrap(), Cancelled::Cancelled);
        assert_eq!(ob.cancel("never").await.unwrap(), Cancelled::NotFound);
        let s = ob.stats().await.unwrap().queue;
        assert_eq!((s.ready, s.scheduled), (1, 1));
        let d = ob.lease(10).await.unwrap();
        assert_eq!(ids(&d), ["now"]);
        assert_eq!(ob.cancel("now").await.unwrap(), Cancelled::InFlight);
        d[0].ack().await.unwrap();
        clock.advance(Duration::from_secs(60));
        assert_eq!(ids(&ob.lease(10).await.unwrap()), ["later"]);
    }

    pub async fn extend_and_release<S: OutboxStore>(store: S) {
        let (ob, clock) = outbox(store, cfg(Mode::ExactlyOnce));
        ob.enqueue(NewMessage::new("p").id("a")).await.unwrap();
        let d = ob.lease(1).await.unwrap().pop().unwrap();
        clock.advance(Duration::from_secs(9));
        d.extend(Duration::from_secs(10)).await.unwrap();
        clock.advance(Duration::from_secs(9));
        assert!(ob.lease(1).await.unwrap().is_empty(), "the extended lease still holds");
        assert_eq!(d.release().await.unwrap(), Settled::Returned { at: clock_now(&clock) });
        let again = ob.lease(1).await.unwrap().pop().unwrap();
        assert_eq!(again.attempt(), 1, "a released attempt does not count");
    }

    fn clock_now(c: &ManualClock) -> Timestamp {
        use oncely::Clock;
        c.now()
    }

    pub async fn fifo_holds_a_key_to_one_in_flight<S: OutboxStore>(store: S) {
        let (ob, _) =
            outbox(store, cfg(Mode::ExactlyOnce).ordering(Ordering::FifoPerKey(PoisonPolicy::DeadLetter)));
        for (id, key) in [("k1-a", "k1"), ("k2-a", "k2"), ("k1-b", "k1"), ("free", "")] {
            let m = NewMessage::new("p").id(id);
            ob.enqueue(if key.is_empty() { m } else { m.key(key) }).await.unwrap();
        }
        let first = ob.lease(10).await.unwrap();
        assert_eq!(ids(&first), ["k1-a", "k2-a", "free"]);
        first[0].ack().await.unwrap();
        assert_eq!(ids(&ob.lease(10).await.unwrap()), ["k1-b"]);
    }

    pub async fn fifo_poison_policies<S: OutboxStore + Clone>(store: S) {
        for (policy, next_of_key) in [
            (PoisonPolicy::Block, None),
            (PoisonPolicy::DeadLetter, Some("b")),
            (PoisonPolicy::Park { after: Duration::from_secs(60) }, Some("b")),
        ] {
            let mut c = cfg(Mode::ExactlyOnce).ordering(Ordering::FifoPerKey(policy)).retry(fixed(10, 1));
            c.queue = format!("{policy:?}");
            let (ob, clock) = outbox(store.clone(), c);
            ob.enqueue_many(vec![
                NewMessage::new("p").id("a").key("k"),
                NewMessage::new("p").id("b").key("k"),
            ])
            .await
            .unwrap();
            let poison = ob.lease(10).await.unwrap();
            assert_eq!(ids(&poison), ["a"]);
            poison[0].fail("unparseable").await.unwrap();
            let next = ob.lease(10).await.unwrap();
            assert_eq!(next.first().map(|d| d.id()), next_of_key, "{policy:?}");
            match policy {
                PoisonPolicy::Block => {
                    assert!(ob.replay("a").await.unwrap());
                    assert_eq!(ids(&ob.lease(10).await.unwrap()), ["a"], "replay unblocks in order");
                }
                PoisonPolicy::Park { .. } => {
                    next[0].ack().await.unwrap();
                    assert!(ob.lease(10).await.unwrap().is_empty());
                    clock.advance(Duration::from_secs(60));
                    let back = ob.lease(10).await.unwrap();
                    assert_eq!(
                        (back[0].id(), back[0].attempt()),
                        ("a", 1),
                        "parked comes back with fresh attempts"
                    );
                }
                PoisonPolicy::DeadLetter => assert_eq!(ob.stats().await.unwrap().queue.dead, 1),
            }
        }
    }

    pub async fn retry_budget_holds_back_retries<S: OutboxStore>(store: S) {
        let budget = RetryBudget { ratio: 0.5, min_per_second: 0.0, burst: 100.0 };
        let (ob, clock) = outbox(store, cfg(Mode::ExactlyOnce).retry(fixed(1, 10)).retry_budget(budget));
        ob.enqueue_many((0..4).map(|i| NewMessage::new("p").id(format!("f{i}"))).collect()).await.unwrap();
        for d in ob.lease(10).await.unwrap() {
            d.retry(None, "outage").await.unwrap();
        }
        clock.advance(Duration::from_millis(1));
        // Four first attempts earned two retries.
        assert_eq!(ob.lease(10).await.unwrap().len(), 2);
        ob.enqueue(NewMessage::new("p").id("new")).await.unwrap();
        let next = ob.lease(10).await.unwrap();
        assert_eq!(ids(&next), ["new"], "first attempts are never held back");
    }

    pub async fn events_and_counters<S: OutboxStore>(store: S) {
        let (ob, _) = outbox(store, cfg(Mode::ExactlyOnce));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        ob.on_event(move |e| sink.lock().unwrap().push((e.id.clone(), e.kind.clone())));
        ob.enqueue(NewMessage::new("p").id("a")).await.unwrap();
        let d = ob.lease(1).await.unwrap().pop().unwrap();
        d.retry(Some(Duration::ZERO), "x").await.unwrap();
        ob.lease(1).await.unwrap().pop().unwrap().ack().await.unwrap();
        let kinds: Vec<String> = seen.lock().unwrap().iter().map(|(_, k)| format!("{k:?}")).collect();
        assert_eq!(kinds.len(), 5, "{kinds:?}");
        assert!(matches!(seen.lock().unwrap()[0].1, EventKind::Enqueued));
        let s = ob.stats().await.unwrap();
        assert_eq!((s.counters.enqueued, s.counters.retried, s.counters.delivered), (1, 1, 1));
        assert_eq!(s.counters.attempts_settled, 2);
    }

    pub async fn bad_input_writes_nothing<S: OutboxStore>(store: S) {
        let (ob, _) = outbox(store, cfg(Mode::ExactlyOnce));
        let too_big = NewMessage::new(vec![0u8; (1 << 20) + 1]).id("big");
        for m in [
            NewMessage::new("p").id(""),
            NewMessage::new("p").id("x".repeat(513)),
            too_big,
            NewMessage::new("p").key(""),
        ] {
            let e = ob.enqueue_many(vec![NewMessage::new("ok").id("fine"), m]).await.unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
        }
        assert_eq!(ob.stats().await.unwrap().queue.depth(), 0, "one bad message fails the whole batch");
        assert_eq!(ob.cancel("").await.unwrap_err().code(), ErrorCode::InvalidArgument);
        assert!(Outbox::open(MemoryStore::new(), OutboxConfig::new("q").retry(fixed(1, 0))).is_err());
        assert!(Outbox::open(MemoryStore::new(), OutboxConfig::new("q").lease(Duration::ZERO)).is_err());
        let bad_budget = RetryBudget { ratio: f64::NAN, min_per_second: 1.0, burst: 1.0 };
        assert!(Outbox::open(MemoryStore::new(), OutboxConfig::new("q").retry_budget(bad_budget)).is_err());
    }

    pub async fn worker_delivers_everything_with_bounded_concurrency<S: OutboxStore>(store: S) {
        let ob = Outbox::open(store, OutboxConfig::new("w").retry(fixed(1, 5))).unwrap();
        ob.enqueue_many((0..60).map(|i| NewMessage::new(vec![i as u8]).id(format!("m{i}"))).collect())
            .await
            .unwrap();
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let calls = Arc::new(Mutex::new(std::collections::HashMap::<String, u32>::new()));
        let worker =
            Worker::new(ob.clone(), WorkerConfig { concurrency: 4, ..WorkerConfig::default() }).unwrap();
        let (r, p, c) = (running.clone(), peak.clone(), calls.clone());
        let summary = worker
            .run_until_idle(move |m| {
                let (r, p, c) = (r.clone(), p.clone(), c.clone());
                async move {
                    let now = r.fetch_add(1, AtomicOrdering::SeqCst) + 1;
                    p.fetch_max(now, AtomicOrdering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    r.fetch_sub(1, AtomicOrdering::SeqCst);
                    let n = {
                        let mut calls = c.lock().unwrap();
                        let n = calls.entry(m.id.clone()).or_default();
                        *n += 1;
                        *n
                    };
                    match (m.payload[0] % 3, n) {
                        (0, 1) => Outcome::retry("first try fails"),
                        (1, 1) => panic!("handler bug on first try"),
                        _ => Outcome::Success,
                    }
                }
            })
            .await
            .unwrap();
        assert!(peak.load(AtomicOrdering::SeqCst) <= 4, "concurrency bound");
        assert_eq!(summary.succeeded, 60);
        let s = ob.stats().await.unwrap();
        assert_eq!((s.queue.depth(), s.counters.delivered), (0, 60));
        assert!(calls.lock().unwrap().values().all(|&n| n <= 2));
    }

    pub async fn worker_shutdown_stops_in_flight_attempts<S: OutboxStore>(store: S) {
        let ob = Outbox::open(store, OutboxConfig::new("s").retry(fixed(1, 5))).unwrap();
        ob.enqueue(NewMessage::new("p").id("slow")).await.unwrap();
        let cfg = WorkerConfig {
            concurrency: 2,
            shutdown_timeout: Duration::from_millis(50),
            ..Default::default()
        };
        let worker = Worker::new(ob.clone(), cfg).unwrap();
        let finished = Arc::new(AtomicUsize::new(0));
        let f = finished.clone();
        let summary = worker
            .run(
                move |_| {
                    let f = f.clone();
                    async move {
                        tokio::time::sleep(Duration::from_millis(400)).await;
                        f.fetch_add(1, AtomicOrdering::SeqCst);
                        Outcome::Success
                    }
                },
                tokio::time::sleep(Duration::from_millis(100)),
            )
            .await
            .unwrap();
        assert_eq!(summary.released, 1);
        // The attempt counted (it may have had an effect) and will be retried by the policy.
        let rec = ob.get("slow").await.unwrap().unwrap();
        assert_eq!((rec.state.clone(), rec.message.attempts), (MessageState::Ready, 1));
        assert_eq!(rec.last_error.as_deref(), Some("the worker shut down during the attempt"));
        // The handler itself was stopped, not left running behind the given-back lease.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(finished.load(AtomicOrdering::SeqCst), 0);
    }
}

/// Every suite test, on one backend.
macro_rules! outbox_suite {
    ($backend:ident, $make:expr) => {
        outbox_suite!(suite_tests, $backend, $make);
    };
    ($runner:ident, $backend:ident, $make:expr) => {
        $runner!($backend, $make;
            enqueue_is_idempotent_per_id,
            dedup_window_outlives_delivery,
            the_mode_travels_with_the_message,
            the_limits_travel_with_the_message,
            counters_are_kept_by_the_store,
            ack_removes_and_stale_ack_is_refused,
            retries_follow_the_policy_then_dead_letter,
            retry_after_hint_and_deadline,
            lease_running_out_on_the_last_attempt_dead_letters,
            at_most_once_never_redelivers,
            snooze_does_not_use_an_attempt,
            delayed_delivery_and_cancel,
            extend_and_release,
            fifo_holds_a_key_to_one_in_flight,
            fifo_poison_policies,
            retry_budget_holds_back_retries,
            events_and_counters,
            bad_input_writes_nothing,
            worker_delivers_everything_with_bounded_concurrency,
            worker_shutdown_stops_in_flight_attempts
        );
    };
}

outbox_suite!(memory_store, memory());
outbox_suite!(sqlite_store, sqlite(Synchronous::Normal));
outbox_suite!(pg_suite_tests, postgres_store, postgres());

#[tokio::test]
async fn transactional_enqueue_commits_with_the_callers_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let ob = Outbox::open(SqliteStore::open(&path, SqliteConfig::default()).unwrap(), OutboxConfig::new("q"))
        .unwrap();
    let mut conn = oncely::rusqlite::Connection::open(&path).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.execute_batch("CREATE TABLE orders (id TEXT PRIMARY KEY)").unwrap();
    // Rolled back: neither the order nor its message.
    {
        let tx = conn.transaction_with_behavior(oncely::rusqlite::TransactionBehavior::Immediate).unwrap();
        tx.execute("INSERT INTO orders VALUES ('o1')", []).unwrap();
        ob.enqueue_in(&tx, vec![NewMessage::new("ship o1").id("o1")]).unwrap();
        tx.rollback().unwrap();
    }
    assert!(ob.lease(10).await.unwrap().is_empty());
    // Committed: both.
    {
        let tx = conn.transaction_with_behavior(oncely::rusqlite::TransactionBehavior::Immediate).unwrap();
        tx.execute("INSERT INTO orders VALUES ('o2')", []).unwrap();
        assert_eq!(
            ob.enqueue_in(&tx, vec![NewMessage::new("ship o2").id("o2")]).unwrap(),
            [Enqueued::Queued]
        );
        tx.commit().unwrap();
    }
    let d = ob.lease(10).await.unwrap();
    assert_eq!(ids(&d), ["o2"]);
    // Outside a transaction it is refused.
    assert_eq!(
        ob.enqueue_in(&conn, vec![NewMessage::new("x")]).unwrap_err().code(),
        ErrorCode::InvalidArgument
    );
}

#[tokio::test]
async fn queued_messages_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    {
        let ob =
            Outbox::open(SqliteStore::open(&path, SqliteConfig::default()).unwrap(), OutboxConfig::new("q"))
                .unwrap();
        ob.enqueue(NewMessage::new("p").id("a").key("k").header("h", "v")).await.unwrap();
    }
    let ob = Outbox::open(SqliteStore::open(&path, SqliteConfig::default()).unwrap(), OutboxConfig::new("q"))
        .unwrap();
    let d = ob.lease(1).await.unwrap().pop().unwrap();
    assert_eq!((d.id(), d.payload(), d.message().key.as_deref()), ("a", &b"p"[..], Some("k")));
    assert_eq!(d.message().headers.get("h").map(String::as_str), Some("v"));
}

/// The blocking facade: code that is not async drives the outbox and the worker through the
/// process's shared runtime.
#[test]
fn blocking_callers_use_the_shared_runtime() {
    use oncely::runtime::block_on;
    let ob = Outbox::open(MemoryStore::new(), OutboxConfig::new("sync")).unwrap();
    block_on(ob.enqueue_many((0..10).map(|i| NewMessage::new("p").id(format!("m{i}"))).collect()))
        .unwrap()
        .unwrap();
    let worker = Worker::new(ob.clone(), WorkerConfig::default()).unwrap();
    let summary = block_on(worker.run_until_idle(|_| async { Outcome::Success })).unwrap().unwrap();
    assert_eq!(summary.succeeded, 10);
    // Blocking inside async code would deadlock a runtime thread: refused with a clear error.
    let inside = block_on(async { block_on(async {}).map(drop) }).unwrap();
    assert_eq!(inside.unwrap_err().code(), ErrorCode::InvalidArgument);
}
outbox_suite!(any_store_sqlite, any_sqlite());

/// The worker needs tokio; driven by another executor it says so instead of panicking.
#[test]
fn a_worker_outside_tokio_is_refused_not_a_panic() {
    let ob = Outbox::open(MemoryStore::new(), OutboxConfig::new("q")).unwrap();
    let worker = Worker::new(ob, WorkerConfig::default()).unwrap();
    let err = pollster::block_on(worker.run_until_idle(|_| async { Outcome::Success })).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument);
    assert!(err.to_string().contains("tokio"), "{err}");
}
