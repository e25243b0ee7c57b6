//! One reading of a store's queues.

use std::time::Duration;

use crate::error::Result;
use crate::outbox::{Outbox, OutboxConfig};
use crate::records::QueueStats;
use crate::store::OutboxStore;

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
}

/// Reads every queue of `store` ([`OutboxStore::queue_names`]).
pub async fn snapshot<S: OutboxStore + Clone>(store: &S) -> Result<Snapshot> {
    let mut queues = Vec::new();
    for name in store.queue_names().await? {
        let outbox = Outbox::open(store.clone(), OutboxConfig::new(name.clone()))?;
        let stats = outbox.stats().await?;
        queues.push(QueueSnapshot { queue: name, stats: stats.queue, oldest_age: stats.oldest_age });
    }
    Ok(Snapshot { queues })
}
