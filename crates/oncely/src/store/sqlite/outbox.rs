//! The outbox on SQLite: the primitives of [`OutboxTx`] as SQL, also on a connection whose
//! transaction the caller commits (the transactional outbox).

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::fingerprint::Fingerprint;
use crate::message::Message;
use crate::records::{
    Durability, MessageState, OutboxRecord, QueueCounts, QueueStats, limit_columns, limits_from_columns,
    mode_column, mode_from_column,
};
use crate::store::sqlite::SqliteStore;
use crate::store::sqlite::counters::Counters;
use crate::store::{OutboxStore, OutboxTx};

const COLUMNS: &str =
    "id, seq, key, state, token, lease_until, dead_reason, available_at, created_at, attempts,
     first_attempt_at, last_delay_ms, last_error, payload, headers, mode, max_attempts, dedup_ms";

pub(crate) struct SqliteOutboxTx<'a> {
    pub conn: &'a Connection,
    pub counters: &'a mut Counters,
    pub queue: &'a str,
    /// Raised when the step wrote something that must be durable whatever was declared.
    pub must_sync: &'a mut bool,
}

/// A row as read: the record, and the columns still to decode (headers, mode, attempt limit,
/// dedup window).
type RawRow = (OutboxRecord, Option<String>, Option<i64>, Option<i64>, Option<i64>);

fn from_row(r: &Row<'_>) -> rusqlite::Result<RawRow> {
    let state = r.get::<_, i64>(3)?;
    let headers: Option<String> = r.get(14)?;
    let mode: Option<i64> = r.get(15)?;
    let rec = OutboxRecord {
        message: Message {
            id: r.get(0)?,
            key: r.get(2)?,
            payload: r.get(13)?,
            headers: Default::default(),
            created_at: Timestamp(r.get(8)?),
            available_at: Timestamp(r.get(7)?),
            attempts: r.get::<_, i64>(9)?.clamp(0, i64::from(u32::MAX)) as u32,
        },
        seq: r.get::<_, i64>(1)? as u64,
        state: MessageState::from_columns(state, r.get(4)?, r.get(5)?, r.get(6)?),
        first_attempt_at: r.get::<_, Option<i64>>(10)?.map(Timestamp),
        last_delay: r.get::<_, Option<i64>>(11)?.map(|ms| Duration::from_millis(ms.max(0) as u64)),
        last_error: r.get(12)?,
        mode: None,
        max_attempts: None,
        dedup_window: None,
    };
    Ok((rec, headers, mode, r.get(16)?, r.get(17)?))
}

fn finish_row(row: RawRow) -> Result<OutboxRecord> {
    let (mut rec, headers, mode, max_attempts, dedup_ms) = row;
    rec.mode = mode_from_column(&rec.message.id, mode)?;
    (rec.max_attempts, rec.dedup_window) = limits_from_columns(&rec.message.id, max_attempts, dedup_ms)?;
    if let Some(h) = headers {
        rec.message.headers = serde_json::from_str(&h).map_err(|e| {
            Error::CorruptStore(format!("message `{}` has unreadable headers: {e}", rec.message.id))
        })?;
    }
    Ok(rec)
}

impl SqliteOutboxTx<'_> {
    fn query(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<OutboxRecord>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params, from_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(finish_row).collect()
    }

    fn write(&self, sql: &str, rec: &OutboxRecord) -> Result<()> {
        let (state, token, lease_until, reason) = rec.state.columns();
        let headers = if rec.message.headers.is_empty() {
            None
        } else {
            Some(serde_json::to_string(&rec.message.headers).map_err(|e| Error::Storage(e.to_string()))?)
        };
        let m = &rec.message;
        let (max_attempts, dedup_ms) = limit_columns(rec);
        self.conn.prepare_cached(sql)?.execute(params![
            self.queue,
            m.id,
            rec.seq as i64,
            m.key,
            state,
            token,
            lease_until,
            reason,
            m.available_at.0,
            m.created_at.0,
            i64::from(m.attempts),
            rec.first_attempt_at.map(|t| t.0),
            rec.last_delay.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            rec.last_error,
            m.payload,
            headers,
            mode_column(rec.mode),
            max_attempts,
            dedup_ms,
        ])?;
        Ok(())
    }
}

