//! The outbox on PostgreSQL: the primitives of [`OutboxTx`] as SQL, safe with many processes on
//! one queue under READ COMMITTED:
//! - leasing reads due messages `FOR UPDATE SKIP LOCKED`, so concurrent workers take disjoint
//!   messages without waiting for each other;
//! - a message is read `FOR UPDATE` before any change (fenced settles see the committed token);
//! - an id not stored yet is guarded by a transaction advisory lock on (queue, id), so two
//!   concurrent enqueues of one id serialise and the second sees the first (dedup, not an error);
//! - tokens and queue positions come from sequences (never handed out twice, across processes);
//! - every statement is a round trip, so a step keeps what it read (rows it holds) and buffers
//!   its writes, sending them as one statement per kind before anything that scans the table
//!   and at the end ([`PgOutboxTx::flush`]).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use postgres::GenericClient;
use postgres::types::ToSql;

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::fingerprint::Fingerprint;
use crate::message::Message;
use crate::records::{
    MessageState, OutboxRecord, QueueCounts, QueueStats, limit_columns, limits_from_columns, mode_column,
    mode_from_column,
};

/// Rows per queue in `oncely_counts` (see `add_counts`).
const COUNT_SHARDS: u32 = 8;
use crate::store::OutboxTx;
use crate::store::postgres::pool::{Statements, pg_error};

macro_rules! select {
    ($($rest:literal),*) => {
        concat!(
            "SELECT id, seq, key, state, token, lease_until, dead_reason, available_at, created_at, attempts,
               first_attempt_at, last_delay_ms, last_error, payload, headers, mode, max_attempts, dedup_ms
             FROM oncely_outbox ",
            $($rest),*
        )
    };
}

/// One queue's step inside a PostgreSQL transaction. [`PgOutboxTx::flush`] must be called
/// before the transaction commits.
pub(crate) struct PgOutboxTx<'a, C: GenericClient> {
    client: &'a mut C,
    statements: &'a mut Statements,
    queue: &'a str,
    /// The current state of the messages read or written in this step (`None`: not stored).
    known: HashMap<String, Option<OutboxRecord>>,
    /// The ids whose row exists in the table as of the last flush.
    stored: HashSet<String>,
    /// Ids written since the last flush, each once.
    dirty: Vec<String>,
    dirty_set: HashSet<String>,
    /// Sent marks written since the last flush, by id (a later mark of an id replaces an
    /// earlier one): fingerprint, end of the window.
    sent: HashMap<String, (Vec<u8>, i64)>,
}

/// PostgreSQL text cannot hold NUL: free text (errors, reasons) is stored with U+FFFD instead.
fn text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') { s.replace('\0', "\u{FFFD}").into() } else { s.into() }
}

fn from_row(r: &postgres::Row) -> Result<OutboxRecord> {
    let state: i64 = r.get(3);
    let headers: Option<String> = r.get(14);
    let id: String = r.get(0);
    let (max_attempts, dedup_window) = limits_from_columns(&id, r.get(16), r.get(17))?;
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
        state: MessageState::from_columns(state, r.get(4), r.get(5), r.get(6)),
        first_attempt_at: r.get::<_, Option<i64>>(10).map(Timestamp),
        last_delay: r.get::<_, Option<i64>>(11).map(|ms| Duration::from_millis(ms.max(0) as u64)),
        last_error: r.get(12),
        mode: mode_from_column(&r.get::<_, String>(0), r.get(15))?,
        max_attempts,
        dedup_window,
    })
}

impl<'a, C: GenericClient> PgOutboxTx<'a, C> {
    /// The queue's counts: the sum of its rows in `oncely_counts`.
    fn counts(&mut self) -> Result<QueueCounts> {
        let queue = self.queue;
        let rows = self.query(
            "SELECT coalesce(sum(enqueued), 0)::int8, coalesce(sum(delivered), 0)::int8, coalesce(sum(retried), 0)::int8,
                    coalesce(sum(dead_lettered), 0)::int8, coalesce(sum(dropped), 0)::int8
             FROM oncely_counts WHERE queue = $1",
            &[&queue],
        )?;
        let r = rows.first().ok_or_else(|| Error::Storage("counts returned no row".into()))?;
        let n = |i| r.get::<_, i64>(i).max(0) as u64;
        Ok(QueueCounts { enqueued: n(0), delivered: n(1), retried: n(2), dead_lettered: n(3), dropped: n(4) })
    }

