//! Publishing: the store's rows as an immutable [`Snapshot`], encoding
//! only what was written since the last publish.

use super::Store;
use crate::presence::entry::{Entry, Millis};
use crate::presence::snapshot::{Snapshot, SnapshotEntry};
use bytes::Bytes;
use std::cmp::Ordering;
use std::sync::Arc;

impl Store {
    /// Builds the snapshot for the current state. The version rises by one
    /// if anything changed since the last publish. Only entries written
    /// since then are encoded again, and only they are sorted: the rest
    /// keep their order from the last publish.
    pub fn publish(&mut self, now: Millis) -> Snapshot {
        if self.changed {
            self.version += 1;
            self.change_version = self.version;
        } else if self.renewed {
            self.version += 1;
        }
        self.changed = false;
        self.renewed = false;
        // The rows written since the last publish, once each, in list
        // order. A slot listed twice (written, removed, reused) compares
        // equal to itself, so sorting puts its copies side by side.
        let mut written = std::mem::take(&mut self.written);
        written.retain(|&id| self.slots[id].as_ref().is_some_and(|s| s.json.is_none()));
        written.sort_unstable_by(|&a, &b| self.slot(a).list_cmp(self.slot(b)));
        written.dedup();
        // The rows of the last publish that are still there and were not
        // written since: their relative order still holds.
        let mut kept = std::mem::take(&mut self.listed);
        kept.retain(|&id| self.slots[id].as_ref().is_some_and(|s| s.json.is_some()));
        for &id in &written {
            let slot = self.slots[id]
                .as_mut()
                .expect("written keeps only live slots");
            slot.json = Some(encode(&slot.entry));
        }

        let mut listed = Vec::with_capacity(kept.len() + written.len());
        let (mut a, mut b) = (kept.iter().peekable(), written.iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(&&x), Some(&&y)) => {
                    if self.slot(y).list_cmp(self.slot(x)) == Ordering::Less {
                        b.next()
                    } else {
                        a.next()
                    }
                }
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => break,
            };
            listed.extend(next);
        }
        written.clear();
        self.written = written;

        let mut rows = Vec::with_capacity(listed.len() + 1);
        self.self_entry.ts = now;
        rows.push(SnapshotEntry {
            key: self.self_key.clone(),
            entry: Arc::new(self.self_entry.clone()),
            json: encode(&self.self_entry),
            live: true,
            pinned: true,
            origin: Arc::clone(&self.self_origin),
        });
        rows.extend(listed.iter().map(|&id| {
            let slot = self.slot(id);
            SnapshotEntry {
                key: slot.key.clone(),
                entry: Arc::clone(&slot.entry),
                json: slot
                    .json
                    .clone()
                    .expect("every listed slot was encoded above or before"),
                live: slot.live,
                pinned: slot.pinned,
                origin: Arc::clone(&slot.origin),
            }
        }));
        self.listed = listed;
        let pressure = self.removals.pressure(now);
        Snapshot::build(self.version, now, rows, &self.lists)
            .with_pressure(pressure)
            .with_change_version(self.change_version)
    }
}

/// Writes a row's JSON the way every snapshot carries it.
pub(crate) fn encode(entry: &Entry) -> Bytes {
    let mut out = Vec::with_capacity(256);
    serde_json::to_writer(&mut out, entry).expect("an Entry always encodes");
    Bytes::from(out)
}
