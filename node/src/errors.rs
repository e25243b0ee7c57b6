//! Errors: a core error becomes a JS `Error` whose message is `CODE\x1fTEXT`; `index.js` turns it
//! into the subclass for `CODE` (`err.code` = `ONCELY_` + the stable code upper-cased).

use napi::{Error, Status};

/// Separates the code from the text in an error message (and the parts of a handler's answer).
pub(crate) const SEP: char = '\u{1f}';

/// A core error as a JS error carrying its stable code.
pub(crate) fn err(e: oncely::Error) -> Error {
    coded(&format!("ONCELY_{}", e.code().as_str().to_uppercase()), &e.to_string())
}

/// A JS error with the code `code` (`ONCELY_…`) and the text `msg`.
pub(crate) fn coded(code: &str, msg: &str) -> Error {
    Error::new(Status::GenericFailure, format!("{code}{SEP}{msg}"))
}

/// The core's invalid-argument error for `name`.
pub(crate) fn invalid(name: &'static str, reason: impl Into<String>) -> Error {
    err(oncely::Error::invalid(name, reason))
}
