//! The store's two ways to a slot, each naming it by a 4-byte id (issue
//! 19): the index from key to slot, a hash table that hashes and compares
//! the keys the slots hold, so the key is not stored again and the index
//! costs about 5 bytes per bucket instead of a `HashMap<Key, usize>`'s 25;
//! and the expiry order, a B-tree of ages and ids packed into 16 bytes,
//! whose 32-bit write sequence ([`Store::next_seq`]) numbers the live rows
//! again, in order, when it runs out.
//!
//! Invariant (the store's): each holds exactly the live slots' ids, each
//! once; the index was told each one's key by its slot when it was added.

use super::{Slot, SlotId, Store};
use crate::presence::entry::Millis;
use crate::presence::key::Key;
use hashbrown::HashTable;
use std::collections::BTreeSet;
use std::hash::{BuildHasher, RandomState};

/// Key → slot, for the slots of one store.
#[derive(Debug, Default)]
pub(super) struct Index {
    table: HashTable<u32>,
    hasher: RandomState,
}

fn key_of(slots: &[Option<Slot>], id: u32) -> &Key {
    let slot = slots[id as usize].as_ref();
    &slot.expect("the index names only live slots").key
}

impl Index {
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    /// The slot under `key`.
    pub(super) fn get(&self, key: &Key, slots: &[Option<Slot>]) -> Option<SlotId> {
        let hash = self.hasher.hash_one(key);
        let found = self.table.find(hash, |&id| key_of(slots, id) == key);
        found.map(|&id| id as SlotId)
    }

    /// Adds live slot `id`, whose key the index does not hold.
    pub(super) fn insert(&mut self, id: SlotId, slots: &[Option<Slot>]) {
        let short = u32::try_from(id).expect("fewer than 2^32 slots");
        let hasher = &self.hasher;
        let hash = hasher.hash_one(key_of(slots, short));
        self.table
            .insert_unique(hash, short, |&id| hasher.hash_one(key_of(slots, id)));
    }

    /// Drops slot `id`, indexed under `key` (its slot may be gone already).
    pub(super) fn remove(&mut self, key: &Key, id: SlotId) {
        let hash = self.hasher.hash_one(key);
        if let Ok(found) = self.table.find_entry(hash, |&other| other as SlotId == id) {
            found.remove();
        }
    }

    /// Every indexed slot, in no order.
    pub(super) fn ids(&self) -> impl Iterator<Item = SlotId> + '_ {
        self.table.iter().map(|&id| id as SlotId)
    }
}

impl Store {
    /// The sequence number of a new write: above every live row's. Once
    /// the 32 bits run out, the live rows are numbered again from 1 in
    /// their order (O(n log n), once per 4 billion writes), so the order
    /// of ages never changes.
    pub(super) fn next_seq(&mut self) -> u32 {
        if self.write_seq == u32::MAX {
            let order: Vec<SlotId> = self.by_age.iter().map(|(_, id)| id).collect();
            self.by_age = Ages::default();
            for (n, &id) in order.iter().enumerate() {
                let seq = u32::try_from(n + 1).expect("fewer than 2^32 - 1 rows");
                let slot = self.slot_mut(id);
                slot.age.1 = seq;
                let age = slot.age;
                self.by_age.insert(age, id);
            }
            self.write_seq = u32::try_from(order.len()).expect("fewer than 2^32 - 1 rows");
            self.numbering = self.numbering.wrapping_add(1);
        }
        self.write_seq += 1;
        self.write_seq
    }
}

/// A row's place in the expiry order: its `ts`, then the write sequence
/// (`Store::next_seq`).
pub(super) type Age = (Millis, u32);

/// The live slots by [`Age`], oldest first: a B-tree of 16-byte keys, each
/// an age and its slot id packed into one `u128` that orders as (`ts`,
/// sequence) (the sequence is unique, so the id never decides), so a
/// leaf fits mimalloc's 192-byte class, not the 256 of a map from a
/// 16-byte age to a 4-byte id (issue 19).
#[derive(Debug, Default)]
pub(super) struct Ages(BTreeSet<u128>);

