//! Publishing: the store's rows as an immutable [`Snapshot`], encoding and
//! moving only what was written since the last publish.

use super::{Pending, Store};
use crate::presence::entry::Millis;
pub(crate) use crate::presence::row::encode;
use crate::presence::snapshot::{Snapshot, SnapshotEntry};

/// Most rows' room the map of rows being written keeps between publishes
/// when a publish took far fewer rows than that.
pub(super) const SHRINK_ABOVE: usize = 4096;

impl Store {
    /// Builds the snapshot for the current state. The version rises by one
    /// if anything changed since the last publish. Only rows written or
    /// removed since then are touched: each written row is encoded once
    /// and moved to its place in the list, each removed one dropped, and
    /// the list shares everything else with the last snapshot.
    pub fn publish(&mut self, now: Millis) -> Snapshot {
        if self.changed {
            self.version += 1;
            self.change_version = self.version;
        } else if self.renewed {
            self.version += 1;
        }
        self.changed = false;
        self.renewed = false;
        // Drops first: a key removed and written again since the last
        // publish is listed once, with its new row. Both batches go to the
        // list in list order, each in one walk (`list/batch.rs`).
        let mut removed = std::mem::take(&mut self.unlisted);
        let mut added = Vec::with_capacity(self.pending.len());
        // In slot order, not the map's: reading the slots walks the slab
        // forward, and rows created in list order (a fill, a reset) reach
        // the list's sort nearly sorted, as they did in write order.
        let mut drained: Vec<_> = self.pending.drain().collect();
        drained.sort_unstable_by_key(|(id, _)| *id);
        for (id, pending) in drained {
            let slot = self.slots[id].as_ref().expect("pending names live slots");
            let Pending {
                entry,
                origin,
                listed,
            } = *pending;
            if let Some(ts) = listed {
                removed.push((ts, slot.key.clone()));
            }
            // From here the slot is listed at `age.0`.
            debug_assert_eq!(slot.age.0, entry.ts, "a slot's age is its entry's ts");
            self.row_seq += 1;
            added.push(SnapshotEntry {
                key: slot.key.clone(),
                json: encode(&entry),
                ts: entry.ts,
                gateway: self.gateways.name(slot.gateway).cloned(),
                seq: self.row_seq,
                live: slot.live,
                pinned: slot.pinned,
                origin,
            });
        }
        // A restore or a fleet reset writes every row at once: its map is
        // not kept for the few rows later publishes write. A writer under
        // steady load, whose publishes each take about as many rows, keeps
        // its map instead of growing a new one every publish.
        let room = self.pending.capacity();
        if room > SHRINK_ABOVE && room > 4 * added.len() {
            self.pending = Default::default();
        }
        let found = self.list.remove_rows(&mut removed);
        debug_assert_eq!(found, removed.len(), "removed names rows of the list");
        removed.clear();
        self.unlisted = removed;
        self.list.insert_rows(added);
        self.list.seal();

        self.self_entry.ts = now;
        self.row_seq += 1;
        let own = SnapshotEntry {
            key: self.self_key.clone(),
            json: encode(&self.self_entry),
            ts: now,
            gateway: self.local_gateway.clone(),
            seq: self.row_seq,
            live: true,
            pinned: true,
            origin: self.self_origin.clone(),
        };
        let pressure = self.removals.pressure(now);
        Snapshot::new(self.version, now, own, self.list.clone(), pressure)
            .with_change_version(self.change_version)
            .with_local_rows(self.local)
    }
}
