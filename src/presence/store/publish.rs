//! Publishing: the store's rows as an immutable [`Snapshot`], encoding and
//! moving only what was written since the last publish.

use super::Store;
use crate::presence::entry::{Entry, Millis};
use crate::presence::snapshot::{Snapshot, SnapshotEntry};
use bytes::Bytes;
use std::sync::Arc;

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
        // publish is listed once, with its new row.
        for (ts, key) in self.unlisted.drain(..) {
            let found = self.list.remove(ts, &key);
            debug_assert!(found, "unlisted names rows of the list");
        }
        let mut written = std::mem::take(&mut self.written);
        for id in written.drain(..) {
            // A slot named twice, or removed since, is skipped here.
            let Some(slot) = self.slots[id].as_mut().filter(|slot| slot.dirty) else {
                continue;
            };
            slot.dirty = false;
            if let Some(ts) = slot.listed.take() {
                let found = self.list.remove(ts, &slot.key);
                debug_assert!(found, "a listed slot has its row in the list");
            }
            slot.listed = Some(slot.entry.ts);
            self.list.insert(SnapshotEntry {
                key: slot.key.clone(),
                entry: Arc::clone(&slot.entry),
                json: encode(&slot.entry),
                live: slot.live,
                pinned: slot.pinned,
                origin: Arc::clone(&slot.origin),
            });
        }
        self.written = written;
        self.list.seal();

        self.self_entry.ts = now;
        let own = SnapshotEntry {
            key: self.self_key.clone(),
            entry: Arc::new(self.self_entry.clone()),
            json: encode(&self.self_entry),
            live: true,
            pinned: true,
            origin: Arc::clone(&self.self_origin),
        };
        let pressure = self.removals.pressure(now);
        Snapshot::new(self.version, now, own, self.list.clone(), pressure)
            .with_change_version(self.change_version)
    }
}

/// Writes a row's JSON the way every snapshot carries it.
pub(crate) fn encode(entry: &Entry) -> Bytes {
    let mut out = Vec::with_capacity(256);
    serde_json::to_writer(&mut out, entry).expect("an Entry always encodes");
    Bytes::from(out)
}