    pub(crate) fn new(client: &'a mut C, statements: &'a mut Statements, queue: &'a str) -> Self {
        PgOutboxTx {
            client,
            statements,
            queue,
            known: HashMap::new(),
            stored: HashSet::new(),
            dirty: Vec::new(),
            dirty_set: HashSet::new(),
            sent: HashMap::new(),
        }
    }

    fn query(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<postgres::Row>> {
        let stmt = self.statements.get(self.client, sql)?;
        self.client.query(&stmt, params).map_err(pg_error)
    }

    fn records(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<OutboxRecord>> {
        self.query(sql, params)?.iter().map(from_row).collect()
    }

    /// Takes note of rows read from the table (held `FOR UPDATE` by this transaction).
    fn remember(&mut self, recs: &[OutboxRecord]) {
        for rec in recs {
            self.stored.insert(rec.message.id.clone());
            self.known.insert(rec.message.id.clone(), Some(rec.clone()));
        }
    }

    fn write(&mut self, id: &str, rec: Option<OutboxRecord>) {
        self.known.insert(id.to_owned(), rec);
        if self.dirty_set.insert(id.to_owned()) {
            self.dirty.push(id.to_owned());
        }
    }

    /// Reads the ids not known yet from the table, holding their rows (in id order, so that
    /// concurrent steps never wait on each other in a cycle). Ids not stored are held by an
    /// advisory lock and looked up again, so a concurrent insert committed meanwhile is seen.
    fn load(&mut self, ids: &[&str]) -> Result<()> {
        let mut wanted: Vec<&str> = ids.iter().copied().filter(|id| !self.known.contains_key(*id)).collect();
        if wanted.is_empty() {
            return Ok(());
        }
        wanted.sort_unstable();
        wanted.dedup();
        let queue = self.queue;
        let found = self.records(LOAD, &[&queue, &wanted])?;
        self.remember(&found);
        let missing: Vec<&str> = wanted.iter().copied().filter(|id| !self.known.contains_key(*id)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        self.query(
            "SELECT pg_advisory_xact_lock(k) FROM (
               SELECT DISTINCT hashtextextended('outbox:' || length($1) || ':' || $1 || i, 0) AS k
               FROM unnest($2::text[]) AS i ORDER BY k) AS keys",
            &[&queue, &missing],
        )?;
        let found = self.records(LOAD, &[&queue, &missing])?;
        self.remember(&found);
        for id in missing {
            self.known.entry(id.to_owned()).or_insert(None);
        }
        Ok(())
    }

    /// Sends the buffered sent marks, as one statement.
    fn flush_sent(&mut self) -> Result<()> {
        if self.sent.is_empty() {
            return Ok(());
        }
        let (mut ids, mut fps, mut untils) = (Vec::new(), Vec::new(), Vec::new());
        for (id, (fp, until)) in std::mem::take(&mut self.sent) {
            ids.push(id);
            fps.push(fp);
            untils.push(until);
        }
        let queue = self.queue;
        let stmt = self.statements.get(
            self.client,
            "INSERT INTO oncely_outbox_sent (queue, id, fingerprint, until)
             SELECT $1, * FROM unnest($2::text[], $3::bytea[], $4::int8[])
             ON CONFLICT (queue, id) DO UPDATE SET fingerprint = excluded.fingerprint, until = excluded.until",
        )?;
        self.client.execute(&stmt, &[&queue, &ids, &fps, &untils]).map_err(pg_error)?;
        Ok(())
    }

    /// Sends the buffered writes: at most one DELETE, one UPDATE and one INSERT statement, and
    /// one for the sent marks.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.flush_sent()?;
        if self.dirty.is_empty() {
            return Ok(());
        }
        let dirty = std::mem::take(&mut self.dirty);
        self.dirty_set.clear();
        let (mut deletes, mut updates, mut inserts) = (Vec::new(), Vec::new(), Vec::new());
        for id in &dirty {
            match (self.known.get(id.as_str()).cloned().flatten(), self.stored.contains(id.as_str())) {
                (Some(rec), true) => updates.push(rec),
                (Some(rec), false) => inserts.push(rec),
                (None, true) => deletes.push(id.as_str()),
                (None, false) => {}
            }
        }
        let queue = self.queue;
        if !deletes.is_empty() {
            let stmt = self
                .statements
                .get(self.client, "DELETE FROM oncely_outbox WHERE queue = $1 AND id = ANY($2)")?;
            self.client.execute(&stmt, &[&queue, &deletes]).map_err(pg_error)?;
        }
        if !updates.is_empty() {
            // A message's id, key, payload, headers and creation time never change.
            let c = Columns::of(&updates)?;
            let stmt = self.statements.get(
                self.client,
                "UPDATE oncely_outbox AS o SET seq = u.seq, state = u.state, token = u.token,
                   lease_until = u.lease_until, dead_reason = u.dead_reason, available_at = u.available_at,
                   attempts = u.attempts, first_attempt_at = u.first_attempt_at,
                   last_delay_ms = u.last_delay_ms, last_error = u.last_error, mode = u.mode
                 FROM unnest($2::text[], $3::int8[], $4::int8[], $5::int8[], $6::int8[], $7::text[], $8::int8[],
                             $9::int8[], $10::int8[], $11::int8[], $12::text[], $13::int8[])
                   AS u(id, seq, state, token, lease_until, dead_reason, available_at, attempts,
                        first_attempt_at, last_delay_ms, last_error, mode)
                 WHERE o.queue = $1 AND o.id = u.id",
            )?;
            let params: [&(dyn ToSql + Sync); 13] = [
                &queue,
                &c.id,
                &c.seq,
                &c.state,
                &c.token,
                &c.lease_until,
                &c.dead_reason,
                &c.available_at,
                &c.attempts,
                &c.first_attempt_at,
                &c.last_delay_ms,
                &c.last_error,
                &c.mode,
            ];
            self.client.execute(&stmt, &params).map_err(pg_error)?;
        }
        if !inserts.is_empty() {
            let c = Columns::of(&inserts)?;
            let stmt = self.statements.get(
                self.client,
                "INSERT INTO oncely_outbox (queue, id, seq, key, state, token, lease_until, dead_reason, available_at,
                   created_at, attempts, first_attempt_at, last_delay_ms, last_error, payload, headers, mode,
                   max_attempts, dedup_ms)
                 SELECT $1, * FROM unnest($2::text[], $3::int8[], $4::text[], $5::int8[], $6::int8[], $7::int8[],
                   $8::text[], $9::int8[], $10::int8[], $11::int8[], $12::int8[], $13::int8[], $14::text[],
                   $15::bytea[], $16::text[], $17::int8[], $18::int8[], $19::int8[])",
            )?;
            let params: [&(dyn ToSql + Sync); 19] = [
                &queue,
                &c.id,
                &c.seq,
                &c.key,
                &c.state,
                &c.token,
                &c.lease_until,
                &c.dead_reason,
                &c.available_at,
                &c.created_at,
                &c.attempts,
                &c.first_attempt_at,
                &c.last_delay_ms,
                &c.last_error,
                &c.payload,
                &c.headers,
                &c.mode,
                &c.max_attempts,
                &c.dedup_ms,
            ];
            self.client.execute(&stmt, &params).map_err(pg_error)?;
        }
        for id in dirty {
            if self.known.get(&id).is_some_and(Option::is_some) {
                self.stored.insert(id);
            } else {
                self.stored.remove(&id);
            }
        }
        Ok(())
    }

