//! The store-wide counters (fencing tokens, queue positions), kept in `oncely_meta` and bumped
//! in the database itself, inside the transaction of the record that uses them. Nothing is cached
//! in memory, so no path — several processes on one file, a transaction that ended early, an
//! enqueue through a caller's own connection — can hand out the same number twice.

use rusqlite::Connection;

use crate::error::Result;

fn bump(conn: &Connection, key: &str) -> Result<u64> {
    let next: i64 = conn
        .prepare_cached("UPDATE oncely_meta SET value = value + 1 WHERE key = ?1 RETURNING value")?
        .query_row([key], |r| r.get(0))?;
    Ok(next as u64)
}

/// A fencing token larger than every one handed out before in this file.
pub(crate) fn next_token(conn: &Connection) -> Result<u64> {
    bump(conn, "last_token")
}

/// A queue position larger than every one handed out before in this file.
pub(crate) fn next_seq(conn: &Connection) -> Result<u64> {
    bump(conn, "last_seq")
}