impl OutboxTx for SqliteOutboxTx<'_> {
    fn get(&mut self, id: &str) -> Result<Option<OutboxRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM oncely_outbox WHERE queue = ?1 AND id = ?2");
        let row = self.conn.prepare_cached(&sql)?.query_row(params![self.queue, id], from_row).optional()?;
        row.map(finish_row).transpose()
    }

    fn insert(&mut self, rec: &OutboxRecord) -> Result<()> {
        self.write(
            "INSERT INTO oncely_outbox (queue, id, seq, key, state, token, lease_until, dead_reason, available_at,
               created_at, attempts, first_attempt_at, last_delay_ms, last_error, payload, headers, mode,
               max_attempts, dedup_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
            rec,
        )
    }

    fn update(&mut self, rec: &OutboxRecord) -> Result<()> {
        self.write(
            "UPDATE oncely_outbox SET seq = ?3, key = ?4, state = ?5, token = ?6, lease_until = ?7,
               dead_reason = ?8, available_at = ?9, created_at = ?10, attempts = ?11, first_attempt_at = ?12,
               last_delay_ms = ?13, last_error = ?14, payload = ?15, headers = ?16, mode = ?17,
               max_attempts = ?18, dedup_ms = ?19
             WHERE queue = ?1 AND id = ?2",
            rec,
        )
    }

    fn delete(&mut self, id: &str) -> Result<bool> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM oncely_outbox WHERE queue = ?1 AND id = ?2")?
            .execute(params![self.queue, id])?;
        Ok(n > 0)
    }

    fn due(
        &mut self,
        now: Timestamp,
        after: Option<(Timestamp, u64)>,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>> {
        let (at, seq) = after.map_or((i64::MIN, -1), |(t, s)| (t.0, s as i64));
        let sql = format!(
            "SELECT {COLUMNS} FROM oncely_outbox
             WHERE queue = ?1 AND state = 0 AND available_at <= ?2 AND (available_at, seq) > (?3, ?4)
             ORDER BY available_at, seq LIMIT ?5"
        );
        self.query(&sql, params![self.queue, now.0, at, seq, limit as i64])
    }

    fn expired_leases(&mut self, now: Timestamp, limit: usize) -> Result<Vec<OutboxRecord>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM oncely_outbox WHERE queue = ?1 AND state = 1 AND lease_until <= ?2
             ORDER BY lease_until LIMIT ?3"
        );
        self.query(&sql, params![self.queue, now.0, limit as i64])
    }

    fn key_head(&mut self, key: &str, include_dead: bool) -> Result<Option<u64>> {
        // Done messages are deleted, so every stored message of the key is ready, leased or dead.
        let sql = if include_dead {
            "SELECT min(seq) FROM oncely_outbox WHERE queue = ?1 AND key = ?2"
        } else {
            "SELECT min(seq) FROM oncely_outbox INDEXED BY oncely_outbox_keys WHERE queue = ?1 AND key = ?2 AND state < 2"
        };
        let head: Option<i64> =
            self.conn.prepare_cached(sql)?.query_row(params![self.queue, key], |r| r.get(0))?;
        Ok(head.map(|s| s as u64))
    }

    fn dead_letters(&mut self, after_seq: Option<u64>, limit: usize) -> Result<Vec<OutboxRecord>> {
        let sql = format!(
            // In the order of the dead index: the planner would otherwise read the whole queue.
            "SELECT {COLUMNS} FROM oncely_outbox INDEXED BY oncely_outbox_dead
             WHERE queue = ?1 AND state = 2 AND seq > ?2 ORDER BY seq LIMIT ?3"
        );
        self.query(&sql, params![self.queue, after_seq.map_or(-1, |s| s as i64), limit as i64])
    }

    fn stats(&mut self, now: Timestamp) -> Result<QueueStats> {
        let row = self
            .conn
            .prepare_cached(
                // Each count reads one index range (due: queue, state, available_at; leases:
                // queue, lease_until of leased messages), the oldest one index entry (age: queue,
                // created_at of pending messages; the planner would take due), so a
                // queue of a million messages is counted without reading its rows.
                "SELECT (SELECT count(*) FROM oncely_outbox WHERE queue = ?1 AND state = 0 AND available_at <= ?2)
                      + (SELECT count(*) FROM oncely_outbox WHERE queue = ?1 AND state = 1 AND lease_until <= ?2),
                        (SELECT count(*) FROM oncely_outbox WHERE queue = ?1 AND state = 0 AND available_at > ?2),
                        (SELECT count(*) FROM oncely_outbox WHERE queue = ?1 AND state = 1 AND lease_until > ?2),
                        (SELECT count(*) FROM oncely_outbox WHERE queue = ?1 AND state = 2),
                        (SELECT min(created_at) FROM oncely_outbox INDEXED BY oncely_outbox_age WHERE queue = ?1 AND state < 2)",
            )?
            .query_row(params![self.queue, now.0], |r| {
                Ok(QueueStats {
                    ready: r.get::<_, i64>(0)? as u64,
                    scheduled: r.get::<_, i64>(1)? as u64,
                    leased: r.get::<_, i64>(2)? as u64,
                    dead: r.get::<_, i64>(3)? as u64,
                    oldest_created_at: r.get::<_, Option<i64>>(4)?.map(Timestamp),
                    counts: QueueCounts::default(),
                })
            })?;
        let counts = self
            .conn
            .prepare_cached(
                "SELECT enqueued, delivered, retried, dead_lettered, dropped FROM oncely_counts WHERE queue = ?1",
            )?
            .query_row(params![self.queue], |r| {
                let n = |i| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
                Ok(QueueCounts { enqueued: n(0)?, delivered: n(1)?, retried: n(2)?, dead_lettered: n(3)?, dropped: n(4)? })
            })
            .optional()?
            .unwrap_or_default();
        Ok(QueueStats { counts, ..row })
    }

    fn add_counts(&mut self, c: QueueCounts) -> Result<()> {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.conn
            .prepare_cached(
                "INSERT INTO oncely_counts (queue, enqueued, delivered, retried, dead_lettered, dropped)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (queue) DO UPDATE SET enqueued = enqueued + excluded.enqueued,
                   delivered = delivered + excluded.delivered, retried = retried + excluded.retried,
                   dead_lettered = dead_lettered + excluded.dead_lettered, dropped = dropped + excluded.dropped",
            )?
            .execute(params![self.queue, n(c.enqueued), n(c.delivered), n(c.retried), n(c.dead_lettered), n(c.dropped)])?;
        Ok(())
    }

    fn remember_sent(&mut self, id: &str, fingerprint: Fingerprint, until: Timestamp) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO oncely_outbox_sent (queue, id, fingerprint, until) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (queue, id) DO UPDATE SET fingerprint = excluded.fingerprint, until = excluded.until",
            )?
            .execute(params![self.queue, id, &fingerprint.0[..], until.0])?;
        Ok(())
    }

    fn sent_marks(&mut self, ids: &[&str], now: Timestamp) -> Result<Vec<Option<Fingerprint>>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT fingerprint FROM oncely_outbox_sent WHERE queue = ?1 AND id = ?2 AND until > ?3",
        )?;
        ids.iter()
            .map(|id| {
                let fp: Option<Vec<u8>> =
                    stmt.query_row(params![self.queue, id, now.0], |r| r.get(0)).optional()?;
                fp.map(|b| {
                    Fingerprint::from_column(|| format!("the sent mark of `{}`", crate::text::quote(id)), &b)
                })
                .transpose()
            })
            .collect()
    }

    fn forget_sent(&mut self, now: Timestamp, limit: usize) -> Result<u64> {
        let n = self
            .conn
            .prepare_cached(
                "DELETE FROM oncely_outbox_sent WHERE queue = ?1 AND id IN
                   (SELECT id FROM oncely_outbox_sent WHERE queue = ?1 AND until <= ?2 ORDER BY until LIMIT ?3)",
            )?
            .execute(params![self.queue, now.0, limit as i64])?;
        Ok(n as u64)
    }

    fn next_token(&mut self) -> Result<u64> {
        self.counters.next_token(self.conn)
    }

    fn next_seq(&mut self) -> Result<u64> {
        self.counters.next_seq(self.conn)
    }

    fn require_durable(&mut self) {
        *self.must_sync = true;
    }
}