    fn numbers(&mut self, sql: &'static str, n: usize) -> Result<Vec<u64>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let n = i64::try_from(n).map_err(|_| Error::invalid("n", "too many numbers at once"))?;
        Ok(self.query(sql, &[&n])?.iter().map(|r| r.get::<_, i64>(0) as u64).collect())
    }
}

// Rows are locked in the order of the (sorted) array: a nested loop over it. (`id = ANY($2)
// ORDER BY id` would lock in order too, but its generic plan scans the whole queue.)
const LOAD: &str = concat!(
    "SELECT id, seq, key, state, token, lease_until, dead_reason, available_at, created_at, attempts,
       first_attempt_at, last_delay_ms, last_error, payload, headers, mode, max_attempts, dedup_ms
     FROM unnest($2::text[]) AS w(wanted) JOIN oncely_outbox AS o ON o.queue = $1 AND o.id = w.wanted
     FOR UPDATE OF o"
);
const TOKENS: &str = "SELECT nextval('oncely_tokens') FROM generate_series(1, $1::int8)";
// Ordered, so that a batch's messages keep their order in the queue.
const SEQS: &str =
    "SELECT n FROM (SELECT nextval('oncely_seqs') AS n FROM generate_series(1, $1::int8)) AS s ORDER BY n";

