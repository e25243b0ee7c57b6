//! The outbox on PostgreSQL: the primitives of [`OutboxTx`] as SQL, safe with many processes on
//! one queue under READ COMMITTED:
//! - leasing reads due messages `FOR UPDATE SKIP LOCKED`, so concurrent workers take disjoint
//!   messages without waiting for each other;
//! - a message is read `FOR UPDATE` before any change (fenced settles see the committed token);
//! - an id not stored yet is guarded by a transaction advisory lock on (queue, id), so two
//!   concurrent enqueues of one id serialise and the second sees the first (dedup, not an error);
//! - tokens and queue positions come from sequences (never handed out twice, across processes).

use std::time::Duration;

use postgres::GenericClient;
use postgres::types::ToSql;

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::outbox::{Enqueued, MessageState, NewMessage, Outbox, OutboxRecord, QueueStats};
use crate::store::OutboxTx;
use crate::store::postgres::pool::{Statements, pg_error};

const READY: i64 = 0;
const LEASED: i64 = 1;
const DEAD: i64 = 2;

macro_rules! select {
    ($($rest:literal),*) => {
        concat!(
            "SELECT id, seq, key, state, token, lease_until, dead_reason, available_at, created_at, attempts,
               first_attempt_at, last_delay_ms, last_error, payload, headers FROM oncely_outbox ",
            $($rest),*
        )
    };
}

pub(crate) struct PgOutboxTx<'a, C: GenericClient> {
    pub client: &'a mut C,
    pub statements: &'a mut Statements,
    pub queue: &'a str,
}

/// PostgreSQL text cannot hold NUL: free text (errors, reasons) is stored with U+FFFD instead.
fn text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') { s.replace('\0', "\u{FFFD}").into() } else { s.into() }
}

fn from_row(r: &postgres::Row) -> Result<OutboxRecord> {
    let state: i64 = r.get(3);
    let headers: Option<String> = r.get(14);
    let id: String = r.get(0);
    let headers = match headers {
        None => Default::default(),
        Some(h) => serde_json::from_str(&h)
            .map_err(|e| Error::CorruptStore(format!("message `{id}` has unreadable headers: {e}")))?,
    };
    Ok(OutboxRecord {
        message: Message {
            key: r.get(2),
            payload: r.get(13),
            headers,
            created_at: Timestamp(r.get(8)),
            available_at: Timestamp(r.get(7)),
            attempts: r.get::<_, i64>(9).clamp(0, i64::from(u32::MAX)) as u32,
            id,
        },
        seq: r.get::<_, i64>(1) as u64,
        state: match state {
            READY => MessageState::Ready,
            LEASED => {
                MessageState::Leased { token: r.get::<_, i64>(4) as u64, lease_until: Timestamp(r.get(5)) }
            }
            _ => MessageState::Dead { reason: r.get::<_, Option<String>>(6).unwrap_or_default() },
        },
        first_attempt_at: r.get::<_, Option<i64>>(10).map(Timestamp),
        last_delay: r.get::<_, Option<i64>>(11).map(|ms| Duration::from_millis(ms.max(0) as u64)),
        last_error: r.get(12),
    })
}

