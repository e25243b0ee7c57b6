//! The outbox in memory: records with the indexes the rules need (due order, leases, dead
//! letters, keys), and an undo log so that a failed step leaves nothing behind.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::clock::Timestamp;
use crate::error::Result;
use crate::fingerprint::Fingerprint;
use crate::records::{MessageState, OutboxRecord, QueueCounts, QueueStats};
use crate::store::memory::MemoryStore;
use crate::store::{OutboxStore, OutboxTx};

#[derive(Default)]
pub(super) struct Queues {
    queues: Mutex<HashMap<String, Queue>>,
    seqs: AtomicU64,
}

#[derive(Default)]
struct Queue {
    records: HashMap<String, OutboxRecord>,
    due: BTreeSet<(i64, u64, String)>,
    leases: BTreeSet<(i64, u64, String)>,
    dead: BTreeSet<(u64, String)>,
    /// Per key: (seq, is dead) of its ready, leased and dead messages.
    keys: HashMap<String, BTreeSet<(u64, bool)>>,
    counts: QueueCounts,
    /// Ids that left the queue: their payload's fingerprint and the end of their dedup window.
    sent: HashMap<String, (Fingerprint, i64)>,
    /// The same marks ordered by the end of their window.
    sent_until: BTreeSet<(i64, String)>,
}

impl Queue {
    fn unindex(&mut self, rec: &OutboxRecord) {
        let id = rec.message.id.clone();
        match &rec.state {
            MessageState::Ready => {
                self.due.remove(&(rec.message.available_at.0, rec.seq, id));
            }
            MessageState::Leased { lease_until, .. } => {
                self.leases.remove(&(lease_until.0, rec.seq, id));
            }
            MessageState::Dead { .. } => {
                self.dead.remove(&(rec.seq, id));
            }
        }
        if let Some(key) = &rec.message.key {
            if let Some(set) = self.keys.get_mut(key) {
                set.remove(&(rec.seq, matches!(rec.state, MessageState::Dead { .. })));
                if set.is_empty() {
                    self.keys.remove(key);
                }
            }
        }
    }

    fn index(&mut self, rec: &OutboxRecord) {
        let id = rec.message.id.clone();
        match &rec.state {
            MessageState::Ready => {
                self.due.insert((rec.message.available_at.0, rec.seq, id));
            }
            MessageState::Leased { lease_until, .. } => {
                self.leases.insert((lease_until.0, rec.seq, id));
            }
            MessageState::Dead { .. } => {
                self.dead.insert((rec.seq, id));
            }
        }
        if let Some(key) = &rec.message.key {
            let dead = matches!(rec.state, MessageState::Dead { .. });
            self.keys.entry(key.clone()).or_default().insert((rec.seq, dead));
        }
    }

    /// Replaces (or removes, with `None`) the record of `id`, keeping the indexes in step, and
    /// returns what was there.
    fn set(&mut self, id: &str, rec: Option<OutboxRecord>) -> Option<OutboxRecord> {
        let old = self.records.remove(id);
        if let Some(old) = &old {
            self.unindex(old);
        }
        if let Some(rec) = rec {
            self.index(&rec);
            self.records.insert(id.to_owned(), rec);
        }
        old
    }

    /// Replaces (or removes, with `None`) the sent mark of `id`, and returns what was there.
    fn set_sent(&mut self, id: &str, mark: Option<(Fingerprint, i64)>) -> Option<(Fingerprint, i64)> {
        let old = self.sent.remove(id);
        if let Some((_, until)) = old {
            self.sent_until.remove(&(until, id.to_owned()));
        }
        if let Some(mark) = mark {
            self.sent_until.insert((mark.1, id.to_owned()));
            self.sent.insert(id.to_owned(), mark);
        }
        old
    }
}

struct MemTx<'a> {
    queue: &'a mut Queue,
    store: &'a MemoryStore,
    /// The first value of every id this step touched, to put back if the step fails.
    undo: HashMap<String, Option<OutboxRecord>>,
    /// Likewise for sent marks.
    undo_sent: HashMap<String, Option<(Fingerprint, i64)>>,
}

impl MemTx<'_> {
    fn set(&mut self, id: &str, rec: Option<OutboxRecord>) {
        let old = self.queue.set(id, rec);
        self.undo.entry(id.to_owned()).or_insert(old);
    }

    fn set_sent(&mut self, id: &str, mark: Option<(Fingerprint, i64)>) {
        let old = self.queue.set_sent(id, mark);
        self.undo_sent.entry(id.to_owned()).or_insert(old);
    }

    fn rollback(self) {
        for (id, old) in self.undo {
            self.queue.set(&id, old);
        }
        for (id, old) in self.undo_sent {
            self.queue.set_sent(&id, old);
        }
    }

    fn records<'b>(&'b self, ids: impl Iterator<Item = &'b String>, limit: usize) -> Vec<OutboxRecord> {
        ids.take(limit).filter_map(|id| self.queue.records.get(id).cloned()).collect()
    }
}

