//! Model-based test: random interleavings of begin / finish / release / clock advance / restart
//! by several workers, checked step by step against a small reference model written straight
//! from docs/design.md §1 and §4, on the memory and the SQLite store. Also checks the two invariants
//! the inbox exists for: never two live claims on one id, never a lost completion.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use oncely::Clock;
use oncely::inbox::Status;
use oncely::{
    Begin, ErrorCode, Inbox, InboxConfig, InboxStore, ManualClock, MemoryStore, Mode, Request, SqliteConfig,
    SqliteStore, Ticket, Timestamp,
};
use proptest::prelude::*;

const LEASE_MS: i64 = 10_000;
const RETENTION_MS: i64 = 60_000;
const IDS: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Step {
    Begin { worker: usize, id: usize, mode: Mode },
    Finish { worker: usize },
    Release { worker: usize },
    Advance { ms: i64 },
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    let mode = prop_oneof![
        Just(Mode::ExactlyOnce),
        Just(Mode::ExactlyOnce),
        Just(Mode::AtLeastOnce),
        Just(Mode::AtMostOnce)
    ];
    prop_oneof![
        4 => (0..3usize, 0..IDS.len(), mode).prop_map(|(worker, id, mode)| Step::Begin { worker, id, mode }),
        3 => (0..3usize).prop_map(|worker| Step::Finish { worker }),
        1 => (0..3usize).prop_map(|worker| Step::Release { worker }),
        2 => (1..25_000i64).prop_map(|ms| Step::Advance { ms }),
        1 => Just(Step::Restart),
    ]
}

/// The reference model of one id.
#[derive(Debug, Clone, PartialEq)]
enum Rec {
    Lease { token: u64, until: i64, expires: i64 },
    Done { token: u64, status: Status, result: Option<String>, expires: i64 },
}

#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Claimed(u64),
    Duplicate(Status, Option<String>),
    InProgress,
    Ok,
    LeaseLost,
}

#[derive(Default)]
struct Model {
    recs: HashMap<&'static str, Rec>,
    last_token: u64,
}

impl Model {
    fn live(&self, id: &str, now: i64) -> Option<&Rec> {
        self.recs.get(id).filter(|r| match r {
            Rec::Lease { expires, .. } | Rec::Done { expires, .. } => now < *expires,
        })
    }

    fn begin(&mut self, id: &'static str, mode: Mode, now: i64) -> Answer {
        match self.live(id, now) {
            Some(Rec::Done { status, result, .. }) => return Answer::Duplicate(*status, result.clone()),
            Some(Rec::Lease { until, .. }) if now < *until => return Answer::InProgress,
            _ => {}
        }
        match mode {
            Mode::AtLeastOnce => Answer::Claimed(0),
            Mode::AtMostOnce => {
                self.last_token += 1;
                let rec = Rec::Done {
                    token: self.last_token,
                    status: Status::Seen,
                    result: None,
                    expires: now + RETENTION_MS,
                };
                self.recs.insert(id, rec);
                Answer::Claimed(self.last_token)
            }
            Mode::ExactlyOnce => {
                self.last_token += 1;
                let until = now + LEASE_MS;
                self.recs
                    .insert(id, Rec::Lease { token: self.last_token, until, expires: until + RETENTION_MS });
                Answer::Claimed(self.last_token)
            }
        }
    }

    fn finish(&mut self, id: &'static str, token: u64, mode: Mode, result: String, now: i64) -> Answer {
        let done = |token| Rec::Done {
            token,
            status: Status::Succeeded,
            result: Some(result),
            expires: now + RETENTION_MS,
        };
        match (mode, self.live(id, now).cloned()) {
            (Mode::AtLeastOnce, Some(Rec::Done { .. })) => Answer::Ok,
            (Mode::AtLeastOnce, _) => {
                self.recs.insert(id, done(0));
                Answer::Ok
            }
            (Mode::AtMostOnce, Some(Rec::Done { token: t, status: Status::Seen, .. })) if t == token => {
                self.recs.insert(id, done(t));
                Answer::Ok
            }
            (Mode::ExactlyOnce, Some(Rec::Lease { token: t, .. })) if t == token => {
                self.recs.insert(id, done(t));
                Answer::Ok
            }
            _ => Answer::LeaseLost,
        }
    }

    fn release(&mut self, id: &'static str, token: u64, mode: Mode, now: i64) -> Answer {
        match (mode, self.live(id, now)) {
            (Mode::AtLeastOnce, _) => return Answer::Ok,
            (Mode::AtMostOnce, Some(Rec::Done { token: t, .. })) if *t == token => return Answer::Ok,
            (Mode::AtMostOnce, _) => return Answer::LeaseLost,
            _ => {}
        }
        match self.live(id, now) {
            Some(Rec::Lease { token: t, .. }) if *t == token => {
                self.recs.remove(id);
                Answer::Ok
            }
            _ => Answer::LeaseLost,
        }
    }
}

