//! The inbox's rules as one pure function: given an operation, the id's current record and the
//! time, decide what to write and what to answer. Every store applies this function atomically
//! per id, so memory, SQLite and PostgreSQL cannot disagree about semantics.

use std::time::Duration;

use crate::clock::Timestamp;
use crate::fingerprint::Fingerprint;
use crate::mode::Mode;
use crate::records::durability::Durability;
use crate::records::inbox::{CachePolicy, InboxRecord, RecordState, Status, StoredOutcome};

/// One operation on one id, as a store receives it.
#[derive(Debug, Clone, PartialEq)]
pub enum InboxOp {
    /// Try to claim `id`.
    Begin {
        /// The id.
        id: String,
        /// The payload fingerprint, checked against the stored one.
        fingerprint: Option<Fingerprint>,
        /// The guarantee asked for.
        mode: Mode,
        /// How long an exactly-once claim holds the id.
        lease: Duration,
        /// How long the record counts once written.
        retention: Duration,
    },
    /// Complete the claim that holds `token`.
    Finish {
        /// The id.
        id: String,
        /// The claim's fencing token.
        token: u64,
        /// The claim's fingerprint (stored for an at-least-once completion).
        fingerprint: Option<Fingerprint>,
        /// The claim's mode.
        mode: Mode,
        /// What to store.
        outcome: StoredOutcome,
        /// How long the completed record counts.
        retention: Duration,
    },
    /// Report a permanent failure of the claim that holds `token`. The inbox's cache policy
    /// decides: under [`CachePolicy::SuccessAndFailure`] the failure is stored as a `Finish`
    /// with status `failed` (and replays to duplicates); under [`CachePolicy::SuccessOnly`] the
    /// id is given back as by `Release`.
    Fail {
        /// The id.
        id: String,
        /// The claim's fencing token.
        token: u64,
        /// The claim's fingerprint (stored for an at-least-once completion).
        fingerprint: Option<Fingerprint>,
        /// The claim's mode.
        mode: Mode,
        /// Why it failed: the stored result when the policy keeps failures.
        reason: Vec<u8>,
        /// Which outcomes the inbox keeps.
        policy: CachePolicy,
        /// How long a stored failure counts.
        retention: Duration,
    },
    /// Keep the exactly-once claim that holds `token` for `lease` more from now, so a handler
    /// that runs longer than its lease is not joined by a second run of the same id.
    Extend {
        /// The id.
        id: String,
        /// The claim's fencing token.
        token: u64,
        /// The new lease, counted from now.
        lease: Duration,
        /// How long the record counts once its lease ends.
        retention: Duration,
    },
    /// Give the id back after a failure so that a retry can claim it.
    Release {
        /// The id.
        id: String,
        /// The claim's fencing token.
        token: u64,
        /// The claim's mode.
        mode: Mode,
    },
}

impl InboxOp {
    /// How far the commit of this operation must reach (see [`Durability`]): a claim,
    /// a lease extension or a release needs only to be visible — losing one in a power cut
    /// leaves a claim that ran out, or no claim — except an at-most-once claim, the mark that
    /// must be on disk before its effect runs; an outcome (finish, fail) must be durable.
    pub fn durability(&self) -> Durability {
        match self {
            InboxOp::Begin { mode, .. } => Durability::of_attempt(*mode),
            InboxOp::Extend { .. } | InboxOp::Release { .. } => Durability::Visible,
            InboxOp::Finish { .. } | InboxOp::Fail { .. } => Durability::Durable,
        }
    }

    /// The id the operation is about.
    pub fn id(&self) -> &str {
        match self {
            InboxOp::Begin { id, .. }
            | InboxOp::Finish { id, .. }
            | InboxOp::Extend { id, .. }
            | InboxOp::Fail { id, .. }
            | InboxOp::Release { id, .. } => id,
        }
    }
}

