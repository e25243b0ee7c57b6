//! oncely: at-most-once, at-least-once and exactly-once delivery as a library.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backoff;
pub mod clock;
pub mod defaults;
pub mod error;

pub use error::{Error, ErrorCode, Result};
pub mod fingerprint;
pub mod handler;
pub mod http;
pub mod inbox;
pub mod limits;
pub mod message;
pub mod metrics;
pub mod mode;
pub mod outbox;
pub mod records;
pub mod runtime;
#[doc(hidden)]
pub mod sim_broken;
pub mod sql;
pub mod store;
#[cfg(feature = "otel")]
pub mod telemetry;
pub mod text;
mod timer;
pub mod worker;

/// The PostgreSQL client crate oncely is built on, for [`Outbox::enqueue_in`] on a caller's own
/// PostgreSQL transaction.
#[cfg(feature = "postgres")]
pub use ::postgres;
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use fingerprint::Fingerprint;
pub use inbox::{
    Begin, CachePolicy, Failure, Inbox, InboxConfig, ProcessError, Processed, Replay, Request, Ticket,
};
pub use message::Message;
pub use mode::Mode;
pub use outbox::{Delivery, NewMessage, Outbox, OutboxConfig};
/// The rusqlite crate oncely is built on, for the connection handed to transactional handlers.
pub use rusqlite;
pub use store::{AnyStore, InboxStore, MemoryStore, OutboxStore, SqliteConfig, SqliteStore, Synchronous};
#[cfg(feature = "postgres")]
pub use store::{PostgresConfig, PostgresStore};
pub use worker::{Outcome, Worker, WorkerConfig};

/// This oncely's version (the workspace's one version): what every binding reports as its own
/// (`oncely.__version__`, `require('oncely').version`, Kotlin's `version()`).
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}
