//! Where the inbox keeps its records. Every backend applies [`crate::inbox::decide`] atomically
//! per id, so all of them behave alike; the shared behaviour suite in `tests/store_suite.rs`
//! runs against each.

use std::future::Future;

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::inbox::{InboxOp, InboxRecord, OpAnswer};

pub mod memory;
pub mod sqlite;

pub use memory::MemoryStore;
pub use sqlite::{SqliteConfig, SqliteStore, Synchronous};

/// A durable (or, for [`MemoryStore`], process-lifetime) home for inbox records.
///
/// Guarantees every implementation must give:
/// - each operation in `apply` is decided with [`crate::inbox::decide`] against the record as
///   committed, atomically with respect to every other caller (in this process and others);
/// - all operations of one `apply` call commit together, and the call returns only once they
///   are durable at the store's configured level;
/// - fencing tokens handed out are larger than any the store handed out before, even across
///   restarts and after records were collected.
pub trait InboxStore: Send + Sync + 'static {
    /// Applies `ops` in order within `scope`, all in one commit, and answers each.
    fn apply(
        &self,
        scope: &str,
        now: Timestamp,
        ops: Vec<InboxOp>,
    ) -> impl Future<Output = Result<Vec<OpAnswer>>> + Send;

    /// Applies a single operation (a fast path of [`InboxStore::apply`]).
    fn apply_one(
        &self,
        scope: &str,
        now: Timestamp,
        op: InboxOp,
    ) -> impl Future<Output = Result<OpAnswer>> + Send {
        async move {
            self.apply(scope, now, vec![op])
                .await?
                .pop()
                .ok_or_else(|| Error::Storage("store answered no operation".into()))
        }
    }

    /// The id's record as stored (expired or not), for inspection.
    fn get(&self, scope: &str, id: &str) -> impl Future<Output = Result<Option<InboxRecord>>> + Send;

    /// Deletes up to `limit` records (of every scope) that expired at or before `now`, and says
    /// how many went.
    fn purge_expired(&self, now: Timestamp, limit: usize) -> impl Future<Output = Result<u64>> + Send;
}

/// A shared store is a store: several inboxes (and, for memory, "restarts" in tests) can use one.
impl<S: InboxStore> InboxStore for std::sync::Arc<S> {
    fn apply(
        &self,
        scope: &str,
        now: Timestamp,
        ops: Vec<InboxOp>,
    ) -> impl Future<Output = Result<Vec<OpAnswer>>> + Send {
        (**self).apply(scope, now, ops)
    }

    fn apply_one(
        &self,
        scope: &str,
        now: Timestamp,
        op: InboxOp,
    ) -> impl Future<Output = Result<OpAnswer>> + Send {
        (**self).apply_one(scope, now, op)
    }

    fn get(&self, scope: &str, id: &str) -> impl Future<Output = Result<Option<InboxRecord>>> + Send {
        (**self).get(scope, id)
    }

    fn purge_expired(&self, now: Timestamp, limit: usize) -> impl Future<Output = Result<u64>> + Send {
        (**self).purge_expired(now, limit)
    }
}
