//! `Transaction`: the store transaction a transactional handler writes through
//! (`inbox.processTransactional`, `store.transaction`). Only converts values and adapts the
//! call; the transaction itself, and what commits with it, are the core's (`oncely::sql`).
//!
//! The core runs the handler on the store's writer thread while the transaction is open and
//! needs its answer there, synchronously. A JS function can only run on the JS thread, so the
//! writer thread calls it through a threadsafe function and waits for its return value; the
//! JS thread is free meanwhile (every oncely call from JS is asynchronous), runs the function,
//! and the function's `tx.execute` / `tx.enqueue` calls reach the transaction the writer thread
//! lent out. This is why the handler must be synchronous: the transaction cannot stay open
//! across awaits (the writer thread, and every other commit of the store, would wait for them).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use oncely::sql::{SqlTx, SqlValue};
use oncely::text::MAX_SAFE_INTEGER;
use oncely::{ErrorCode, Failure};

use crate::conv::{Options, bytes, list, opt_bytes, text};
use crate::errors::{Error, HANDLER_FAILED};
use crate::inbox::{Answer, Inbox, ProcessAnswer, Processed, answer_of, processed, request};
use crate::outbox::{ENQUEUE_OPTIONS, Outbox, enqueued_str, new_message, new_messages};
use crate::store::Store;
use crate::{Napi, Result, coded, err, invalid, promise};

