//! The transactional outbox on a connection the caller holds: enqueue inside the caller's own
//! SQLite or PostgreSQL transaction, so the messages commit (or vanish) with the caller's writes.
//! The one place where the outbox meets a particular SQL store's connection type.

use rusqlite::Connection;

use crate::error::{Error, Result};
use crate::outbox::{Enqueued, NewMessage, Outbox};
use crate::store::SqliteStore;

impl Outbox<SqliteStore> {
    /// The transactional outbox: enqueues `messages` inside the caller's own transaction on
    /// `conn`, a connection to the same SQLite file as this outbox's store. The messages become
    /// visible, durable and deliverable only if and when the caller commits — together with the
    /// caller's own writes — and vanish if it rolls back. Returns what each enqueue did.
    ///
    /// `conn` must be inside a transaction (`BEGIN IMMEDIATE` is best: it takes the write lock
    /// up front). Events for these messages are published at once, before the caller's commit.
    pub fn enqueue_in(&self, conn: &Connection, messages: Vec<NewMessage>) -> Result<Vec<Enqueued>> {
        if conn.is_autocommit() {
            return Err(Error::invalid("conn", "must be inside a transaction (BEGIN IMMEDIATE first)"));
        }
        crate::store::sqlite::outbox::step_on(conn, &self.config().queue, |tx| {
            self.enqueue_through(tx, messages)
        })
    }
}

#[cfg(feature = "postgres")]
impl Outbox<crate::store::PostgresStore> {
    /// The transactional outbox: enqueues `messages` inside the caller's own transaction on a
    /// connection to the same database (and schema) as this outbox's store. The messages become
    /// visible and deliverable only if and when the caller commits — together with the caller's
    /// own writes — and vanish if it rolls back. Returns what each enqueue did. Events for these
    /// messages are published at once, before the caller's commit.
    pub fn enqueue_in(
        &self,
        tx: &mut postgres::Transaction<'_>,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Enqueued>> {
        use crate::store::postgres::{outbox::step_on, pool::Statements};
        step_on(tx, &mut Statements::default(), &self.config().queue, |t| self.enqueue_through(t, messages))
    }
}
