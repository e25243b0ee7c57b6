//! `Transaction`: the store's transaction a `process_transactional` handler writes through
//! (SQLite or PostgreSQL). Only converts values between Python and the core's `SqlValue`; the
//! transaction itself is the core's (`oncely::sql`).

use std::sync::Mutex;

use oncely::sql::{SqlTx, SqlValue};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::args::{self, Headers};
use crate::errors::Closed;
use crate::outbox::{Outbox, enqueued, messages_of, new_message};
use crate::{Extra, Num, Text, to_bytes, to_py};

/// The core's open transaction, valid only while the handler that got this object runs.
struct TxPtr(*mut (dyn SqlTx + 'static));

// SAFETY: the pointer is only dereferenced under the `Transaction`'s mutex, and only while the
// handler runs on the thread that lent the transaction, which is blocked in that call
// meanwhile; it is cleared before the handler's call returns to the core.
unsafe impl Send for TxPtr {}

/// The open transaction of one `Inbox.process_transactional` call: what the handler writes here
/// commits together with the id's processed mark, or not at all. Valid only inside the
/// handler; it cannot be committed or rolled back.
#[pyclass(module = "oncely._native", frozen)]
pub struct Transaction {
    tx: Mutex<Option<TxPtr>>,
}

fn sql_value(v: &Bound<'_, PyAny>) -> PyResult<SqlValue> {
    if v.is_none() {
        Ok(SqlValue::Null)
    } else if v.is_instance_of::<PyInt>() {
        Ok(SqlValue::Integer(v.extract()?))
    } else if v.is_instance_of::<PyFloat>() {
        Ok(SqlValue::Real(v.extract()?))
    } else if let Ok(s) = v.cast::<PyString>() {
        Ok(SqlValue::Text(args::text("params", s)?))
    } else if let Ok(b) = v.cast::<PyBytes>() {
        Ok(SqlValue::Blob(b.as_bytes().to_vec()))
    } else if let Ok(b) = v.cast::<PyByteArray>() {
        Ok(SqlValue::Blob(b.to_vec()))
    } else {
        Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "an SQL parameter must be None, int, float, str or bytes, not {}",
            crate::type_name(v)
        )))
    }
}

fn py_value(py: Python<'_>, v: SqlValue) -> PyResult<Py<PyAny>> {
    Ok(match v {
        SqlValue::Null => py.None(),
        SqlValue::Integer(i) => i.into_pyobject(py)?.into_any().unbind(),
        SqlValue::Real(f) => f.into_pyobject(py)?.into_any().unbind(),
        SqlValue::Text(t) => PyString::new(py, &t).into_any().unbind(),
        SqlValue::Blob(b) => PyBytes::new(py, &b).into_any().unbind(),
    })
}

impl Transaction {
    pub(crate) fn new(tx: &mut dyn SqlTx) -> Self {
        // SAFETY: only the lifetime is erased; see `TxPtr` for why the pointer never outlives it.
        let ptr: *mut (dyn SqlTx + 'static) = unsafe { std::mem::transmute(tx as *mut dyn SqlTx) };
        Transaction { tx: Mutex::new(Some(TxPtr(ptr))) }
    }

    fn with_tx<T>(&self, f: impl FnOnce(&mut dyn SqlTx) -> PyResult<T>) -> PyResult<T> {
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let Some(ptr) = guard.as_ref() else {
            return Err(Closed::new_err("the transaction is over: use it only inside its handler"));
        };
        // SAFETY: see `TxPtr`.
        f(unsafe { &mut *ptr.0 })
    }

    pub(crate) fn close(&self) {
        *self.tx.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[pymethods]
impl Transaction {
    /// Runs one SQL statement (the store's dialect) with `params` (a sequence of None, int,
    /// float, str, bytes) and
    /// returns its rows as tuples (empty for statements without rows).
    #[pyo3(signature = (sql, params = None, **extra))]
    fn execute(
        &self,
        py: Python<'_>,
        sql: Text<args::Sql>,
        params: Option<&Bound<'_, PyAny>>,
        extra: Option<Extra<args::TxExecuteKw>>,
    ) -> PyResult<Vec<Py<PyTuple>>> {
        let _ = extra;
        let mut values = Vec::new();
        if let Some(ps) = params {
            // One text or blob is not a sequence of parameters (iterating a 20 MB str would bind
            // 20 M one-character parameters before the statement fails).
            if ps.is_instance_of::<PyString>()
                || ps.is_instance_of::<PyBytes>()
                || ps.is_instance_of::<PyByteArray>()
            {
                return Err(to_py(oncely::Error::invalid(
                    "params",
                    format!("must be a sequence of values (a list or tuple), not {}", crate::type_name(ps)),
                )));
            }
            for p in ps.try_iter()? {
                values.push(sql_value(&p?)?);
            }
        }
        let rows = self.with_tx(|tx| tx.execute(&sql, &values).map_err(to_py))?;
        rows.into_iter()
            .map(|row| {
                let cells = row.into_iter().map(|v| py_value(py, v)).collect::<PyResult<Vec<_>>>()?;
                Ok(PyTuple::new(py, cells)?.unbind())
            })
            .collect()
    }

    /// The transactional outbox: enqueues a message in `outbox` (on the same store) within
    /// this transaction, so it is queued if and only if the handler's work commits. Returns
    /// `"queued"`, `"already_queued"` or `"already_delivered"`. Its `enqueued` event is published at once, before the
    /// commit.
    #[pyo3(signature = (outbox, payload, *, id = None, key = None, headers = None, delay = None, **extra))]
    #[allow(clippy::too_many_arguments)]
    fn enqueue(
        &self,
        outbox: &Bound<'_, Outbox>,
        payload: &Bound<'_, PyAny>,
        id: Option<Text<args::Id>>,
        key: Option<Text<args::Key>>,
        headers: Option<Headers>,
        delay: Option<Num>,
        extra: Option<Extra<args::TxEnqueueKw>>,
    ) -> PyResult<&'static str> {
        let _ = extra;
        let m = new_message(to_bytes("payload", payload)?, id, key, headers, delay)?;
        let outbox = &outbox.get().inner;
        let mut r = self.with_tx(|tx| tx.enqueue(outbox, vec![m]).map_err(to_py))?;
        Ok(enqueued(r.pop().ok_or_else(|| to_py(oncely::Error::Storage("enqueue answered nothing".into())))?))
    }

    /// `enqueue` for several messages (each as in `Outbox.enqueue_many`: bytes or a dict):
    /// all of them or none, within this transaction.
    #[pyo3(signature = (outbox, messages, **extra))]
    fn enqueue_many(
        &self,
        outbox: &Bound<'_, Outbox>,
        messages: &Bound<'_, PyList>,
        extra: Option<Extra<args::TxEnqueueManyKw>>,
    ) -> PyResult<Vec<&'static str>> {
        let _ = extra;
        let batch = messages_of(messages)?;
        let outbox = &outbox.get().inner;
        let r = self.with_tx(|tx| tx.enqueue(outbox, batch).map_err(to_py))?;
        Ok(r.into_iter().map(enqueued).collect())
    }

    /// Whether the handler that got this transaction is still running (calls are allowed).
    #[getter]
    fn open(&self) -> bool {
        self.tx.lock().map(|g| g.is_some()).unwrap_or(false)
    }

    fn __repr__(&self) -> String {
        let open = self.tx.lock().map(|g| g.is_some()).unwrap_or(false);
        format!("Transaction(open={open})")
    }
}
