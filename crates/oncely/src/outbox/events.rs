//! The outbox's events: one per state change of a message, published to listeners after the
//! change committed.

use crate::clock::Timestamp;

/// A state change of one message, delivered to [`Outbox::on_event`] listeners after it committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The message.
    pub id: String,
    /// When it happened (by the outbox's clock).
    pub at: Timestamp,
    /// What happened.
    pub kind: EventKind,
}

/// What happened to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// Added to the queue.
    Enqueued,
    /// Handed to a worker for its `attempt`-th attempt.
    Leased {
        /// 1 for the first attempt.
        attempt: u32,
    },
    /// Delivered and removed.
    Acked,
    /// An attempt failed; deliverable again at `at`.
    Retried {
        /// When.
        at: Timestamp,
        /// The attempt's error.
        error: String,
    },
    /// Put off without using up an attempt.
    Snoozed {
        /// Until when.
        until: Timestamp,
    },
    /// Given back unattempted.
    Released,
    /// A worker's lease ran out (it crashed or hung); the message is deliverable again or dead.
    LeaseExpired,
    /// Given up on and kept as a dead letter.
    DeadLettered {
        /// Why.
        reason: String,
    },
    /// A poison message set aside under [`PoisonPolicy::Park`].
    Parked {
        /// When it is deliverable again.
        until: Timestamp,
    },
    /// At-most-once: the attempt failed after the message had left the queue: it is lost.
    Dropped,
    /// Removed before delivery.
    Cancelled,
    /// A dead letter put back in the queue.
    Replayed,
    /// A dead letter deleted.
    Purged,
    /// Not about one message (`id` is empty): a worker found the store unavailable (a lost
    /// connection, a server restarting, SQLite locked) and keeps its outcomes while it retries.
    /// Published once per outage.
    StoreUnavailable {
        /// The first error of the outage.
        error: String,
    },
    /// Not about one message (`id` is empty): the store answered again after an outage.
    StoreRecovered {
        /// How long the outage lasted, in milliseconds.
        after_ms: u64,
    },
}

impl EventKind {
    /// The stable snake_case name of this kind (`"dead_lettered"`, ...), the same in every
    /// binding and in the conformance scenarios.
    pub const fn name(&self) -> &'static str {
        match self {
            EventKind::Enqueued => "enqueued",
            EventKind::Leased { .. } => "leased",
            EventKind::Acked => "acked",
            EventKind::Retried { .. } => "retried",
            EventKind::Snoozed { .. } => "snoozed",
            EventKind::Released => "released",
            EventKind::LeaseExpired => "lease_expired",
            EventKind::DeadLettered { .. } => "dead_lettered",
            EventKind::Parked { .. } => "parked",
            EventKind::Dropped => "dropped",
            EventKind::Cancelled => "cancelled",
            EventKind::Replayed => "replayed",
            EventKind::Purged => "purged",
            EventKind::StoreUnavailable { .. } => "store_unavailable",
            EventKind::StoreRecovered { .. } => "store_recovered",
        }
    }
}

/// An [`Event`] flattened into the one shape every binding hands to its listeners: the kind's
/// stable name, and each detail in a field of its own (absent where the kind has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlatEvent {
    /// [`EventKind::name`]: `"enqueued"`, `"leased"`, `"retried"`, …
    pub kind: &'static str,
    /// The message.
    pub id: String,
    /// When it happened, in ms since the Unix epoch (the outbox's clock).
    pub at_ms: i64,
    /// `leased`: which attempt.
    pub attempt: Option<u32>,
    /// `retried`: when it is deliverable again.
    pub retry_at_ms: Option<i64>,
    /// `snoozed`, `parked`: until when.
    pub until_ms: Option<i64>,
    /// `retried`: the attempt's error; `store_unavailable`: the store's error.
    pub error: Option<String>,
    /// `dead_lettered`: why.
    pub reason: Option<String>,
    /// `store_recovered`: how long the store was unavailable, in milliseconds.
    pub after_ms: Option<u64>,
}

impl Event {
    /// This event as a [`FlatEvent`].
    pub fn flat(&self) -> FlatEvent {
        let mut flat = FlatEvent {
            kind: self.kind.name(),
            id: self.id.clone(),
            at_ms: self.at.0,
            attempt: None,
            retry_at_ms: None,
            until_ms: None,
            error: None,
            reason: None,
            after_ms: None,
        };
        match &self.kind {
            EventKind::Leased { attempt } => flat.attempt = Some(*attempt),
            EventKind::Retried { at, error } => {
                flat.retry_at_ms = Some(at.0);
                flat.error = Some(error.clone());
            }
            EventKind::Snoozed { until } | EventKind::Parked { until } => flat.until_ms = Some(until.0),
            EventKind::DeadLettered { reason } => flat.reason = Some(reason.clone()),
            EventKind::StoreUnavailable { error } => flat.error = Some(error.clone()),
            EventKind::StoreRecovered { after_ms } => flat.after_ms = Some(*after_ms),
            _ => {}
        }
        flat
    }
}
