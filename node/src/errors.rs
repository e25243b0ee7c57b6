//! Errors. Every error this binding raises is a napi error whose status is a code string: napi
//! throws (or rejects with) a JS `Error` carrying it as `err.code` and the text as `err.message`.
//! A core error's code is `ONCELY_` + its stable code upper-cased (`ONCELY_CONFLICT`) and its text
//! the core's; index.js picks the subclass for the code. napi's own failures keep napi's status
//! name as their code (`InvalidArg`, `StringExpected`, ...).
//!
//! napi rejects a Promise only with an error of its `Status`, which has no room for a code of
//! ours: [`promise`] therefore makes the JS error (with its code) on the JS thread and rejects
//! with that very object.

use std::future::Future;

use napi::Env;
use napi::bindgen_prelude::{AsyncBlock, AsyncBlockBuilder, JsError, ToNapiValue};
use oncely::ErrorCode;

/// An error for JS: its status is the code JS sees as `err.code`.
pub(crate) type Error = napi::Error<String>;
/// The result of everything in this binding that can fail.
pub(crate) type Result<T> = std::result::Result<T, Error>;

/// The code a core error has in JS (`ONCELY_` + the stable code upper-cased).
fn code_name(code: ErrorCode) -> String {
    format!("ONCELY_{}", code.as_str().to_uppercase())
}

/// A core error as a JS error carrying its stable code.
pub(crate) fn err(e: oncely::Error) -> Error {
    Error::new(code_name(e.code()), e.to_string())
}

/// An error with the core's code `code` and the text `msg` (for a failure the core has no
/// error value for).
pub(crate) fn coded(code: ErrorCode, msg: impl ToString) -> Error {
    Error::new(code_name(code), msg)
}

/// The core's invalid-argument error for `name`.
pub(crate) fn invalid(name: &'static str, reason: impl Into<String>) -> Error {
    err(oncely::Error::invalid(name, reason))
}

/// A `process` handler's own failure: index.js re-throws what the handler threw in its place.
pub(crate) const HANDLER_FAILED: &str = "ONCELY_HANDLER_FAILED";
/// A `process` call whose id's first delivery failed permanently (index.js's
/// `ReplayedFailureError`).
pub(crate) const REPLAYED_FAILURE: &str = "ONCELY_REPLAYED_FAILURE";

/// napi's own errors (`Status`) as ours, with napi's status name as the code.
pub(crate) trait Napi<T> {
    fn napi(self) -> Result<T>;
}

impl<T> Napi<T> for napi::Result<T> {
    fn napi(self) -> Result<T> {
        self.map_err(|e| Error::new(e.status.as_ref().to_string(), &e.reason))
    }
}

/// The Promise of a method whose arguments were converted (on the JS thread) before `f` runs on
/// napi's tokio runtime; it rejects with the JS error made of `f`'s error (with its code).
pub(crate) fn promise<V, F>(env: &Env, f: F) -> Result<AsyncBlock<V>>
where
    V: ToNapiValue + Send + 'static,
    F: Future<Output = Result<V>> + Send + 'static,
{
    AsyncBlockBuilder::build_with_map(env, async move { Ok(f.await) }, |env, r| {
        r.map_err(|e| napi::Error::from(JsError::from(e).into_unknown(env)))
    })
    .napi()
}
