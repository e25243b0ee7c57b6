//! SQLite transactions lent to callers: the transactional inbox and the transactional outbox.
//! A handler's statements run on the writer's connection inside the job's own transaction; while
//! it runs, SQLite itself refuses statements that would end or unwind that transaction.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, params_from_iter};

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::records::{Durability, InboxOp, OpAnswer};
use crate::sql::{SqlTx, SqlValue, StoreTx, TransactionalStore};
use crate::store::sqlite::outbox::step_on;
use crate::store::sqlite::{Batch, SqliteStore, apply_op};
use crate::store::{AnyStore, OutboxTx};

/// Denies BEGIN / COMMIT / ROLLBACK and any touch of oncely's own savepoints.
fn forbid_transaction_control(ctx: AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Transaction { .. } => Authorization::Deny,
        // SQLite's savepoint names are case-insensitive.
        AuthAction::Savepoint { savepoint_name, .. }
            if savepoint_name.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("oncely_")) =>
        {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }
}

/// One job of the writer, lent out as a transaction.
struct SqliteTx<'b, 'c> {
    batch: &'b mut Batch<'c>,
    /// The store's identity, to tell whether an outbox lives in the same database.
    identity: &'b (PathBuf, usize),
}

fn to_value(v: &SqlValue) -> Value {
    match v {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => Value::Integer(*i),
        SqlValue::Real(f) => Value::Real(*f),
        SqlValue::Text(s) => Value::Text(s.clone()),
        SqlValue::Blob(b) => Value::Blob(b.clone()),
    }
}

fn from_value(v: ValueRef<'_>) -> SqlValue {
    match v {
        ValueRef::Null => SqlValue::Null,
        ValueRef::Integer(i) => SqlValue::Integer(i),
        ValueRef::Real(f) => SqlValue::Real(f),
        ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
    }
}

/// Runs one statement on `conn` and collects its rows.
pub(crate) fn execute(conn: &Connection, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>> {
    let mut stmt = conn.prepare(sql).map_err(|e| match e {
        // rusqlite's own text repeats the whole statement: quote a bounded prefix instead.
        rusqlite::Error::SqlInputError { msg, offset, .. } => Error::Storage(format!(
            "{} at offset {offset} of {}",
            crate::text::quote(&msg),
            crate::text::quote(sql)
        )),
        other => Error::from(other),
    })?;
    let columns = stmt.column_count();
    let mut rows = stmt.query(params_from_iter(params.iter().map(to_value)))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push((0..columns).map(|i| row.get_ref(i).map(from_value)).collect::<rusqlite::Result<Vec<_>>>()?);
    }
    Ok(out)
}

impl SqlTx for SqliteTx<'_, '_> {
    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>> {
        execute(self.batch.conn, sql, params)
    }

    fn outbox_step(
        &mut self,
        store: &AnyStore,
        queue: &str,
        work: &mut dyn FnMut(&mut dyn OutboxTx) -> Result<()>,
    ) -> Result<()> {
        match store {
            // The handler's enqueues bump the counters in the table itself; the writer's cache
            // of them is marked stale when the handler returns.
            AnyStore::Sqlite(s) if s.same_database(self.identity) => step_on(self.batch.conn, queue, work),
            _ => Err(Error::invalid(
                "outbox",
                "must use the same store as the transaction (the same SQLite file)",
            )),
        }
    }

    fn sqlite(&self) -> Option<&Connection> {
        Some(self.batch.conn)
    }
}

impl StoreTx for SqliteTx<'_, '_> {
    fn apply_inbox(&mut self, scope: &str, now: Timestamp, op: &InboxOp) -> Result<OpAnswer> {
        apply_op(self.batch, scope, now, op)
    }

    fn run_handler(&mut self, handler: &mut dyn FnMut(&mut dyn SqlTx) -> bool) -> Result<()> {
        // The handler may bump the counters through this connection (an enqueue): let it see,
        // and leave us, their true values.
        self.batch.counters.save(self.batch.conn)?;
        self.batch.conn.execute_batch("SAVEPOINT oncely_handler")?;
        // While the handler runs, statements that would end or unwind oncely's transaction are
        // refused by SQLite itself.
        self.batch.conn.authorizer(Some(forbid_transaction_control))?;
        // If a statement still ends the transaction (INSERT OR ROLLBACK, RAISE(ROLLBACK), an I/O
        // error), every later write would autocommit: turn each such commit into a rollback, so
        // nothing the handler writes outside the transaction survives.
        self.batch.conn.commit_hook(Some(|| true))?;
        let kept = catch_unwind(AssertUnwindSafe(|| handler(self)));
        self.batch.conn.commit_hook(None::<fn() -> bool>)?;
        self.batch.conn.authorizer(None::<fn(AuthContext<'_>) -> Authorization>)?;
        let kept = kept.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        self.batch.counters.mark_stale();
        if self.batch.conn.is_autocommit() {
            return Err(Error::invalid(
                "transaction",
                "the handler's transaction was ended by one of its statements",
            ));
        }
        if kept {
            self.batch.conn.execute_batch("RELEASE oncely_handler")?;
        } else {
            self.batch.conn.execute_batch("ROLLBACK TO oncely_handler; RELEASE oncely_handler")?;
        }
        Ok(())
    }
}

impl TransactionalStore for SqliteStore {
    /// The job runs on the store's writer thread, in the next group commit: other callers'
    /// commits wait for it, so it should do only database work.
    async fn transaction<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut dyn StoreTx) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let identity = self.identity();
        self.writer()?
            .run(Durability::Durable, move |batch| job(&mut SqliteTx { batch, identity: &identity }))
            .await
    }
}