impl<C: GenericClient> OutboxTx for PgOutboxTx<'_, C> {
    fn get(&mut self, id: &str) -> Result<Option<OutboxRecord>> {
        self.load(&[id])?;
        Ok(self.known.get(id).cloned().flatten())
    }

    fn get_many(&mut self, ids: &[&str]) -> Result<Vec<Option<OutboxRecord>>> {
        self.load(ids)?;
        Ok(ids.iter().map(|id| self.known.get(*id).cloned().flatten()).collect())
    }

    fn prefetch(&mut self, ids: &[&str]) -> Result<()> {
        self.load(ids)
    }

    fn insert(&mut self, rec: &OutboxRecord) -> Result<()> {
        self.write(&rec.message.id, Some(rec.clone()));
        Ok(())
    }

    fn update(&mut self, rec: &OutboxRecord) -> Result<()> {
        self.write(&rec.message.id, Some(rec.clone()));
        Ok(())
    }

    fn delete(&mut self, id: &str) -> Result<bool> {
        self.load(&[id])?;
        let was = self.known.get(id).is_some_and(Option::is_some);
        self.write(id, None);
        Ok(was)
    }

    fn due(
        &mut self,
        now: Timestamp,
        after: Option<(Timestamp, u64)>,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>> {
        self.flush()?;
        let (at, seq) = after.map_or((i64::MIN, -1), |(t, s)| (t.0, s as i64));
        let queue = self.queue;
        let recs = self.records(
            select!(
                "WHERE queue = $1 AND state = 0 AND available_at <= $2 AND (available_at, seq) > ($3, $4)
                 ORDER BY available_at, seq LIMIT $5 FOR UPDATE SKIP LOCKED"
            ),
            &[&queue, &now.0, &at, &seq, &(limit.min(i64::MAX as usize) as i64)],
        )?;
        self.remember(&recs);
        Ok(recs)
    }

    fn expired_leases(&mut self, now: Timestamp, limit: usize) -> Result<Vec<OutboxRecord>> {
        self.flush()?;
        let queue = self.queue;
        let recs = self.records(
            select!(
                "WHERE queue = $1 AND state = 1 AND lease_until <= $2
                 ORDER BY lease_until LIMIT $3 FOR UPDATE SKIP LOCKED"
            ),
            &[&queue, &now.0, &(limit.min(i64::MAX as usize) as i64)],
        )?;
        self.remember(&recs);
        Ok(recs)
    }

    fn key_head(&mut self, key: &str, include_dead: bool) -> Result<Option<u64>> {
        // Done messages are deleted, so every stored message of the key is ready, leased or dead.
        let sql = if include_dead {
            "SELECT min(seq) FROM oncely_outbox WHERE queue = $1 AND key = $2"
        } else {
            "SELECT min(seq) FROM oncely_outbox WHERE queue = $1 AND key = $2 AND state < 2"
        };
        self.flush()?;
        let queue = self.queue;
        let head: Option<i64> = self.query(sql, &[&queue, &key])?.first().and_then(|r| r.get(0));
        Ok(head.map(|s| s as u64))
    }

    fn dead_letters(&mut self, after_seq: Option<u64>, limit: usize) -> Result<Vec<OutboxRecord>> {
        self.flush()?;
        let queue = self.queue;
        self.records(
            select!("WHERE queue = $1 AND state = 2 AND seq > $2 ORDER BY seq LIMIT $3"),
            &[&queue, &after_seq.map_or(-1, |s| s as i64), &(limit.min(i64::MAX as usize) as i64)],
        )
    }

    fn stats(&mut self, now: Timestamp) -> Result<QueueStats> {
        self.flush()?;
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
            counts: self.counts()?,
        })
    }

    fn add_counts(&mut self, c: QueueCounts) -> Result<()> {
        // Spread over a few rows per queue — one per pool connection's thread, mostly — so that
        // concurrent commits do not queue up on one row lock; read back as their sum.
        let shard = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            std::thread::current().id().hash(&mut h);
            (h.finish() % u64::from(COUNT_SHARDS)) as i64
        };
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let queue = self.queue;
        let stmt = self.statements.get(
            self.client,
            "INSERT INTO oncely_counts (queue, shard, enqueued, delivered, retried, dead_lettered, dropped)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (queue, shard) DO UPDATE SET enqueued = oncely_counts.enqueued + excluded.enqueued,
               delivered = oncely_counts.delivered + excluded.delivered,
               retried = oncely_counts.retried + excluded.retried,
               dead_lettered = oncely_counts.dead_lettered + excluded.dead_lettered,
               dropped = oncely_counts.dropped + excluded.dropped",
        )?;
        let params: [&(dyn ToSql + Sync); 7] = [
            &queue,
            &shard,
            &n(c.enqueued),
            &n(c.delivered),
            &n(c.retried),
            &n(c.dead_lettered),
            &n(c.dropped),
        ];
        self.client.execute(&stmt, &params).map_err(pg_error)?;
        Ok(())
    }

    fn remember_sent(&mut self, id: &str, fingerprint: Fingerprint, until: Timestamp) -> Result<()> {
        self.sent.insert(id.to_owned(), (fingerprint.0.to_vec(), until.0));
        Ok(())
    }

    fn sent_marks(&mut self, ids: &[&str], now: Timestamp) -> Result<Vec<Option<Fingerprint>>> {
        self.flush_sent()?;
        let queue = self.queue;
        let rows = self.query(
            "SELECT id, fingerprint FROM oncely_outbox_sent WHERE queue = $1 AND id = ANY($2) AND until > $3",
            &[&queue, &ids, &now.0],
        )?;
        let mut found: HashMap<String, Fingerprint> = HashMap::with_capacity(rows.len());
        for r in rows {
            let id: String = r.get(0);
            let fp: Vec<u8> = r.get(1);
            let fp =
                Fingerprint::from_column(|| format!("the sent mark of `{}`", crate::text::quote(&id)), &fp)?;
            found.insert(id, fp);
        }
        Ok(ids.iter().map(|id| found.get(*id).copied()).collect())
    }

    fn forget_sent(&mut self, now: Timestamp, limit: usize) -> Result<u64> {
        self.flush_sent()?;
        let queue = self.queue;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.query(
            "DELETE FROM oncely_outbox_sent WHERE queue = $1 AND id IN
               (SELECT id FROM oncely_outbox_sent WHERE queue = $1 AND until <= $2 ORDER BY until LIMIT $3
                FOR UPDATE SKIP LOCKED)
             RETURNING 1",
            &[&queue, &now.0, &limit],
        )?;
        Ok(rows.len() as u64)
    }

    fn next_token(&mut self) -> Result<u64> {
        Ok(self
            .numbers(TOKENS, 1)?
            .first()
            .copied()
            .ok_or_else(|| Error::Storage("nextval gave no row".into()))?)
    }

    fn next_seq(&mut self) -> Result<u64> {
        Ok(self
            .numbers(SEQS, 1)?
            .first()
            .copied()
            .ok_or_else(|| Error::Storage("nextval gave no row".into()))?)
    }

    fn next_tokens(&mut self, n: usize) -> Result<Vec<u64>> {
        self.numbers(TOKENS, n)
    }

    fn next_seqs(&mut self, n: usize) -> Result<Vec<u64>> {
        self.numbers(SEQS, n)
    }
}

