//! The shared store: PostgreSQL. Many processes on many hosts share one queue and one
//! processed-ID store, with exactly the rules of the SQLite store (the same
//! [`crate::records::decide`] and [`crate::outbox::rules`]).
//!
//! How it stays correct with many writers, under READ COMMITTED:
//! - an inbox operation holds a transaction advisory lock on its (scope, id) — taken in one
//!   sorted order per call, so calls never deadlock — and reads the record `FOR UPDATE`;
//! - the outbox leases with `FOR UPDATE SKIP LOCKED` and fences every settle (see `outbox.rs`);
//! - fencing tokens and queue positions come from sequences shared by every process;
//! - garbage collection deletes only rows nobody holds (`SKIP LOCKED`).
//!
//! Timestamps are the callers' clocks (as on SQLite): keep hosts' clocks in sync (NTP), as
//! leases and retention are compared against them.

mod clock;
pub(crate) mod outbox;
pub(crate) mod pool;
mod schema;
pub(crate) mod tls;
mod transaction;

use std::sync::Arc;
use std::time::Duration;

use postgres::GenericClient;

pub use schema::SCHEMA_VERSION;

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::records::{InboxOp, InboxRecord, OpAnswer, Write, decide_with};
use crate::store::postgres::pool::{Pool, Statements, pg_error};
use crate::store::{InboxStore, OutboxStore, OutboxTx};

/// How to open a PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// Connections this store keeps open (each on a thread of its own). Default: 4.
    pub pool_size: usize,
    /// How long to wait for a connection to be established. Default: 10 s.
    pub connect_timeout: Duration,
    /// Whether opening a database without oncely's tables creates them. Default: true. When
    /// false, such a database is refused with [`Error::CorruptStore`] and left untouched.
    pub create_if_missing: bool,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig { pool_size: 4, connect_timeout: Duration::from_secs(10), create_if_missing: true }
    }
}

struct Shared {
    pool: Pool,
    /// The server's time, by which every deadline of this store is judged.
    clock: Arc<clock::ServerClock>,
    /// The location as given, without its password: what tells two stores' databases apart.
    location: String,
}

/// An oncely store in a PostgreSQL database. Clones share one connection pool; any number of
/// processes (on any hosts) may open the same database.
#[derive(Clone)]
pub struct PostgresStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("location", &self.shared.location).finish()
    }
}

