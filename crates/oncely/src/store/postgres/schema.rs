//! The PostgreSQL schema: created on first open, migrated forward by numbered steps, and
//! refused (untouched) when it belongs to something else or to a newer oncely.
//!
//! The tables live in the connection's current schema (the first of its `search_path`; set it
//! with `?options=-csearch_path%3Dmy_schema` in the URL to keep oncely apart). `oncely_meta`
//! carries the identity (`application_id`, the same value as the SQLite store's) and the schema
//! version. Opening takes a session advisory lock, so processes starting together migrate once.

use postgres::Client;

use crate::error::{Error, Result};
use crate::store::postgres::pool::{describe, permission_denied, pg_error, transient};
use crate::store::sqlite::APPLICATION_ID;

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = 3;

/// Step `n` brings the schema from version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &["
    CREATE TABLE oncely_meta (
        key   TEXT PRIMARY KEY,
        value BIGINT NOT NULL
    );
    CREATE SEQUENCE oncely_tokens;
    CREATE SEQUENCE oncely_seqs;
    CREATE TABLE oncely_inbox (
        scope       TEXT NOT NULL,
        id          TEXT NOT NULL,
        fingerprint BYTEA,
        token       BIGINT NOT NULL,
        state       BIGINT NOT NULL,
        lease_until BIGINT NOT NULL,
        result      BYTEA,
        expires_at  BIGINT NOT NULL,
        PRIMARY KEY (scope, id)
    );
    CREATE INDEX oncely_inbox_expiry ON oncely_inbox (expires_at);
    CREATE TABLE oncely_outbox (
        queue            TEXT NOT NULL,
        id               TEXT NOT NULL,
        seq              BIGINT NOT NULL,
        key              TEXT,
        state            BIGINT NOT NULL,
        token            BIGINT NOT NULL,
        lease_until      BIGINT NOT NULL,
        dead_reason      TEXT,
        available_at     BIGINT NOT NULL,
        created_at       BIGINT NOT NULL,
        attempts         BIGINT NOT NULL,
        first_attempt_at BIGINT,
        last_delay_ms    BIGINT,
        last_error       TEXT,
        payload          BYTEA NOT NULL,
        headers          TEXT,
        PRIMARY KEY (queue, id)
    );
    CREATE INDEX oncely_outbox_due ON oncely_outbox (queue, available_at, seq) WHERE state = 0;
    CREATE INDEX oncely_outbox_leases ON oncely_outbox (queue, lease_until) WHERE state = 1;
    CREATE INDEX oncely_outbox_keys ON oncely_outbox (queue, key, seq) WHERE key IS NOT NULL;
    CREATE INDEX oncely_outbox_dead ON oncely_outbox (queue, seq) WHERE state = 2;
    -- A queue table churns: every message is inserted, updated and deleted. Vacuum and analyse
    -- it after a small fraction of changes rather than PostgreSQL's default fifth.
    ALTER TABLE oncely_outbox SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.02,
        autovacuum_vacuum_insert_scale_factor = 0.02);
    ALTER TABLE oncely_inbox SET (autovacuum_vacuum_scale_factor = 0.05, autovacuum_analyze_scale_factor = 0.05);
", "
    -- 1 -> 2: each message keeps the mode it was enqueued under (NULL: stored before, follows
    -- the handle's mode).
    ALTER TABLE oncely_outbox ADD COLUMN mode BIGINT;
    -- And each queue's counts (what happened to its messages), kept by the store in a few rows
    -- per queue (summed when read), so that concurrent commits do not wait on one row.
    CREATE TABLE oncely_counts (
        queue         TEXT NOT NULL,
        shard         BIGINT NOT NULL,
        enqueued      BIGINT NOT NULL,
        delivered     BIGINT NOT NULL,
        retried       BIGINT NOT NULL,
        dead_lettered BIGINT NOT NULL,
        dropped       BIGINT NOT NULL,
        PRIMARY KEY (queue, shard)
    );
", "
    -- 2 -> 3: each message keeps its attempt limit and dedup window (NULL: stored before, follows
    -- the handle's); and the ids that left each queue (acknowledged, or dropped under
    -- at-most-once), with their payload's fingerprint, until the end of their dedup window.
    ALTER TABLE oncely_outbox ADD COLUMN max_attempts BIGINT, ADD COLUMN dedup_ms BIGINT;
    CREATE TABLE oncely_outbox_sent (
        queue       TEXT NOT NULL,
        id          TEXT NOT NULL,
        fingerprint BYTEA NOT NULL,
        until       BIGINT NOT NULL,
        PRIMARY KEY (queue, id)
    );
    CREATE INDEX oncely_outbox_sent_until ON oncely_outbox_sent (queue, until);
    ALTER TABLE oncely_outbox_sent SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.02,
        autovacuum_vacuum_insert_scale_factor = 0.02);
