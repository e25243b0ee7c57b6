//! The one error enum every call throws ([`OncelyError`], `OncelyException` in Kotlin,
//! `OncelyError` in Swift) and the error a host handler throws back ([`HandlerError`]).
//! Conversion only: the codes and the message texts are the core's.

use std::time::Duration;

use oncely::handler::{HandlerResult, Raised};

use crate::text::HostText;

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

/// A duration as whole milliseconds (saturating: no oncely duration comes near `i64::MAX` ms).
pub(crate) fn to_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What a host handler throws to say how its attempt failed (`HandlerException` in Kotlin), as
/// the binding hands it to the core's handler contract ([`oncely::handler`]): the core decides the
/// outcome and the stored failure text. The Kotlin lambda forms (`Lambdas.kt`) turn every other
/// exception into `Retry` with its message and simple class name (`Throwable.toHandlerException()`);
/// an exception that reaches oncely some other way (a handler object that lets it escape) is read
/// from its text (`java.io.IOException: reset` is the message `reset` of `IOException`).
#[derive(Debug, uniffi::Error)]
pub enum HandlerError {
    /// A failure a retry may cure: an exception the handler threw (any exception but `Permanent`).
    /// The stored text is its message, or its type name when the message is null or empty.
    Retry {
        /// The exception's message (`Throwable.message`); null when it has none.
        error: Option<HostText>,
        /// The exception's simple class name (`IOException`).
        type_name: HostText,
    },
    /// A failure no retry will cure: the inbox stores it (by its cache policy) and the outbox
    /// worker dead-letters (or parks) the message. An empty reason stores `Permanent`.
    Permanent {
        /// What went wrong.
        reason: HostText,
    },
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&HandlerResult::from(self).failure().unwrap_or_default())
    }
}

impl std::error::Error for HandlerError {}

impl From<&HandlerError> for HandlerResult {
    /// What the handler raised, described for the core. Its texts are read lossily (a lone
    /// surrogate becomes U+FFFD): a failure text is stored, never refused.
    fn from(e: &HandlerError) -> Self {
        match e {
            HandlerError::Retry { error, type_name } => HandlerResult::Raised {
                kind: Raised::Other,
                message: error.as_ref().map(HostText::lossy),
                type_name: type_name.lossy(),
            },
            HandlerError::Permanent { reason } => HandlerResult::Raised {
                kind: Raised::Permanent,
                message: Some(reason.lossy()),
                type_name: "Permanent".to_owned(),
            },
        }
    }
}

impl From<HandlerError> for HandlerResult {
    fn from(e: HandlerError) -> Self {
        HandlerResult::from(&e)
    }
}

impl HandlerError {
    /// The failure text the core stores for this error.
    pub(crate) fn text(self) -> String {
        HandlerResult::from(&self).failure().unwrap_or_default()
    }
}

impl From<HandlerError> for oncely::Failure<String> {
    /// A handler's failure as the core's: permanent or retryable, with the core's text.
    fn from(e: HandlerError) -> Self {
        let permanent = matches!(e, HandlerError::Permanent { .. });
        let text = e.text();
        if permanent { oncely::Failure::permanent(text) } else { oncely::Failure::retryable(text) }
    }
}

impl From<uniffi::UnexpectedUniFFICallbackError> for HandlerError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        let (error, type_name) = read_exception(&e.reason);
        HandlerError::Retry { error: error.map(HostText::from), type_name: type_name.into() }
    }
}

/// An exception's message and simple class name, read from the text the foreign side sends for
/// an exception it did not convert: Kotlin sends `Throwable.toString()` (`pkg.Class: message`, or
/// `pkg.Class` without a message), followed by the stack trace for blocking handlers. Text that
/// does not start with a class name (Swift's `String(describing: error)`) is the message of an
/// `Error`.
fn read_exception(reason: &str) -> (Option<String>, String) {
    let end = ["\n\tat ", "\n\t... ", "\nCaused by: ", "\n\tSuppressed: "]
        .iter()
        .filter_map(|m| reason.find(m))
        .min()
        .unwrap_or(reason.len());
    let mut text = &reason[..end];
    if end < reason.len() || text.ends_with('\n') {
        // The stack trace's own line end.
        text = text.strip_suffix('\n').unwrap_or(text);
        text = text.strip_suffix('\r').unwrap_or(text);
    }
    let class_name = |s: &str| {
        !s.is_empty()
            && !s.starts_with(|c: char| c.is_ascii_digit() || c == '.')
            && s.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == '.')
    };
    let simple = |s: &str| {
        let last = s.rsplit('.').next().unwrap_or(s);
        match last.rsplit_once('$') {
            Some((_, inner)) if !inner.is_empty() && !inner.chars().all(|c| c.is_ascii_digit()) => inner,
            _ => last,
        }
        .to_owned()
    };
    match text.split_once(": ") {
        Some((class, message)) if class_name(class) => (Some(message.to_owned()), simple(class)),
        _ if class_name(text) => (None, simple(text)),
        _ => (Some(text.to_owned()), "Error".to_owned()),
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
    fn exceptions_are_read_from_their_text() {
        let read = |s: &str| read_exception(s);
        assert_eq!(read("java.io.IOException: reset"), (Some("reset".into()), "IOException".into()));
        assert_eq!(read("java.io.IOException"), (None, "IOException".into()));
        assert_eq!(read("java.io.IOException: "), (Some("".into()), "IOException".into()));
        assert_eq!(
            read("java.lang.IllegalStateException: two\nlines\n\tat a.B.c(B.kt:1)\n\tat d.E.f(E.kt:2)\n"),
            (Some("two\nlines".into()), "IllegalStateException".into())
        );
        assert_eq!(read("dev.oncely.HandlerFailure\n"), (None, "HandlerFailure".into()));
        assert_eq!(read("a.Outer$Inner: x\r\n\tat a.B.c(B.kt:1)\r\n"), (Some("x".into()), "Inner".into()));
        assert_eq!(read("a.MainKt$main$1: x"), (Some("x".into()), "MainKt$main$1".into()));
        assert_eq!(
            read("The operation couldn't be completed."),
            (Some("The operation couldn't be completed.".into()), "Error".into())
        );
        assert_eq!(read(""), (Some("".into()), "Error".into()));
        // The core's rule gives the texts.
        assert_eq!(
            HandlerError::from(uniffi::UnexpectedUniFFICallbackError::new("java.io.IOException")).text(),
            "IOException"
        );
        assert_eq!(HandlerError::Permanent { reason: "".into() }.text(), "Permanent");
        assert_eq!(HandlerError::Retry { error: Some("boom".into()), type_name: "X".into() }.text(), "boom");
    }

    #[test]
    fn negative_durations_are_invalid() {
        use crate::text::ms;
        assert!(matches!(ms("lease_ms", -1), Err(OncelyError::InvalidArgument(_))));
        assert_eq!(ms("lease_ms", 1500).unwrap(), Duration::from_millis(1500));
    }
}
