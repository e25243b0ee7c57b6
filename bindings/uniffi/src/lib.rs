//! `oncely-ffi`: oncely for Kotlin (JVM, Android) and Swift (iOS, macOS) through uniffi.
//!
//! Translation only (DESIGN §7): type conversion, error mapping and async adaptation. Every rule
//! lives in the `oncely` crate; nothing here decides what is written when.
//!
//! Conventions, the same on every object:
//! - durations are whole **milliseconds** (`…Ms`, `Long` in Kotlin); a negative one is refused
//!   with `invalid_argument`;
//! - timestamps are milliseconds since the Unix epoch (`…AtMs`, `…UntilMs`);
//! - ids, keys and scopes are strings; payloads and results are bytes;
//! - every store call is `async` (a Kotlin `suspend` function, a Swift `async` function) and runs
//!   on oncely's one tokio runtime per process (`oncely::runtime`), so callers need no runtime of
//!   their own; cancelling the caller's coroutine or task stops the call (a write already handed
//!   to the store may still commit, as after a crash);
//! - handlers (inbox `process`, the outbox worker, event listeners) are callback interfaces the
//!   host implements; they are called on oncely's threads and may block.

uniffi::setup_scaffolding!("oncely");

mod errors;
mod inbox;
mod outbox;
mod retry;
mod store;
mod text;
mod transaction;
mod worker;

pub use errors::{HandlerError, OncelyError, error_codes};
pub use inbox::*;
pub use outbox::*;
pub use retry::*;
pub use store::*;
pub use text::HostText;
pub use transaction::*;
pub use worker::*;

use std::future::Future;

/// Runs `work` on oncely's shared tokio runtime and waits for it. Dropping the returned future
/// (the host cancelled its coroutine or task) aborts the work.
pub(crate) async fn on_runtime<T: Send + 'static>(
    work: impl Future<Output = Result<T, OncelyError>> + Send + 'static,
) -> Result<T, OncelyError> {
    struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);
    impl<T> Drop for AbortOnDrop<T> {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let rt = oncely::runtime::runtime()?;
    let mut task = AbortOnDrop(rt.spawn(work));
    match (&mut task.0).await {
        Ok(r) => r,
        Err(e) => Err(OncelyError::Storage(format!("internal error: an oncely task failed: {e}"))),
    }
}

/// Runs `work` on a blocking thread of oncely's shared runtime (it may `block_on` the runtime's
/// handle there) and waits for it. For core futures that cannot be spawned as tasks.
pub(crate) async fn on_blocking<T: Send + 'static>(
    work: impl FnOnce(&tokio::runtime::Handle) -> Result<T, OncelyError> + Send + 'static,
) -> Result<T, OncelyError> {
    let rt = oncely::runtime::runtime()?;
    let handle = rt.handle().clone();
    match rt.spawn_blocking(move || work(&handle)).await {
        Ok(r) => r,
        Err(e) => Err(OncelyError::Storage(format!("internal error: an oncely task failed: {e}"))),
    }
}

/// The version of the oncely library inside this binding.
#[uniffi::export]
pub fn version() -> String {
    oncely::version().to_string()
}

/// The payload fingerprint the inbox compares (first 128 bits of SHA-256, as hex): the same
/// value in every language.
#[uniffi::export]
pub fn fingerprint(payload: Vec<u8>) -> String {
    oncely::Fingerprint::of(&payload).to_hex()
}
