//! The store's side of fleets and warm restarts: rows written elsewhere
//! enter here, through [`Store::apply_remote`], under the rule of
//! [`arbitrate`].
//!
//! Invariants kept (besides the store's own):
//! - a remote row keeps the `ts` its origin wrote, except that while its
//!   origin says it is live (and the origin's lease holds) this gateway
//!   renews it like its own live rows and never expires it (docs/protocol.md
//!   §5.4); once the origin lapses it ages from the last renewal, that is
//!   from the lapse;
//! - a slot's origin is its entry's `gateway_id`: rows placed here always
//!   name a gateway other than this one;
//! - `shadows` holds only live rows of gateways other than the key's
//!   current holder, at most one per key.

use super::{SlotId, Store};
use crate::presence::entry::Millis;
use crate::presence::key::Key;
use crate::presence::provenance::{Origin, Write, WriteKind, Writer};
use crate::presence::remote::{Holder, RemoteOp, RemoteRow, Verdict, arbitrate, mark_disconnected};
use std::collections::HashSet;

impl Store {
    /// Applies a change from another gateway or a previous run.
    pub fn apply_remote(&mut self, op: RemoteOp) {
        match op {
            RemoteOp::Upsert { node, row } => {
                self.put_remote(&node, *row);
            }
            RemoteOp::Remove { node, key } => self.remove_remote(&node, &key),
            RemoteOp::Lapse { node } => self.lapse(&node),
            RemoteOp::Reset { node, rows } => self.reset(&node, rows),
            RemoteOp::Restore { rows } => self.restore(rows),
        }
    }

    /// True if the live row under `key` came from another gateway.
    pub fn is_remote(&self, key: &Key) -> bool {
        self.find(key)
            .is_some_and(|id| self.slot(id).gateway != self.local_id)
    }

    fn holder(&self, id: SlotId) -> (Holder<'_>, Millis) {
        let slot = self.slot(id);
        let holder = if slot.gateway == self.local_id {
            Holder::Local { live: slot.live }
        } else {
            Holder::Remote {
                node: self.gateway_of(id).unwrap_or(""),
                live: slot.live,
            }
        };
        (holder, slot.age.0)
    }

    /// Offers `row`, as `node` holds it, for its key.
    fn put_remote(&mut self, node: &str, mut row: RemoteRow) -> Verdict {
        if row.key == self.self_key || self.local_gateway.as_deref() == Some(node) {
            return Verdict::Ignore;
        }
        row.entry.gateway_id = Some(node.to_owned());
        row.entry.clamp();
        // Whatever `node` said before about this key is out of date.
        if self.shadow_origin(&row.key) == Some(node) {
            self.shadows.remove(&row.key);
        }
        let current = self.find(&row.key).map(|id| self.holder(id));
        let verdict = arbitrate(current, node, row.live, row.entry.ts);
        match verdict {
            Verdict::Apply => {
                if !row.live {
                    if let Some(shadow) = self.shadows.remove(&row.key) {
                        row = shadow;
                    }
                }
                self.place_remote(row);
            }
            Verdict::Shadow => {
                self.shadows.insert(row.key.clone(), row);
            }
            Verdict::Ignore => {}
        }
        verdict
    }

    fn shadow_origin(&self, key: &Key) -> Option<&str> {
        self.shadows.get(key)?.entry.gateway_id.as_deref()
    }

    /// Shows `row` under its key, whatever held it (the caller decided).
    pub(super) fn place_remote(&mut self, row: RemoteRow) {
        let RemoteRow {
            key,
            entry,
            live,
            pinned,
        } = row;
        let write = Write {
            by: Writer::elsewhere(WriteKind::Remote),
            at: entry.ts,
        };
        let Some(id) = self.find(&key) else {
            self.insert_slot(key, entry, Origin::new(write), live, pinned);
            return;
        };
        if self.gateway_of(id) != entry.gateway_id.as_deref() {
            self.shadow_if_remote_live(id);
        }
        let was_local = self.is_local(id);
        let age = (entry.ts, self.next_seq());
        let gateway = self.gateways.acquire(entry.gateway_id.as_deref());
        // The old entry is replaced whole: only its provenance is read
        // back from the list, not its JSON.
        let pending = match self.pending.get_mut(&id) {
            Some(pending) => {
                pending.entry = entry;
                pending
            }
            None => self.start_pending(id, |_| entry),
        };
        pending.origin.record(write);
        let slot = self.slots[id]
            .as_mut()
            .expect("index names only live slots");
        let was_gateway = std::mem::replace(&mut slot.gateway, gateway);
        slot.live = live;
        let was_pinned = std::mem::replace(&mut slot.pinned, pinned);
        let old = std::mem::replace(&mut slot.age, age);
        self.gateways.release(was_gateway);
        self.pinned = self.pinned + usize::from(pinned) - usize::from(was_pinned);
        self.local = self.local + usize::from(self.is_local(id)) - usize::from(was_local);
        self.by_age.moved(&old, age, id);
        self.changed = true;
        self.enforce_cap();
    }

