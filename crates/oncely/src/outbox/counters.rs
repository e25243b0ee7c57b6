//! What an outbox counts and reports: [`Counters`] (this process) and the [`Stats`] snapshot.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use crate::outbox::QueueStats;

/// Counters since the outbox was opened (in this process).
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
    /// Attempts settled (acked, retried, failed, snoozed or released).
    pub attempts_settled: u64,
    /// Total time from lease to settle over those attempts, in microseconds (wall clock).
    pub attempt_micros: u64,
}

impl Counters {
    /// Mean time from lease to settle, if any attempt was settled.
    pub fn mean_attempt_latency(&self) -> Option<Duration> {
        (self.attempts_settled > 0)
            .then(|| Duration::from_micros(self.attempt_micros / self.attempts_settled))
    }
}

#[derive(Default)]
pub(super) struct AtomicCounters {
    pub(super) enqueued: AtomicU64,
    pub(super) delivered: AtomicU64,
    pub(super) retried: AtomicU64,
    pub(super) dead_lettered: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) attempts_settled: AtomicU64,
    pub(super) attempt_micros: AtomicU64,
}

/// A snapshot of an outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// The queue as stored (all processes).
    pub queue: QueueStats,
    /// This process's counters.
    pub counters: Counters,
    /// Age of the oldest pending message, by the outbox's clock.
    pub oldest_age: Option<Duration>,
}