impl OutboxStore for SqliteStore {
    async fn transact<R: Send + 'static>(
        &self,
        queue: &str,
        work: impl FnOnce(&mut dyn OutboxTx) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        self.transact_with(queue, Durability::Durable, work).await
    }

    async fn transact_with<R: Send + 'static>(
        &self,
        queue: &str,
        durability: Durability,
        work: impl FnOnce(&mut dyn OutboxTx) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let queue = queue.to_owned();
        self.writer()?
            .run(durability, move |batch| {
                let (conn, counters, must_sync) = batch.parts();
                work(&mut SqliteOutboxTx { conn, counters, queue: &queue, must_sync })
            })
            .await
    }

    async fn queue_names(&self) -> Result<Vec<String>> {
        self.writer()?
            .run_single_write(Durability::Visible, |batch| {
                // The distinct queues of oncely_outbox by skipping through an index led by the
                // queue (one seek per queue, not a read of every message), then those of the counts.
                let mut stmt = batch.conn.prepare_cached(
                    "WITH RECURSIVE q(name) AS (
                       SELECT (SELECT min(queue) FROM oncely_outbox)
                       UNION ALL
                       SELECT (SELECT min(queue) FROM oncely_outbox WHERE queue > q.name) FROM q WHERE q.name IS NOT NULL
                     )
                     SELECT name FROM q WHERE name IS NOT NULL UNION SELECT queue FROM oncely_counts ORDER BY 1",
                )?;
                let names =
                    stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(names)
            })
            .await
    }
}

/// Runs one outbox step of `queue` on `conn`, inside a transaction someone else commits (the
/// transactional outbox): `work` gets the queue's primitives, and the queue's counters are saved
/// in the same transaction.
pub(crate) fn step_on<R>(
    conn: &Connection,
    queue: &str,
    work: impl FnOnce(&mut dyn OutboxTx) -> Result<R>,
) -> Result<R> {
    let mut counters = Counters::default();
    // The transaction it runs in is committed durably by whoever owns it.
    let mut must_sync = true;
    let out = work(&mut SqliteOutboxTx { conn, counters: &mut counters, queue, must_sync: &mut must_sync })?;
    counters.save(conn)?;
    Ok(out)
}