impl<C: GenericClient> PgOutboxTx<'_, C> {
    fn query(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<postgres::Row>> {
        let stmt = self.statements.get(self.client, sql)?;
        self.client.query(&stmt, params).map_err(pg_error)
    }

    fn records(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<OutboxRecord>> {
        self.query(sql, params)?.iter().map(from_row).collect()
    }

    fn write(&mut self, sql: &'static str, rec: &OutboxRecord) -> Result<()> {
        let (state, token, lease_until, reason) = match &rec.state {
            MessageState::Ready => (READY, 0, 0, None),
            MessageState::Leased { token, lease_until } => (LEASED, *token as i64, lease_until.0, None),
            MessageState::Dead { reason } => (DEAD, 0, 0, Some(text(reason))),
        };
        let headers = if rec.message.headers.is_empty() {
            None
        } else {
            Some(serde_json::to_string(&rec.message.headers).map_err(|e| Error::Storage(e.to_string()))?)
        };
        let m = &rec.message;
        let stmt = self.statements.get(self.client, sql)?;
        self.client
            .execute(
                &stmt,
                &[
                    &self.queue,
                    &m.id,
                    &(rec.seq as i64),
                    &m.key,
                    &state,
                    &token,
                    &lease_until,
                    &reason,
                    &m.available_at.0,
                    &m.created_at.0,
                    &i64::from(m.attempts),
                    &rec.first_attempt_at.map(|t| t.0),
                    &rec.last_delay.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
                    &rec.last_error.as_deref().map(text),
                    &m.payload,
                    &headers,
                ],
            )
            .map_err(pg_error)?;
        Ok(())
    }

    fn next(&mut self, sql: &'static str) -> Result<u64> {
        let rows = self.query(sql, &[])?;
        let v: i64 = rows.first().ok_or_else(|| Error::Storage("nextval returned no row".into()))?.get(0);
        Ok(v as u64)
    }
}

const GET: &str = select!("WHERE queue = $1 AND id = $2 FOR UPDATE");

impl<C: GenericClient> OutboxTx for PgOutboxTx<'_, C> {
    fn get(&mut self, id: &str) -> Result<Option<OutboxRecord>> {
        let queue = self.queue;
        if let Some(rec) = self.records(GET, &[&queue, &id])?.pop() {
            return Ok(Some(rec));
        }
        // Not stored (yet): hold the id until this transaction ends, then look again — a
        // concurrent insert of the same id committed meanwhile is seen, not overwritten.
        self.query(
            "SELECT pg_advisory_xact_lock(hashtextextended('outbox:' || length($1) || ':' || $1 || $2, 0))",
            &[&queue, &id],
        )?;
        Ok(self.records(GET, &[&queue, &id])?.pop())
    }

    fn insert(&mut self, rec: &OutboxRecord) -> Result<()> {
        self.write(
            "INSERT INTO oncely_outbox (queue, id, seq, key, state, token, lease_until, dead_reason, available_at,
               created_at, attempts, first_attempt_at, last_delay_ms, last_error, payload, headers)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            rec,
        )
    }

    fn update(&mut self, rec: &OutboxRecord) -> Result<()> {
        self.write(
            "UPDATE oncely_outbox SET seq = $3, key = $4, state = $5, token = $6, lease_until = $7,
               dead_reason = $8, available_at = $9, created_at = $10, attempts = $11, first_attempt_at = $12,
               last_delay_ms = $13, last_error = $14, payload = $15, headers = $16
             WHERE queue = $1 AND id = $2",
            rec,
        )
    }

    fn delete(&mut self, id: &str) -> Result<bool> {
        let stmt =
            self.statements.get(self.client, "DELETE FROM oncely_outbox WHERE queue = $1 AND id = $2")?;
        Ok(self.client.execute(&stmt, &[&self.queue, &id]).map_err(pg_error)? > 0)
    }

    fn due(
        &mut self,
        now: Timestamp,
        after: Option<(Timestamp, u64)>,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>> {
        let (at, seq) = after.map_or((i64::MIN, -1), |(t, s)| (t.0, s as i64));
        let queue = self.queue;
        self.records(
            select!(
                "WHERE queue = $1 AND state = 0 AND available_at <= $2 AND (available_at, seq) > ($3, $4)
                 ORDER BY available_at, seq LIMIT $5 FOR UPDATE SKIP LOCKED"
            ),
            &[&queue, &now.0, &at, &seq, &(limit.min(i64::MAX as usize) as i64)],
        )
    }

    fn expired_leases(&mut self, now: Timestamp, limit: usize) -> Result<Vec<OutboxRecord>> {
        let queue = self.queue;
        self.records(
            select!(
                "WHERE queue = $1 AND state = 1 AND lease_until <= $2
                 ORDER BY lease_until LIMIT $3 FOR UPDATE SKIP LOCKED"
            ),
            &[&queue, &now.0, &(limit.min(i64::MAX as usize) as i64)],
        )
    }

    fn key_head(&mut self, key: &str, include_dead: bool) -> Result<Option<u64>> {
        // Done messages are deleted, so every stored message of the key is ready, leased or dead.
        let sql = if include_dead {
            "SELECT min(seq) FROM oncely_outbox WHERE queue = $1 AND key = $2"
        } else {
            "SELECT min(seq) FROM oncely_outbox WHERE queue = $1 AND key = $2 AND state < 2"
        };
        let queue = self.queue;
        let head: Option<i64> = self.query(sql, &[&queue, &key])?.first().and_then(|r| r.get(0));
        Ok(head.map(|s| s as u64))
    }

    fn dead_letters(&mut self, after_seq: Option<u64>, limit: usize) -> Result<Vec<OutboxRecord>> {
        let queue = self.queue;
        self.records(
            select!("WHERE queue = $1 AND state = 2 AND seq > $2 ORDER BY seq LIMIT $3"),
            &[&queue, &after_seq.map_or(-1, |s| s as i64), &(limit.min(i64::MAX as usize) as i64)],
        )
    }

    fn stats(&mut self, now: Timestamp) -> Result<QueueStats> {
        let queue = self.queue;
        let rows = self.query(
            "SELECT count(*) FILTER (WHERE (state = 0 AND available_at <= $2) OR (state = 1 AND lease_until <= $2)),
                    count(*) FILTER (WHERE state = 0 AND available_at > $2),
                    count(*) FILTER (WHERE state = 1 AND lease_until > $2),
                    count(*) FILTER (WHERE state = 2),
                    min(created_at) FILTER (WHERE state < 2)
             FROM oncely_outbox WHERE queue = $1",
            &[&queue, &now.0],
        )?;
        let r = rows.first().ok_or_else(|| Error::Storage("stats returned no row".into()))?;
        Ok(QueueStats {
            ready: r.get::<_, i64>(0) as u64,
            scheduled: r.get::<_, i64>(1) as u64,
            leased: r.get::<_, i64>(2) as u64,
            dead: r.get::<_, i64>(3) as u64,
            oldest_created_at: r.get::<_, Option<i64>>(4).map(Timestamp),
        })
    }

    fn next_token(&mut self) -> Result<u64> {
        self.next("SELECT nextval('oncely_tokens')")
    }

    fn next_seq(&mut self) -> Result<u64> {
        self.next("SELECT nextval('oncely_seqs')")
    }
}

impl Outbox<super::PostgresStore> {
    /// The transactional outbox: enqueues `messages` inside the caller's own transaction on a
    /// connection to the same database (and schema) as this outbox's store. The messages become
    /// visible and deliverable only if and when the caller commits — together with the caller's
    /// own writes — and vanish if it rolls back. Returns what each enqueue did. Events for these
    /// messages are published at once, before the caller's commit.
    pub fn enqueue_in(
        &self,
        tx: &mut postgres::Transaction<'_>,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Enqueued>> {
        enqueue_on(tx, &mut Statements::default(), self, messages)
    }
}

/// Enqueues into `outbox`'s queue through `client`, inside a transaction someone else commits.
pub(crate) fn enqueue_on<C: GenericClient, S: crate::store::OutboxStore>(
    client: &mut C,
    statements: &mut Statements,
    outbox: &Outbox<S>,
    messages: Vec<NewMessage>,
) -> Result<Vec<Enqueued>> {
    let queue = outbox.config().queue.clone();
    let mut tx = PgOutboxTx { client, statements, queue: &queue };
    outbox.enqueue_through(&mut tx, messages)
}
