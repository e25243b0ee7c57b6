//! The embedded default store: one SQLite file (or `:memory:`), WAL, group commit.

mod boot;
mod checkpoint;
mod counters;
pub(crate) mod outbox;
mod schema;
mod transaction;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

pub use boot::simulate_reboot;
pub use schema::{APPLICATION_ID, SCHEMA_VERSION};

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::records::{Durability, InboxOp, InboxRecord, OpAnswer, Write, decide_with};
use crate::store::InboxStore;
pub(crate) use writer::Batch;
use writer::Writer;

/// How hard a commit is pushed to disk before callers are told "done".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Every commit is synced to disk: survives power loss. Group commit makes one sync serve
    /// every caller of a batch.
    #[default]
    Full,
    /// Commits survive a crash of the process (kill -9) but the last ones may be lost on power
    /// loss (SQLite's WAL with `synchronous=NORMAL`).
    Normal,
}

/// How to open an SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// The durability level. Default: [`Synchronous::Full`].
    pub synchronous: Synchronous,
    /// How long to wait for another process's write lock. Default: 5 s.
    pub busy_timeout: Duration,
    /// The most caller jobs one commit carries. Default: 512.
    pub max_batch: usize,
    /// Read every page of an existing store once when it is opened and refuse a damaged one
    /// with `corrupt_store` (SQLite's `quick_check`, about 1.5 ms per MB). Default: `true`.
    /// Turn it off only for very large stores whose open time matters more.
    pub verify_on_open: bool,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
            max_batch: 512,
            verify_on_open: true,
        }
    }
}

