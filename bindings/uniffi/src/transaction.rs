//! `SqlTransaction`: the store transaction a transactional handler writes through
//! (`Inbox.processInTransaction`, `Store.inTransaction`). Only converts values and adapts the
//! call; the transaction, and what commits with it, are the core's (`oncely::sql`).
//!
//! The core runs the handler synchronously on the store's writer thread while the transaction
//! is open. The host's callback is called right there (uniffi callbacks may run on any thread);
//! the `SqlTransaction` it gets points at the transaction the core lent, and is invalidated
//! (every call then throws `Closed`) before the handler's answer goes back to the core.

use std::sync::{Arc, Mutex};

use oncely::sql::{SqlTx, SqlValue as CoreValue};
use oncely::{Failure, Request};

use crate::errors::{HandlerError, OncelyError};
use crate::inbox::{CallOptions, Inbox, Processed, process_result};
use crate::on_blocking;
use crate::outbox::{Enqueued, NewMessage, Outbox, enqueued, new_message};
use crate::store::Store;
use crate::text::HostText;

/// One SQL value, bound to a statement or read from a row.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum SqlValue {
    /// SQL NULL.
    Null,
    /// A 64-bit integer.
    Integer {
        /// The value.
        v: i64,
    },
    /// A 64-bit float.
    Real {
        /// The value.
        v: f64,
    },
    /// Text.
    Text {
        /// The value.
        v: HostText,
    },
    /// Bytes.
    Blob {
        /// The value.
        v: Vec<u8>,
    },
}

fn to_core(v: SqlValue) -> Result<CoreValue, OncelyError> {
    Ok(match v {
        SqlValue::Null => CoreValue::Null,
        SqlValue::Integer { v } => CoreValue::Integer(v),
        SqlValue::Real { v } => CoreValue::Real(v),
        SqlValue::Text { v } => CoreValue::Text(v.decode("params")?),
        SqlValue::Blob { v } => CoreValue::Blob(v),
    })
}

fn from_core(v: CoreValue) -> SqlValue {
    match v {
        CoreValue::Null => SqlValue::Null,
        CoreValue::Integer(v) => SqlValue::Integer { v },
        CoreValue::Real(v) => SqlValue::Real { v },
        CoreValue::Text(v) => SqlValue::Text { v: v.into() },
        CoreValue::Blob(v) => SqlValue::Blob { v },
    }
}

