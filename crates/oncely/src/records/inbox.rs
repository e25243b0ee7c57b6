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
