//! `oncely` for Node.js: the napi-rs binding of oncely. Translation only — type conversion,
//! error mapping and async adaptation; every rule lives in the core crate (DESIGN §7).
//!
//! Conventions: durations are float seconds (checked by
//! [`oncely::clock::duration_from_secs_f64`]); timestamps are integer milliseconds since the Unix
//! epoch (`*Ms`); ids are strings; payloads are `Buffer` (or a string, encoded as UTF-8); results
//! are `Buffer`. Every async method runs on napi's tokio runtime and returns a Promise.
//!
//! Errors: a core error becomes a JS `Error` whose `code` is `ONCELY_` + the stable code
//! upper-cased and whose message is the core's text (napi's error status, see `errors.rs`);
//! `index.js` turns it into the subclass for its code.

use napi::bindgen_prelude::*;
use napi_derive::napi;
use oncely::{AnyStore, Mode};

mod conv;
mod errors;
mod http;
mod inbox;
mod outbox;
mod store;
mod transaction;
mod worker;

use conv::{Options, bytes, number, present};
pub(crate) use errors::{Napi, Result, coded, err, invalid, promise};
pub use http::*;
pub use inbox::*;
pub use outbox::*;
pub use store::*;

type CoreInbox = oncely::Inbox<AnyStore>;
type CoreOutbox = oncely::Outbox<AnyStore>;

/// An optional number argument (undefined or null: none).
pub(crate) fn opt_number(name: &'static str, v: Option<Unknown<'_>>) -> Result<Option<f64>> {
    present(v)?.map(|v| number(name, v)).transpose()
}

/// A required option of an arguments object.
pub(crate) fn required<T>(name: &'static str, v: Option<T>) -> Result<T> {
    v.ok_or_else(|| invalid(name, "is required"))
}

pub(crate) fn mode(v: Option<String>) -> Result<Option<Mode>> {
    v.map(|s| s.parse::<Mode>().map_err(err)).transpose()
}

/// The options objects that index.js reads itself (by the name it passes): their known keys,
/// checked here with every other options object's.
const JS_OPTIONS: &[(&str, &[&str])] = &[
    ("run options", &["signal"]),
    ("Retry options", &["after"]),
    ("idempotent options", &["key", "payload", "inbox", "mode", "lease", "wait"]),
];

/// Native half of index.js's options checks: refuses an options object of `which` (a name in
/// [`JS_OPTIONS`]) that is not an object or has a key it does not know.
#[napi(js_name = "_checkOptions", skip_typescript)]
pub fn check_options(which: String, options: Option<Unknown>) -> Result<()> {
    let (what, known) = JS_OPTIONS.iter().find(|(w, _)| *w == which).ok_or_else(|| {
        invalid("options", format!("no such options object: {}", oncely::text::quote(&which)))
    })?;
    Options::of(what, options, known).map(drop)
}

/// Native half of index.js's `toBuffer`: a handler's string result as UTF-8, decoded from
/// UTF-16 by the core's rule (a lone surrogate refused, never replaced).
#[napi(js_name = "_utf8", skip_typescript)]
pub fn utf8(value: Unknown) -> Result<Buffer> {
    Ok(Buffer::from(bytes("result", value)?))
}

/// The payload fingerprint the inbox compares (first 128 bits of SHA-256, as hex): the same value
/// in every language (`InboxRecord.fingerprint`).
#[napi(ts_args_type = "payload: Buffer | string")]
pub fn fingerprint(payload: Unknown) -> Result<String> {
    Ok(oncely::Fingerprint::of(&bytes("payload", payload)?).to_hex())
}

/// The package version.
#[napi]
pub fn version() -> String {
    oncely::version().to_string()
}