/// Runs one outbox step of `queue` through `client`, inside a transaction someone else commits
/// (the transactional outbox): `work` gets the queue's primitives, flushed before this returns.
pub(crate) fn step_on<C: GenericClient, R>(
    client: &mut C,
    statements: &mut Statements,
    queue: &str,
    work: impl FnOnce(&mut dyn OutboxTx) -> Result<R>,
) -> Result<R> {
    let mut tx = PgOutboxTx::new(client, statements, queue);
    let out = work(&mut tx)?;
    tx.flush()?;
    Ok(out)
}

/// The columns of records, as arrays for `unnest`.
struct Columns<'r> {
    id: Vec<&'r str>,
    seq: Vec<i64>,
    key: Vec<Option<&'r str>>,
    state: Vec<i64>,
    token: Vec<i64>,
    lease_until: Vec<i64>,
    dead_reason: Vec<Option<String>>,
    available_at: Vec<i64>,
    created_at: Vec<i64>,
    attempts: Vec<i64>,
    first_attempt_at: Vec<Option<i64>>,
    last_delay_ms: Vec<Option<i64>>,
    last_error: Vec<Option<String>>,
    payload: Vec<&'r [u8]>,
    headers: Vec<Option<String>>,
    mode: Vec<Option<i64>>,
    max_attempts: Vec<Option<i64>>,
    dedup_ms: Vec<Option<i64>>,
}

