//! `Transaction`: the SQLite transaction a `process_transactional` handler writes through. Only
//! converts values between Python and SQLite; the transaction itself is the core's.

use std::collections::HashMap;
use std::sync::Mutex;

use oncely::rusqlite::types::{Value, ValueRef};
use oncely::rusqlite::{Connection, params_from_iter};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyFloat, PyInt, PyString, PyTuple};

use crate::errors::Closed;
use crate::outbox::{Outbox, enqueued, new_message};
use crate::{to_bytes, to_py};

/// The core's connection, valid only while the handler that got this transaction runs.
struct ConnPtr(*const Connection);

// SAFETY: the pointer is only dereferenced under the `Transaction`'s mutex, and only while the
// handler runs on the store's writer thread, which is blocked in that call meanwhile; it is
// cleared before the handler's call returns to the core.
unsafe impl Send for ConnPtr {}

/// The open SQLite transaction of one `Inbox.process_transactional` call: what the handler
/// writes here commits together with the id's processed mark, or not at all. Valid only inside
/// the handler; do not COMMIT or ROLLBACK it.
#[pyclass(module = "oncely._native", frozen)]
pub struct Transaction {
    conn: Mutex<Option<ConnPtr>>,
    /// The store's file, to check that an outbox given to `enqueue` uses the same one.
    path: std::path::PathBuf,
}

fn sql_value(v: &Bound<'_, PyAny>) -> PyResult<Value> {
    if v.is_none() {
        Ok(Value::Null)
    } else if v.is_instance_of::<PyInt>() {
        Ok(Value::Integer(v.extract()?))
    } else if v.is_instance_of::<PyFloat>() {
        Ok(Value::Real(v.extract()?))
    } else if let Ok(s) = v.cast::<PyString>() {
        Ok(Value::Text(s.extract::<String>()?))
    } else if let Ok(b) = v.cast::<PyBytes>() {
        Ok(Value::Blob(b.as_bytes().to_vec()))
    } else if let Ok(b) = v.cast::<PyByteArray>() {
        Ok(Value::Blob(b.to_vec()))
    } else {
        Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "an SQL parameter must be None, int, float, str or bytes, not {}",
            v.get_type().name()?
        )))
    }
}

fn py_value(py: Python<'_>, v: ValueRef<'_>) -> PyResult<Py<PyAny>> {
    Ok(match v {
        ValueRef::Null => py.None(),
        ValueRef::Integer(i) => i.into_pyobject(py)?.into_any().unbind(),
        ValueRef::Real(f) => f.into_pyobject(py)?.into_any().unbind(),
        ValueRef::Text(t) => PyString::new(py, &String::from_utf8_lossy(t)).into_any().unbind(),
        ValueRef::Blob(b) => PyBytes::new(py, b).into_any().unbind(),
    })
}

fn sql_err(e: oncely::rusqlite::Error) -> PyErr {
    to_py(oncely::Error::from(e))
}

impl Transaction {
    pub(crate) fn new(conn: &Connection, path: &std::path::Path) -> Self {
        Transaction { conn: Mutex::new(Some(ConnPtr(conn as *const Connection))), path: path.to_owned() }
    }

    fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> PyResult<T>) -> PyResult<T> {
        let guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let Some(ptr) = guard.as_ref() else {
            return Err(Closed::new_err("the transaction is over: use it only inside its handler"));
        };
        // SAFETY: see `ConnPtr`.
        f(unsafe { &*ptr.0 })
    }

    pub(crate) fn close(&self) {
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[pymethods]
impl Transaction {
    /// Runs one SQL statement with `params` (a sequence of None, int, float, str, bytes) and
    /// returns its rows as tuples (empty for statements without rows).
    #[pyo3(signature = (sql, params = None))]
    fn execute(
        &self,
        py: Python<'_>,
        sql: &str,
        params: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<Py<PyTuple>>> {
        let mut values = Vec::new();
        if let Some(ps) = params {
            for p in ps.try_iter()? {
                values.push(sql_value(&p?)?);
            }
        }
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(sql).map_err(sql_err)?;
            let columns = stmt.column_count();
            let mut rows = stmt.query(params_from_iter(values)).map_err(sql_err)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(sql_err)? {
                let mut cells = Vec::with_capacity(columns);
                for i in 0..columns {
                    cells.push(py_value(py, row.get_ref(i).map_err(sql_err)?)?);
                }
                out.push(PyTuple::new(py, cells)?.unbind());
            }
            Ok(out)
        })
    }

    /// The transactional outbox: enqueues a message in `outbox` (on the same SQLite file) within
    /// this transaction, so it is queued if and only if the handler's work commits. Returns
    /// `"queued"` or `"already_queued"`. Its `enqueued` event is published at once, before the
    /// commit.
    #[pyo3(signature = (outbox, payload, *, id = None, key = None, headers = None, delay = None))]
    #[allow(clippy::too_many_arguments)]
    fn enqueue(
        &self,
        outbox: &Bound<'_, Outbox>,
        payload: &Bound<'_, PyAny>,
        id: Option<String>,
        key: Option<String>,
        headers: Option<HashMap<String, String>>,
        delay: Option<f64>,
    ) -> PyResult<&'static str> {
        let Some(o) = &outbox.get().sqlite else {
            return Err(to_py(oncely::Error::invalid("outbox", "must use an SQLite store")));
        };
        let same = |a: &std::path::Path, b: &std::path::Path| {
            a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
        };
        if !same(o.store().path(), &self.path) {
            return Err(to_py(oncely::Error::invalid("outbox", "must use the inbox's SQLite file")));
        }
        let m = new_message(to_bytes("payload", payload)?, id, key, headers, delay)?;
        self.with_conn(|conn| {
            let mut r = o.enqueue_in(conn, vec![m]).map_err(to_py)?;
            Ok(enqueued(
                r.pop().ok_or_else(|| to_py(oncely::Error::Storage("enqueue answered nothing".into())))?,
            ))
        })
    }

    fn __repr__(&self) -> String {
        let open = self.conn.lock().map(|g| g.is_some()).unwrap_or(false);
        format!("Transaction(open={open})")
    }
}
