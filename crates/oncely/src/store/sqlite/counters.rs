//! The store-wide counters (fencing tokens, queue positions), kept in `oncely_meta` and read and
//! written inside the same transaction as the records that use them, so several processes on
//! one file never hand out the same number.

use rusqlite::Connection;

use crate::error::Result;

#[derive(Debug, Default)]
pub(crate) struct Counters {
    last_token: Option<i64>,
    last_seq: Option<i64>,
}

fn load(conn: &Connection, key: &str) -> Result<i64> {
    Ok(conn.prepare_cached("SELECT value FROM oncely_meta WHERE key = ?1")?.query_row([key], |r| r.get(0))?)
}

fn bump(conn: &Connection, slot: &mut Option<i64>, key: &str) -> Result<u64> {
    let next = match *slot {
        Some(v) => v,
        None => load(conn, key)?,
    } + 1;
    *slot = Some(next);
    Ok(next as u64)
}

impl Counters {
    /// A fencing token larger than every one handed out before in this file.
    pub fn next_token(&mut self, conn: &Connection) -> Result<u64> {
        bump(conn, &mut self.last_token, "last_token")
    }

    /// A queue position larger than every one handed out before in this file.
    pub fn next_seq(&mut self, conn: &Connection) -> Result<u64> {
        bump(conn, &mut self.last_seq, "last_seq")
    }

    /// Writes the counters back; call inside the same transaction, before COMMIT.
    pub fn save(&self, conn: &Connection) -> Result<()> {
        for (key, value) in [("last_token", self.last_token), ("last_seq", self.last_seq)] {
            if let Some(v) = value {
                conn.prepare_cached("UPDATE oncely_meta SET value = ?2 WHERE key = ?1")?
                    .execute(rusqlite::params![key, v])?;
            }
        }
        Ok(())
    }
}
