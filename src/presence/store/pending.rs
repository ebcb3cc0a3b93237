//! Rows being written: a slot's entry is kept parsed, with its provenance,
//! only from its first write after a publish to the next publish (in
//! `Store::pending`, by slot); the rest of the time the list's row holds
//! both (the entry as JSON), and the slot only where to find it.

use super::{SlotId, Store};
use crate::presence::entry::{Entry, Millis, Patch};
use crate::presence::provenance::Origin;
use crate::presence::row::SnapshotEntry;
use std::borrow::Cow;

/// A row written since the last publish.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) entry: Entry,
    /// Why the row has its key, and who wrote it last. Once published,
    /// only the row in `list` holds it.
    pub(super) origin: Origin,
    /// The `ts` of the slot's row in `list` (the last published one), if
    /// it has one.
    pub(super) listed: Option<Millis>,
}

impl Store {
    /// The `ts` of slot `id`'s row in `list`, if it has one: a slot with
    /// nothing pending is listed at its entry's `ts`.
    pub(super) fn listed(&self, id: SlotId) -> Option<Millis> {
        match self.pending.get(&id) {
            Some(pending) => pending.listed,
            None => Some(self.slot(id).age.0),
        }
    }

    /// Slot `id`'s entry: the one written since the last publish, or its
    /// listed row's, parsed.
    pub(super) fn entry_of(&self, id: SlotId) -> Cow<'_, Entry> {
        match self.pending.get(&id) {
            Some(pending) => Cow::Borrowed(&pending.entry),
            None => Cow::Owned(self.listed_row(id).entry()),
        }
    }

    /// The row of slot `id` in `list`; the slot must have nothing pending.
    pub(super) fn listed_row(&self, id: SlotId) -> &SnapshotEntry {
        debug_assert!(
            !self.pending.contains_key(&id),
            "the row is the pending one"
        );
        let slot = self.slot(id);
        let row = self.list.get(slot.age.0, &slot.key);
        row.expect("a slot with nothing pending has its row in the list")
    }

    /// Slot `id`'s entry and provenance, to write: the slot counts as
    /// written from now on (its listed row is parsed first if it was not
    /// already). Call it before the slot's `age` moves.
    pub(super) fn pending_mut(&mut self, id: SlotId) -> &mut Pending {
        if self.pending.contains_key(&id) {
            return self.pending.get_mut(&id).expect("just found");
        }
        self.start_pending(id, SnapshotEntry::entry)
    }

    /// [`Store::pending_mut`] with `patch` merged into its entry at `now`,
    /// but a published row is read back copying only the fields the patch
    /// keeps (`entry_ref.rs`), not parsed whole first.
    pub(super) fn merge_into(&mut self, id: SlotId, patch: Patch, now: Millis) -> &mut Pending {
        if self.pending.contains_key(&id) {
            let pending = self.pending.get_mut(&id).expect("just found");
            pending.entry.merge(patch, now);
            return pending;
        }
        self.start_pending(id, |row| row.merged(patch, now))
    }

    /// Makes slot `id`, which has nothing pending, written: its pending
    /// entry is `entry` of its listed row, with the row's provenance and
    /// place in `list`.
    pub(super) fn start_pending(
        &mut self,
        id: SlotId,
        entry: impl FnOnce(&SnapshotEntry) -> Entry,
    ) -> &mut Pending {
        let row = self.listed_row(id);
        let pending = Box::new(Pending {
            entry: entry(row),
            origin: row.origin.clone(),
            listed: Some(row.ts),
        });
        self.pending.entry(id).insert(pending).into_mut()
    }

    /// Slot `id`'s entry, to write; see [`Store::pending_mut`].
    pub(super) fn entry_mut(&mut self, id: SlotId) -> &mut Entry {
        &mut self.pending_mut(id).entry
    }
}