/// `age`, then `id`, as one number ordered as (`ts`, sequence, id).
fn pack(age: Age, id: u32) -> u128 {
    // The sign bit flipped: `i64` order as `u64` order.
    let ts = (age.0 as u64) ^ (1 << 63);
    u128::from(ts) << 64 | u128::from(age.1) << 32 | u128::from(id)
}

fn unpack(packed: u128) -> (Age, SlotId) {
    let ts = ((packed >> 64) as u64 ^ (1 << 63)) as Millis;
    ((ts, (packed >> 32) as u32), packed as u32 as SlotId)
}

impl Ages {
    pub(super) fn insert(&mut self, age: Age, id: SlotId) {
        let short = u32::try_from(id).expect("fewer than 2^32 slots");
        self.0.insert(pack(age, short));
    }

    /// Removes the slot at `age`, and says which it was.
    pub(super) fn remove(&mut self, age: &Age) -> Option<SlotId> {
        let found = *self.0.range(pack(*age, 0)..=pack(*age, u32::MAX)).next()?;
        self.0.remove(&found);
        Some(unpack(found).1)
    }

    /// Slot `id` moves from `old` to `new`.
    pub(super) fn moved(&mut self, old: &Age, new: Age, id: SlotId) {
        let short = u32::try_from(id).expect("fewer than 2^32 slots");
        self.0.remove(&pack(*old, short));
        self.0.insert(pack(new, short));
    }

    /// The oldest.
    pub(super) fn first(&self) -> Option<(Age, SlotId)> {
        self.0.first().map(|&packed| unpack(packed))
    }

    /// Oldest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = (Age, SlotId)> + '_ {
        self.0.iter().map(|&packed| unpack(packed))
    }

    /// The slots after `after` (from the oldest when `None`) whose `ts` is
    /// at most `upto`, oldest first.
    pub(super) fn after(
        &self,
        after: Option<Age>,
        upto: Millis,
    ) -> impl Iterator<Item = (Age, SlotId)> + '_ {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let end = pack((upto, u32::MAX), u32::MAX);
        // Past every id at `after`: a sequence is never shared.
        let start = after.map(|a| pack(a, u32::MAX));
        // An empty range when the pass is past `upto` (`range` panics
        // on a start beyond its end).
        let empty = start.is_some_and(|a| a >= end);
        let start = start.map_or(Unbounded, Excluded);
        let range = (!empty).then(|| self.0.range((start, Included(end))));
        range.into_iter().flatten().map(|&packed| unpack(packed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_ages_order_as_ts_then_sequence() {
        let ages = [
            (Millis::MIN, 0),
            (-1, u32::MAX),
            (0, 0),
            (0, 1),
            (1_780_000_000_000, 7),
            (Millis::MAX, u32::MAX),
        ];
        for pair in ages.windows(2) {
            assert!(pack(pair[0], u32::MAX) < pack(pair[1], 0), "{pair:?}");
        }
        for age in ages {
            assert_eq!(unpack(pack(age, 9)), (age, 9));
        }
        let mut set = Ages::default();
        set.insert((5, 2), 1);
        set.insert((5, 1), 2);
        set.insert((-3, 9), 3);
        assert_eq!(set.first(), Some(((-3, 9), 3)));
        let ids = |after, upto| set.after(after, upto).map(|(_, id)| id).collect::<Vec<_>>();
        assert_eq!(ids(None, 5), [3, 2, 1]);
        assert_eq!(ids(None, 4), [3]);
        assert_eq!(ids(Some((5, 1)), 5), [1]);
        assert_eq!(ids(Some((5, 2)), 5), [0; 0]);
        assert_eq!(ids(Some((6, 0)), 5), [0; 0], "past upto");
        assert_eq!(set.remove(&(5, 1)), Some(2));
        assert_eq!(set.remove(&(5, 1)), None);
        set.moved(&(5, 2), (-4, 10), 1);
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [((-4, 10), 1), ((-3, 9), 3)]
        );
    }
}