impl OutboxTx for MemTx<'_> {
    fn get(&mut self, id: &str) -> Result<Option<OutboxRecord>> {
        Ok(self.queue.records.get(id).cloned())
    }

    fn insert(&mut self, rec: &OutboxRecord) -> Result<()> {
        self.set(&rec.message.id.clone(), Some(rec.clone()));
        Ok(())
    }

    fn update(&mut self, rec: &OutboxRecord) -> Result<()> {
        self.set(&rec.message.id.clone(), Some(rec.clone()));
        Ok(())
    }

    fn delete(&mut self, id: &str) -> Result<bool> {
        let existed = self.queue.records.contains_key(id);
        if existed {
            self.set(id, None);
        }
        Ok(existed)
    }

    fn due(
        &mut self,
        now: Timestamp,
        after: Option<(Timestamp, u64)>,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>> {
        let start = after.map_or((i64::MIN, 0, String::new()), |(t, s)| (t.0, s, String::new()));
        let ids = self
            .queue
            .due
            .range(start..)
            .filter(|(t, s, _)| after.is_none_or(|(at, seq)| (*t, *s) > (at.0, seq)))
            .take_while(|(t, _, _)| *t <= now.0)
            .map(|(_, _, id)| id);
        Ok(self.records(ids, limit))
    }

    fn expired_leases(&mut self, now: Timestamp, limit: usize) -> Result<Vec<OutboxRecord>> {
        let ids = self.queue.leases.iter().take_while(|(t, _, _)| *t <= now.0).map(|(_, _, id)| id);
        Ok(self.records(ids, limit))
    }

    fn key_head(&mut self, key: &str, include_dead: bool) -> Result<Option<u64>> {
        Ok(self
            .queue
            .keys
            .get(key)
            .and_then(|set| set.iter().find(|(_, dead)| include_dead || !dead).map(|(seq, _)| *seq)))
    }

    fn dead_letters(&mut self, after_seq: Option<u64>, limit: usize) -> Result<Vec<OutboxRecord>> {
        let ids =
            self.queue.dead.iter().filter(|(seq, _)| after_seq.is_none_or(|a| *seq > a)).map(|(_, id)| id);
        Ok(self.records(ids, limit))
    }

    fn stats(&mut self, now: Timestamp) -> Result<QueueStats> {
        let due = self.queue.due.iter().take_while(|(t, _, _)| *t <= now.0).count() as u64;
        // A lease that ran out counts as ready: nothing is delivering that message.
        let expired = self.queue.leases.iter().take_while(|(t, _, _)| *t <= now.0).count() as u64;
        let oldest = self
            .queue
            .records
            .values()
            .filter(|r| !matches!(r.state, MessageState::Dead { .. }))
            .map(|r| r.message.created_at)
            .min();
        Ok(QueueStats {
            ready: due + expired,
            scheduled: self.queue.due.len() as u64 - due,
            leased: self.queue.leases.len() as u64 - expired,
            dead: self.queue.dead.len() as u64,
            oldest_created_at: oldest,
            counts: self.queue.counts,
        })
    }

    fn add_counts(&mut self, counts: QueueCounts) -> Result<()> {
        // The last write of a step (nothing can fail after it), so it needs no undo.
        self.queue.counts = self.queue.counts.plus(counts);
        Ok(())
    }

    fn remember_sent(&mut self, id: &str, fingerprint: Fingerprint, until: Timestamp) -> Result<()> {
        self.set_sent(id, Some((fingerprint, until.0)));
        Ok(())
    }

    fn sent_marks(&mut self, ids: &[&str], now: Timestamp) -> Result<Vec<Option<Fingerprint>>> {
        Ok(ids
            .iter()
            .map(|id| self.queue.sent.get(*id).filter(|(_, until)| *until > now.0).map(|(fp, _)| *fp))
            .collect())
    }

    fn forget_sent(&mut self, now: Timestamp, limit: usize) -> Result<u64> {
        let ended: Vec<String> = self
            .queue
            .sent_until
            .iter()
            .take_while(|(t, _)| *t <= now.0)
            .take(limit)
            .map(|(_, id)| id.clone())
            .collect();
        for id in &ended {
            self.set_sent(id, None);
        }
        Ok(ended.len() as u64)
    }

    fn next_token(&mut self) -> Result<u64> {
        Ok(self.store.next_token())
    }

    fn next_seq(&mut self) -> Result<u64> {
        Ok(self.store.outbox.seqs.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

impl OutboxStore for MemoryStore {
    async fn transact<R: Send + 'static>(
        &self,
        queue: &str,
        work: impl FnOnce(&mut dyn OutboxTx) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let mut queues = self.outbox.queues.lock();
        let queue = queues.entry(queue.to_owned()).or_default();
        let mut tx = MemTx { queue, store: self, undo: HashMap::new(), undo_sent: HashMap::new() };
        match work(&mut tx) {
            Ok(r) => Ok(r),
            Err(e) => {
                tx.rollback();
                Err(e)
            }
        }
    }

    async fn queue_names(&self) -> Result<Vec<String>> {
        let queues = self.outbox.queues.lock();
        let mut names: Vec<String> = queues
            .iter()
            .filter(|(_, q)| !q.records.is_empty() || !q.counts.is_zero())
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        Ok(names)
    }
}
