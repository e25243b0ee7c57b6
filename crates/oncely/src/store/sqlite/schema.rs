//! Opening an SQLite file as an oncely store: identify it, create or migrate the schema.
//!
//! A file is identified by SQLite's `application_id` header field; its schema version is
//! `user_version`. A foreign file or one from a newer oncely is refused *before* anything is
//! written to it (not even the journal mode is changed).

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Error, Result};

/// "once" in ASCII: marks a SQLite file as an oncely store.
pub const APPLICATION_ID: i64 = 0x6f6e_6365;

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = 5;

/// Each migration takes the schema from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1: the inbox and the token counter.
    "CREATE TABLE oncely_meta (
        key   TEXT PRIMARY KEY NOT NULL,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO oncely_meta (key, value) VALUES ('last_token', 0);
    CREATE TABLE oncely_inbox (
        scope       TEXT NOT NULL,
        id          TEXT NOT NULL,
        fingerprint BLOB,
        token       INTEGER NOT NULL,
        state       INTEGER NOT NULL,
        lease_until INTEGER NOT NULL,
        result      BLOB,
        expires_at  INTEGER NOT NULL,
        PRIMARY KEY (scope, id)
    ) WITHOUT ROWID;
    CREATE INDEX oncely_inbox_expiry ON oncely_inbox (expires_at);",
    // 1 -> 2: the outbox.
    "INSERT INTO oncely_meta (key, value) VALUES ('last_seq', 0);
    CREATE TABLE oncely_outbox (
        queue            TEXT NOT NULL,
        id               TEXT NOT NULL,
        seq              INTEGER NOT NULL,
        key              TEXT,
        state            INTEGER NOT NULL,
        token            INTEGER NOT NULL,
        lease_until      INTEGER NOT NULL,
        dead_reason      TEXT,
        available_at     INTEGER NOT NULL,
        created_at       INTEGER NOT NULL,
        attempts         INTEGER NOT NULL,
        first_attempt_at INTEGER,
        last_delay_ms    INTEGER,
        last_error       TEXT,
        payload          BLOB NOT NULL,
        headers          TEXT,
        PRIMARY KEY (queue, id)
    ) WITHOUT ROWID;
    CREATE INDEX oncely_outbox_due ON oncely_outbox (queue, state, available_at, seq);
    CREATE INDEX oncely_outbox_leases ON oncely_outbox (queue, lease_until) WHERE state = 1;
    CREATE INDEX oncely_outbox_keys ON oncely_outbox (queue, key, seq) WHERE key IS NOT NULL;",
    // 2 -> 3: each message keeps the mode it was enqueued under (NULL: stored before, follows
    // the handle's mode).
    // And each queue's counts (what happened to its messages), kept by the store.
    "ALTER TABLE oncely_outbox ADD COLUMN mode INTEGER;
    CREATE TABLE oncely_counts (
        queue         TEXT PRIMARY KEY NOT NULL,
        enqueued      INTEGER NOT NULL,
        delivered     INTEGER NOT NULL,
        retried       INTEGER NOT NULL,
        dead_lettered INTEGER NOT NULL,
        dropped       INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // 3 -> 4: each message keeps its attempt limit and dedup window (NULL: stored before, follows
    // the handle's); and the ids that left each queue (acknowledged, or dropped under
    // at-most-once), with their payload's fingerprint, until the end of their dedup window.
    "ALTER TABLE oncely_outbox ADD COLUMN max_attempts INTEGER;
    ALTER TABLE oncely_outbox ADD COLUMN dedup_ms INTEGER;
    CREATE TABLE oncely_outbox_sent (
        queue       TEXT NOT NULL,
        id          TEXT NOT NULL,
        fingerprint BLOB NOT NULL,
        until       INTEGER NOT NULL,
        PRIMARY KEY (queue, id)
    ) WITHOUT ROWID;
    CREATE INDEX oncely_outbox_sent_until ON oncely_outbox_sent (queue, until);",
    // 4 -> 5: the age of each queue's oldest pending message, and the dead letters in queue
    // order, from indexes (stats and the dead-letter list are read at every dashboard poll and
    // metrics scrape; without them, a scan of the whole queue).
    "CREATE INDEX oncely_outbox_age ON oncely_outbox (queue, created_at) WHERE state < 2;
    CREATE INDEX oncely_outbox_dead ON oncely_outbox (queue, seq) WHERE state = 2;",
];

struct Identity {
    application_id: i64,
    user_version: i64,
    objects: i64,
}

fn identify(conn: &Connection) -> Result<Identity> {
    let application_id = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let user_version = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let objects = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    Ok(Identity { application_id, user_version, objects })
}

fn check(id: &Identity) -> Result<()> {
    if id.application_id == 0 && id.objects == 0 {
        return Ok(()); // a new, empty database: ours to initialise
    }
    if id.application_id != APPLICATION_ID {
        return Err(Error::CorruptStore(format!(
            "the file is an SQLite database but not an oncely store (application_id {:#x}, {} schema objects)",
            id.application_id, id.objects
        )));
    }
    if id.user_version > SCHEMA_VERSION {
        return Err(Error::CorruptStore(format!(
            "the store has schema version {}, newer than this oncely understands ({SCHEMA_VERSION}); upgrade oncely",
            id.user_version
        )));
    }
    Ok(())
}

/// Reads every page of the file once (`PRAGMA quick_check`: page structure, record formats,
/// index order; not index contents) and refuses a damaged file. SQLite itself notices damage
/// only in the pages a statement happens to read, so without this a store with a torn or
/// overwritten page opens and goes on writing around it. Costs about 1.5 ms per MB of store
/// (measured: 5 ms for 3 MB, 45 ms for 30 MB, 0.4 s for 300 MB, warm cache).
fn verify_pages(conn: &Connection) -> Result<()> {
    use rusqlite::ffi::ErrorCode as C;
    let damaged = |what: &str| {
        Error::CorruptStore(format!(
            "the file is damaged (SQLite's quick_check: {}); restore it from a backup",
            crate::text::quote(what)
        ))
    };
    let checked = conn.prepare("PRAGMA quick_check(5)").and_then(|mut stmt| {
        stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()
    });
    match checked {
        Ok(problems) if problems.len() == 1 && problems[0] == "ok" => Ok(()),
        Ok(problems) => Err(damaged(&problems.join("; "))),
        // The check could not even read the pages it needs: damaged too.
        Err(e @ rusqlite::Error::SqliteFailure(f, _))
            if matches!(f.code, C::DatabaseCorrupt | C::NotADatabase) =>
        {
            Err(damaged(&e.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Identifies the file, then creates or migrates the schema. Fails with
/// [`Error::CorruptStore`] on a file that is not a database, a foreign database, or one from a
/// newer oncely, leaving the file untouched.
pub fn prepare(conn: &mut Connection, wal: bool, verify: bool) -> Result<()> {
    let first = identify(conn)?;
    check(&first)?;
    if verify && first.objects > 0 {
        verify_pages(conn)?;
    }
    let current = first.application_id == APPLICATION_ID && first.user_version == SCHEMA_VERSION;
    if wal {
        // Not allowed inside a transaction; safe now that the file is known to be ours or empty.
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    }
    if current {
        return Ok(()); // an up-to-date store: opening it writes nothing
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Another process may have initialised or migrated the file meanwhile: look again.
    let id = identify(&tx)?;
    check(&id)?;
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(id.user_version as usize) {
        tx.execute_batch(sql).map_err(|e| {
            Error::Storage(format!("migrating the store to schema version {}: {e}", version + 1))
        })?;
    }
    tx.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"
    ))?;
    tx.commit()?;
    Ok(())
}