impl<'r> Columns<'r> {
    fn of(recs: &'r [OutboxRecord]) -> Result<Self> {
        let mut c = Columns {
            id: Vec::new(),
            seq: Vec::new(),
            key: Vec::new(),
            state: Vec::new(),
            token: Vec::new(),
            lease_until: Vec::new(),
            dead_reason: Vec::new(),
            available_at: Vec::new(),
            created_at: Vec::new(),
            attempts: Vec::new(),
            first_attempt_at: Vec::new(),
            last_delay_ms: Vec::new(),
            last_error: Vec::new(),
            payload: Vec::new(),
            headers: Vec::new(),
            mode: Vec::new(),
            max_attempts: Vec::new(),
            dedup_ms: Vec::new(),
        };
        for rec in recs {
            let (state, token, lease_until, reason) = rec.state.columns();
            let reason = reason.map(|r| text(r).into_owned());
            let m = &rec.message;
            c.id.push(&m.id);
            c.seq.push(rec.seq as i64);
            c.key.push(m.key.as_deref());
            c.state.push(state);
            c.token.push(token);
            c.lease_until.push(lease_until);
            c.dead_reason.push(reason);
            c.available_at.push(m.available_at.0);
            c.created_at.push(m.created_at.0);
            c.attempts.push(i64::from(m.attempts));
            c.first_attempt_at.push(rec.first_attempt_at.map(|t| t.0));
            c.last_delay_ms.push(rec.last_delay.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
            c.last_error.push(rec.last_error.as_deref().map(|e| text(e).into_owned()));
            c.payload.push(&m.payload);
            c.mode.push(mode_column(rec.mode));
            let (max_attempts, dedup_ms) = limit_columns(rec);
            c.max_attempts.push(max_attempts);
            c.dedup_ms.push(dedup_ms);
            c.headers.push(if m.headers.is_empty() {
                None
            } else {
                Some(serde_json::to_string(&m.headers).map_err(|e| Error::Storage(e.to_string()))?)
            });
        }
        Ok(c)
    }
}
