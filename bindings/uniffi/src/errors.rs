//! The one error enum every call throws ([`OncelyError`], `OncelyException` in Kotlin,
//! `OncelyError` in Swift) and the error a host handler throws back ([`HandlerError`]).
//! Conversion only: the codes and the message texts are the core's.

use std::time::Duration;

/// Every failure an oncely call reports. The variant is the stable code (the core's
/// `ErrorCode`: `InvalidArgument` is `invalid_argument`, ...), the message is the core's text,
/// the same as in Rust, Python and Node. Two variants are not core codes: `HandlerFailed` (the
/// handler of `Inbox.process` ran in this call and failed; the message is its reason) and
/// `ReplayedFailure` (the id's first delivery failed permanently and the failure was stored; the
/// message is the stored reason, empty when none was stored).
#[derive(Debug, thiserror::Error, uniffi::Error)]
#[uniffi(flat_error)]
pub enum OncelyError {
    /// A value outside its documented range; nothing was written.
    #[error("{0}")]
    InvalidArgument(String),
    /// The id was used with a different payload.
    #[error("{0}")]
    Conflict(String),
    /// Another caller holds an unexpired lease on the id.
    #[error("{0}")]
    InProgress(String),
    /// A stale fencing token: the lease was taken over or already settled; nothing was written.
    #[error("{0}")]
    LeaseLost(String),
    /// The storage backend failed; the operation did not commit.
    #[error("{0}")]
    Storage(String),
    /// Not an oncely store, damaged, or from a newer oncely.
    #[error("{0}")]
    CorruptStore(String),
    /// The object (or a transaction handle) was closed.
    #[error("{0}")]
    Closed(String),
    /// A wait ran out.
    #[error("{0}")]
    Timeout(String),
    /// `Inbox.process`: the handler ran in this call and failed (message: its reason).
    #[error("{0}")]
    HandlerFailed(String),
    /// `Inbox.process`: the replay of a stored permanent failure (message: the stored reason).
    #[error("{0}")]
    ReplayedFailure(String),
}

impl From<oncely::Error> for OncelyError {
    fn from(e: oncely::Error) -> Self {
        use oncely::ErrorCode as C;
        let text = e.to_string();
        match e.code() {
            C::InvalidArgument => OncelyError::InvalidArgument(text),
            C::Conflict => OncelyError::Conflict(text),
            C::InProgress => OncelyError::InProgress(text),
            C::LeaseLost => OncelyError::LeaseLost(text),
            C::Storage => OncelyError::Storage(text),
            C::CorruptStore => OncelyError::CorruptStore(text),
            C::Closed => OncelyError::Closed(text),
            C::Timeout => OncelyError::Timeout(text),
            // A code added to the core after this binding: still an error, never a crash. The
            // unit test below fails until it gets its own variant.
            _ => OncelyError::Storage(text),
        }
    }
}

impl OncelyError {
    /// The stable code string (`"invalid_argument"`, ..., `"handler_failed"`,
    /// `"replayed_failure"`).
    pub fn code(&self) -> &'static str {
        use oncely::ErrorCode as C;
        match self {
            OncelyError::InvalidArgument(_) => C::InvalidArgument.as_str(),
            OncelyError::Conflict(_) => C::Conflict.as_str(),
            OncelyError::InProgress(_) => C::InProgress.as_str(),
            OncelyError::LeaseLost(_) => C::LeaseLost.as_str(),
            OncelyError::Storage(_) => C::Storage.as_str(),
            OncelyError::CorruptStore(_) => C::CorruptStore.as_str(),
            OncelyError::Closed(_) => C::Closed.as_str(),
            OncelyError::Timeout(_) => C::Timeout.as_str(),
            OncelyError::HandlerFailed(_) => "handler_failed",
            OncelyError::ReplayedFailure(_) => "replayed_failure",
        }
    }
}

/// The stable codes of the core, in its fixed order (`ErrorCode::ALL`), for tests that check
/// every code has its variant.
#[uniffi::export]
pub fn error_codes() -> Vec<String> {
    oncely::ErrorCode::ALL.iter().map(|c| c.as_str().to_string()).collect()
}

pub(crate) fn invalid(name: &'static str, reason: impl Into<String>) -> OncelyError {
    oncely::Error::invalid(name, reason).into()
}

/// A duration given in milliseconds: negative values are refused with `invalid_argument`.
pub(crate) fn ms(name: &'static str, v: i64) -> Result<Duration, OncelyError> {
    u64::try_from(v)
        .map(Duration::from_millis)
        .map_err(|_| invalid(name, format!("must not be negative, got {v} ms")))
}

pub(crate) fn opt_ms(name: &'static str, v: Option<i64>) -> Result<Option<Duration>, OncelyError> {
    v.map(|v| ms(name, v)).transpose()
}

/// A duration as whole milliseconds (saturating: no oncely duration comes near `i64::MAX` ms).
pub(crate) fn to_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What a host handler throws to say how its attempt failed (`HandlerException` in Kotlin).
/// Any other exception a handler throws counts as `Retry` with the exception's first line as the
/// reason.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum HandlerError {
    /// A failure a retry may cure (the default for any exception).
    #[error("{reason}")]
    Retry {
        /// What went wrong; stored as the attempt's error.
        reason: String,
    },
    /// A failure no retry will cure: the inbox stores it (by its cache policy) and the outbox
    /// worker dead-letters (or parks) the message.
    #[error("{reason}")]
    Permanent {
        /// What went wrong.
        reason: String,
    },
}

impl From<HandlerError> for oncely::Failure<String> {
    /// A handler's classified failure as the core's: permanent or retryable, with its reason.
    fn from(e: HandlerError) -> Self {
        match e {
            HandlerError::Permanent { reason } => oncely::Failure::permanent(reason),
            HandlerError::Retry { reason } => oncely::Failure::retryable(reason),
        }
    }
}

impl From<uniffi::UnexpectedUniFFICallbackError> for HandlerError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        // The foreign side sends the exception's stack trace; its first line is the exception.
        let reason = e.reason.lines().next().unwrap_or_default().to_string();
        HandlerError::Retry { reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_code_has_its_own_variant() {
        for c in oncely::ErrorCode::ALL {
            let e = OncelyError::from(match c {
                oncely::ErrorCode::InvalidArgument => oncely::Error::invalid("x", "y"),
                oncely::ErrorCode::Conflict => oncely::Error::Conflict { id: "i".into() },
                oncely::ErrorCode::InProgress => oncely::Error::InProgress { id: "i".into() },
                oncely::ErrorCode::LeaseLost => oncely::Error::LeaseLost { id: "i".into(), token: 1 },
                oncely::ErrorCode::Storage => oncely::Error::Storage("s".into()),
                oncely::ErrorCode::CorruptStore => oncely::Error::CorruptStore("c".into()),
                oncely::ErrorCode::Closed => oncely::Error::Closed("x"),
                oncely::ErrorCode::Timeout => oncely::Error::Timeout { what: "w", waited_ms: 1 },
                _ => panic!("a core code without a variant here: {c}"),
            });
            assert_eq!(e.code(), c.as_str());
        }
    }

    #[test]
    fn negative_durations_are_invalid() {
        assert!(matches!(ms("lease_ms", -1), Err(OncelyError::InvalidArgument(_))));
        assert_eq!(ms("lease_ms", 1500).unwrap(), Duration::from_millis(1500));
    }
}
