//! Where the inbox keeps its records. Every backend applies [`crate::records::decide`] atomically
//! per id, so all of them behave alike; the shared behaviour suite in `tests/store_suite.rs`
//! runs against each.

use std::future::Future;

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::fingerprint::Fingerprint;
use crate::records::{InboxOp, InboxRecord, OpAnswer, ScopeCounts};

mod any;
pub mod location;
pub mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sqlite;

pub use any::AnyStore;

#[cfg(feature = "postgres")]
pub use self::postgres::{PostgresConfig, PostgresStore};
pub use memory::MemoryStore;
#[doc(hidden)]
pub use sqlite::simulate_reboot;
pub use sqlite::{SqliteConfig, SqliteStore, Synchronous};

/// A durable (or, for [`MemoryStore`], process-lifetime) home for inbox records.
///
/// Guarantees every implementation must give:
/// - each operation in `apply` is decided with [`crate::records::decide`] against the record as
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

    /// Applies a single operation that the caller keeps, as [`InboxStore::apply_one`] does
    /// (a fast path for a store that needs no operation of its own: the caller may retry it
    /// without a copy). By default, a copy goes to [`InboxStore::apply_one`].
    fn apply_ref(
        &self,
        scope: &str,
        now: Timestamp,
        op: &InboxOp,
    ) -> impl Future<Output = Result<OpAnswer>> + Send {
        self.apply_one(scope, now, op.clone())
    }

    /// The id's record as stored (expired or not), for inspection.
    fn get(&self, scope: &str, id: &str) -> impl Future<Output = Result<Option<InboxRecord>>> + Send;

    /// Deletes up to `limit` records (of every scope) that expired at or before `now`, and says
    /// how many went.
    fn purge_expired(&self, now: Timestamp, limit: usize) -> impl Future<Output = Result<u64>> + Send;

    /// Per scope, how many records the store holds by state, judged at `now` (a record is live
    /// while `now < expires_at`; see [`ScopeCounts`]), sorted by scope. Scopes holding no record
    /// are absent. Read-only: it changes nothing and takes no claim; each store reads all scopes
    /// in one consistent read (one transaction, or one lock per memory shard).
    ///
    /// The default answers [`Error::Storage`]: a store that does not implement it (a test
    /// wrapper) says so rather than report zeros. oncely's memory, SQLite and PostgreSQL stores
    /// and [`AnyStore`] implement it.
    fn scope_counts(&self, now: Timestamp) -> impl Future<Output = Result<Vec<ScopeCounts>>> + Send {
        let _ = now;
        async { Err(Error::Storage("this store does not count its inbox records by scope".into())) }
    }

    /// The clock this store judges deadlines by when the caller asks for real time (a facade
    /// opened on [`crate::SystemClock`]): `None` for the host's own clock (memory, SQLite: one
    /// host), the database server's clock for PostgreSQL, so that every process of a fleet sees
    /// one time whatever its host's clock says.
    fn deadline_clock(&self) -> Option<crate::clock::SharedClock> {
        None
    }
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

    fn apply_ref(
        &self,
        scope: &str,
        now: Timestamp,
        op: &InboxOp,
    ) -> impl Future<Output = Result<OpAnswer>> + Send {
        (**self).apply_ref(scope, now, op)
    }

    fn get(&self, scope: &str, id: &str) -> impl Future<Output = Result<Option<InboxRecord>>> + Send {
        (**self).get(scope, id)
    }

    fn purge_expired(&self, now: Timestamp, limit: usize) -> impl Future<Output = Result<u64>> + Send {
        (**self).purge_expired(now, limit)
    }

    fn scope_counts(&self, now: Timestamp) -> impl Future<Output = Result<Vec<ScopeCounts>>> + Send {
        (**self).scope_counts(now)
    }

    fn deadline_clock(&self) -> Option<crate::clock::SharedClock> {
        InboxStore::deadline_clock(&**self)
    }
}

