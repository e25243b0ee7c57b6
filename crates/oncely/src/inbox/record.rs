//! What the inbox stores for one id.

use crate::clock::Timestamp;
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
