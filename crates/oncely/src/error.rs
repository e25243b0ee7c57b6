//! The one error type of oncely, with stable codes that every binding exposes unchanged.

use std::fmt;

/// A stable, machine-readable error code.
///
/// The string form (`as_str`) is part of the public contract: it is the same in Rust, Python
/// (`err.code`), JavaScript (`err.code`, prefixed `ONCELY_` and upper-cased there) and
/// Kotlin/Swift (the enum variant). Codes are never renamed or reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The caller passed a value outside its documented range; nothing was written.
    InvalidArgument,
    /// The same id was used with a different payload fingerprint.
    Conflict,
    /// Another caller holds an unexpired lease on this id.
    InProgress,
    /// The caller's lease or claim was taken over (a stale fencing token); nothing was written.
    LeaseLost,
    /// The storage backend failed (I/O, lock timeout, constraint); the operation did not commit.
    Storage,
    /// The store file is not an oncely store, is damaged, or was written by a newer oncely.
    CorruptStore,
    /// The object was closed or shut down before the call.
    Closed,
    /// A wait ran out of time before the awaited state was reached.
    Timeout,
}

impl ErrorCode {
    /// The stable snake_case name of this code, e.g. `"in_progress"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::Conflict => "conflict",
            ErrorCode::InProgress => "in_progress",
            ErrorCode::LeaseLost => "lease_lost",
            ErrorCode::Storage => "storage",
            ErrorCode::CorruptStore => "corrupt_store",
            ErrorCode::Closed => "closed",
            ErrorCode::Timeout => "timeout",
        }
    }

    /// Every code, in a fixed order (for bindings that generate one class per code).
    pub const ALL: [ErrorCode; 8] = [
        ErrorCode::InvalidArgument,
        ErrorCode::Conflict,
        ErrorCode::InProgress,
        ErrorCode::LeaseLost,
        ErrorCode::Storage,
        ErrorCode::CorruptStore,
        ErrorCode::Closed,
        ErrorCode::Timeout,
    ];
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every failure oncely reports. The message is human-readable and the same in every binding;
/// [`Error::code`] is the stable part to match on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A caller-supplied value is out of range; nothing was written.
    #[error("invalid argument `{name}`: {reason}")]
    InvalidArgument {
        /// The parameter's name as documented.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The id was first used with a different payload.
    #[error("id `{id}` was already used with a different payload (fingerprint mismatch)")]
    Conflict {
        /// The id in question.
        id: String,
    },
    /// Another caller holds an unexpired lease on the id.
    #[error("id `{id}` is being processed by another caller")]
    InProgress {
        /// The id in question.
        id: String,
    },
    /// The fencing token is stale: the lease expired and another caller took the work, or the
    /// claim was already finished or released.
    #[error("lease on id `{id}` was lost (fencing token {token} is stale)")]
    LeaseLost {
        /// The id in question.
        id: String,
        /// The stale token the caller presented.
        token: u64,
    },
    /// The storage backend failed; the operation did not commit.
    #[error("storage error: {0}")]
    Storage(String),
    /// The store could not be reached for a while — the connection was lost or refused, the
    /// server is starting up or shutting down, a transaction lost a serialization race, or
    /// SQLite stayed locked past its busy timeout. Its code is [`ErrorCode::Storage`]; unlike
    /// other storage errors it is **transient** ([`Error::is_transient`]): the same call may
    /// succeed when retried, and the worker rides it out instead of stopping. If the connection
    /// was lost while a commit was on its way, the operation may have committed.
    #[error("storage unavailable: {0}")]
    StorageUnavailable(String),
    /// The store is not usable as an oncely store.
    #[error("not a usable oncely store: {0}")]
    CorruptStore(String),
    /// The object was closed.
    #[error("{0} is closed")]
    Closed(&'static str),
    /// A wait ran out of time.
    #[error("timed out after {waited_ms} ms waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// How long the caller waited.
        waited_ms: u64,
    },
}

impl Error {
    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidArgument { .. } => ErrorCode::InvalidArgument,
            Error::Conflict { .. } => ErrorCode::Conflict,
            Error::InProgress { .. } => ErrorCode::InProgress,
            Error::LeaseLost { .. } => ErrorCode::LeaseLost,
            Error::Storage(_) | Error::StorageUnavailable(_) => ErrorCode::Storage,
            Error::CorruptStore(_) => ErrorCode::CorruptStore,
            Error::Closed(_) => ErrorCode::Closed,
            Error::Timeout { .. } => ErrorCode::Timeout,
        }
    }

    /// Whether the failure is passing weather ([`Error::StorageUnavailable`]): the store was out of
    /// reach or busy, and retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::StorageUnavailable(_))
    }

    /// Shorthand for an [`Error::InvalidArgument`].
    pub fn invalid(name: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument { name, reason: reason.into() }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ffi::ErrorCode as C;
        match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(f.code, C::NotADatabase | C::DatabaseCorrupt) =>
            {
                Error::CorruptStore(crate::text::store_message(&e.to_string()))
            }
            // Still locked by another connection after the busy timeout: weather.
            rusqlite::Error::SqliteFailure(f, _) if matches!(f.code, C::DatabaseBusy | C::DatabaseLocked) => {
                Error::StorageUnavailable(crate::text::store_message(&e.to_string()))
            }
            _ => Error::Storage(crate::text::store_message(&e.to_string())),
        }
    }
}

/// The result type of every fallible oncely call.
pub type Result<T, E = Error> = std::result::Result<T, E>;
