//! One reading of a store's queues.

use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::error::Result;
use crate::outbox::{Outbox, OutboxConfig};
use crate::records::{QueueStats, ScopeCounts};
use crate::store::{InboxStore, OutboxStore};

/// One queue as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSnapshot {
    /// The queue's name.
    pub queue: String,
    /// Its messages by state and its totals, from the store.
    pub stats: QueueStats,
    /// The age of its oldest pending message, by the system clock.
    pub oldest_age: Option<Duration>,
}

/// Every queue of a store at one moment (each queue read in its own transaction).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// The queues holding a message or having counted one, by name.
    pub queues: Vec<QueueSnapshot>,
    /// The inbox scopes holding records, by name, with their records by state
    /// ([`InboxStore::scope_counts`], judged by the store's deadline clock).
    pub scopes: Vec<ScopeCounts>,
}

/// Reads every queue of `store` ([`OutboxStore::queue_names`]) and its inbox scopes
/// ([`inbox_scopes`]).
pub async fn snapshot<S: OutboxStore + InboxStore + Clone>(store: &S) -> Result<Snapshot> {
    let mut queues = Vec::new();
    for name in store.queue_names().await? {
        let outbox = Outbox::open(store.clone(), OutboxConfig::new(name.clone()))?;
        let stats = outbox.stats().await?;
        queues.push(QueueSnapshot { queue: name, stats: stats.queue, oldest_age: stats.oldest_age });
    }
    let scopes = inbox_scopes(store).await?;
    Ok(Snapshot { queues, scopes })
}

/// The inbox scopes of `store` with their records by state ([`InboxStore::scope_counts`]),
/// judged at the store's own time: the database server's clock for PostgreSQL, the host's
/// otherwise — the clock an inbox opened on [`SystemClock`] judges expiry by.
pub async fn inbox_scopes<S: InboxStore>(store: &S) -> Result<Vec<ScopeCounts>> {
    let now = InboxStore::deadline_clock(store).map_or_else(|| SystemClock.now(), |c| c.now());
    store.scope_counts(now).await
}
