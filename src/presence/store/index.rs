//! The store's two ways to a slot, each naming it by a 4-byte id (issue
//! 19): the index from key to slot, a hash table that hashes and compares
//! the keys the slots hold, so the key is not stored again and the index
//! costs about 5 bytes per bucket instead of a `HashMap<Key, usize>`'s 25;
//! and the expiry order, a B-tree of ages.
//!
//! Invariant (the store's): each holds exactly the live slots' ids, each
//! once; the index was told each one's key by its slot when it was added.

use super::{Slot, SlotId};
use crate::presence::entry::Millis;
use crate::presence::key::Key;
use hashbrown::HashTable;
use std::collections::BTreeMap;
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

/// A row's place in the expiry order: its `ts`, then the write sequence.
pub(super) type Age = (Millis, u64);

/// The live slots by [`Age`], oldest first: a B-tree whose values are
/// 4-byte slot ids (a leaf fits mimalloc's 256-byte class, not 320).
#[derive(Debug, Default)]
pub(super) struct Ages(BTreeMap<Age, u32>);

impl Ages {
    pub(super) fn insert(&mut self, age: Age, id: SlotId) {
        let short = u32::try_from(id).expect("fewer than 2^32 slots");
        self.0.insert(age, short);
    }

    pub(super) fn remove(&mut self, age: &Age) -> Option<SlotId> {
        self.0.remove(age).map(|id| id as SlotId)
    }

    /// Slot `id` moves from `old` to `new`.
    pub(super) fn moved(&mut self, old: &Age, new: Age, id: SlotId) {
        self.remove(old);
        self.insert(new, id);
    }

    /// The oldest.
    pub(super) fn first(&self) -> Option<(Age, SlotId)> {
        self.0
            .first_key_value()
            .map(|(&age, &id)| (age, id as SlotId))
    }

    /// Oldest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = (Age, SlotId)> + '_ {
        self.0.iter().map(|(&age, &id)| (age, id as SlotId))
    }

    /// The slots after `after` (from the oldest when `None`) whose `ts` is
    /// at most `upto`, oldest first.
    pub(super) fn after(
        &self,
        after: Option<Age>,
        upto: Millis,
    ) -> impl Iterator<Item = (Age, SlotId)> + '_ {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let end = Included((upto, u64::MAX));
        let start = after.map_or(Unbounded, Excluded);
        // An empty range when the pass is past `upto` (`range` panics
        // on a start beyond its end).
        let empty = after.is_some_and(|a| a >= (upto, u64::MAX));
        let range = (!empty).then(|| self.0.range((start, end)));
        range
            .into_iter()
            .flatten()
            .map(|(&age, &id)| (age, id as SlotId))
    }
}