fn unit<T>(r: oncely::Result<T>) -> Answer {
    match r {
        Ok(_) => Answer::Ok,
        Err(e) if e.code() == ErrorCode::LeaseLost => Answer::LeaseLost,
        Err(e) => panic!("unexpected error {e}"),
    }
}

fn run<S: InboxStore>(steps: &[Step], mut open: impl FnMut() -> S) {
    let t0 = 1_700_000_000_000i64;
    let clock = ManualClock::new(Timestamp(t0));
    let cfg = InboxConfig::new("model")
        .lease(Duration::from_millis(LEASE_MS as u64))
        .retention(Duration::from_millis(RETENTION_MS as u64));
    let new_inbox = |store: S| Inbox::with_clock(store, cfg.clone(), Arc::new(clock.clone())).unwrap();
    let mut inbox = new_inbox(open());
    let mut model = Model::default();
    let mut tickets: [Option<(&'static str, Ticket<S>)>; 3] = [None, None, None];
    // Invariant bookkeeping: the completion that stands for each id, and until when.
    let mut standing: HashMap<&'static str, (Status, Option<String>, i64)> = HashMap::new();
    let mut serial = 0;
    for (i, step) in steps.iter().enumerate() {
        let now = clock.now().0;
        match step {
            Step::Begin { worker, id, mode } => {
                let id = IDS[*id];
                let expected = model.begin(id, *mode, now);
                let got = match pollster::block_on(inbox.begin(Request::new(id).mode(*mode))).unwrap() {
                    Begin::Claimed(t) => {
                        let a = Answer::Claimed(t.token());
                        tickets[*worker] = Some((id, t));
                        a
                    }
                    Begin::Duplicate(r) => {
                        Answer::Duplicate(r.status, r.result.map(|b| String::from_utf8(b).unwrap()))
                    }
                    Begin::InProgress { .. } => Answer::InProgress,
                    Begin::Conflict => panic!("no payloads, no conflicts"),
                };
                assert_eq!(got, expected, "step {i}: {step:?}");
                if let (Answer::Claimed(_), Some((_, result, until))) = (&got, standing.get(id)) {
                    assert!(now >= *until, "step {i}: {id} claimed while its completion {result:?} stands");
                }
                if let (Answer::Claimed(_), Mode::AtMostOnce) = (&got, mode) {
                    standing.insert(id, (Status::Seen, None, now + RETENTION_MS));
                }
            }
            Step::Finish { worker } => {
                let Some((id, t)) = &tickets[*worker] else { continue };
                serial += 1;
                let result = format!("r{serial}");
                let expected = model.finish(id, t.token(), t.mode(), result.clone(), now);
                let got = unit(pollster::block_on(t.finish(result.clone().into_bytes())));
                assert_eq!(got, expected, "step {i}: {step:?}");
                if got == Answer::Ok {
                    let live = standing.get(id).filter(|(_, _, until)| now < *until).cloned();
                    match (t.mode(), live) {
                        // At-most-once fills in the result of its own mark.
                        (Mode::AtMostOnce, _) => {
                            standing.insert(id, (Status::Succeeded, Some(result), now + RETENTION_MS));
                        }
                        // At-least-once may finish over a standing completion, which stays.
                        (Mode::AtLeastOnce, Some(_)) => {}
                        (Mode::ExactlyOnce, Some(first)) => {
                            panic!("step {i}: two completions of {id}: {first:?} and {result}")
                        }
                        (_, None) => {
                            standing.insert(id, (Status::Succeeded, Some(result), now + RETENTION_MS));
                        }
                    }
                }
            }
            Step::Release { worker } => {
                let Some((id, t)) = &tickets[*worker] else { continue };
                let expected = model.release(id, t.token(), t.mode(), now);
                assert_eq!(unit(pollster::block_on(t.release())), expected, "step {i}: {step:?}");
            }
            Step::Advance { ms } => clock.advance(Duration::from_millis(*ms as u64)),
            Step::Restart => {
                drop(inbox);
                inbox = new_inbox(open());
            }
        }
        // Never a lost completion: a standing completion is what a duplicate gets.
        for (id, (status, result, until)) in &standing {
            if clock.now().0 < *until {
                let rec =
                    pollster::block_on(inbox.get(id)).unwrap().expect("a standing completion must be stored");
                match rec.state {
                    oncely::inbox::RecordState::Completed(o) => {
                        let stored = (o.status, o.result.map(|b| String::from_utf8(b).unwrap()));
                        assert_eq!(stored, (*status, result.clone()), "step {i}: {id} lost its completion");
                    }
                    other => panic!("step {i}: {id} lost its completion: {other:?}"),
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    #[test]
    fn memory_store_matches_the_model(steps in prop::collection::vec(step(), 1..60)) {
        let store = Arc::new(MemoryStore::new());
        run(&steps, || store.clone());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]
    #[test]
    fn sqlite_store_matches_the_model(steps in prop::collection::vec(step(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.db");
        run(&steps, || SqliteStore::open(&path, SqliteConfig::default()).unwrap());
    }
}