    /// Before slot `id` is overwritten: keeps it as its key's shadow if it
    /// is another gateway's live row.
    pub(super) fn shadow_if_remote_live(&mut self, id: SlotId) {
        let slot = self.slot(id);
        if slot.live && slot.gateway != self.local_id {
            let row = RemoteRow {
                key: slot.key.clone(),
                entry: self.entry_of(id).into_owned(),
                live: true,
                pinned: slot.pinned,
            };
            self.shadows.insert(row.key.clone(), row);
        }
    }

    /// `node` dropped `key`: its row goes, and a shadow takes its place.
    fn remove_remote(&mut self, node: &str, key: &Key) {
        if self.shadow_origin(key) == Some(node) {
            self.shadows.remove(key);
        }
        let Some(id) = self.find(key) else {
            return;
        };
        if self.gateway_of(id) != Some(node) {
            return;
        }
        let age = self.slot(id).age;
        self.by_age.remove(&age);
        self.remove_slot(id);
        self.changed = true;
        if let Some(shadow) = self.shadows.remove(key) {
            self.place_remote(shadow);
        }
    }

    /// The slots whose row came from `node`.
    fn slots_of(&self, node: &str) -> Vec<SlotId> {
        let Some(gateway) = self.gateways.find(node) else {
            return Vec::new();
        };
        self.index
            .ids()
            .filter(|&id| self.slot(id).gateway == gateway)
            .collect()
    }

    /// `node` died: its live rows read as disconnected from now on, with
    /// their `ts` kept; a live shadow from a gateway still alive takes over.
    fn lapse(&mut self, node: &str) {
        self.shadows
            .retain(|_, row| row.entry.gateway_id.as_deref() != Some(node));
        for id in self.slots_of(node) {
            if !self.slot(id).live {
                continue;
            }
            let pending = self.pending_mut(id);
            mark_disconnected(&mut pending.entry);
            let write = Write {
                by: Writer::elsewhere(WriteKind::Lapse),
                at: pending.entry.ts,
            };
            pending.origin.record(write);
            let slot = self.slot_mut(id);
            slot.live = false;
            let key = slot.key.clone();
            self.changed = true;
            if let Some(shadow) = self.shadows.remove(&key) {
                self.place_remote(shadow);
            }
        }
    }

    /// `rows` is all `node` holds: anything else of `node`'s goes.
    fn reset(&mut self, node: &str, rows: Vec<RemoteRow>) {
        let keep: HashSet<&Key> = rows.iter().map(|row| &row.key).collect();
        let gone: Vec<Key> = self
            .slots_of(node)
            .into_iter()
            .map(|id| self.slot(id).key.clone())
            .filter(|key| !keep.contains(key))
            .collect();
        for key in gone {
            self.remove_remote(node, &key);
        }
        self.shadows
            .retain(|_, row| row.entry.gateway_id.as_deref() != Some(node));
        for row in rows {
            self.put_remote(node, row);
        }
    }

