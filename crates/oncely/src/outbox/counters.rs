//! What an outbox counts and reports: [`Counters`] (the queue's totals as the store keeps them,
//! and this process's attempt timing) and the [`Stats`] snapshot.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use crate::outbox::{Event, EventKind, QueueStats};
use crate::records::QueueCounts;

/// What happened to the queue's messages — the store's totals, counted in the same commit as
/// each change, so every handle, process and language reads the same numbers — and this
/// process's attempt timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Messages added.
    pub enqueued: u64,
    /// Messages acknowledged as delivered.
    pub delivered: u64,
    /// Failed attempts scheduled for a retry.
    pub retried: u64,
    /// Messages given up on.
    pub dead_lettered: u64,
    /// At-most-once messages whose one attempt failed (lost by design).
    pub dropped: u64,
    /// Attempts settled by this process (acked, retried, failed, snoozed or released).
    pub attempts_settled: u64,
    /// Total time from lease to settle over those attempts, in microseconds (wall clock, this
    /// process).
    pub attempt_micros: u64,
}

impl Counters {
    /// Mean time from lease to settle, if any attempt was settled.
    pub fn mean_attempt_latency(&self) -> Option<Duration> {
        (self.attempts_settled > 0)
            .then(|| Duration::from_micros(self.attempt_micros / self.attempts_settled))
    }
}

/// This process's attempt timing.
#[derive(Default)]
pub(super) struct AtomicCounters {
    pub(super) attempts_settled: AtomicU64,
    pub(super) attempt_micros: AtomicU64,
}

/// What `events` (one step's changes) add to the queue's counts.
pub(super) fn counted(events: &[Event]) -> QueueCounts {
    let mut c = QueueCounts::default();
    for e in events {
        let n = match e.kind {
            EventKind::Enqueued => &mut c.enqueued,
            EventKind::Acked => &mut c.delivered,
            EventKind::Retried { .. } => &mut c.retried,
            EventKind::DeadLettered { .. } => &mut c.dead_lettered,
            EventKind::Dropped => &mut c.dropped,
            _ => continue,
        };
        *n += 1;
    }
    c
}

/// A snapshot of an outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// The queue as stored (all processes).
    pub queue: QueueStats,
    /// The queue's totals (from the store) and this process's attempt timing.
    pub counters: Counters,
    /// Age of the oldest pending message, by the outbox's clock.
    pub oldest_age: Option<Duration>,
}
