//! What the outbox stores for one message.

use std::time::Duration;

use crate::clock::Timestamp;
use crate::message::Message;

/// Where a stored message stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageState {
    /// Waiting to be delivered from `available_at` on.
    Ready,
    /// Handed to a worker holding `token` until `lease_until`; after that it is deliverable again.
    Leased {
        /// The fencing token of the lease.
        token: u64,
        /// When the lease runs out.
        lease_until: Timestamp,
    },
    /// Given up on (attempts or deadline exhausted, a permanent failure, or a lease that ran out
    /// after the last attempt); kept for inspection and replay.
    Dead {
        /// Why.
        reason: String,
    },
}

impl MessageState {
    /// The stable snake_case name of this state, as every binding reports it: `"ready"`
    /// (including scheduled for later), `"leased"` or `"dead"`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            MessageState::Ready => "ready",
            MessageState::Leased { .. } => "leased",
            MessageState::Dead { .. } => "dead",
        }
    }
}

/// One message in an outbox, with its delivery bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRecord {
    /// The message (its `attempts` counts the attempts made so far).
    pub message: Message,
    /// Position in the queue: grows with every enqueue (and with every park), so it orders
    /// messages of one key.
    pub seq: u64,
    /// Where it stands.
    pub state: MessageState,
    /// When its first attempt started.
    pub first_attempt_at: Option<Timestamp>,
    /// The delay before its last retry (decorrelated backoff chains on it).
    pub last_delay: Option<Duration>,
    /// The error of its last failed attempt.
    pub last_error: Option<String>,
}

/// A snapshot of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Messages deliverable now (including those whose lease ran out).
    pub ready: u64,
    /// Messages waiting for their `available_at` (delayed, or backing off).
    pub scheduled: u64,
    /// Messages leased to a worker whose lease has not run out.
    pub leased: u64,
    /// Dead letters.
    pub dead: u64,
    /// When the oldest pending (ready, scheduled or leased) message was created.
    pub oldest_created_at: Option<Timestamp>,
}

impl QueueStats {
    /// Pending messages: ready, scheduled and leased.
    pub fn depth(&self) -> u64 {
        self.ready + self.scheduled + self.leased
    }
}

/// A message state as the SQL stores keep it: `(state, token, lease_until, dead_reason)` with
/// state 0 ready, 1 leased, 2 dead, and zeros where a state has no value.
impl MessageState {
    pub(crate) const READY: i64 = 0;
    pub(crate) const LEASED: i64 = 1;
    pub(crate) const DEAD: i64 = 2;

    /// The columns for this state.
    pub(crate) fn columns(&self) -> (i64, i64, i64, Option<&str>) {
        match self {
            MessageState::Ready => (Self::READY, 0, 0, None),
            MessageState::Leased { token, lease_until } => (Self::LEASED, *token as i64, lease_until.0, None),
            MessageState::Dead { reason } => (Self::DEAD, 0, 0, Some(reason.as_str())),
        }
    }

    /// The state the columns describe.
    pub(crate) fn from_columns(state: i64, token: i64, lease_until: i64, reason: Option<String>) -> Self {
        match state {
            Self::READY => MessageState::Ready,
            Self::LEASED => MessageState::Leased { token: token as u64, lease_until: Timestamp(lease_until) },
            _ => MessageState::Dead { reason: reason.unwrap_or_default() },
        }
    }
}
