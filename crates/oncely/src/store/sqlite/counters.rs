//! The store-wide counters (fencing tokens, queue positions), kept in `oncely_meta` and read and
//! written inside the same transaction as the records that use them, so several processes on
//! one file never hand out the same number.
//!
//! Within one group commit the values are cached and written back before COMMIT. When the cache
//! may be behind the table — the transaction ended early and another process may have committed
//! since, or a transactional handler bumped the table through the same connection (`enqueue_in`)
//! — the writer marks it stale: the next bump reads the table again and continues from the larger
//! of the table and the cache. Numbers may be skipped, never handed out twice.

use rusqlite::Connection;

use crate::error::Result;

#[derive(Debug, Default)]
struct Counter {
    last: Option<i64>,
    stale: bool,
}

impl Counter {
    fn bump(&mut self, conn: &Connection, key: &str) -> Result<u64> {
        let last = match self.last {
            Some(v) if !self.stale => v,
            cached => {
                let table: i64 = conn
                    .prepare_cached("SELECT value FROM oncely_meta WHERE key = ?1")?
                    .query_row([key], |r| r.get(0))?;
                table.max(cached.unwrap_or(0))
            }
        };
        self.last = Some(last + 1);
        self.stale = false;
        Ok((last + 1) as u64)
    }

    fn save(&self, conn: &Connection, key: &str) -> Result<()> {
        if let Some(v) = self.last {
            // Never lower the table: it may have moved on while the cache was stale.
            conn.prepare_cached("UPDATE oncely_meta SET value = max(value, ?2) WHERE key = ?1")?
                .execute(rusqlite::params![key, v])?;
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    token: Counter,
    seq: Counter,
}

impl Counters {
    /// A fencing token larger than every one handed out before in this file.
    pub fn next_token(&mut self, conn: &Connection) -> Result<u64> {
        self.token.bump(conn, "last_token")
    }

    /// A queue position larger than every one handed out before in this file.
    pub fn next_seq(&mut self, conn: &Connection) -> Result<u64> {
        self.seq.bump(conn, "last_seq")
    }

    /// Writes the counters back (never lowering them); call inside the transaction, before
    /// COMMIT, or before handing the connection to code that may bump them itself.
    pub fn save(&self, conn: &Connection) -> Result<()> {
        self.token.save(conn, "last_token")?;
        self.seq.save(conn, "last_seq")
    }

    /// The table may have moved past the cache: read it again at the next bump.
    pub fn mark_stale(&mut self) {
        self.token.stale = true;
        self.seq.stale = true;
    }
}
