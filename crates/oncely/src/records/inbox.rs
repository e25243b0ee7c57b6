//! What the inbox stores for one id, and which outcomes it keeps.

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::fingerprint::Fingerprint;

/// How a completed id ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Marked as seen before its handler ran (at-most-once); no result yet.
    Seen,
    /// The handler succeeded.
    Succeeded,
    /// The handler failed permanently and the policy stores failures.
    Failed,
}

impl Status {
    /// The stable snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Seen => "seen",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
        }
    }

    pub(crate) const fn to_code(self) -> u8 {
        match self {
            Status::Seen => 1,
            Status::Succeeded => 2,
            Status::Failed => 3,
        }
    }

    pub(crate) const fn from_code(c: u8) -> Option<Status> {
        match c {
            1 => Some(Status::Seen),
            2 => Some(Status::Succeeded),
            3 => Some(Status::Failed),
            _ => None,
        }
    }
}

/// The stored outcome of a completed id, replayed to duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoredOutcome {
    /// How it ended.
    pub status: Status,
    /// The result (or failure reason) bytes the handler produced, if any.
    pub result: Option<Vec<u8>>,
}

/// The state of one id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordState {
    /// A caller holds a lease until `lease_until`; after that the id is claimable again.
    InProgress {
        /// When the lease runs out.
        lease_until: Timestamp,
    },
    /// Done; duplicates get this outcome until the record expires.
    Completed(StoredOutcome),
}

impl RecordState {
    /// The stable snake_case name of this state, as every binding reports it: `"in_progress"`,
    /// or the completed outcome's status (`"seen"`, `"succeeded"`, `"failed"`).
    pub const fn as_str(&self) -> &'static str {
        match self {
            RecordState::InProgress { .. } => "in_progress",
            RecordState::Completed(o) => o.status.as_str(),
        }
    }
}

/// One id's record in a store (the id itself is the store's key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxRecord {
    /// The payload fingerprint of the claim, when one was given.
    pub fingerprint: Option<Fingerprint>,
    /// The fencing token of the latest claim (0 for an unfenced at-least-once completion).
    pub token: u64,
    /// Leased or completed.
    pub state: RecordState,
    /// When the record stops counting: after this it is treated as absent and may be collected.
    pub expires_at: Timestamp,
}

impl InboxRecord {
    /// Whether the record still counts at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        now < self.expires_at
    }
}

/// An inbox record as the SQL stores keep it: the state as one integer (0: in progress; else
/// the completed status's code), the lease end (0 when completed), the result.
pub(crate) struct RecordColumns<'r> {
    pub state: i64,
    pub lease_until: i64,
    pub result: Option<&'r [u8]>,
}

impl InboxRecord {
    /// The columns the SQL stores keep for this record's state.
    pub(crate) fn columns(&self) -> RecordColumns<'_> {
        match &self.state {
            RecordState::InProgress { lease_until } => {
                RecordColumns { state: STATE_IN_PROGRESS, lease_until: lease_until.0, result: None }
            }
            RecordState::Completed(o) => RecordColumns {
                state: i64::from(o.status.to_code()),
                lease_until: 0,
                result: o.result.as_deref(),
            },
        }
    }

    /// The record `id` from the columns of an SQL store; unreadable values are
    /// [`crate::Error::CorruptStore`].
    pub(crate) fn from_columns(
        id: &str,
        fingerprint: Option<Vec<u8>>,
        token: i64,
        state: i64,
        lease_until: i64,
        result: Option<Vec<u8>>,
        expires_at: i64,
    ) -> crate::Result<InboxRecord> {
        let fingerprint =
            fingerprint.map(|b| Fingerprint::from_column(|| format!("record `{id}`"), &b)).transpose()?;
        let state = if state == STATE_IN_PROGRESS {
            RecordState::InProgress { lease_until: Timestamp(lease_until) }
        } else {
            let status = u8::try_from(state).ok().and_then(Status::from_code).ok_or_else(|| {
                crate::Error::CorruptStore(format!("record `{id}` has an unknown state {state}"))
            })?;
            RecordState::Completed(StoredOutcome { status, result })
        };
        Ok(InboxRecord { fingerprint, token: token as u64, state, expires_at: Timestamp(expires_at) })
    }
}

