//! The caller's own SQL inside oncely's transaction, for every SQL store (SQLite, PostgreSQL)
//! and every binding: what a transactional handler writes through a [`SqlTx`] commits together
//! with oncely's own records (the processed mark, enqueued messages), or none of it does.

use std::future::Future;

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::outbox::{Enqueued, NewMessage, Outbox};
use crate::records::{InboxOp, OpAnswer};
use crate::store::{AnyStore, InboxStore, OutboxTx};

/// One SQL value, as bound to a statement or read from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// SQL NULL.
    Null,
    /// A 64-bit integer.
    Integer(i64),
    /// A 64-bit float.
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

/// One open transaction of a store, lent to a handler. Everything done through it commits
/// together with the work oncely does in the same transaction, or is undone with it. It cannot
/// be committed or rolled back by the handler: statements that would end it are refused (SQLite)
/// or make the whole transaction fail (PostgreSQL).
pub trait SqlTx {
    /// Runs one statement with positional `params`, in the store's SQL dialect (`?1` or `?`
    /// placeholders on SQLite, `$1` on PostgreSQL), and returns its rows (none for statements
    /// that return no rows). An SQL error is [`Error::Storage`] and leaves the transaction usable
    /// on SQLite; on PostgreSQL the transaction is then aborted and the handler's call fails.
    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>>;

    /// Enqueues `messages` into `outbox` inside this transaction: they become deliverable only
    /// when it commits. `outbox` must live in this same store (the same SQLite file or the same
    /// PostgreSQL database), otherwise [`Error::InvalidArgument`] and nothing is written.
    fn enqueue(&mut self, outbox: &Outbox<AnyStore>, messages: Vec<NewMessage>) -> Result<Vec<Enqueued>> {
        let (mut messages, mut out) = (Some(messages), None);
        self.outbox_step(outbox.store(), &outbox.config().queue, &mut |tx| {
            out = Some(outbox.enqueue_through(tx, messages.take().unwrap_or_default())?);
            Ok(())
        })?;
        out.ok_or_else(|| Error::Storage("the transaction ran no outbox step".into()))
    }

    /// Runs one step of `store`'s outbox queue `queue` inside this transaction (what
    /// [`SqlTx::enqueue`] is made of). `store` must be this transaction's own store, otherwise
    /// [`Error::InvalidArgument`] and `work` does not run.
    fn outbox_step(
        &mut self,
        store: &AnyStore,
        queue: &str,
        work: &mut dyn FnMut(&mut dyn OutboxTx) -> Result<()>,
    ) -> Result<()>;

    /// The SQLite connection behind this transaction, when the store is SQLite.
    fn sqlite(&self) -> Option<&rusqlite::Connection> {
        None
    }
}

/// One transaction of a [`TransactionalStore`], as oncely itself uses it.
pub trait StoreTx {
    /// Decides and writes one inbox operation inside this transaction.
    fn apply_inbox(&mut self, scope: &str, now: Timestamp, op: &InboxOp) -> Result<OpAnswer>;

    /// Lends the transaction to `handler` inside a savepoint: the handler's writes are kept when
    /// it returns `true` and undone when it returns `false`. Fails (and the whole transaction
    /// must be abandoned) when a handler's statement ended the transaction.
    fn run_handler(&mut self, handler: &mut dyn FnMut(&mut dyn SqlTx) -> bool) -> Result<()>;
}

/// A store whose transactions callers can join: SQLite and PostgreSQL (and [`AnyStore`] over
/// them; the memory store refuses).
pub trait TransactionalStore: InboxStore {
    /// Runs `job` in one transaction of the store, committed (durably, at the store's level)
    /// when it returns `Ok` and rolled back entirely when it returns `Err` or panics.
    fn transaction<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut dyn StoreTx) -> Result<R> + Send + 'static,
    ) -> impl Future<Output = Result<R>> + Send;

    /// Runs `work` with one transaction of the store: its writes (and the messages it
    /// enqueues) commit together when it returns `Ok`, and none remains when it returns `Err`.
    /// `work` runs synchronously while the store's transaction is open: database work only.
    fn in_transaction<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut dyn SqlTx) -> Result<R> + Send + 'static,
    ) -> impl Future<Output = Result<R>> + Send {
        self.transaction(move |tx| {
            let mut work = Some(work);
            let mut out = None;
            tx.run_handler(&mut |sql| {
                let r = work.take().map(|w| w(sql));
                let keep = matches!(r, Some(Ok(_)));
                out = r;
                keep
            })?;
            out.unwrap_or_else(|| Err(Error::Storage("the transaction's work did not run".into())))
        })
    }
}

/// Refusal of the stores that have no transactions to join.
pub(crate) fn no_transactions() -> Error {
    Error::invalid(
        "store",
        "transactions need an SQL store (SQLite or PostgreSQL); the memory store has none",
    )
}