/// The transaction lent by the core, valid only while the handler that got it runs.
struct TxPtr(*mut (dyn SqlTx + 'static));

// SAFETY: the pointer is dereferenced only under the `SqlTransaction`'s mutex, and only while
// the core's call that lent it is still inside the host's handler (the lending thread is
// blocked in that call); `lend` clears it, under the same mutex, before that call returns.
unsafe impl Send for TxPtr {}

/// The open transaction of one transactional handler call: what the handler writes through it
/// commits together with oncely's own records (the id's processed mark, the messages enqueued
/// through it), or none of it does. Valid only while the handler runs: afterwards every call
/// throws `Closed`. It cannot be committed or rolled back by the handler.
#[derive(uniffi::Object)]
pub struct SqlTransaction {
    slot: Mutex<Option<TxPtr>>,
}

impl SqlTransaction {
    fn with_tx<T>(&self, f: impl FnOnce(&mut dyn SqlTx) -> oncely::Result<T>) -> Result<T, OncelyError> {
        let mut guard = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        let Some(ptr) = guard.as_mut() else {
            return Err(OncelyError::Closed(
                "the transaction is over: use it only inside its handler".to_string(),
            ));
        };
        // SAFETY: see `TxPtr`.
        Ok(f(unsafe { &mut *ptr.0 })?)
    }
}

/// Calls `f` with a `SqlTransaction` over `tx`, invalidated before this returns.
fn lend<T>(tx: &mut dyn SqlTx, f: impl FnOnce(Arc<SqlTransaction>) -> T) -> T {
    let ptr: *mut (dyn SqlTx + '_) = tx;
    // SAFETY: only the lifetime is erased; the pointer is cleared below, before `tx`'s borrow
    // ends, and never dereferenced after that (see `TxPtr`).
    let ptr: *mut (dyn SqlTx + 'static) = unsafe { std::mem::transmute(ptr) };
    let handle = Arc::new(SqlTransaction { slot: Mutex::new(Some(TxPtr(ptr))) });
    let out = f(handle.clone());
    *handle.slot.lock().unwrap_or_else(|p| p.into_inner()) = None;
    out
}

#[uniffi::export]
impl SqlTransaction {
    /// Runs one statement with positional `params` in the store's SQL dialect (`?1` or `?` on
    /// SQLite, `$1` on PostgreSQL) and returns its rows (none for statements without rows). An
    /// SQL error throws `Storage` (on SQLite the transaction stays usable). Statements that would
    /// end the transaction are refused.
    #[uniffi::method(default(params = []))]
    pub fn execute(&self, sql: HostText, params: Vec<SqlValue>) -> Result<Vec<Vec<SqlValue>>, OncelyError> {
        let sql = sql.decode("sql")?;
        let params = params.into_iter().map(to_core).collect::<Result<Vec<_>, _>>()?;
        let rows = self.with_tx(|tx| tx.execute(&sql, &params))?;
        Ok(rows.into_iter().map(|r| r.into_iter().map(from_core).collect()).collect())
    }

    /// The transactional outbox: enqueues `message` into `outbox` (which must use this same
    /// store, else `InvalidArgument`) inside this transaction. It is deliverable only if the
    /// transaction commits.
    pub fn enqueue(&self, outbox: Arc<Outbox>, message: NewMessage) -> Result<Enqueued, OncelyError> {
        let m = new_message(message)?;
        let mut r = self.with_tx(|tx| tx.enqueue(&outbox.inner, vec![m]))?;
        r.pop().map(enqueued).ok_or_else(|| OncelyError::Storage("enqueue answered nothing".to_string()))
    }

    /// `enqueue` for several messages: all or none.
    pub fn enqueue_many(
        &self,
        outbox: Arc<Outbox>,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Enqueued>, OncelyError> {
        let ms = messages.into_iter().map(new_message).collect::<Result<Vec<_>, _>>()?;
        Ok(self.with_tx(|tx| tx.enqueue(&outbox.inner, ms))?.into_iter().map(enqueued).collect())
    }

    /// Whether the handler that got this transaction is still running (calls are allowed).
    pub fn is_open(&self) -> bool {
        self.slot.lock().map(|g| g.is_some()).unwrap_or(false)
    }
}

/// The handler of `Inbox.processInTransaction`: does its database work through `tx` and returns
/// the result to store. Throw `HandlerException.Permanent` for a failure no retry will cure; any
/// other exception is retryable. Called synchronously while the store's transaction is open (on
/// SQLite, on its writer thread): database work only, no network calls, and never a call to the
/// same store (it would wait for itself).
#[uniffi::export(callback_interface)]
pub trait TransactionHandler: Send + Sync {
    /// Does the work inside the transaction.
    fn handle(&self, tx: Arc<SqlTransaction>) -> Result<Vec<u8>, HandlerError>;
}

/// The work of `Store.inTransaction` (the same rules as [`TransactionHandler`]).
#[uniffi::export(callback_interface)]
pub trait TransactionWork: Send + Sync {
    /// Does the work inside the transaction; throwing rolls all of it back.
    fn run(&self, tx: Arc<SqlTransaction>) -> Result<(), HandlerError>;
}

#[uniffi::export]
impl Inbox {
    /// The transactional inbox (always exactly-once; another mode is `InvalidArgument`): claims
    /// the id, runs `handler` inside the store's transaction, and commits the handler's writes,
    /// the processed mark and the stored result together — or nothing (a retryable failure rolls
    /// everything back and the id stays claimable). A duplicate gets the stored result without
    /// running the handler. Throws as `process` does; the memory store refuses with
    /// `InvalidArgument`.
    #[uniffi::method(default(payload = None, options = None))]
    pub async fn process_in_transaction(
        &self,
        id: HostText,
        payload: Option<Vec<u8>>,
        handler: Box<dyn TransactionHandler>,
        options: Option<CallOptions>,
    ) -> Result<Processed, OncelyError> {
        let o = options.unwrap_or_default();
        let mut req = Request::new(id.decode("id")?);
        if let Some(p) = payload {
            req = req.payload(&p);
        }
        if let Some(m) = o.mode {
            req = req.mode(m.into());
        }
        if let Some(l) = crate::text::opt_ms("lease_ms", o.lease_ms)? {
            req = req.lease(l);
        }
        let inbox = self.inner.clone();
        // The core's future is not provably `Send` across the handler's higher-ranked borrow of
        // the transaction (a rustc limitation), so it is driven on a blocking thread of the
        // runtime instead of being spawned as a task.
        on_blocking(move |rt| {
            let outcome = rt.block_on(inbox.process_in_transaction(req, move |tx: &mut dyn SqlTx| {
                lend(tx, |t| handler.handle(t).map_err(Failure::from))
            }));
            process_result(outcome)
        })
        .await
    }
}

#[uniffi::export]
impl Store {
    /// Runs `work` in one transaction of this store: its writes and the messages it enqueues
    /// (the transactional outbox) commit together when it returns, and none remains when it
    /// throws (then this throws `HandlerFailed` with the reason). The memory store refuses with
    /// `InvalidArgument`.
    pub async fn in_transaction(&self, work: Box<dyn TransactionWork>) -> Result<(), OncelyError> {
        let store = self.inner.clone();
        on_blocking(move |rt| {
            let failed: Arc<Mutex<Option<String>>> = Arc::default();
            let slot = failed.clone();
            let r = rt.block_on(store.in_transaction(move |tx: &mut dyn SqlTx| {
                lend(tx, |t| match work.run(t) {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        let reason = e.text();
                        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.clone());
                        Err(oncely::Error::Storage(reason))
                    }
                })
            }));
            let handler_failure = failed.lock().unwrap_or_else(|p| p.into_inner()).take();
            match (r, handler_failure) {
                (Ok(()), _) => Ok(()),
                (Err(_), Some(reason)) => Err(OncelyError::HandlerFailed(reason)),
                (Err(e), None) => Err(e.into()),
            }
        })
        .await
    }
}
