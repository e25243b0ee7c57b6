//! The in-memory store: for tests, at-most-once use, and as the reference for the others.
//!
//! Records live in compact slots (id and result bytes in one allocation) indexed by a hash table
//! of slot numbers (`index.rs`: a probe and its insert touch one cache line), spread over shards
//! so that concurrent callers rarely contend.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use hashbrown::{DefaultHashBuilder, HashMap};
use parking_lot::Mutex;

use crate::clock::Timestamp;
use crate::error::Result;
use crate::fingerprint::Fingerprint;
use crate::records::{InboxOp, InboxRecord, OpAnswer, RecordState, Status, StoredOutcome, Write, decide};
use crate::store::InboxStore;

mod index;
mod outbox;

use index::{Entry, Index};

const SHARDS: usize = 16;

/// An inbox store held in this process's memory. Everything is lost when it is dropped; clones of
/// an `Arc<MemoryStore>` share it.
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    tokens: AtomicU64,
    hasher: DefaultHashBuilder,
    outbox: outbox::Queues,
}

#[derive(Default)]
struct Shard {
    scopes: HashMap<Box<str>, Table>,
}

#[derive(Default)]
struct Table {
    index: Index,
    slots: Vec<Slot>,
    free: Vec<u32>,
}

const IN_PROGRESS: u8 = 0;
const HAS_FINGERPRINT: u8 = 0x10;
const HAS_RESULT: u8 = 0x20;
const FREE: u8 = 0x40;
const STATE_MASK: u8 = 0x0f;

/// One record, 64 bytes plus one heap block holding the id followed by the result.
struct Slot {
    data: Box<[u8]>,
    token: u64,
    expires_at: i64,
    lease_until: i64,
    fingerprint: [u8; 16],
    /// The id's hash within its table ([`IdHash::table`]): kept so that growing the table and
    /// probing it never read the id's bytes, except to confirm a match.
    hash: u32,
    id_len: u16,
    /// Low nibble: 0 in progress, else a `Status` code; plus the HAS_* bits. A free slot (in no
    /// index entry, waiting for reuse) is FREE alone, with an empty `data`.
    flags: u8,
}

impl Slot {
    fn id(&self) -> &[u8] {
        &self.data[..self.id_len as usize]
    }

    fn is_free(&self) -> bool {
        self.flags & FREE != 0
    }

    /// Whether this slot holds `id`, whose table hash is `hash`.
    fn is(&self, hash: u32, id: &str) -> bool {
        self.hash == hash && self.id() == id.as_bytes()
    }

    fn record(&self) -> InboxRecord {
        let state = match Status::from_code(self.flags & STATE_MASK) {
            None => RecordState::InProgress { lease_until: Timestamp(self.lease_until) },
            Some(status) => RecordState::Completed(StoredOutcome {
                status,
                result: (self.flags & HAS_RESULT != 0).then(|| self.data[self.id_len as usize..].to_vec()),
            }),
        };
        InboxRecord {
            fingerprint: (self.flags & HAS_FINGERPRINT != 0).then_some(Fingerprint(self.fingerprint)),
            token: self.token,
            state,
            expires_at: Timestamp(self.expires_at),
        }
    }

    fn new(id: &str, hash: u32, rec: &InboxRecord) -> Slot {
        let mut flags = 0;
        let (lease_until, result) = match &rec.state {
            RecordState::InProgress { lease_until } => (lease_until.0, None),
            RecordState::Completed(o) => {
                flags |= o.status.to_code();
                (0, o.result.as_deref())
            }
        };
        if result.is_some() {
            flags |= HAS_RESULT;
        }
        if rec.fingerprint.is_some() {
            flags |= HAS_FINGERPRINT;
        }
        debug_assert!(
            flags & STATE_MASK != IN_PROGRESS || matches!(rec.state, RecordState::InProgress { .. })
        );
        let mut data = Vec::with_capacity(id.len() + result.map_or(0, <[u8]>::len));
        data.extend_from_slice(id.as_bytes());
        data.extend_from_slice(result.unwrap_or_default());
        Slot {
            data: data.into_boxed_slice(),
            token: rec.token,
            expires_at: rec.expires_at.0,
            lease_until,
            fingerprint: rec.fingerprint.map_or([0; 16], |f| f.0),
            hash,
            // Ids are validated to at most 512 bytes before they reach a store.
            id_len: u16::try_from(id.len()).unwrap_or(u16::MAX),
            flags,
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            tokens: AtomicU64::new(0),
            hasher: DefaultHashBuilder::default(),
            outbox: outbox::Queues::default(),
        }
    }

