//! What the run saw, kept outside every node (it survives their crashes), and the invariants
//! judged on it: real counts of effects, claims, leases and settles.

use std::collections::{BTreeMap, BTreeSet};

use oncely::clock::Timestamp;

use crate::SimMode;

/// Which guarantee a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// An effect happened twice (more than the mode allows).
    Duplicate,
    /// An acknowledged message's effect never happened.
    Lost,
    /// Two claims (inbox) or leases (outbox) on one id were live at once.
    TwoLiveClaims,
    /// A settle with a token older than one already handed out for the id succeeded.
    StaleSettle,
    /// A message was in two states: done and queued (or delivered again after its done mark).
    TwoStates,
}

impl Kind {
    /// Every kind, in table order.
    pub const ALL: [Kind; 5] =
        [Kind::Duplicate, Kind::Lost, Kind::TwoLiveClaims, Kind::StaleSettle, Kind::TwoStates];

    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Duplicate => "duplicate",
            Kind::Lost => "lost",
            Kind::TwoLiveClaims => "two_live",
            Kind::StaleSettle => "stale_settle",
            Kind::TwoStates => "two_states",
        }
    }
}

/// One broken guarantee.
#[derive(Debug, Clone)]
pub struct Violation {
    /// Which.
    pub kind: Kind,
    /// Where and how.
    pub detail: String,
}

/// A lease (outbox) or claim (inbox) as the worker or handler saw it granted.
#[derive(Debug, Clone)]
struct Held {
    token: u64,
    at: Timestamp,
    until: Timestamp,
    open: bool,
    finished_at: Option<Timestamp>,
    /// Its node lost power while it was held: it ended there at the latest.
    cut: bool,
}

/// Records a lease or claim granted at `now`, and answers the token of an earlier one that was
/// still live then. The store let every earlier one go (it ran out, or was settled), so none of
/// them counts as live afterwards, whatever the clock says after it jumped back.
fn grant(held: &mut Vec<Held>, token: u64, now: Timestamp, until: Timestamp) -> Option<u64> {
    let live = held.iter().find(|h| h.open && h.until > now).map(|h| h.token);
    for h in held.iter_mut() {
        h.open = false;
    }
    held.push(Held { token, at: now, until, open: true, finished_at: None, cut: false });
    live
}

/// Closes the grant of `token` (finished at `finished`, if it was), and answers the newest token
/// granted for the id.
fn close(held: &mut [Held], token: u64, finished: Option<Timestamp>) -> u64 {
    for h in held.iter_mut().filter(|h| h.token == token && h.open) {
        h.open = false;
        h.finished_at = finished;
    }
    held.iter().map(|h| h.token).max().unwrap_or(0)
}

/// The run's observations.
pub struct Oracle {
    mode: SimMode,
    enqueued: BTreeSet<String>,
    acked: BTreeSet<String>,
    leases: BTreeMap<String, Vec<Held>>,
    claims: BTreeMap<String, Vec<Held>>,
    effects: BTreeMap<String, Vec<u64>>,
    /// Broken guarantees so far.
    pub violations: Vec<Violation>,
}

impl Oracle {
    /// An oracle for `mode`.
    pub fn new(mode: SimMode) -> Self {
        Oracle {
            mode,
            enqueued: BTreeSet::new(),
            acked: BTreeSet::new(),
            leases: BTreeMap::new(),
            claims: BTreeMap::new(),
            effects: BTreeMap::new(),
            violations: Vec::new(),
        }
    }

    fn violation(&mut self, kind: Kind, detail: String) {
        self.violations.push(Violation { kind, detail });
    }

    /// The application was told its message is queued.
    pub fn enqueued(&mut self, id: &str) {
        self.enqueued.insert(id.to_owned());
    }

    /// The worker got a lease on `id`.
    pub fn leased(&mut self, id: &str, token: u64, now: Timestamp, until: Timestamp) {
        if self.acked.contains(id) {
            self.violation(Kind::TwoStates, format!("{id} was acked, then leased again (token {token})"));
        }
        let held = self.leases.entry(id.to_owned()).or_default();
        let earlier = !held.is_empty();
        let live = grant(held, token, now, until);
        if self.mode == SimMode::AtMostOnce && earlier {
            let detail = format!("at-most-once {id} was marked done, then leased again (token {token})");
            self.violation(Kind::TwoStates, detail);
        } else {
            self.two_live("leased", id, token, live);
        }
    }

    /// The worker settled a delivery (`ack`: it tried to ack; `ok`: the store said done).
    pub fn settled(&mut self, id: &str, token: u64, ack: bool, ok: bool, now: Timestamp) {
        let newest = close(self.leases.entry(id.to_owned()).or_default(), token, Some(now));
        self.stale(ok, id, token, newest);
        if ok && ack {
            self.acked.insert(id.to_owned());
        }
    }