/// The primitive record operations of one outbox queue inside one atomic step. All outbox rules
/// (`crate::outbox::rules`) are written once against this trait; a store only has to provide
/// these primitives, consistently with each other, inside its transaction.
pub trait OutboxTx {
    /// The message `id`, in any state.
    fn get(&mut self, id: &str) -> Result<Option<crate::records::OutboxRecord>>;
    /// Stores a message whose id is not in the queue yet.
    fn insert(&mut self, rec: &crate::records::OutboxRecord) -> Result<()>;
    /// Replaces the stored message with the same id.
    fn update(&mut self, rec: &crate::records::OutboxRecord) -> Result<()>;
    /// Removes the message; says whether it was there.
    fn delete(&mut self, id: &str) -> Result<bool>;
    /// Ready messages with `available_at <= now`, ordered by `(available_at, seq)`, strictly
    /// after `after` when given, at most `limit`.
    fn due(
        &mut self,
        now: Timestamp,
        after: Option<(Timestamp, u64)>,
        limit: usize,
    ) -> Result<Vec<crate::records::OutboxRecord>>;
    /// Leased messages whose lease ran out at or before `now`, at most `limit`.
    fn expired_leases(&mut self, now: Timestamp, limit: usize) -> Result<Vec<crate::records::OutboxRecord>>;
    /// The smallest `seq` among the key's ready and leased messages (and dead ones, when
    /// `include_dead`).
    fn key_head(&mut self, key: &str, include_dead: bool) -> Result<Option<u64>>;
    /// Dead letters ordered by `seq`, strictly after `after_seq`, at most `limit`.
    fn dead_letters(
        &mut self,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<crate::records::OutboxRecord>>;
    /// Counts by state at `now`.
    fn stats(&mut self, now: Timestamp) -> Result<crate::records::QueueStats>;

    /// Adds `counts` to the queue's totals ([`crate::records::QueueCounts`]), in this step:
    /// they commit with the changes they count, or not at all.
    fn add_counts(&mut self, counts: crate::records::QueueCounts) -> Result<()>;
    /// Remembers until `until` that `id`, with a payload of this fingerprint, left the queue
    /// (replacing an older mark of the same id).
    fn remember_sent(&mut self, id: &str, fingerprint: Fingerprint, until: Timestamp) -> Result<()>;
    /// The fingerprints of the marks of these ids, in the same order, that still hold at `now`
    /// (their `until` is later than `now`).
    fn sent_marks(&mut self, ids: &[&str], now: Timestamp) -> Result<Vec<Option<Fingerprint>>>;
    /// Deletes up to `limit` marks that ended at or before `now`; says how many went.
    fn forget_sent(&mut self, now: Timestamp, limit: usize) -> Result<u64>;
    /// A fencing token larger than every one the store handed out before.
    fn next_token(&mut self) -> Result<u64>;
    /// A queue position larger than every one the store handed out before.
    fn next_seq(&mut self) -> Result<u64>;

    /// The messages with these ids, in the same order, as [`OutboxTx::get`] gives each. Stores
    /// with a round trip per statement answer in one.
    fn get_many(&mut self, ids: &[&str]) -> Result<Vec<Option<crate::records::OutboxRecord>>> {
        ids.iter().map(|id| self.get(id)).collect()
    }

    /// Says that the messages with these ids are about to be read with [`OutboxTx::get`]: a
    /// store may fetch them together now. Changes nothing.
    fn prefetch(&mut self, ids: &[&str]) -> Result<()> {
        let _ = ids;
        Ok(())
    }

    /// Says that this step must be durable (see [`crate::records::Durability`]) whatever its
    /// caller asked for: the step wrote something — an at-most-once attempt mark — that must be
    /// on disk before anyone is answered. Stores that make every step durable ignore it.
    fn require_durable(&mut self) {}

    /// `n` fencing tokens, as [`OutboxTx::next_token`] gives each.
    fn next_tokens(&mut self, n: usize) -> Result<Vec<u64>> {
        (0..n).map(|_| self.next_token()).collect()
    }

    /// `n` queue positions, in increasing order, as [`OutboxTx::next_seq`] gives each.
    fn next_seqs(&mut self, n: usize) -> Result<Vec<u64>> {
        (0..n).map(|_| self.next_seq()).collect()
    }
}

/// A home for outbox queues. `transact` runs `work` against one queue as one atomic step that
/// is durable (at the store's level) when the future resolves; if `work` fails, none of its
/// writes remain.
pub trait OutboxStore: Send + Sync + 'static {
    /// Runs `work` atomically on `queue`.
    fn transact<R: Send + 'static>(
        &self,
        queue: &str,
        work: impl FnOnce(&mut dyn OutboxTx) -> Result<R> + Send + 'static,
    ) -> impl Future<Output = Result<R>> + Send;

    /// [`OutboxStore::transact`], where the step's commit needs to reach only `durability`
    /// (the step may still raise it with [`OutboxTx::require_durable`]). A store that cannot
    /// tell the levels apart makes every step durable, which is what this default does.
    fn transact_with<R: Send + 'static>(
        &self,
        queue: &str,
        durability: crate::records::Durability,
        work: impl FnOnce(&mut dyn OutboxTx) -> Result<R> + Send + 'static,
    ) -> impl Future<Output = Result<R>> + Send {
        let _ = durability;
        self.transact(queue, work)
    }

    /// The names of the queues holding at least one message (in any state) or having counted
    /// one (see [`crate::records::QueueCounts`]: a queue that delivered everything still has its
    /// totals), sorted.
    fn queue_names(&self) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// The clock this store judges deadlines by when the caller asks for real time (a facade
    /// opened on [`crate::SystemClock`]): `None` for the host's own clock (memory, SQLite: one
    /// host), the database server's clock for PostgreSQL, so that every process of a fleet sees
    /// one time whatever its host's clock says.
    fn deadline_clock(&self) -> Option<crate::clock::SharedClock> {
        None
    }
}

impl<S: OutboxStore> OutboxStore for std::sync::Arc<S> {
    fn transact<R: Send + 'static>(
        &self,
        queue: &str,
        work: impl FnOnce(&mut dyn OutboxTx) -> Result<R> + Send + 'static,
    ) -> impl Future<Output = Result<R>> + Send {
        (**self).transact(queue, work)
    }

    fn transact_with<R: Send + 'static>(
        &self,
        queue: &str,
        durability: crate::records::Durability,
        work: impl FnOnce(&mut dyn OutboxTx) -> Result<R> + Send + 'static,
    ) -> impl Future<Output = Result<R>> + Send {
        (**self).transact_with(queue, durability, work)
    }

    fn queue_names(&self) -> impl Future<Output = Result<Vec<String>>> + Send {
        (**self).queue_names()
    }

    fn deadline_clock(&self) -> Option<crate::clock::SharedClock> {
        OutboxStore::deadline_clock(&**self)
    }
}