pub use crate::store::location::redact;

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_show() {
        assert_eq!(redact("postgres://u:secret@h:5/db?x=1"), "postgres://u:***@h:5/db?x=1");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgresql://u:p@ss:w@h/db"), "postgresql://u:***@h/db");
        assert_eq!(redact("host=h password=secret user=u"), "host=h password=*** user=u");
        assert_eq!(
            redact("postgres://u@h/db?password=x&sslmode=off"),
            "postgres://u@h/db?password=***&sslmode=off"
        );
        assert_eq!(redact("postgres://u@h/db?mypassword=x"), "postgres://u@h/db?mypassword=x");
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/dbname`, with
    /// libpq-style options such as `?options=-csearch_path%3Dmy_schema`; no TLS), creates or
    /// migrates oncely's tables there, and starts the pool. Refuses with
    /// [`Error::CorruptStore`], touching nothing, tables that are not oncely's or a schema written
    /// by a newer oncely; an unreachable server is [`Error::Storage`].
    pub fn open(url: &str, config: PostgresConfig) -> Result<Self> {
        if config.pool_size == 0 {
            return Err(Error::invalid("pool_size", "must be at least 1"));
        }
        let location = redact(url);
        let (url, tls_settings) = tls::split(url)?;
        let tls = tls::connector(&tls_settings)?;
        let mut pg: postgres::Config = url.parse().map_err(|e| {
            Error::invalid(
                "location",
                format!("is not a PostgreSQL URL ({}): {e}", crate::text::quote(&location)),
            )
        })?;
        pg.connect_timeout(config.connect_timeout);
        if pg.get_application_name().is_none() {
            pg.application_name("oncely");
        }
        // The synchronous client runs a runtime of its own, which must not start on a thread of
        // the caller's async runtime: connect and migrate on a thread of ours.
        let (config_for_open, shown, create) =
            (pg.clone(), crate::text::quote(&location), config.create_if_missing);
        let clock = Arc::new(clock::ServerClock::default());
        let measured = clock.clone();
        let tls_for_open = tls.clone();
        std::thread::spawn(move || -> Result<()> {
            let mut client = tls_for_open.connect(&config_for_open).map_err(|e| {
                let text = format!("cannot connect to PostgreSQL at {shown}: {}", pool::describe(&e));
                if pool::transient(&e) { Error::StorageUnavailable(text) } else { Error::Storage(text) }
            })?;
            schema::prepare(&mut client, create)?;
            measured.measure(&mut client)
        })
        .join()
        .map_err(|_| Error::Storage("opening the PostgreSQL store panicked".into()))??;
        let pool = Pool::start(pg, tls, config.pool_size, clock.clone())?;
        Ok(PostgresStore { shared: Arc::new(Shared { pool, clock, location }) })
    }

    /// Creates the PostgreSQL schema (namespace) `schema` in the database at `url` if it does
    /// not exist, and returns `url` set to use it (its `search_path`), so that a store opened
    /// with the result keeps its tables there, apart from everything else. `schema` must be a
    /// plain identifier (letters, digits, `_`; not starting with a digit), else
    /// [`Error::InvalidArgument`] and nothing is created.
    pub fn schema_url(url: &str, schema: &str) -> Result<String> {
        let plain = schema.len() <= 63
            && schema.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !plain {
            return Err(Error::invalid(
                "schema",
                "must be a plain identifier of at most 63 letters, digits and _",
            ));
        }
        let (plain_url, tls_settings) = tls::split(url)?;
        let tls = tls::connector(&tls_settings)?;
        let pg: postgres::Config = plain_url.parse().map_err(|e| {
            Error::invalid(
                "location",
                format!("is not a PostgreSQL URL ({}): {e}", crate::text::quote(&redact(url))),
            )
        })?;
        let ddl = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
        let shown = crate::text::quote(&redact(url));
        std::thread::spawn(move || -> Result<()> {
            let mut client = tls.connect(&pg).map_err(|e| {
                Error::Storage(format!("cannot connect to PostgreSQL at {shown}: {}", pool::describe(&e)))
            })?;
            client.batch_execute(&ddl).map_err(pg_error)
        })
        .join()
        .map_err(|_| Error::Storage("creating the schema panicked".into()))??;
        let sep = if url.contains('?') { '&' } else { '?' };
        Ok(format!("{url}{sep}options=-csearch_path%3D{schema}"))
    }

    /// Where this store lives (its URL, password redacted).
    pub fn location(&self) -> &str {
        &self.shared.location
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.shared.pool
    }
}

fn read_record<C: GenericClient>(
    client: &mut C,
    statements: &mut Statements,
    scope: &str,
    id: &str,
    lock: bool,
) -> Result<Option<InboxRecord>> {
    let sql = if lock {
        "SELECT fingerprint, token, state, lease_until, result, expires_at
         FROM oncely_inbox WHERE scope = $1 AND id = $2 FOR UPDATE"
    } else {
        "SELECT fingerprint, token, state, lease_until, result, expires_at
         FROM oncely_inbox WHERE scope = $1 AND id = $2"
    };
    let stmt = statements.get(client, sql)?;
    let Some(r) = client.query_opt(&stmt, &[&scope, &id]).map_err(pg_error)? else {
        return Ok(None);
    };
    InboxRecord::from_columns(id, r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)).map(Some)
}

/// Holds each of `ids` (within `scope`) until the transaction ends, taking the locks in one
/// global order so that concurrent calls never deadlock.
fn lock_ids<C: GenericClient>(
    client: &mut C,
    statements: &mut Statements,
    scope: &str,
    ids: &[&str],
) -> Result<()> {
    let stmt = statements.get(
        client,
        "SELECT pg_advisory_xact_lock(k) FROM (
           SELECT DISTINCT hashtextextended('inbox:' || length($1) || ':' || $1 || i, 0) AS k
           FROM unnest($2::text[]) AS i ORDER BY k) AS keys",
    )?;
    client.query(&stmt, &[&scope, &ids]).map_err(pg_error)?;
    Ok(())
}

/// Decides and writes one inbox operation inside the current transaction, whose caller holds
/// the id's lock.
fn apply_op<C: GenericClient>(
    client: &mut C,
    statements: &mut Statements,
    scope: &str,
    now: Timestamp,
    op: &InboxOp,
) -> Result<OpAnswer> {
    let id = op.id();
    let existing = read_record(client, statements, scope, id, true)?;
    let (write, answer) = decide_with(op, existing.as_ref(), now, || {
        let stmt = statements.get(client, "SELECT nextval('oncely_tokens')")?;
        Ok(client.query_one(&stmt, &[]).map_err(pg_error)?.get::<_, i64>(0) as u64)
    })?;
    match write {
        Write::Keep => {}
        Write::Put(rec) => {
            let c = rec.columns();
            let stmt = statements.get(
                client,
                "INSERT INTO oncely_inbox (scope, id, fingerprint, token, state, lease_until, result, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (scope, id) DO UPDATE SET
                   fingerprint = excluded.fingerprint, token = excluded.token, state = excluded.state,
                   lease_until = excluded.lease_until, result = excluded.result, expires_at = excluded.expires_at",
            )?;
            client
                .execute(
                    &stmt,
                    &[
                        &scope,
                        &id,
                        &rec.fingerprint.as_ref().map(|f| &f.0[..]),
                        &(rec.token as i64),
                        &c.state,
                        &c.lease_until,
                        &c.result,
                        &rec.expires_at.0,
                    ],
                )
                .map_err(pg_error)?;
        }
        Write::Delete => {
            let stmt = statements.get(client, "DELETE FROM oncely_inbox WHERE scope = $1 AND id = $2")?;
            client.execute(&stmt, &[&scope, &id]).map_err(pg_error)?;
        }
    }
    Ok(answer)
}

impl InboxStore for PostgresStore {
    fn deadline_clock(&self) -> Option<crate::clock::SharedClock> {
        Some(self.shared.clock.clone())
    }

    async fn apply(&self, scope: &str, now: Timestamp, ops: Vec<InboxOp>) -> Result<Vec<OpAnswer>> {
        let scope = scope.to_owned();
        self.pool()
            .transaction(move |client, statements| {
                let ids: Vec<&str> = ops.iter().map(InboxOp::id).collect();
                lock_ids(client, statements, &scope, &ids)?;
                ops.iter().map(|op| apply_op(client, statements, &scope, now, op)).collect()
            })
            .await
    }

    async fn get(&self, scope: &str, id: &str) -> Result<Option<InboxRecord>> {
        let (scope, id) = (scope.to_owned(), id.to_owned());
        self.pool()
            .run(move |conn| {
                let (client, statements) = conn.begin()?;
                let r = read_record(client, statements, &scope, &id, false);
                let _ = client.batch_execute("ROLLBACK");
                r
            })
            .await
    }

    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.pool()
            .transaction(move |client, statements| {
                let stmt = statements.get(
                    client,
                    "DELETE FROM oncely_inbox WHERE ctid = ANY(ARRAY(
                       SELECT ctid FROM oncely_inbox WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED))",
                )?;
                Ok(client.execute(&stmt, &[&now.0, &limit]).map_err(pg_error)?)
            })
            .await
    }

    async fn scope_counts(&self, now: Timestamp) -> Result<Vec<crate::records::ScopeCounts>> {
        self.pool()
            .run(move |conn| {
                let (client, statements) = conn.begin()?;
                let rows = statements
                    .get(
                        client,
                        "SELECT scope, state::int8, expires_at > $1, count(*) FROM oncely_inbox
                         GROUP BY 1, 2, 3 ORDER BY 1",
                    )
                    .and_then(|stmt| client.query(&stmt, &[&now.0]).map_err(pg_error));
                let _ = client.batch_execute("ROLLBACK");
                let rows = rows?
                    .iter()
                    .map(|r| {
                        (
                            r.get::<_, String>(0),
                            r.get::<_, i64>(1),
                            r.get::<_, bool>(2),
                            r.get::<_, i64>(3) as u64,
                        )
                    })
                    .collect::<Vec<_>>();
                crate::records::ScopeCounts::from_rows(rows)
            })
            .await
    }
}

impl OutboxStore for PostgresStore {
    fn deadline_clock(&self) -> Option<crate::clock::SharedClock> {
        Some(self.shared.clock.clone())
    }

    async fn transact<R: Send + 'static>(
        &self,
        queue: &str,
        work: impl FnOnce(&mut dyn OutboxTx) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let queue = queue.to_owned();
        self.pool()
            .transaction(move |client, statements| {
                let mut tx = outbox::PgOutboxTx::new(client, statements, &queue);
                let out = work(&mut tx)?;
                tx.flush()?;
                Ok(out)
            })
            .await
    }

    async fn queue_names(&self) -> Result<Vec<String>> {
        self.pool()
            .transaction(|client, statements| {
                let stmt = statements.get(
                    client,
                    "SELECT queue FROM oncely_outbox UNION SELECT queue FROM oncely_counts ORDER BY 1",
                )?;
                Ok(client.query(&stmt, &[]).map_err(pg_error)?.iter().map(|r| r.get(0)).collect())
            })
            .await
    }
}
