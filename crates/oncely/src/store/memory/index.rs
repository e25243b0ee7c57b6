//! The memory store's hash index: slot numbers by id hash, laid out so that a probe and the
//! insert that follows it touch one cache line.
//!
//! Open addressing over groups of [`LANES`] entries, one group per 64-byte line: a tag byte and a
//! slot number per lane. A probe starts at the hash's group and visits groups in triangular
//! order until it reaches a group with an empty lane; a removed entry leaves an empty lane when
//! its group already has one (no probe goes past that group), else a tombstone. At most 7/8 of
//! the lanes are used (entries and tombstones), so every probe ends.

/// Lanes per group.
const LANES: usize = 12;
const EMPTY: u8 = 0;
const DELETED: u8 = 1;
/// The tag of the four bytes after the last lane's (they fill the line, and let a group's tags
/// be compared 16 at a time); never a lane's tag.
const PAD: u8 = 2;

/// One cache line: `LANES` tags (and padding), then `LANES` slot numbers.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Group {
    tags: [u8; 16],
    slots: [u32; LANES],
}

const EMPTY_GROUP: Group = {
    let mut tags = [EMPTY; 16];
    let mut i = LANES;
    while i < tags.len() {
        tags[i] = PAD;
        i += 1;
    }
    Group { tags, slots: [0; LANES] }
};

impl Group {
    /// The lanes whose tag passes `test`, as bits (written to compile to one vector compare).
    #[inline(always)]
    fn lanes(&self, test: impl Fn(u8) -> bool) -> Lanes {
        let mut bits = 0u16;
        for (i, &t) in self.tags.iter().enumerate() {
            bits |= u16::from(test(t)) << i;
        }
        Lanes(bits & ((1 << LANES) - 1))
    }

    fn with_tag(&self, tag: u8) -> Lanes {
        self.lanes(|t| t == tag)
    }

    fn empty(&self) -> Lanes {
        self.lanes(|t| t == EMPTY)
    }

    /// Empty or deleted.
    fn free(&self) -> Lanes {
        self.lanes(|t| t <= DELETED)
    }
}

/// A set of lanes of one group.
#[derive(Clone, Copy)]
struct Lanes(u16);

impl Lanes {
    fn any(self) -> bool {
        self.0 != 0
    }

    fn first(self) -> Option<usize> {
        self.any().then(|| self.0.trailing_zeros() as usize)
    }
}

impl Iterator for Lanes {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let lane = self.first()?;
        self.0 &= self.0 - 1;
        Some(lane)
    }
}

/// Where an entry is, or goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Pos {
    group: usize,
    lane: usize,
}

/// The answer of [`Index::entry`].
#[derive(Clone, Copy)]
pub(super) enum Entry {
    /// The entry that matched, and its slot number.
    Occupied(Pos, u32),
    /// No entry matched; this lane is where one goes ([`Index::insert`]).
    Vacant(Pos),
}

#[derive(Default)]
pub(super) struct Index {
    groups: Vec<Group>,
    items: usize,
    /// Lanes that may still be filled before the index must grow (empty ones beyond the 7/8).
    growth_left: usize,
}

/// The tag of a hash: never EMPTY, DELETED or PAD.
fn tag(hash: u64) -> u8 {
    ((hash >> 56) as u8).max(PAD + 1)
}

