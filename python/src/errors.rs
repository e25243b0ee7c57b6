//! The one place where core errors become Python exceptions: one class per stable
//! [`ErrorCode`], all under `OncelyError`, each with the code string as its `code` attribute and
//! the core's `Display` text as its message.

use oncely::{Error, ErrorCode};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    oncely._native,
    OncelyError,
    PyException,
    "Every error oncely reports. `code` is the stable code string."
);
create_exception!(
    oncely._native,
    InvalidArgument,
    OncelyError,
    "A value is out of its documented range; nothing was written."
);
create_exception!(oncely._native, Conflict, OncelyError, "The id was already used with a different payload.");
create_exception!(
    oncely._native,
    InProgress,
    OncelyError,
    "Another caller holds an unexpired lease on the id."
);
create_exception!(
    oncely._native,
    LeaseLost,
    OncelyError,
    "The lease was taken over (stale fencing token); nothing was written."
);
create_exception!(
    oncely._native,
    Storage,
    OncelyError,
    "The storage backend failed; the operation did not commit."
);
create_exception!(oncely._native, CorruptStore, OncelyError, "The store is not a usable oncely store.");
create_exception!(oncely._native, Closed, OncelyError, "The object was closed before the call.");
create_exception!(oncely._native, Timeout, OncelyError, "A wait ran out of time.");
create_exception!(
    oncely._native,
    ReplayedFailure,
    PyException,
    "Inbox.process: the id's first delivery failed permanently and that failure was stored; this is its replay. `reason` holds the stored reason (bytes or None)."
);
create_exception!(
    oncely._native,
    Permanent,
    PyException,
    "Raise this (or a subclass) from a handler to mark its failure as permanent: no retry will help."
);

/// Converts a core error (the orphan rule forbids `impl From<oncely::Error> for PyErr`).
pub fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    match e.code() {
        ErrorCode::InvalidArgument => InvalidArgument::new_err(msg),
        ErrorCode::Conflict => Conflict::new_err(msg),
        ErrorCode::InProgress => InProgress::new_err(msg),
        ErrorCode::LeaseLost => LeaseLost::new_err(msg),
        ErrorCode::Storage => Storage::new_err(msg),
        ErrorCode::CorruptStore => CorruptStore::new_err(msg),
        ErrorCode::Closed => Closed::new_err(msg),
        ErrorCode::Timeout => Timeout::new_err(msg),
        _ => OncelyError::new_err(msg),
    }
}

/// Adds the exception classes to the module, with their `code` class attributes.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let base = py.get_type::<OncelyError>();
    base.setattr("code", py.None())?;
    m.add("OncelyError", base)?;
    let classes = [
        (ErrorCode::InvalidArgument, py.get_type::<InvalidArgument>()),
        (ErrorCode::Conflict, py.get_type::<Conflict>()),
        (ErrorCode::InProgress, py.get_type::<InProgress>()),
        (ErrorCode::LeaseLost, py.get_type::<LeaseLost>()),
        (ErrorCode::Storage, py.get_type::<Storage>()),
        (ErrorCode::CorruptStore, py.get_type::<CorruptStore>()),
        (ErrorCode::Closed, py.get_type::<Closed>()),
        (ErrorCode::Timeout, py.get_type::<Timeout>()),
    ];
    for (code, class) in classes {
        class.setattr("code", code.as_str())?;
        m.add(class.name()?.to_string(), class)?;
    }
    let replayed = py.get_type::<ReplayedFailure>();
    replayed.setattr("reason", py.None())?;
    m.add("ReplayedFailure", replayed)?;
    m.add("Permanent", py.get_type::<Permanent>())?;
    Ok(())
}