/// How many records one inbox scope holds, by state, at one moment ([`crate::InboxStore::scope_counts`]).
///
/// A record counts by its state while it is live (`now < expires_at`); once expired it counts
/// only in `expired`, whatever its state, until garbage collection deletes it (an expired record
/// is treated as absent by every operation).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScopeCounts {
    /// The scope's name.
    pub scope: String,
    /// Live records held by a claim ([`RecordState::InProgress`]), including claims whose lease
    /// ran out and that the next caller may take over.
    pub in_progress: u64,
    /// Live records completed as [`Status::Seen`] (at-most-once marks).
    pub seen: u64,
    /// Live records completed as [`Status::Succeeded`].
    pub succeeded: u64,
    /// Live records completed as [`Status::Failed`] (stored permanent failures).
    pub failed: u64,
    /// Records past their expiry that garbage collection has not deleted yet.
    pub expired: u64,
}

impl ScopeCounts {
    /// Live completed records: `seen + succeeded + failed`.
    pub fn completed(&self) -> u64 {
        self.seen + self.succeeded + self.failed
    }

    /// Every record of the scope the store still holds, live or expired.
    pub fn total(&self) -> u64 {
        self.in_progress + self.completed() + self.expired
    }

    /// Adds one record to the counts: `state` as stored (0: in progress, else a
    /// [`Status`] code), live when `live`. An unknown state code is
    /// [`crate::Error::CorruptStore`].
    pub(crate) fn add(&mut self, state: i64, live: bool, n: u64) -> crate::Result<()> {
        if !live {
            self.expired += n;
            return Ok(());
        }
        match state {
            STATE_IN_PROGRESS => self.in_progress += n,
            s => match u8::try_from(s).ok().and_then(Status::from_code) {
                Some(Status::Seen) => self.seen += n,
                Some(Status::Succeeded) => self.succeeded += n,
                Some(Status::Failed) => self.failed += n,
                None => {
                    return Err(crate::Error::CorruptStore(format!(
                        "scope `{}` has records of an unknown state {s}",
                        crate::text::quote(&self.scope)
                    )));
                }
            },
        }
        Ok(())
    }

    /// Folds rows of `(scope, state, live, count)`, ordered by scope, into one entry per scope.
    pub(crate) fn from_rows(
        rows: impl IntoIterator<Item = (String, i64, bool, u64)>,
    ) -> crate::Result<Vec<ScopeCounts>> {
        let mut out: Vec<ScopeCounts> = Vec::new();
        for (scope, state, live, n) in rows {
            if out.last().is_none_or(|c| c.scope != scope) {
                out.push(ScopeCounts { scope, ..ScopeCounts::default() });
            }
            out.last_mut().expect("pushed above").add(state, live, n)?;
        }
        Ok(out)
    }
}

/// The state column's value for a record in progress.
const STATE_IN_PROGRESS: i64 = 0;

/// Which handler outcomes an inbox keeps for replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CachePolicy {
    /// Only successes are stored; a failure gives the id back so that a retry can run.
    #[default]
    SuccessOnly,
    /// Permanent failures are stored too and replay as the same failure; retryable failures
    /// still give the id back.
    SuccessAndFailure,
}

impl CachePolicy {
    /// The stable snake_case name: `"success_only"` or `"success_and_failure"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CachePolicy::SuccessOnly => "success_only",
            CachePolicy::SuccessAndFailure => "success_and_failure",
        }
    }
}

impl CachePolicy {
    /// Whether a permanent failure is stored (and so limited like a result).
    pub const fn stores_failures(self) -> bool {
        matches!(self, CachePolicy::SuccessAndFailure)
    }
}

impl std::str::FromStr for CachePolicy {
    type Err = Error;
    /// Parses [`CachePolicy::as_str`]'s names; anything else is `invalid_argument` on
    /// `cache_policy`, quoting the text by a bounded prefix.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "success_only" => Ok(CachePolicy::SuccessOnly),
            "success_and_failure" => Ok(CachePolicy::SuccessAndFailure),
            other => Err(Error::invalid(
                "cache_policy",
                format!(
                    "unknown cache policy `{}` (expected success_only or success_and_failure)",
                    crate::text::quote(other)
                ),
            )),
        }
    }
}