"];

/// The lock key every opening process takes while it checks and migrates.
const OPEN_LOCK: i64 = APPLICATION_ID;

fn meta(client: &mut Client, key: &str) -> std::result::Result<Option<i64>, postgres::Error> {
    let row = client.query_opt("SELECT value FROM oncely_meta WHERE key = $1", &[&key])?;
    Ok(row.map(|r| r.get(0)))
}

/// A failed read of `oncely_meta`: a lost connection is passing weather (transient, never
/// `corrupt_store`), a role without rights on it is told so — a matter of grants, never
/// `corrupt_store` either — and anything else is `otherwise(e)`.
fn unreadable(e: postgres::Error, otherwise: impl FnOnce(postgres::Error) -> Error) -> Error {
    if transient(&e) {
        return pg_error(e);
    }
    if permission_denied(&e) {
        return Error::Storage(format!(
            "the role may not use oncely's tables (GRANT SELECT, INSERT, UPDATE, DELETE on them and USAGE on its sequences): {}",
            describe(&e)
        ));
    }
    otherwise(e)
}

/// The version of the schema found (0: none yet), after checking it is oncely's.
fn identify(client: &mut Client) -> Result<i64> {
    let has_meta: bool =
        client.query_one("SELECT to_regclass('oncely_meta') IS NOT NULL", &[]).map_err(pg_error)?.get(0);
    if !has_meta {
        let others: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = current_schema() AND c.relname IN ('oncely_inbox', 'oncely_outbox')",
                &[],
            )
            .map_err(pg_error)?
            .get(0);
        if others > 0 {
            return Err(Error::CorruptStore(
                "the schema has oncely tables but no oncely_meta: not an oncely store".into(),
            ));
        }
        return Ok(0);
    }
    let app = meta(client, "application_id").map_err(|e| {
        unreadable(e, |_| {
            Error::CorruptStore("the table oncely_meta is not oncely's (unreadable as key/value)".into())
        })
    })?;
    if app != Some(APPLICATION_ID) {
        return Err(Error::CorruptStore(format!(
            "the table oncely_meta belongs to something else (application_id {app:?})"
        )));
    }
    let version = meta(client, "schema_version").map_err(|e| unreadable(e, pg_error))?.unwrap_or(0);
    if version > SCHEMA_VERSION {
        return Err(Error::CorruptStore(format!(
            "the store has schema version {version}, newer than this oncely understands ({SCHEMA_VERSION}); upgrade oncely"
        )));
    }
    Ok(version)
}

/// Checks the schema and brings it to [`SCHEMA_VERSION`]; writes nothing when it is current.
/// Without oncely's tables, creates them if `create`, else refuses.
pub(crate) fn prepare(client: &mut Client, create: bool) -> Result<()> {
    client.execute("SELECT pg_advisory_lock($1)", &[&OPEN_LOCK]).map_err(pg_error)?;
    let r = migrate(client, create);
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&OPEN_LOCK]).map_err(pg_error);
    r.and(unlocked.map(|_| ()))
}

fn migrate(client: &mut Client, create: bool) -> Result<()> {
    let found = identify(client)?;
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    if found == 0 && !create {
        return Err(Error::CorruptStore("the database (schema) has no oncely store".into()));
    }
    let mut tx = client.transaction().map_err(pg_error)?;
    for step in &MIGRATIONS[found as usize..] {
        tx.batch_execute(step).map_err(pg_error)?;
    }
    tx.execute(
        "INSERT INTO oncely_meta (key, value) VALUES ('application_id', $1), ('schema_version', $2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&APPLICATION_ID, &SCHEMA_VERSION],
    )
    .map_err(pg_error)?;
    tx.commit().map_err(pg_error)
}