/// The transaction lent by the core, valid only while the JS handler that got it runs.
struct TxPtr(*mut (dyn SqlTx + 'static));

// SAFETY: the pointer is dereferenced only under the `Transaction`'s mutex, only on the JS
// thread, and only while the writer thread that lent it is blocked waiting for the handler's
// answer (see `call_on_js_thread`); it is cleared before that answer is sent.
unsafe impl Send for TxPtr {}

type Slot = Arc<Mutex<Option<TxPtr>>>;

/// The open transaction of one transactional handler call: what the handler writes through it
/// commits together with oncely's own records (the id's processed mark, enqueued messages), or
/// none of it does. Valid only while the handler runs; it cannot be committed or rolled back by
/// the handler.
#[napi]
pub struct Transaction {
    slot: Slot,
}

/// A JS SQL parameter.
fn sql_value(env: &Env, v: Unknown<'_>, i: u32) -> Result<SqlValue> {
    let bad = |what: String| invalid("params", format!("parameter {i}: {what}"));
    Ok(match v.get_type().napi()? {
        ValueType::Null | ValueType::Undefined => SqlValue::Null,
        ValueType::Boolean => {
            SqlValue::Integer(i64::from(unsafe { bool::from_napi_value(env.raw(), v.raw()).napi()? }))
        }
        ValueType::Number => {
            let n = unsafe { f64::from_napi_value(env.raw(), v.raw()).napi()? };
            if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER as f64 {
                SqlValue::Integer(n as i64)
            } else {
                SqlValue::Real(n)
            }
        }
        ValueType::BigInt => {
            let b = unsafe { BigInt::from_napi_value(env.raw(), v.raw()).napi()? };
            let (n, lossless) = b.get_i64();
            if !lossless {
                return Err(bad("a BigInt outside the 64-bit integer range".into()));
            }
            SqlValue::Integer(n)
        }
        ValueType::String => SqlValue::Text(text("params", v)?),
        ValueType::Object => match unsafe { Uint8Array::from_napi_value(env.raw(), v.raw()) } {
            Ok(b) => SqlValue::Blob(b.to_vec()),
            Err(_) => {
                return Err(bad(
                    "must be null, a number, a BigInt, a string or a Buffer, not an object".into()
                ));
            }
        },
        t => return Err(bad(format!("must be null, a number, a BigInt, a string or a Buffer, not {t}"))),
    })
}

/// An SQL value for JS: integers as numbers (BigInt beyond 2^53), text as strings, blobs as
/// Buffers.
type JsSql = Either5<Null, f64, BigInt, String, Buffer>;

fn js_value(v: SqlValue) -> JsSql {
    match v {
        SqlValue::Null => Either5::A(Null),
        SqlValue::Integer(n) if n.unsigned_abs() <= MAX_SAFE_INTEGER => Either5::B(n as f64),
        SqlValue::Integer(n) => Either5::C(BigInt::from(n)),
        SqlValue::Real(f) => Either5::B(f),
        SqlValue::Text(s) => Either5::D(s),
        SqlValue::Blob(b) => Either5::E(Buffer::from(b)),
    }
}

impl Transaction {
    fn with_tx<T>(&self, f: impl FnOnce(&mut dyn SqlTx) -> Result<T>) -> Result<T> {
        let mut guard = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        let Some(ptr) = guard.as_mut() else {
            return Err(coded(ErrorCode::Closed, "the transaction is over: use it only inside its handler"));
        };
        // SAFETY: see `TxPtr`.
        f(unsafe { &mut *ptr.0 })
    }
}

#[napi]
impl Transaction {
    /// Runs one SQL statement with `params` (null, numbers, BigInts, strings, Buffers; booleans
    /// as 0/1) inside the transaction — `?` / `?1` placeholders on SQLite, `$1` on PostgreSQL —
    /// and returns its rows as arrays (empty for statements without rows). An SQL error throws
    /// `StorageError`: on SQLite the transaction stays usable, on PostgreSQL it is aborted and
    /// the handler's call fails.
    #[napi(
        ts_args_type = "sql: string, params?: Array<null | undefined | boolean | number | bigint | string | Uint8Array>",
        ts_return_type = "Array<Array<null | number | bigint | string | Buffer>>"
    )]
    pub fn execute(&self, env: Env, sql: Unknown, params: Option<Unknown>) -> Result<Vec<Vec<JsSql>>> {
        let sql = text("sql", sql)?;
        let mut values = Vec::new();
        if let Some(ps) = crate::conv::present(params)? {
            for (i, v) in list("params", ps)?.into_iter().enumerate() {
                values.push(sql_value(&env, v, i as u32)?);
            }
        }
        let rows = self.with_tx(|tx| tx.execute(&sql, &values).map_err(err))?;
        Ok(rows.into_iter().map(|r| r.into_iter().map(js_value).collect()).collect())
    }

    /// The transactional outbox: enqueues a message in `outbox` (which must use this same
    /// store) inside this transaction, so it becomes deliverable if and only if the transaction
    /// commits. `"queued"`, `"already_queued"` or `"already_delivered"`.
    #[napi(
        ts_args_type = "outbox: Outbox, payload: Buffer | string, options?: EnqueueOptions",
        ts_return_type = "'queued' | 'already_queued' | 'already_delivered'"
    )]
    pub fn enqueue(
        &self,
        env: Env,
        outbox: Unknown,
        payload: Unknown,
        options: Option<Unknown>,
    ) -> Result<String> {
        if outbox.get_type().napi()? != ValueType::Object || !Outbox::instance_of(&env, &outbox).napi()? {
            return Err(invalid("outbox", format!("must be an Outbox, got {}", crate::conv::kind(&outbox)?)));
        }
        let outbox: ClassInstance<Outbox> =
            unsafe { ClassInstance::from_napi_value(env.raw(), outbox.raw()).napi()? };
        let options = Options::of("enqueue options", options, ENQUEUE_OPTIONS)?;
        let m = new_message(bytes("payload", payload)?, &options)?;
        let o = outbox.inner.clone();
        let mut r = self.with_tx(|tx| tx.enqueue(&o, vec![m]).map_err(err))?;
        r.pop()
            .map(enqueued_str)
            .ok_or_else(|| err(oncely::Error::Storage("enqueue answered nothing".into())))
    }

    /// `enqueue` for several messages (each as in `Outbox.enqueueMany`): all of them or none.
    #[napi(
        ts_args_type = "outbox: Outbox, messages: Array<NewMessageOptions>",
        ts_return_type = "Array<'queued' | 'already_queued' | 'already_delivered'>"
    )]
    pub fn enqueue_many(&self, env: Env, outbox: Unknown, messages: Unknown) -> Result<Vec<String>> {
        if outbox.get_type().napi()? != ValueType::Object || !Outbox::instance_of(&env, &outbox).napi()? {
            return Err(invalid("outbox", format!("must be an Outbox, got {}", crate::conv::kind(&outbox)?)));
        }
        let outbox: ClassInstance<Outbox> =
            unsafe { ClassInstance::from_napi_value(env.raw(), outbox.raw()).napi()? };
        let ms = new_messages(messages)?;
        let o = outbox.inner.clone();
        Ok(self.with_tx(|tx| tx.enqueue(&o, ms).map_err(err))?.into_iter().map(enqueued_str).collect())
    }

    /// Whether the handler that got this transaction is still running.
    #[napi(getter)]
    pub fn open(&self) -> bool {
        self.slot.lock().map(|g| g.is_some()).unwrap_or(false)
    }
}