    /// Rows of a previous run come back as this gateway's, disconnected,
    /// under keys nothing has written since this run started.
    fn restore(&mut self, rows: Vec<RemoteRow>) {
        for row in rows {
            if row.pinned || row.key == self.self_key || self.find(&row.key).is_some() {
                continue;
            }
            let mut entry = row.entry;
            entry.clamp();
            entry.gateway_id = self.local_gateway.as_deref().map(str::to_owned);
            if row.live {
                mark_disconnected(&mut entry);
            }
            let write = Write {
                by: Writer::elsewhere(WriteKind::Restore),
                at: entry.ts,
            };
            self.insert_slot(row.key, entry, Origin::new(write), false, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::presence::{Entry, Key, Patch, RemoteOp, RemoteRow, Snapshot, Store, StoreConfig};
    use std::time::Duration;

    fn store(max_entries: usize) -> Store {
        let me = Entry {
            instance_id: Some("self-a".into()),
            gateway_id: Some("a".into()),
            text: "Gateway: a".into(),
            ..Entry::default()
        };
        let config = StoreConfig {
            ttl: Duration::from_secs(300),
            max_entries,
        };
        Store::new(config, me)
    }

    fn key(s: &str) -> Key {
        Key::parse(s).unwrap()
    }

    fn row(k: &str, node: &str, live: bool, ts: i64) -> RemoteRow {
        RemoteRow {
            key: key(k),
            entry: Entry {
                host: Some(format!("{k}@{node}")),
                reason: Some(if live { "connect" } else { "disconnect" }.into()),
                gateway_id: Some(node.into()),
                text: k.into(),
                ts,
                ..Entry::default()
            },
            live,
            pinned: false,
        }
    }

    fn upsert(s: &mut Store, node: &str, r: RemoteRow) {
        s.apply_remote(RemoteOp::Upsert {
            node: node.into(),
            row: Box::new(r),
        });
    }

    fn gateway(s: &Store, k: &str) -> Option<String> {
        s.get(&key(k)).and_then(|e| e.gateway_id.clone())
    }

    fn rows(snap: &Snapshot) -> Vec<(String, Option<String>, bool)> {
        let list = snap.entries();
        list.map(|r| (r.key.to_string(), r.entry().reason, r.live))
            .collect()
    }

    #[test]
    fn remote_rows_keep_their_ts_and_origin_and_local_rows_name_this_gateway() {
        let mut s = store(10);
        upsert(&mut s, "b", row("x", "b", true, 7));
        s.upsert(key("y"), Patch::reason("periodic"), 9);
        let x = s.get(&key("x")).unwrap();
        assert_eq!((x.ts, x.gateway_id.as_deref()), (7, Some("b")));
        assert_eq!(gateway(&s, "y").as_deref(), Some("a"));
        let snap = s.publish(10);
        let json = std::str::from_utf8(&snap.entries().nth(2).unwrap().json).unwrap();
        assert!(json.contains(r#""gatewayId":"b""#), "{json}");
        assert_eq!(snap.entries().nth(2).unwrap().ts, 7);
    }

    #[test]
    fn echo_of_own_rows_and_the_self_key_are_ignored() {
        let mut s = store(10);
        upsert(&mut s, "a", row("x", "a", true, 7));
        upsert(&mut s, "b", row("self-a", "b", true, 7));
        assert!(s.is_empty());
    }

    #[test]
    fn late_disconnect_on_the_old_gateway_keeps_the_new_live_row() {
        // This is gateway A: the client connected here, then at B.
        let mut s = store(10);
        s.connect(1, key("x"), Patch::reason("connect"), 5);
        upsert(&mut s, "b", row("x", "b", true, 6));
        assert_eq!(gateway(&s, "x").as_deref(), Some("a"), "live here wins");
        s.disconnect(1, key("x"), false, None, 9);
        let x = s.get(&key("x")).unwrap();
        assert_eq!(x.gateway_id.as_deref(), Some("b"));
        assert_eq!(x.reason.as_deref(), Some("connect"));
        assert!(s.is_remote(&key("x")));
        // And a third gateway's view: B's live row beats A's late close.
        let mut c = store(10);
        upsert(&mut c, "b", row("x", "b", true, 6));
        upsert(&mut c, "a", row("x", "a", false, 9));
        assert_eq!(gateway(&c, "x").as_deref(), Some("b"));
    }

    #[test]
    fn lapse_marks_live_rows_disconnected_without_touching_ts() {
        let mut s = store(10);
        upsert(&mut s, "b", row("x", "b", true, 6));
        upsert(&mut s, "b", row("gone", "b", false, 4));
        upsert(&mut s, "c", row("y", "c", true, 6));
        s.apply_remote(RemoteOp::Lapse { node: "b".into() });
        let snap = s.publish(10);
        let got = rows(&snap);
        assert!(got.contains(&("x".into(), Some("disconnect".into()), false)));
        assert!(got.contains(&("y".into(), Some("connect".into()), true)));
        assert_eq!(s.get(&key("x")).unwrap().ts, 6);
        assert_eq!(s.next_expiry(), Some(4 + 300_000 + 1));
    }

    #[test]
    fn a_live_shadow_takes_over_when_the_holder_lapses() {
        let mut s = store(10);
        upsert(&mut s, "b", row("x", "b", true, 6));
        upsert(&mut s, "c", row("x", "c", true, 5));
        assert_eq!(gateway(&s, "x").as_deref(), Some("b"));
        s.apply_remote(RemoteOp::Lapse { node: "b".into() });
        assert_eq!(gateway(&s, "x").as_deref(), Some("c"));
    }

    #[test]
    fn reset_replaces_every_row_of_one_gateway() {
        let mut s = store(10);
        upsert(&mut s, "b", row("x", "b", true, 6));
        upsert(&mut s, "b", row("y", "b", true, 6));
        upsert(&mut s, "c", row("z", "c", true, 6));
        let rows = vec![row("y", "b", false, 8)];
        s.apply_remote(RemoteOp::Reset {
            node: "b".into(),
            rows,
        });
        assert_eq!(s.get(&key("x")), None);
        assert_eq!(s.get(&key("y")).unwrap().ts, 8);
        assert!(s.get(&key("z")).is_some());
    }

    #[test]
    fn other_gateways_own_entries_are_exempt_from_the_cap() {
        let mut s = store(1);
        let mut peer = row("self-b", "b", true, 1);
        peer.pinned = true;
        upsert(&mut s, "b", peer);
        s.upsert(key("x"), Patch::reason("periodic"), 5);
        s.upsert(key("y"), Patch::reason("periodic"), 6);
        assert!(s.get(&key("self-b")).is_some(), "pinned rows stay");
        assert_eq!(s.get(&key("x")), None, "the oldest unpinned row goes");
        assert_eq!(s.len(), 2);
        assert_eq!(s.stats().evicted, 1);
    }

    #[test]
    fn restored_rows_come_back_disconnected_and_never_overwrite_new_ones() {
        let mut s = store(10);
        s.connect(1, key("y"), Patch::reason("connect"), 50);
        let rows = vec![row("x", "a", true, 6), row("y", "a", false, 7)];
        s.apply_remote(RemoteOp::Restore { rows });
        let x = s.get(&key("x")).unwrap();
        assert_eq!(x.reason.as_deref(), Some("disconnect"));
        assert_eq!((x.ts, x.gateway_id.as_deref()), (6, Some("a")));
        assert_eq!(s.get(&key("y")).unwrap().ts, 50);
        assert!(!s.is_remote(&key("x")));
    }

    #[test]
    fn remove_drops_only_the_origins_row() {
        let mut s = store(10);
        upsert(&mut s, "b", row("x", "b", true, 6));
        s.apply_remote(RemoteOp::Remove {
            node: "c".into(),
            key: key("x"),
        });
        assert!(s.get(&key("x")).is_some());
        s.apply_remote(RemoteOp::Remove {
            node: "b".into(),
            key: key("x"),
        });
        assert_eq!(s.get(&key("x")), None);
        assert_eq!(keys_of(&s.publish(9)), ["self-a"]);
    }

    /// Publishes and checks the writer's count of local rows against a
    /// scan of the list; returns the count.
    fn local_rows(s: &mut Store, now: i64) -> usize {
        let snap = s.publish(now);
        let scanned = snap
            .rows()
            .filter(|r| r.entry().gateway_id.as_deref() == Some("a"))
            .count();
        assert_eq!(snap.local_rows(), scanned, "at {now}");
        scanned
    }

    #[test]
    fn the_count_of_local_rows_matches_a_scan_as_rows_come_and_go() {
        let mut s = store(4);
        s.connect(1, key("x"), Patch::reason("connect"), 1);
        s.upsert(key("y"), Patch::reason("periodic"), 2);
        upsert(&mut s, "b", row("z", "b", false, 3));
        assert_eq!(local_rows(&mut s, 3), 2, "inserts");
        // Takeovers both ways: a live remote row replaces a local row
        // without a connection; a local write takes the remote row back.
        upsert(&mut s, "b", row("y", "b", true, 4));
        assert_eq!(local_rows(&mut s, 4), 1);
        s.upsert(key("z"), Patch::reason("periodic"), 5);
        assert_eq!(local_rows(&mut s, 5), 2);
        // The disconnect uncovers the live remote row kept as a shadow.
        upsert(&mut s, "c", row("x", "c", true, 6));
        s.disconnect(1, key("x"), false, None, 7);
        assert_eq!(local_rows(&mut s, 7), 1);
        // Evictions by the cap (4 rows), of local and remote rows.
        for (i, k) in ["p", "q", "r"].into_iter().enumerate() {
            s.upsert(key(k), Patch::reason("periodic"), 8 + i as i64);
            local_rows(&mut s, 8 + i as i64);
        }
        assert!(s.stats().evicted > 0);
        // Removals: by the origin, by a reset, restores, then the TTL.
        s.apply_remote(RemoteOp::Remove {
            node: "c".into(),
            key: key("x"),
        });
        s.apply_remote(RemoteOp::Reset {
            node: "b".into(),
            rows: vec![row("w", "b", false, 20)],
        });
        local_rows(&mut s, 20);
        s.apply_remote(RemoteOp::Lapse { node: "b".into() });
        let restored = vec![row("old", "a", true, 21)];
        s.apply_remote(RemoteOp::Restore { rows: restored });
        local_rows(&mut s, 21);
        s.expire(21 + 10 * 60_000);
        assert_eq!(local_rows(&mut s, 21 + 10 * 60_000), 0);
        assert!(s.stats().expired > 0);
    }

    fn keys_of(snap: &Snapshot) -> Vec<String> {
        snap.entries().map(|r| r.key.to_string()).collect()
    }
}
