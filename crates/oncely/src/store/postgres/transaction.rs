//! PostgreSQL transactions lent to callers: the transactional inbox and outbox. The handler's
//! statements run in the pooled connection's open transaction, inside a savepoint.

use postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, Row};

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::records::{InboxOp, OpAnswer};
use crate::sql::{SqlTx, SqlValue, StoreTx, TransactionalStore};
use crate::store::postgres::outbox::step_on;
use crate::store::postgres::pool::{Statements, pg_error};
use crate::store::postgres::{PostgresStore, apply_op, lock_ids};
use crate::store::{AnyStore, OutboxTx};

/// One pooled connection's open transaction, lent out.
struct PgTx<'a> {
    client: &'a mut Client,
    statements: &'a mut Statements,
    /// The store's location, to tell whether an outbox lives in the same database.
    location: &'a str,
    /// The (scope, id) pairs this transaction holds the lock of already.
    locked: std::collections::HashSet<(String, String)>,
}

impl ToSql for SqlValue {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let text_like = matches!(*ty, Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN);
        let numeric =
            matches!(*ty, Type::INT2 | Type::INT4 | Type::INT8 | Type::FLOAT4 | Type::FLOAT8 | Type::BOOL);
        match self {
            SqlValue::Null => Ok(IsNull::Yes),
            SqlValue::Integer(i) => match *ty {
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT8 => i.to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::FLOAT4 => (*i as f32).to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                _ if text_like => i.to_string().as_str().to_sql(ty, out),
                _ => Err(format!("an integer cannot be bound to a parameter of type {ty}").into()),
            },
            SqlValue::Real(f) => match *ty {
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                Type::FLOAT8 => f.to_sql(ty, out),
                _ if text_like => f.to_string().as_str().to_sql(ty, out),
                _ => Err(format!("a float cannot be bound to a parameter of type {ty}").into()),
            },
            SqlValue::Text(_) if numeric || *ty == Type::BYTEA => {
                Err(format!("text cannot be bound to a parameter of type {ty}: cast it in the SQL").into())
            }
            SqlValue::Text(t) => t.as_str().to_sql(ty, out),
            SqlValue::Blob(b) if *ty == Type::BYTEA => b.as_slice().to_sql(ty, out),
            SqlValue::Blob(_) => {
                Err(format!("bytes can only be bound to a bytea parameter, not {ty}").into())
            }
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT2
                | Type::INT4
                | Type::INT8
                | Type::FLOAT4
                | Type::FLOAT8
                | Type::BOOL
                | Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
                | Type::UNKNOWN
                | Type::JSON
                | Type::JSONB
                | Type::BYTEA
        )
    }

    to_sql_checked!();
}

/// A column of a row as a [`SqlValue`]; types without a natural counterpart must be cast in
/// the query (`::text`, `::bigint`).
fn column(row: &Row, i: usize) -> Result<SqlValue> {
    fn get<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> Result<Option<T>> {
        row.try_get::<_, Option<T>>(i).map_err(pg_error)
    }
    let ty = row.columns()[i].type_();
    let v = match *ty {
        Type::INT2 => get::<i16>(row, i)?.map(|v| SqlValue::Integer(v.into())),
        Type::INT4 => get::<i32>(row, i)?.map(|v| SqlValue::Integer(v.into())),
        Type::INT8 => get::<i64>(row, i)?.map(SqlValue::Integer),
        Type::OID => get::<u32>(row, i)?.map(|v| SqlValue::Integer(v.into())),
        Type::BOOL => get::<bool>(row, i)?.map(|v| SqlValue::Integer(v.into())),
        Type::FLOAT4 => get::<f32>(row, i)?.map(|v| SqlValue::Real(v.into())),
        Type::FLOAT8 => get::<f64>(row, i)?.map(SqlValue::Real),
        Type::BYTEA => get::<Vec<u8>>(row, i)?.map(SqlValue::Blob),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            get::<String>(row, i)?.map(SqlValue::Text)
        }
        _ => {
            return Err(Error::invalid(
                "sql",
                format!(
                    "column `{}` has type {ty}, which has no SQL value counterpart: cast it (::text, ::bigint)",
                    row.columns()[i].name()
                ),
            ));
        }
    };
    Ok(v.unwrap_or(SqlValue::Null))
}

/// Whether `sql` starts with a statement that would end or unwind oncely's transaction.
fn controls_transaction(sql: &str) -> bool {
    let mut rest = sql.trim_start();
    // Skip leading comments.
    loop {
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.find('\n').map_or("", |n| &r[n..]).trim_start();
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.find("*/").map_or("", |n| &r[n + 2..]).trim_start();
        } else {
            break;
        }
    }
    let word: String =
        rest.chars().take_while(|c| c.is_ascii_alphabetic()).collect::<String>().to_ascii_lowercase();
    matches!(
        word.as_str(),
        "begin" | "start" | "commit" | "end" | "rollback" | "abort" | "savepoint" | "release" | "prepare"
    )
}

impl SqlTx for PgTx<'_> {
    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>> {
        if controls_transaction(sql) {
            return Err(Error::invalid(
                "sql",
                "transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, ...) is not allowed inside oncely's transaction",
            ));
        }
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let rows = self.client.query(sql, &params).map_err(pg_error)?;
        rows.iter().map(|r| (0..r.len()).map(|i| column(r, i)).collect()).collect()
    }

    fn outbox_step(
        &mut self,
        store: &AnyStore,
        queue: &str,
        work: &mut dyn FnMut(&mut dyn OutboxTx) -> Result<()>,
    ) -> Result<()> {
        match store {
            AnyStore::Postgres(s) if s.location() == self.location => {
                step_on(self.client, self.statements, queue, work)
            }
            _ => Err(Error::invalid(
                "outbox",
                "must use the same store as the transaction (the same PostgreSQL location)",
            )),
        }
    }
}

impl StoreTx for PgTx<'_> {
    fn apply_inbox(&mut self, scope: &str, now: Timestamp, op: &InboxOp) -> Result<OpAnswer> {
        if self.locked.insert((scope.to_owned(), op.id().to_owned())) {
            lock_ids(self.client, self.statements, scope, &[op.id()])?;
        }
        apply_op(self.client, self.statements, scope, now, op)
    }

    fn run_handler(&mut self, handler: &mut dyn FnMut(&mut dyn SqlTx) -> bool) -> Result<()> {
        self.client.batch_execute("SAVEPOINT oncely_handler").map_err(pg_error)?;
        let keep = handler(self);
        // After a failed statement the transaction is aborted: RELEASE then fails (and the job
        // with it), so a handler that swallowed an SQL error can never commit half its work.
        let end = if keep {
            "RELEASE oncely_handler"
        } else {
            "ROLLBACK TO oncely_handler; RELEASE oncely_handler"
        };
        self.client.batch_execute(end).map_err(pg_error)
    }
}

impl TransactionalStore for PostgresStore {
    /// The job runs on a pooled connection's thread, inside one transaction.
    async fn transaction<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut dyn StoreTx) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let location = self.location().to_owned();
        self.pool()
            .transaction(move |client, statements| {
                job(&mut PgTx { client, statements, location: &location, locked: Default::default() })
            })
            .await
    }
}