/// index.js's adapter of a transactional handler: `(tx) => answer` (it never throws).
type TxHandlerFn = ThreadsafeFunction<Transaction, ProcessAnswer, Transaction, Status, false>;

/// Calls the JS handler with `tx` on the JS thread and waits (this is the store's writer
/// thread) for its answer; `tx` is invalidated before the answer comes back.
fn call_on_js_thread(handler: &TxHandlerFn, tx: &mut dyn SqlTx) -> Answer {
    lend_to_js(handler, tx, |r, _| r.map(answer_of).map_err(|e| e.reason.clone()))
        .unwrap_or_else(|reason| Err(Failure::retryable(reason)))
}

/// Calls `handler` with a [`Transaction`] lending `tx`, on the JS thread, and waits (this is
/// the store's writer thread) for its return value, which `read` converts there (on the JS
/// thread, once `tx` is invalidated). `Err(reason)` when the handler could not be called.
pub(crate) fn lend_to_js<R, A>(
    handler: &ThreadsafeFunction<Transaction, R, Transaction, Status, false>,
    tx: &mut dyn SqlTx,
    read: impl FnOnce(napi::Result<R>, Env) -> std::result::Result<A, String> + Send + 'static,
) -> std::result::Result<A, String>
where
    R: FromNapiValue + 'static,
    A: Send + 'static,
{
    // SAFETY (lifetime erasure): the pointer leaves this function only inside `slot`, which is
    // emptied before this function returns (by the JS callback, or below when it never ran).
    let ptr: *mut (dyn SqlTx + '_) = tx;
    let ptr: *mut (dyn SqlTx + 'static) = unsafe { std::mem::transmute(ptr) };
    let slot: Slot = Arc::new(Mutex::new(Some(TxPtr(ptr))));
    let (answer_tx, answer_rx) = mpsc::channel();
    let closing = slot.clone();
    let status = handler.call_with_return_value(
        Transaction { slot: slot.clone() },
        ThreadsafeFunctionCallMode::Blocking,
        move |r, env| {
            *closing.lock().unwrap_or_else(|p| p.into_inner()) = None;
            let _ = answer_tx.send(read(r, env));
            Ok(())
        },
    );
    let answer = if status == Status::Ok {
        answer_rx.recv().unwrap_or_else(|_| Err("the handler was not called (Node is shutting down)".into()))
    } else {
        Err(format!("the handler could not be called ({status})"))
    };
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = None;
    answer
}

#[napi]
impl Inbox {
    /// Native half of `processTransactional` (index.js adapts the handler).
    #[napi(js_name = "_processTransactional", skip_typescript)]
    pub fn process_transactional_native(
        &self,
        env: &Env,
        id: Unknown,
        payload: Option<Unknown>,
        handler: TxHandlerFn,
    ) -> Result<AsyncBlock<Processed>> {
        let none = Options::of("process options", None, &[])?;
        let req = request(text("id", id)?, opt_bytes("payload", payload)?, &none)?;
        let inbox = self.inner.clone();
        promise(env, async move {
            processed(inbox.process_in_transaction(req, move |tx| call_on_js_thread(&handler, tx)).await)
        })
    }
}

#[napi]
impl Store {
    /// Native half of `transaction` (index.js adapts the function and keeps its return value).
    #[napi(js_name = "_transaction", skip_typescript)]
    pub fn transaction_native(&self, env: &Env, work: TxHandlerFn) -> Result<AsyncBlock<()>> {
        let store = self.inner.clone();
        // Set when the work function itself failed (index.js then re-throws what it threw).
        let failed = Arc::new(AtomicBool::new(false));
        let failed_in_tx = failed.clone();
        promise(env, async move {
            let r = store
                .in_transaction(move |tx| {
                    call_on_js_thread(&work, tx).map(drop).map_err(|f| {
                        failed_in_tx.store(true, Ordering::SeqCst);
                        oncely::Error::Storage(f.error)
                    })
                })
                .await;
            r.map_err(|e| match e {
                oncely::Error::Storage(text) if failed.load(Ordering::SeqCst) => {
                    Error::new(HANDLER_FAILED.into(), text)
                }
                e => err(e),
            })
        })
    }
}