    /// A node lost power: every lease (`sender`) or claim (receiver) held there ends
    /// with it. Its holder died with the machine, and the store may have lost the grant itself —
    /// a claim or lease commits without an fsync, since losing one only ends it early, as its
    /// expiry would (docs/semantics.md, "Durability per operation"). At-most-once grants are
    /// durable marks and still count: leasing one again is caught as before.
    pub fn power_cut(&mut self, sender: bool) {
        let held = if sender { &mut self.leases } else { &mut self.claims };
        for h in held.values_mut().flatten() {
            h.open = false;
            h.cut = true;
        }
    }

    /// The receiver claimed `id`.
    pub fn claimed(&mut self, id: &str, token: u64, now: Timestamp, until: Timestamp) {
        let live = grant(self.claims.entry(id.to_owned()).or_default(), token, now, until);
        if self.mode == SimMode::ExactlyOnce {
            self.two_live("claimed", id, token, live);
        }
    }

    /// The receiver finished (`finish`) or released its claim; `ok`: the store agreed.
    pub fn inbox_settled(&mut self, id: &str, token: u64, ok: bool, finish: bool, now: Timestamp) {
        let finished = (ok && finish).then_some(now);
        let newest = close(self.claims.entry(id.to_owned()).or_default(), token, finished);
        // At-least-once claims hold no token (0): nothing to fence.
        self.stale(ok && token != 0, id, token, newest);
    }

    fn two_live(&mut self, granted: &str, id: &str, token: u64, live: Option<u64>) {
        if let Some(other) = live {
            let detail = format!("{id} {granted} with token {token} while token {other}'s lease was live");
            self.violation(Kind::TwoLiveClaims, detail);
        }
    }

    fn stale(&mut self, settled: bool, id: &str, token: u64, newest: u64) {
        if settled && newest > token {
            let detail = format!("{id}: token {token} settled after token {newest} was handed out");
            self.violation(Kind::StaleSettle, detail);
        }
    }

    /// The handler's effect happened for `id` under the claim `token`.
    pub fn effect(&mut self, id: &str, token: u64) {
        self.effects.entry(id.to_owned()).or_default().push(token);
    }

    /// Judges the run once it healed: `ledger` is the transactional inbox's rows per id,
    /// `queued` the ids still in the outbox.
    pub fn judge(
        &mut self,
        drained: bool,
        ledger: Option<BTreeMap<String, u64>>,
        queued: &BTreeSet<String>,
        dead: usize,
    ) {
        let counts: BTreeMap<String, u64> = match ledger {
            Some(rows) => rows,
            None => self.effects.iter().map(|(id, e)| (id.clone(), e.len() as u64)).collect(),
        };
        let count = |id: &str| counts.get(id).copied().unwrap_or(0);
        let once_at_most = matches!(self.mode, SimMode::AtMostOnce | SimMode::Transactional);
        for (id, n) in &counts {
            if once_at_most && *n > 1 {
                self.violation(Kind::Duplicate, format!("{id}: {n} effects"));
            }
        }
        if self.mode == SimMode::ExactlyOnce {
            self.duplicates_only_after_lease_expiry();
        }
        if self.mode != SimMode::AtMostOnce {
            let lost: Vec<String> = self.enqueued.iter().filter(|id| count(id) == 0).cloned().collect();
            for id in lost {
                let why = if drained { "the outbox drained" } else { "the run did not drain" };
                self.violation(Kind::Lost, format!("{id}: queued, no effect ({why}, {dead} dead letters)"));
            }
        }
        let both: Vec<String> = self.acked.intersection(queued).cloned().collect();
        for id in both {
            self.violation(Kind::TwoStates, format!("{id} was acked and is still queued"));
        }
    }

    /// The plain exactly-once inbox runs an effect again only once the earlier claim's lease
    /// ran out unfinished, or ended with its machine in a power cut: "at most once per lease
    /// expiry". Judged on the first claim of the id
    /// after the earlier effect's claim (the store granted it, by its clock at that moment).
    fn duplicates_only_after_lease_expiry(&mut self) {
        let mut found = Vec::new();
        for (id, tokens) in &self.effects {
            let mut claims = self.claims[id].clone();
            claims.sort_unstable_by_key(|h| h.token); // claim order: tokens only grow
            let mut tokens = tokens.clone();
            tokens.sort_unstable();
            for pair in tokens.windows(2) {
                let Some(first) = claims.iter().find(|h| h.token == pair[0]) else { continue };
                let Some(next) = claims.iter().find(|h| h.token > pair[0]) else { continue };
                if next.at < first.until && !first.cut {
                    found.push(format!(
                        "{id}: token {} claimed at {} within token {}'s lease (until {}), whose effect ran; token {} ran it again",
                        next.token, next.at.0, first.token, first.until.0, pair[1]
                    ));
                } else if first.finished_at.is_some_and(|f| f <= next.at) {
                    found.push(format!(
                        "{id}: token {} claimed after token {} had finished",
                        next.token, first.token
                    ));
                }
            }
        }
        for detail in found {
            self.violation(Kind::Duplicate, detail);
        }
    }
}