impl Index {
    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.items
    }

    /// The groups a probe for `hash` visits, in order (every group, eventually).
    fn probe(&self, hash: u64) -> impl Iterator<Item = usize> {
        let mask = self.groups.len().wrapping_sub(1);
        let mut group = hash as usize & mask;
        let mut stride = 0;
        std::iter::from_fn(move || {
            let this = group;
            stride += 1;
            group = (group + stride) & mask;
            Some(this)
        })
    }

    /// The slot number of the entry with `hash` that `eq` accepts.
    pub fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.groups.is_empty() {
            return None;
        }
        let tag = tag(hash);
        for g in self.probe(hash) {
            let group = &self.groups[g];
            if let Some(lane) = group.with_tag(tag).find(|&lane| eq(group.slots[lane])) {
                return Some(group.slots[lane]);
            }
            if group.empty().any() {
                return None;
            }
        }
        None
    }

    /// The entry with `hash` that `eq` accepts, or the lane where it would go. Makes room first
    /// (so the vacant lane can be filled) when it must, rebuilding from `entries()`: every entry
    /// the index holds, as (slot number, hash), each once.
    pub fn entry<I: IntoIterator<Item = (u32, u64)>>(
        &mut self,
        hash: u64,
        mut eq: impl FnMut(u32) -> bool,
        entries: impl FnOnce() -> I,
    ) -> Entry {
        if self.growth_left == 0 {
            self.grow(entries());
        }
        let tag = tag(hash);
        let mut vacant = None;
        for g in self.probe(hash) {
            let group = &self.groups[g];
            if let Some(lane) = group.with_tag(tag).find(|&lane| eq(group.slots[lane])) {
                return Entry::Occupied(Pos { group: g, lane }, group.slots[lane]);
            }
            if vacant.is_none() {
                vacant = group.free().first().map(|lane| Pos { group: g, lane });
            }
            if group.empty().any() {
                break;
            }
        }
        Entry::Vacant(vacant.expect("a probe that ends at an empty lane has seen one"))
    }

    /// Fills the vacant lane `pos` (from [`Index::entry`], with no change since) with `slot`.
    pub fn insert(&mut self, pos: Pos, hash: u64, slot: u32) {
        let group = &mut self.groups[pos.group];
        if group.tags[pos.lane] == EMPTY {
            self.growth_left -= 1;
        }
        group.tags[pos.lane] = tag(hash);
        group.slots[pos.lane] = slot;
        self.items += 1;
    }

    /// Removes the entry at `pos`.
    pub fn remove_at(&mut self, pos: Pos) {
        let group = &mut self.groups[pos.group];
        // A group that already has an empty lane ends every probe that reaches it, so a second
        // empty lane hides nothing; otherwise probes must go on past this lane: a tombstone.
        if group.empty().any() {
            group.tags[pos.lane] = EMPTY;
            self.growth_left += 1;
        } else {
            group.tags[pos.lane] = DELETED;
        }
        self.items -= 1;
    }

    /// Removes the entry with `hash` for `slot`; says whether there was one.
    pub fn remove(&mut self, hash: u64, slot: u32) -> bool {
        if self.groups.is_empty() {
            return false;
        }
        let tag = tag(hash);
        let mut found = None;
        for g in self.probe(hash) {
            let group = &self.groups[g];
            if let Some(lane) = group.with_tag(tag).find(|&lane| group.slots[lane] == slot) {
                found = Some(Pos { group: g, lane });
                break;
            }
            if group.empty().any() {
                break;
            }
        }
        found.map(|pos| self.remove_at(pos)).is_some()
    }

    /// Rebuilds the index with room for at least one more entry: twice as large when more than
    /// half full of entries, else the same size without tombstones.
    /// (The caller's list of entries is read in its own order — for the memory store, its
    /// slots in turn — rather than by following the old groups to each slot.)
    fn grow(&mut self, entries: impl IntoIterator<Item = (u32, u64)>) {
        let lanes = self.groups.len() * LANES;
        let groups = if self.items + 1 > capacity(lanes) / 2 {
            (self.groups.len() * 2).max(1)
        } else {
            self.groups.len()
        };
        self.groups = vec![EMPTY_GROUP; groups];
        let mut items = 0;
        for (slot, hash) in entries {
            let pos = self
                .probe(hash)
                .find_map(|g| self.groups[g].empty().first().map(|lane| Pos { group: g, lane }))
                .expect("a grown index has empty lanes");
            let g = &mut self.groups[pos.group];
            g.tags[pos.lane] = tag(hash);
            g.slots[pos.lane] = slot;
            items += 1;
        }
        debug_assert_eq!(items, self.items, "the entries given to rebuild from are the index's own");
        self.growth_left = capacity(groups * LANES) - self.items;
    }
}

/// How many of `lanes` may be used (entries and tombstones): 7/8.
fn capacity(lanes: usize) -> usize {
    lanes - lanes / 8
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn a_group_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Group>(), 64);
        assert_eq!(std::mem::align_of::<Group>(), 64);
    }

    /// Random inserts and removals, with hashes from a small set (long probes, many
    /// tombstones), against a map: every entry is found, nothing else is.
    #[test]
    fn agrees_with_a_map() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for (hashes, slots) in [(3u64, 300u64), (40, 1_000), (5_000, 3_000)] {
            let hash_of = |slot: u32| (u64::from(slot) % hashes).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut index = Index::default();
            let mut model: HashMap<u32, ()> = HashMap::new();
            for _ in 0..40_000 {
                let slot = (next() % slots) as u32;
                let hash = hash_of(slot);
                if next() % 3 == 0 {
                    assert_eq!(index.remove(hash, slot), model.remove(&slot).is_some());
                } else {
                    let entries = || model.keys().map(|&s| (s, hash_of(s))).collect::<Vec<_>>();
                    match index.entry(hash, |s| s == slot, entries) {
                        Entry::Occupied(_, s) => {
                            assert_eq!(s, slot);
                            assert!(model.contains_key(&slot));
                            if next() % 2 == 0 {
                                let Entry::Occupied(pos, _) = index.entry(hash, |s| s == slot, Vec::new)
                                else {
                                    panic!()
                                };
                                index.remove_at(pos);
                                model.remove(&slot);
                            }
                        }
                        Entry::Vacant(pos) => {
                            assert!(!model.contains_key(&slot));
                            index.insert(pos, hash, slot);
                            model.insert(slot, ());
                        }
                    }
                }
                assert_eq!(index.len(), model.len());
            }
            for slot in 0..slots as u32 {
                let found = index.find(hash_of(slot), |s| s == slot);
                assert_eq!(found.is_some(), model.contains_key(&slot), "slot {slot}");
            }
        }
    }
}
