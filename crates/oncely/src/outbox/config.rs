//! How an outbox behaves ([`OutboxConfig`]) and what a caller enqueues ([`NewMessage`]), with
//! their validation.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::backoff::RetryPolicy;
use crate::clock::{Timestamp, require_positive};
use crate::error::{Error, Result};
use crate::message::{Message, new_id, validate_id};
use crate::mode::Mode;
use crate::outbox::{Ordering, PoisonPolicy, RetryBudget};

/// How an outbox behaves. Build with [`OutboxConfig::new`] and the setters.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// The queue's name: outboxes with different names on one store never see each other's
    /// messages.
    pub queue: String,
    /// The delivery guarantee. Default: exactly-once (at-least-once delivery, each attempt
    /// carrying the message id as idempotency key).
    pub mode: Mode,
    /// When to retry and when to give up. Default: [`RetryPolicy::default`].
    pub retry: RetryPolicy,
    /// How long a lease lasts before the message is deliverable again. Default: 30 s.
    pub lease: Duration,
    /// Delivery order. Default: unordered.
    pub ordering: Ordering,
    /// Seed of the backoff jitter (each message draws from its own stream). Default: 0.
    pub seed: u64,
    /// Caps retries as a share of first attempts. Default: none.
    pub retry_budget: Option<RetryBudget>,
    /// The largest payload accepted. Default: 1 MiB.
    pub max_payload_bytes: usize,
    /// How long an id is remembered after its message left the queue — acknowledged, or (at
    /// most once) attempted and dropped: within this window an enqueue of the same id is
    /// answered [`crate::outbox::Enqueued::AlreadyDelivered`] instead of queueing it again, and
    /// one with another payload is a conflict. Zero remembers nothing. Default: 5 minutes (SQS
    /// FIFO's deduplication interval).
    pub dedup_window: Duration,
}

impl OutboxConfig {
    /// The defaults, for queue `queue`.
    pub fn new(queue: impl Into<String>) -> Self {
        OutboxConfig {
            queue: queue.into(),
            mode: Mode::ExactlyOnce,
            retry: RetryPolicy::default(),
            lease: Duration::from_secs(30),
            ordering: Ordering::Unordered,
            seed: 0,
            retry_budget: None,
            max_payload_bytes: crate::limits::DEFAULT_MAX_BYTES,
            dedup_window: Duration::from_secs(5 * 60),
        }
    }

    /// Sets the mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the lease.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Sets the delivery order.
    pub fn ordering(mut self, ordering: Ordering) -> Self {
        self.ordering = ordering;
        self
    }

    /// Sets the jitter seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the dedup window (zero: none).
    pub fn dedup_window(mut self, window: Duration) -> Self {
        self.dedup_window = window;
        self
    }

    /// Sets a retry budget.
    pub fn retry_budget(mut self, budget: RetryBudget) -> Self {
        self.retry_budget = Some(budget);
        self
    }

    pub(super) fn validate(&self) -> Result<()> {
        if self.queue.is_empty() || self.queue.len() > 128 || self.queue.contains('\0') {
            return Err(Error::invalid("queue", "must be 1 to 128 bytes long, without NUL"));
        }
        self.retry.validate()?;
        require_positive("lease", self.lease)?;
        if !self.dedup_window.is_zero() {
            require_positive("dedup_window", self.dedup_window)?;
        }
        if let Ordering::FifoPerKey(PoisonPolicy::Park { after }) = self.ordering {
            require_positive("ordering.park.after", after)?;
        }
        if let Some(b) = &self.retry_budget {
            b.validate()?;
        }
        Ok(())
    }
}

/// A message to enqueue. Built with [`NewMessage::new`] and the setters.
#[derive(Debug, Clone, Default)]
pub struct NewMessage {
    id: Option<String>,
    key: Option<String>,
    payload: Vec<u8>,
    headers: BTreeMap<String, String>,
    delay: Option<Duration>,
    available_at: Option<Timestamp>,
}

impl NewMessage {
    /// A message with `payload`, a fresh UUIDv7 id, deliverable at once.
    pub fn new(payload: impl Into<Vec<u8>>) -> Self {
        NewMessage { payload: payload.into(), ..Default::default() }
    }

    /// Sets the id (the receiver's idempotency key).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the ordering key.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Delivers no earlier than `delay` after the enqueue.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Delivers no earlier than `at`.
    pub fn available_at(mut self, at: Timestamp) -> Self {
        self.available_at = Some(at);
        self
    }

    /// Adds the trace context `headers` (the enqueue's span) unless the message carries a
    /// `traceparent` of its own, which is kept as the sender set it.
    #[cfg(feature = "otel")]
    pub(super) fn trace(mut self, headers: &BTreeMap<String, String>) -> Self {
        if !self.headers.contains_key(crate::telemetry::TRACEPARENT_HEADER) {
            for (k, v) in headers {
                self.headers.insert(k.clone(), v.clone());
            }
        }
        self
    }

    /// The id set with [`NewMessage::id`], if any.
    #[cfg(feature = "otel")]
    pub(super) fn given_id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    pub(super) fn into_message(self, now: Timestamp, max_payload: usize) -> Result<Message> {
        let id = match self.id {
            Some(id) => {
                validate_id(&id)?;
                id
            }
            None => new_id(),
        };
        if let Some(key) = &self.key {
            crate::limits::key(key)?;
        }
        crate::limits::payload(self.payload.len(), max_payload)?;
        crate::limits::headers(self.headers.iter().map(|(k, v)| k.len() + v.len()).sum())?;
        let available_at = match (self.available_at, self.delay) {
            (Some(at), _) => at.max(now),
            (None, Some(d)) => now.after(d),
            (None, None) => now,
        };
        Ok(Message {
            id,
            key: self.key,
            payload: self.payload,
            headers: self.headers,
            created_at: now,
            available_at,
            attempts: 0,
        })
    }
}
