//! The store's index from key to slot: a hash table of 4-byte slot ids
//! that hashes and compares the keys the slots hold, so a key is stored
//! once (in its slot), and the index costs about 5 bytes per bucket
//! instead of a `HashMap<Key, usize>`'s 25 (issue 19).
//!
//! Invariant (the store's): the table holds exactly the live slots' ids,
//! each once, and was told each one's key by its slot when it was added.

use super::{Slot, SlotId};
use crate::presence::key::Key;
use hashbrown::HashTable;
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