    /// How many records (live or expired, not yet collected) the store holds.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().scopes.values().map(|t| t.index.len()).sum::<usize>()).sum()
    }

    /// Whether the store holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn next_token(&self) -> u64 {
        self.tokens.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn hash_of(&self, id: &str) -> IdHash {
        IdHash(self.hasher.hash_one(id.as_bytes()))
    }

    fn shard_of(&self, hash: IdHash) -> &Mutex<Shard> {
        &self.shards[hash.shard()]
    }

    fn apply_sync(&self, scope: &str, now: Timestamp, op: &InboxOp) -> OpAnswer {
        let id = op.id();
        let hash = self.hash_of(id);
        let mut shard = self.shard_of(hash).lock();
        let table = match shard.scopes.get_mut(scope) {
            Some(t) => t,
            None => shard.scopes.entry(scope.into()).or_default(),
        };
        // One probe finds the id's slot or the place its index entry goes.
        let Table { index, slots, free } = table;
        let h = hash.table();
        let entry = index.entry(
            widen(h),
            |i| slots[i as usize].is(h, id),
            // Rebuilding when it grows: every slot in use, read in order.
            || {
                let slots = &*slots;
                (0..slots.len() as u32)
                    .filter(|&i| !slots[i as usize].is_free())
                    .map(|i| (i, widen(slots[i as usize].hash)))
            },
        );
        let existing = match entry {
            Entry::Occupied(_, i) => Some(slots[i as usize].record()),
            Entry::Vacant(_) => None,
        };
        let (write, answer) = decide(op, existing.as_ref(), now, &mut || self.next_token());
        match (write, entry) {
            (Write::Keep, _) => {}
            (Write::Put(rec), Entry::Occupied(_, i)) => slots[i as usize] = Slot::new(id, h, &rec),
            (Write::Put(rec), Entry::Vacant(pos)) => {
                let slot = Slot::new(id, h, &rec);
                let i = match free.pop() {
                    Some(i) => {
                        slots[i as usize] = slot;
                        i
                    }
                    None => {
                        slots.push(slot);
                        (slots.len() - 1) as u32
                    }
                };
                index.insert(pos, widen(h), i);
            }
            (Write::Delete, Entry::Occupied(pos, i)) => {
                index.remove_at(pos);
                Table::free_slot(slots, free, i);
            }
            (Write::Delete, Entry::Vacant(_)) => {}
        }
        answer
    }
}

/// The hash of an id. Its low bits choose the shard; its high 32 bits are the id's hash within
/// the shard's table, so the two are independent (a table whose hashes all shared their top
/// bits would match many slots on every probe).
#[derive(Clone, Copy)]
struct IdHash(u64);

impl IdHash {
    fn shard(self) -> usize {
        self.0 as usize % SHARDS
    }

    fn table(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// A slot's 32-bit table hash as the 64 bits the index wants: the low bits (the bucket) are the
/// hash's own, the top bits (the probe's tag) a mix of all of them.
fn widen(hash: u32) -> u64 {
    u64::from(hash).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl Table {
    /// The slot holding `id`, whose table hash is `hash`.
    fn find(&self, hash: u32, id: &str) -> Option<u32> {
        self.index.find(widen(hash), |i| self.slots[i as usize].is(hash, id))
    }

    fn remove(&mut self, i: u32) {
        self.index.remove(widen(self.slots[i as usize].hash), i);
        Table::free_slot(&mut self.slots, &mut self.free, i);
    }

    /// Empties slot `i` (already out of the index) for reuse.
    fn free_slot(slots: &mut [Slot], free: &mut Vec<u32>, i: u32) {
        slots[i as usize] = Slot {
            data: Box::default(),
            token: 0,
            expires_at: 0,
            lease_until: 0,
            fingerprint: [0; 16],
            hash: 0,
            id_len: 0,
            flags: FREE,
        };
        free.push(i);
    }
}

impl InboxStore for MemoryStore {
    async fn apply(&self, scope: &str, now: Timestamp, ops: Vec<InboxOp>) -> Result<Vec<OpAnswer>> {
        // Each id is decided under its shard's lock; a batch in memory is "committed" as soon as
        // each operation is applied, which is as durable as memory gets.
        Ok(ops.iter().map(|op| self.apply_sync(scope, now, op)).collect())
    }

    async fn apply_one(&self, scope: &str, now: Timestamp, op: InboxOp) -> Result<OpAnswer> {
        Ok(self.apply_sync(scope, now, &op))
    }

    async fn apply_ref(&self, scope: &str, now: Timestamp, op: &InboxOp) -> Result<OpAnswer> {
        Ok(self.apply_sync(scope, now, op))
    }

    async fn get(&self, scope: &str, id: &str) -> Result<Option<InboxRecord>> {
        let hash = self.hash_of(id);
        let shard = self.shard_of(hash).lock();
        Ok(shard
            .scopes
            .get(scope)
            .and_then(|t| t.find(hash.table(), id).map(|i| t.slots[i as usize].record())))
    }

    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64> {
        let mut purged = 0u64;
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            for table in shard.scopes.values_mut() {
                let expired: Vec<u32> = (0..table.slots.len() as u32)
                    .filter(|&i| {
                        let s = &table.slots[i as usize];
                        !s.is_free() && s.expires_at <= now.0
                    })
                    .take(limit.saturating_sub(purged as usize))
                    .collect();
                for i in expired {
                    table.remove(i);
                    purged += 1;
                }
            }
        }
        Ok(purged)
    }

    async fn scope_counts(&self, now: Timestamp) -> Result<Vec<crate::records::ScopeCounts>> {
        let mut by_scope: std::collections::BTreeMap<String, crate::records::ScopeCounts> =
            std::collections::BTreeMap::new();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            for (scope, table) in &shard.scopes {
                for slot in table.slots.iter().filter(|s| !s.is_free()) {
                    let counts = by_scope.entry(scope.to_string()).or_insert_with(|| {
                        crate::records::ScopeCounts { scope: scope.to_string(), ..Default::default() }
                    });
                    counts.add(i64::from(slot.flags & STATE_MASK), now.0 < slot.expires_at, 1)?;
                }
            }
        }
        Ok(by_scope.into_values().filter(|c| c.total() > 0).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_is_64_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 64);
    }
}