/// What a store answers for one operation.
#[derive(Debug, Clone, PartialEq)]
pub enum OpAnswer {
    /// The caller holds the id now, with this fencing token (0: unfenced, at-least-once).
    Claimed {
        /// The fencing token.
        token: u64,
    },
    /// The id is done; here is its stored outcome, which counts until `expires_at`.
    Duplicate {
        /// The stored outcome.
        outcome: StoredOutcome,
        /// The fingerprint stored with it (not the request's).
        fingerprint: Option<Fingerprint>,
        /// When the record expires.
        expires_at: Timestamp,
    },
    /// Another caller holds an unexpired lease until `lease_until`.
    InProgress {
        /// When that lease runs out.
        lease_until: Timestamp,
    },
    /// The id is live with a different fingerprint.
    Conflict,
    /// The finish was recorded. (An at-least-once finish over an earlier completion answers
    /// `Duplicate` with the completion that stands.)
    Finished,
    /// The release was recorded (or had nothing to undo).
    Released,
    /// The claim now holds the id until `lease_until`.
    Extended {
        /// The new end of the lease.
        lease_until: Timestamp,
    },
    /// The token is stale: nothing was written.
    LeaseLost,
}

/// What the store must do to the id's record.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Leave the record as it is.
    Keep,
    /// Replace (or create) the record.
    Put(InboxRecord),
    /// Remove the record.
    Delete,
}

