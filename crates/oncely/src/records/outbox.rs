//! What the outbox stores for one message.

use std::time::Duration;

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::mode::Mode;

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
    /// The delivery mode it was enqueued under, kept with it: every handle reaps, settles and
    /// redelivers it by this mode, whatever the handle's own configuration says — so a handle
    /// opened with another mode (a rolling deploy, an admin script) cannot turn an at-most-once
    /// message into a second delivery, or an at-least-once one into a loss. `None` only for a
    /// message stored before oncely kept its mode (it follows the handle's mode).
    pub mode: Option<Mode>,
    /// The attempt limit it was enqueued under, kept with it like its mode: a handle whose retry
    /// policy allows more (or fewer) attempts still dead-letters it after this many. `None` only
    /// for a message stored before oncely kept it (it follows the handle's policy).
    pub max_attempts: Option<u32>,
    /// The dedup window it was enqueued under: how long its id is remembered once it leaves the
    /// queue, whichever handle settles it. `None` only for a message stored before oncely kept
    /// it (the settling handle's window).
    pub dedup_window: Option<Duration>,
}

impl OutboxRecord {
    /// The mode this message is delivered by: its own, or `handle`'s for an old record.
    pub fn mode_or(&self, handle: Mode) -> Mode {
        self.mode.unwrap_or(handle)
    }

    /// The attempt limit this message is delivered by: its own, or `handle`'s for an old record.
    pub fn max_attempts_or(&self, handle: u32) -> u32 {
        self.max_attempts.unwrap_or(handle)
    }

    /// The dedup window of this message: its own, or `handle`'s for an old record.
    pub fn dedup_window_or(&self, handle: Duration) -> Duration {
        self.dedup_window.unwrap_or(handle)
    }
}

/// A message's attempt limit and dedup window as store columns (integers; the window in
/// milliseconds), `None` where the record has none.
pub fn limit_columns(rec: &OutboxRecord) -> (Option<i64>, Option<i64>) {
    (
        rec.max_attempts.map(i64::from),
        rec.dedup_window.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
    )
}

/// [`limit_columns`]' inverse: a negative or oversized value is a damaged store.
pub fn limits_from_columns(
    id: &str,
    max_attempts: Option<i64>,
    dedup_ms: Option<i64>,
) -> Result<(Option<u32>, Option<Duration>)> {
    let damaged = |what: &str, v: i64| {
        Error::CorruptStore(format!("message `{}` has an impossible {what} {v}", crate::text::quote(id)))
    };
    let attempts =
        max_attempts.map(|v| u32::try_from(v).map_err(|_| damaged("attempt limit", v))).transpose()?;
    let window = dedup_ms
        .map(|v| u64::try_from(v).map(Duration::from_millis).map_err(|_| damaged("dedup window", v)))
        .transpose()?;
    Ok((attempts, window))
}

/// A mode as a store column: 0 at-most-once, 1 at-least-once, 2 exactly-once.
pub fn mode_column(mode: Option<Mode>) -> Option<i64> {
    mode.map(|m| match m {
        Mode::AtMostOnce => 0,
        Mode::AtLeastOnce => 1,
        Mode::ExactlyOnce => 2,
    })
}

/// A store column as a mode ([`mode_column`]'s inverse); another number is a damaged store.
pub fn mode_from_column(id: &str, column: Option<i64>) -> Result<Option<Mode>> {
    match column {
        None => Ok(None),
        Some(0) => Ok(Some(Mode::AtMostOnce)),
        Some(1) => Ok(Some(Mode::AtLeastOnce)),
        Some(2) => Ok(Some(Mode::ExactlyOnce)),
        Some(n) => {
            Err(Error::CorruptStore(format!("message `{}` has an unknown mode {n}", crate::text::quote(id))))
        }
    }
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
    /// What happened to the queue's messages since the store began counting, as the store
    /// keeps it: the same from every handle, process and language.
    pub counts: QueueCounts,
}

/// What happened to one queue's messages, counted by the store in the same commit as each
/// change (every process, every host, every language adds to the same totals).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueCounts {
    /// Messages added.
    pub enqueued: u64,
    /// Messages acknowledged as delivered.
    pub delivered: u64,
    /// Failed attempts scheduled for a retry.
    pub retried: u64,
    /// Messages given up on (dead letters).
    pub dead_lettered: u64,
    /// At-most-once messages whose one attempt failed or ran out (lost by design).
    pub dropped: u64,
}

impl QueueCounts {
    /// Whether nothing was counted.
    pub fn is_zero(&self) -> bool {
        *self == QueueCounts::default()
    }

    /// The sum of `self` and `other`, saturating.
    pub fn plus(self, other: QueueCounts) -> QueueCounts {
        QueueCounts {
            enqueued: self.enqueued.saturating_add(other.enqueued),
            delivered: self.delivered.saturating_add(other.delivered),
            retried: self.retried.saturating_add(other.retried),
            dead_lettered: self.dead_lettered.saturating_add(other.dead_lettered),
            dropped: self.dropped.saturating_add(other.dropped),
        }
    }
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