struct Shared {
    writer: Option<Writer>,
    thread: Option<std::thread::JoinHandle<()>>,
    path: PathBuf,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.writer.take(); // closes the queue: the writer finishes what it has, then exits
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An oncely store in one SQLite file. Clones share one writer; several processes may open the
/// same file (SQLite's locking serialises their commits).
#[derive(Clone)]
pub struct SqliteStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.shared.path).finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`; `":memory:"` gives a private in-memory
    /// database. Refuses with [`Error::CorruptStore`], leaving the file untouched, a file that is
    /// not an SQLite database, an SQLite database that is not an oncely store, or a store written
    /// by a newer oncely.
    pub fn open(path: impl AsRef<Path>, config: SqliteConfig) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if config.max_batch == 0 {
            return Err(Error::invalid("max_batch", "must be at least 1"));
        }
        // SQLite takes the busy timeout as a C int of milliseconds.
        if config.busy_timeout.as_millis() > i32::MAX as u128 {
            let got = config.busy_timeout.as_millis().to_string();
            return Err(crate::text::integer_out_of_range("busy_timeout", &got, 0, i32::MAX as u64));
        }
        let in_memory = path.as_os_str() == ":memory:";
        refuse_dangling_link(&path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(&path, flags).map_err(|e| match e {
            // The code's description only: SQLite's own message repeats the (unbounded) path.
            rusqlite::Error::SqliteFailure(code, _) => Error::Storage(format!(
                "cannot open {}: {code}",
                crate::text::quote(&path.display().to_string())
            )),
            other => Error::from(other),
        })?;
        conn.busy_timeout(config.busy_timeout)?;
        schema::prepare(&mut conn, !in_memory, config.verify_on_open)?;
        let sync = match config.synchronous {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        conn.execute_batch(&format!("PRAGMA synchronous = {sync}; PRAGMA cache_size = -65536;"))?;
        conn.set_prepared_statement_cache_capacity(64);
        // The query planner stability guarantee: a cached statement keeps its plan whatever the
        // bound values. Without it, SQLite (built with STAT4) re-prepares the queue's queries on
        // every execution, which made leasing several times slower.
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        // With NORMAL, checkpoints on their own thread keep commits short. With FULL they would
        // compete with every commit's fsync (measured: a third slower at concurrency 1), so the
        // writer keeps SQLite's own automatic checkpoints.
        if !in_memory && config.synchronous == Synchronous::Normal {
            checkpoint::start(&mut conn, &path, config.busy_timeout)?;
        }
        let (writer, thread) = Writer::start(conn, config.synchronous, config.max_batch)?;
        Ok(SqliteStore { shared: Arc::new(Shared { writer: Some(writer), thread: Some(thread), path }) })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// What tells this store's database apart: its file, and which open store it is (private
    /// `:memory:` databases share a name, not their contents).
    pub(crate) fn identity(&self) -> (PathBuf, usize) {
        (self.shared.path.clone(), Arc::as_ptr(&self.shared) as usize)
    }

    /// Whether this store uses the database `identity` names: the same file, or the same open
    /// private in-memory database.
    pub(crate) fn same_database(&self, identity: &(PathBuf, usize)) -> bool {
        let (path, id) = identity;
        if self.shared.path.as_os_str() == ":memory:" {
            Arc::as_ptr(&self.shared) as usize == *id
        } else {
            self.shared.path == *path
        }
    }

    pub(crate) fn writer(&self) -> Result<&Writer> {
        self.shared.writer.as_ref().ok_or(Error::Closed("SQLite store"))
    }
}

fn read_record(conn: &Connection, scope: &str, id: &str) -> Result<Option<InboxRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT fingerprint, token, state, lease_until, result, expires_at
         FROM oncely_inbox WHERE scope = ?1 AND id = ?2",
    )?;
    let row = stmt
        .query_row(params![scope, id], |r| {
            Ok((
                r.get::<_, Option<Vec<u8>>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<Vec<u8>>>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })
        .optional()?;
    let Some((fingerprint, token, state, lease_until, result, expires_at)) = row else {
        return Ok(None);
    };
    InboxRecord::from_columns(id, fingerprint, token, state, lease_until, result, expires_at).map(Some)
}

fn write_record(conn: &Connection, scope: &str, id: &str, rec: &InboxRecord) -> Result<()> {
    let c = rec.columns();
    conn.prepare_cached(
        "INSERT INTO oncely_inbox
         (scope, id, fingerprint, token, state, lease_until, result, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (scope, id) DO UPDATE SET
           fingerprint = excluded.fingerprint, token = excluded.token, state = excluded.state,
           lease_until = excluded.lease_until, result = excluded.result, expires_at = excluded.expires_at",
    )?
    .execute(params![
        scope,
        id,
        rec.fingerprint.as_ref().map(|f| &f.0[..]),
        rec.token as i64,
        c.state,
        c.lease_until,
        c.result,
        rec.expires_at.0
    ])?;
    Ok(())
}

/// Decides and writes one operation inside the current batch.
pub(crate) fn apply_op(batch: &mut Batch<'_>, scope: &str, now: Timestamp, op: &InboxOp) -> Result<OpAnswer> {
    let id = op.id();
    let existing = read_record(batch.conn, scope, id)?;
    let (write, answer) = decide_with(op, existing.as_ref(), now, || batch.next_token())?;
    match write {
        Write::Keep => {}
        Write::Put(rec) => write_record(batch.conn, scope, id, &rec)?,
        Write::Delete => {
            batch
                .conn
                .prepare_cached("DELETE FROM oncely_inbox WHERE scope = ?1 AND id = ?2")?
                .execute(params![scope, id])?;
        }
    }
    Ok(answer)
}

impl InboxStore for SqliteStore {
    async fn apply(&self, scope: &str, now: Timestamp, ops: Vec<InboxOp>) -> Result<Vec<OpAnswer>> {
        let scope = scope.to_owned();
        let durability = ops.iter().fold(Durability::Visible, |d, op| d.and(op.durability()));
        self.writer()?
            .run(durability, move |batch| ops.iter().map(|op| apply_op(batch, &scope, now, op)).collect())
            .await
    }

    async fn apply_one(&self, scope: &str, now: Timestamp, op: InboxOp) -> Result<OpAnswer> {
        let scope = scope.to_owned();
        self.writer()?.run_single_write(op.durability(), move |batch| apply_op(batch, &scope, now, &op)).await
    }

    async fn get(&self, scope: &str, id: &str) -> Result<Option<InboxRecord>> {
        let (scope, id) = (scope.to_owned(), id.to_owned());
        self.writer()?
            .run_single_write(Durability::Visible, move |batch| read_record(batch.conn, &scope, &id))
            .await
    }

    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.writer()?
            .run(Durability::Durable, move |batch| {
                let n = batch
                    .conn
                    .prepare_cached(
                        "DELETE FROM oncely_inbox WHERE (scope, id) IN
                         (SELECT scope, id FROM oncely_inbox WHERE expires_at <= ?1 LIMIT ?2)",
                    )?
                    .execute(params![now.0, limit])?;
                Ok(n as u64)
            })
            .await
    }

    async fn scope_counts(&self, now: Timestamp) -> Result<Vec<crate::records::ScopeCounts>> {
        self.writer()?
            .run_single_write(Durability::Visible, move |batch| {
                // One pass over the primary key (scope, id): grouped by scope in key order.
                let mut stmt = batch.conn.prepare_cached(
                    "SELECT scope, state, expires_at > ?1, count(*) FROM oncely_inbox
                     GROUP BY scope, state, expires_at > ?1 ORDER BY scope",
                )?;
                let rows = stmt
                    .query_map(params![now.0], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, bool>(2)?,
                            r.get::<_, i64>(3)? as u64,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                crate::records::ScopeCounts::from_rows(rows)
            })
            .await
    }
}

/// A symbolic link whose target does not exist is refused: opening it would create a store at
/// wherever the link points, which is rarely what the caller meant (a moved volume, a typo in a
/// deployment), and would hide that the old store is gone.
fn refuse_dangling_link(path: &Path) -> Result<()> {
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if is_link && !path.exists() {
        return Err(Error::invalid(
            "path",
            format!(
                "{} is a symbolic link to a file that does not exist; oncely does not create a store through a dangling link",
                crate::text::quote(&path.display().to_string())
            ),
        ));
    }
    Ok(())
}