/// The inbox's rules. `existing` is the id's record as stored (expired or not); `next_token`
/// hands out a fresh fencing token, larger than every token the store has handed out before.
pub fn decide(
    op: &InboxOp,
    existing: Option<&InboxRecord>,
    now: Timestamp,
    next_token: &mut dyn FnMut() -> u64,
) -> (Write, OpAnswer) {
    let live = existing.filter(|r| r.is_live(now));
    match op {
        InboxOp::Begin { fingerprint, mode, lease, retention, .. } => {
            if let Some(rec) = live {
                if let (Some(stored), Some(given)) = (rec.fingerprint, fingerprint) {
                    if stored != *given {
                        return (Write::Keep, OpAnswer::Conflict);
                    }
                }
                match &rec.state {
                    RecordState::Completed(outcome) => {
                        let answer = OpAnswer::Duplicate {
                            outcome: outcome.clone(),
                            fingerprint: rec.fingerprint,
                            expires_at: rec.expires_at,
                        };
                        return (Write::Keep, answer);
                    }
                    RecordState::InProgress { lease_until } if now < *lease_until => {
                        return (Write::Keep, OpAnswer::InProgress { lease_until: *lease_until });
                    }
                    RecordState::InProgress { .. } => {} // lease ran out: claimable
                }
            }
            use crate::sim_broken::{Broken, is};
            match mode {
                Mode::AtMostOnce if is(Broken::AtMostOnceMarksAfter) => {
                    (Write::Keep, OpAnswer::Claimed { token: next_token() })
                }
                Mode::AtLeastOnce if !is(Broken::AtLeastOnceMarksBefore) => {
                    (Write::Keep, OpAnswer::Claimed { token: 0 })
                }
                Mode::AtMostOnce | Mode::AtLeastOnce => {
                    let token = next_token();
                    let rec = InboxRecord {
                        fingerprint: *fingerprint,
                        token,
                        state: RecordState::Completed(StoredOutcome { status: Status::Seen, result: None }),
                        expires_at: now.after(*retention),
                    };
                    (Write::Put(rec), OpAnswer::Claimed { token })
                }
                Mode::ExactlyOnce => {
                    let token = next_token();
                    let lease_until = now.after(*lease);
                    let rec = InboxRecord {
                        fingerprint: *fingerprint,
                        token,
                        state: RecordState::InProgress { lease_until },
                        expires_at: lease_until.after(*retention),
                    };
                    (Write::Put(rec), OpAnswer::Claimed { token })
                }
            }
        }
        InboxOp::Finish { token, fingerprint, mode, outcome, retention, .. } => {
            let completed = |token: u64, fingerprint: Option<Fingerprint>| InboxRecord {
                fingerprint,
                token,
                state: RecordState::Completed(outcome.clone()),
                expires_at: now.after(*retention),
            };
            match (mode, live) {
                // At-least-once: the first completion stands; say which one it is.
                (Mode::AtLeastOnce, Some(rec)) if matches!(rec.state, RecordState::Completed(_)) => {
                    let RecordState::Completed(first) = &rec.state else { unreachable!() };
                    let answer = OpAnswer::Duplicate {
                        outcome: first.clone(),
                        fingerprint: rec.fingerprint,
                        expires_at: rec.expires_at,
                    };
                    (Write::Keep, answer)
                }
                (Mode::AtLeastOnce, _) => (Write::Put(completed(0, *fingerprint)), OpAnswer::Finished),
                (Mode::AtMostOnce, _)
                    if crate::sim_broken::is(crate::sim_broken::Broken::AtMostOnceMarksAfter) =>
                {
                    (Write::Put(completed(*token, *fingerprint)), OpAnswer::Finished)
                }
                (Mode::AtMostOnce, Some(rec))
                    if rec.token == *token
                        && matches!(&rec.state, RecordState::Completed(o) if o.status == Status::Seen) =>
                {
                    (Write::Put(completed(rec.token, rec.fingerprint)), OpAnswer::Finished)
                }
                (Mode::ExactlyOnce, Some(rec))
                    if crate::sim_broken::fenced(rec.token, *token)
                        && matches!(rec.state, RecordState::InProgress { .. }) =>
                {
                    (Write::Put(completed(rec.token, rec.fingerprint)), OpAnswer::Finished)
                }
                _ => (Write::Keep, OpAnswer::LeaseLost),
            }
        }
        InboxOp::Fail { id, token, fingerprint, mode, reason, policy, retention } => {
            let as_op = match policy {
                CachePolicy::SuccessAndFailure => InboxOp::Finish {
                    id: id.clone(),
                    token: *token,
                    fingerprint: *fingerprint,
                    mode: *mode,
                    outcome: StoredOutcome { status: Status::Failed, result: Some(reason.clone()) },
                    retention: *retention,
                },
                CachePolicy::SuccessOnly => InboxOp::Release { id: id.clone(), token: *token, mode: *mode },
            };
            decide(&as_op, existing, now, next_token)
        }
        // Only the claim's own holder extends it, and only while it is still in progress (a
        // lease that ran out but was not taken over is still that holder's).
        InboxOp::Extend { token, lease, retention, .. } => match live {
            Some(rec) if rec.token == *token && matches!(rec.state, RecordState::InProgress { .. }) => {
                let lease_until = now.after(*lease);
                let rec = InboxRecord {
                    state: RecordState::InProgress { lease_until },
                    expires_at: lease_until.after(*retention),
                    ..rec.clone()
                };
                (Write::Put(rec), OpAnswer::Extended { lease_until })
            }
            _ => (Write::Keep, OpAnswer::LeaseLost),
        },
        InboxOp::Release { token, mode, .. } => match mode {
            // At-least-once wrote nothing to undo and holds no token.
            Mode::AtLeastOnce => (Write::Keep, OpAnswer::Released),
            // At-most-once never gives an id back (its mark stays), but a stale token is refused.
            Mode::AtMostOnce => match live {
                Some(rec) if rec.token == *token && matches!(rec.state, RecordState::Completed(_)) => {
                    (Write::Keep, OpAnswer::Released)
                }
                _ => (Write::Keep, OpAnswer::LeaseLost),
            },
            Mode::ExactlyOnce => match live {
                Some(rec)
                    if crate::sim_broken::fenced(rec.token, *token)
                        && matches!(rec.state, RecordState::InProgress { .. }) =>
                {
                    (Write::Delete, OpAnswer::Released)
                }
                _ => (Write::Keep, OpAnswer::LeaseLost),
            },
        },
    }
}

/// [`decide`] with a token source that can fail (a store's counter): the source's first error is
/// returned instead of the decision, which must then not be written.
pub(crate) fn decide_with(
    op: &InboxOp,
    existing: Option<&InboxRecord>,
    now: Timestamp,
    mut next_token: impl FnMut() -> crate::Result<u64>,
) -> crate::Result<(Write, OpAnswer)> {
    let mut error = None;
    let decided = decide(op, existing, now, &mut || {
        next_token().unwrap_or_else(|e| {
            error.get_or_insert(e);
            0
        })
    });
    match error {
        Some(e) => Err(e),
        None => Ok(decided),
    }
}
