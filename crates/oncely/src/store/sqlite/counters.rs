//! The store-wide counters (fencing tokens, queue positions), kept in `oncely_meta` and read and
//! written inside the same transaction as the records that use them, so several processes on
//! one file never hand out the same number.
//!
//! Within one group commit the values are cached and written back before COMMIT. When the cache
//! may be behind the table — the transaction ended early and another process may have committed
//! since, or a transactional handler bumped the table through the same connection (`enqueue_in`)
//! — the writer marks it stale: the next bump reads the table again and continues from the larger
//! of the table and the cache. Numbers may be skipped, never handed out twice.
//!
//! **Tokens across a power cut.** A claim or a lease may commit without an fsync (see
//! `records::Durability`), so a power cut can take back the counter's last steps — and a token
//! that reached a caller (or, through a header, another service) could be handed out again.
//! To prevent that, tokens are reserved on disk in blocks: `token_reserved` is always at least
//! every token handed out, and a commit that moves it is followed by an fsync before anyone is
//! answered (the writer sees [`Counters::reservation_moved`]). A store that starts on a new boot
//! of the machine (see `boot.rs`) — after a power cut, say — hands out its first token above the
//! reservation, never below. Within one boot nothing SQLite wrote can be lost, so a store that
//! restarts after a crash or a clean stop goes on counting where it stopped.

use rusqlite::Connection;

use crate::error::Result;

/// How many tokens one durable reservation covers: one extra fsync per this many tokens.
const TOKEN_BLOCK: i64 = 4096;

#[derive(Debug, Default)]
struct Counter {
    last: Option<i64>,
    stale: bool,
}

impl Counter {
    fn bump(&mut self, conn: &Connection, key: &str, floor: i64) -> Result<u64> {
        let last = match self.last {
            Some(v) if !self.stale => v,
            cached => read(conn, key)?.unwrap_or(0).max(cached.unwrap_or(0)),
        }
        .max(floor);
        self.last = Some(last + 1);
        self.stale = false;
        Ok((last + 1) as u64)
    }

    fn save(&self, conn: &Connection, key: &str) -> Result<()> {
        if let Some(v) = self.last {
            write(conn, key, v)?;
        }
        Ok(())
    }
}

fn read(conn: &Connection, key: &str) -> Result<Option<i64>> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .prepare_cached("SELECT value FROM oncely_meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

/// Never lowers the table: it may have moved on while the cache was stale.
fn write(conn: &Connection, key: &str, v: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO oncely_meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
    )?
    .execute(rusqlite::params![key, v])?;
    Ok(())
}

fn write_exact(conn: &Connection, key: &str, v: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO oncely_meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(rusqlite::params![key, v])?;
    Ok(())
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    token: Counter,
    seq: Counter,
    /// The cached `token_reserved`, and whether this transaction moved it.
    reserved: Option<i64>,
    moved: bool,
    /// Set until this store's first token: the boot it runs on (`None`: unknown), against which
    /// the boot that last handed out tokens is checked (see the module docs).
    resume: Option<Option<i64>>,
}

impl Counters {
    /// Counters for a transaction of a store that has not handed out a token since it was
    /// opened, running on the machine's `boot` (see `boot.rs`; `None`: unknown): on another boot
    /// than the last tokens were handed out on, its first token starts above the reservation.
    pub fn resuming(boot: Option<i64>) -> Self {
        Counters { resume: Some(boot), ..Counters::default() }
    }

    /// A fencing token larger than every one handed out before in this file — also before a
    /// power cut.
    pub fn next_token(&mut self, conn: &Connection) -> Result<u64> {
        let reserved = match self.reserved {
            Some(r) if !self.token.stale => r,
            cached => read(conn, "token_reserved")?.unwrap_or(0).max(cached.unwrap_or(0)),
        };
        let floor = match self.resume.take() {
            Some(boot) => {
                let last_boot = read(conn, "boot")?;
                if let Some(b) = boot.filter(|b| last_boot != Some(*b)) {
                    write_exact(conn, "boot", b)?;
                }
                // On another boot than the last tokens were handed out on, unsynced commits may
                // be gone: continue above every token that may have been handed out.
                if boot.is_some() && boot == last_boot { 0 } else { reserved }
            }
            None => 0,
        };
        let token = self.token.bump(conn, "last_token", floor)?;
        let token_i = token as i64;
        if token_i > reserved {
            self.reserved = Some(token_i.saturating_add(TOKEN_BLOCK));
            self.moved = true;
        } else {
            self.reserved = Some(reserved);
        }
        Ok(token)
    }

    /// A queue position larger than every one handed out before in this file.
    pub fn next_seq(&mut self, conn: &Connection) -> Result<u64> {
        self.seq.bump(conn, "last_seq", 0)
    }

    /// Whether this transaction moved the token reservation: its commit must reach the disk
    /// before any of its tokens is handed out.
    pub fn reservation_moved(&self) -> bool {
        self.moved
    }

    /// Whether this transaction handed out a token (so the store has resumed its counter).
    pub fn took_token(&self) -> bool {
        self.token.last.is_some()
    }

    /// Writes the counters back (never lowering them); call inside the transaction, before
    /// COMMIT, or before handing the connection to code that may bump them itself.
    pub fn save(&self, conn: &Connection) -> Result<()> {
        self.token.save(conn, "last_token")?;
        self.seq.save(conn, "last_seq")?;
        if let (true, Some(r)) = (self.moved, self.reserved) {
            write(conn, "token_reserved", r)?;
        }
        Ok(())
    }

    /// The table may have moved past the cache: read it again at the next bump.
    pub fn mark_stale(&mut self) {
        self.token.stale = true;
        self.seq.stale = true;
    }
}
