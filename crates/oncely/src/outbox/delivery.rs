//! One leased message ([`Delivery`]) and its settle calls.

use std::sync::atomic::Ordering as AtomicOrdering;
use std::time::Duration;

use crate::error::Result;
use crate::message::Message;
use crate::outbox::{Outbox, OutboxRecord, Settle, Settled};
use crate::store::OutboxStore;

/// One leased message, handed to a handler. Settle it exactly once with one of its methods; a
/// settle after the lease was taken over is refused with [`Error::LeaseLost`].
pub struct Delivery<S: OutboxStore> {
    pub(super) outbox: Outbox<S>,
    pub(super) record: OutboxRecord,
    pub(super) token: u64,
    pub(super) leased_at: std::time::Instant,
}

impl<S: OutboxStore> std::fmt::Debug for Delivery<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.record.message.id)
            .field("attempt", &self.record.message.attempts)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl<S: OutboxStore> Delivery<S> {
    /// The message id. Pass it to the receiver as the idempotency key (or map it to a broker's
    /// dedup header: `Nats-Msg-Id`, SQS `MessageDeduplicationId`).
    pub fn id(&self) -> &str {
        &self.record.message.id
    }

    /// The idempotency key of this delivery: the message id.
    pub fn idempotency_key(&self) -> &str {
        self.id()
    }

    /// The queue the message was leased from (what telemetry names the destination).
    #[cfg(feature = "otel")]
    pub(crate) fn queue(&self) -> &str {
        &self.outbox.inner.config.queue
    }

    /// The message as leased.
    pub fn message(&self) -> &Message {
        &self.record.message
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.record.message.payload
    }

    /// Which attempt this is (1 for the first).
    pub fn attempt(&self) -> u32 {
        self.record.message.attempts
    }

    /// The lease's fencing token (0 in at-most-once, where nothing is leased).
    pub fn token(&self) -> u64 {
        self.token
    }

    /// The error of the previous attempt, if any.
    pub fn last_error(&self) -> Option<&str> {
        self.record.last_error.as_deref()
    }

    /// Settles the delivery.
    pub async fn settle(&self, how: Settle) -> Result<Settled> {
        let extend = matches!(how, Settle::Extend { .. });
        let settled = self.outbox.settle(&self.record.message.id, self.token, how).await?;
        if !extend {
            self.count_attempt();
        }
        Ok(settled)
    }

    pub(super) fn count_attempt(&self) {
        let c = &self.outbox.inner.counters;
        c.attempts_settled.fetch_add(1, AtomicOrdering::Relaxed);
        c.attempt_micros.fetch_add(self.leased_at.elapsed().as_micros() as u64, AtomicOrdering::Relaxed);
    }

    /// Delivered: the message is done.
    pub async fn ack(&self) -> Result<()> {
        self.settle(Settle::Ack).await.map(drop)
    }

    /// The attempt failed: retry by the policy, or after `after` when the handler knows better
    /// (Retry-After). Gives up (dead letter or park) when the policy says so.
    pub async fn retry(&self, after: Option<Duration>, error: impl Into<String>) -> Result<Settled> {
        self.settle(Settle::Retry { after, error: error.into() }).await
    }

    /// Not now: deliver again after `after` (at least one millisecond: a zero snooze would hand
    /// the message straight back, forever) without using up an attempt.
    pub async fn snooze(&self, after: Duration) -> Result<Settled> {
        self.settle(Settle::Snooze { after }).await
    }

    /// A permanent failure: dead-letter (or park) without retrying.
    pub async fn fail(&self, reason: impl Into<String>) -> Result<Settled> {
        self.settle(Settle::Fail { reason: reason.into() }).await
    }

    /// Keeps the lease for `lease` more from now (for long handlers).
    pub async fn extend(&self, lease: Duration) -> Result<Settled> {
        self.settle(Settle::Extend { lease }).await
    }

    /// Gives the message back unattempted (graceful shutdown).
    pub async fn release(&self) -> Result<Settled> {
        self.settle(Settle::Release).await
    }
}
