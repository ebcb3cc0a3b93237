//! The presence store: one map from key to entry, with TTL, a cap and the
//! reserved self entry (docs/protocol.md §5). Pure and deterministic: the caller
//! passes `now`; nothing here reads a clock or does I/O.
//!
//! Rows live in a slab (`slots`, 32 bytes a slot), so the expiry order
//! and the index can name them by number (the index is a table of 4-byte
//! slot ids that hashes the slots' keys: `store/index.rs`). A row's entry
//! and provenance are kept beside its slot only while it is written and
//! not yet published (`pending`, `store/pending.rs`); once published the list's row holds
//! them, the entry as JSON, and a write reads them back (strings borrowed,
//! only the fields the patch keeps copied: `entry_ref.rs`), so a row costs
//! its JSON and one row in the list, not a parsed copy besides (issue 19). The list readers get is a persistent `List` the store edits in
//! place of the last published one: a publish moves, adds and drops only
//! the rows written or removed since the last one, and costs O(k log n)
//! for k such rows among n, plus one visit of each part of the list (see
//! `list.rs`); unchanged chunks of rows are shared with older snapshots.
//!
//! Invariants, true between any two calls:
//! - `index` and `by_age` name exactly the live slots, each once, and the
//!   index finds a live slot by its `key`; `free` lists exactly the empty ones;
//! - `by_age` orders the live rows by (`ts`, write sequence), so its first
//!   item is the next to expire or be evicted ("oldest `ts` first, least
//!   recently written among equals");
//! - `index.len() <= max_entries`; the self entry is not in `slots`;
//! - `pending` holds an entry for a slot exactly when the slot is live
//!   and was written since the last publish; a slot without one
//!   is listed at its `age.0`, and its row in `list` holds its entry and
//!   provenance;
//! - a slot's `age.0` is its entry's `ts`, and its `gateway` the number
//!   of its entry's `gateway_id` in `gateways` (`store/gateways.rs`),
//!   which counts one use per live slot, and one for `local`'s name;
//! - `list` holds, for every slot whose `listed()` is `Some(ts)` (its
//!   pending `listed`, or `age.0` when nothing is pending), one row at
//!   (`ts`, key), and for every `(ts, key)` in `unlisted` one row there,
//!   and nothing else: the rows of the last publish that are still to be
//!   moved or dropped. A clean slot's row is its current entry, at its
//!   entry's `ts`;
//! - `owners[k]` lists the live connections that connected under `k`;
//! - a slot is local when its `gateway` is `local_id`, the self entry's
//!   (both [`NO_GATEWAY`](gateways::NO_GATEWAY) outside a fleet), and a local slot's `live` is true
//!   exactly when `owners` has its key; every other slot came from another
//!   gateway (`remote_rows.rs`) and `live` is what that gateway said;
//! - `pinned` counts the live slots with `pinned` set (other gateways' own
//!   entries); the cap counts only the others;
//! - `local` counts the live slots that are local, so a snapshot can say
//!   how many rows this gateway holds itself in O(1);
//! - `shadows[k]` is a live row of another gateway for `k` that a live row
//!   here outranks: it shows once `k`'s row stops being live;
//! - no live row is ever expired: a live row past the TTL is renewed
//!   instead (docs/protocol.md §5.4), and the cap evicts a live row only when
//!   every unpinned row is live;
//! - `change_version <= version`: the last version whose publish changed
//!   more than the `ts` of live rows ([`Store::renew_live`]).

use super::entry::{Entry, Millis, Patch};
use super::key::Key;
use super::list::List;
use super::pressure::Removals;
use super::provenance::{ConnTag, KeySource, Origin, Write, WriteKind, Writer};
use super::remote::RemoteRow;
use super::source::disconnect_reason;
pub use aging::{RENEWALS_PER_EXPIRY, RenewalPass, SCAN_PER_RENEWAL};
use arcstr::ArcStr;
use gateways::{GatewayId, Gateways};
use index::{Age, Ages, Index};
use pending::Pending;
use std::collections::HashMap;
use std::time::Duration;

mod aging;
mod gateways;
mod index;
mod pending;
mod publish;
mod remote_rows;

/// OpenClaw's presence TTL; dashboards derive Idle/Stale from it.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);
/// OpenClaw's presence cap; keeps `system-presence` replies small.
pub const DEFAULT_MAX_ENTRIES: usize = 200;

/// A connection's identity inside the store, unique per process.
pub type ConnId = u64;

/// Store limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// Entries whose age exceeds this are removed.
    pub ttl: Duration,
    /// At most this many entries besides the self entry.
    pub max_entries: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            ttl: DEFAULT_TTL,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The entry was created or merged.
    Applied,
    /// The key is the gateway's own: nothing was written.
    Reserved,
    /// Another live connection still owns the key: nothing was written.
    Superseded,
}

/// Running totals, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Entries removed by the TTL.
    pub expired: u64,
    /// Entries removed by the cap.
    pub evicted: u64,
}

/// An index into `Store::slots`.
type SlotId = usize;

/// A row, as the store keeps it between writes (its entry and provenance
/// are in its row of `list`, or in `Store::pending` while written).
#[derive(Debug)]
struct Slot {
    key: Key,
    /// The entry's `gateway_id`, numbered (`gateways`).
    gateway: GatewayId,
    /// This slot's key in `by_age`; `.0` is the entry's `ts`, which the
    /// list sorts by, and, while nothing is pending, its row's `ts` in
    /// `list`.
    age: Age,
    /// A connection for this row is live (here, or at its origin).
    live: bool,
    /// Another gateway's own entry: exempt from the cap.
    pinned: bool,
}

/// The presence map. Owned by exactly one writer.
#[derive(Debug)]
pub struct Store {
    config: StoreConfig,
    self_key: Key,
    self_entry: Entry,
    /// The self entry's provenance: the gateway wrote it at start.
    self_origin: Origin,
    /// The rows; `None` marks a free slot.
    slots: Vec<Option<Slot>>,
    /// Empty slots, reused before `slots` grows.
    free: Vec<SlotId>,
    /// The entry and provenance of each slot written since the last
    /// publish; a slot without one has them in its row of `list`, the
    /// entry as JSON. Kept apart from the slots, which are thereby 8 bytes
    /// smaller, since few rows are written between two publishes. A
    /// publish takes them all (`store/publish.rs`).
    pending: hashbrown::HashMap<SlotId, Box<Pending>>,
    index: Index,
    by_age: Ages,
    /// The list of the last publish, being edited into the next one.
    list: List,
    /// Rows of removed slots still in `list`, as (`ts`, key).
    unlisted: Vec<(Millis, Key)>,
    owners: HashMap<Key, Vec<ConnId>>,
    /// This gateway's fleet node id (the self entry's `gateway_id`).
    local_gateway: Option<ArcStr>,
    /// `local_gateway`'s number in `gateways`.
    local_id: GatewayId,
    /// The slots' gateway names, numbered.
    gateways: Gateways,
    /// The `seq` of the last row published.
    row_seq: u64,
    /// Live rows of other gateways outranked by a live row here.
    shadows: HashMap<Key, RemoteRow>,
    /// Live slots that are pinned.
    pinned: usize,
    /// Live slots that are local (their `gateway_id` is the self entry's).
    local: usize,
    /// Increases on every write; orders equal `ts` by recency. Past
    /// `u32::MAX` the live rows are numbered again, in order
    /// (`Store::next_seq`).
    write_seq: u32,
    /// How many times the live rows were numbered again (wrapping).
    numbering: u32,
    /// Expirations and evictions over the last TTL, for the doctor.
    removals: Removals,
    /// The latest `now` a caller passed: when an eviction happened, for
    /// fleet rows that arrive without one.
    clock: Millis,
    /// `stateVersion.presence` of the last publish.
    version: u64,
    /// The last version that changed more than renewed `ts` values.
    change_version: u64,
    /// Something changed since the last publish.
    changed: bool,
    /// A renewal moved some live row's `ts` since the last publish.
    renewed: bool,
    stats: StoreStats,
}

impl Store {
    /// A store holding only the self entry. Its key is the entry's
    /// `instanceId`, which must not be blank.
    pub fn new(config: StoreConfig, self_entry: Entry) -> Store {
        let self_key = self_entry
            .instance_id
            .as_deref()
            .and_then(Key::parse)
            .expect("the self entry has a non-blank instanceId");
        let mut gateways = Gateways::default();
        // The store's own use: the local name keeps its number.
        let local_id = gateways.acquire(self_entry.gateway_id.as_deref());
        Store {
            config,
            local_gateway: gateways.name(local_id).cloned(),
            local_id,
            gateways,
            row_seq: 0,
            self_origin: Origin::new(Write {
                by: Writer {
                    kind: WriteKind::Start,
                    conn: None,
                    source: KeySource::Gateway,
                },
                at: self_entry.ts,
            }),
            self_key,
            self_entry,
            slots: Vec::new(),
            free: Vec::new(),
            pending: hashbrown::HashMap::new(),
            index: Index::default(),
            by_age: Ages::default(),
            list: List::default(),
            unlisted: Vec::new(),
            owners: HashMap::new(),
            shadows: HashMap::new(),
            pinned: 0,
            local: 0,
            removals: Removals::new(config.ttl, config.max_entries),
            clock: 0,
            write_seq: 0,
            numbering: 0,
            version: 1,
            change_version: 1,
            changed: false,
            renewed: false,
            stats: StoreStats::default(),
        }
    }

    /// The reserved key of the gateway's own entry.
    pub fn self_key(&self) -> &Key {
        &self.self_key
    }

    /// The limits this store enforces.
    pub fn config(&self) -> StoreConfig {
        self.config
    }

    /// Entries besides the self entry.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when only the self entry is present.
    pub fn is_empty(&self) -> bool {
        self.index.len() == 0
    }

    /// The entry under `key`, the self entry included. A row published
    /// since its last write is parsed from its JSON.
    pub fn get(&self, key: &Key) -> Option<Entry> {
        if *key == self.self_key {
            return Some(self.self_entry.clone());
        }
        let id = self.find(key)?;
        Some(self.entry_of(id).into_owned())
    }

    /// The version of the last publish.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// True if a publish would make a new version.
    pub fn has_changes(&self) -> bool {
        self.changed || self.renewed
    }

    /// Running totals of removals.
    pub fn stats(&self) -> StoreStats {
        self.stats
    }

    /// True if slot `id` is local: its row names this gateway (both name
    /// none outside a fleet).
    fn is_local(&self, id: SlotId) -> bool {
        self.slot(id).gateway == self.local_id
    }

    /// The name of slot `id`'s gateway.
    fn gateway_of(&self, id: SlotId) -> Option<&str> {
        self.gateways.name_str(self.slot(id).gateway)
    }

    /// The live slot under `key`.
    fn find(&self, key: &Key) -> Option<SlotId> {
        self.index.get(key, &self.slots)
    }

    fn slot(&self, id: SlotId) -> &Slot {
        self.slots[id]
            .as_ref()
            .expect("index and by_age name only live slots")
    }

    fn slot_mut(&mut self, id: SlotId) -> &mut Slot {
        self.slots[id]
            .as_mut()
            .expect("index and by_age name only live slots")
    }

    /// Merges `patch` into the entry under `key`, creating it if needed.
    /// The row becomes this gateway's; a live row of another gateway it
    /// replaces is kept as the key's shadow.
    pub fn upsert(&mut self, key: Key, patch: Patch, now: Millis) -> Outcome {
        if key == self.self_key {
            return Outcome::Reserved;
        }
        self.clock = self.clock.max(now);
        let live = self.owners.contains_key(&key);
        let write = Write {
            by: patch.by,
            at: now,
        };
        let Some(id) = self.find(&key) else {
            let mut entry = Entry::default();
            entry.merge(patch, now);
            entry.gateway_id = self.local_gateway.as_deref().map(str::to_owned);
            self.insert_slot(key, entry, Origin::new(write), live, false);
            return Outcome::Applied;
        };
        self.shadow_if_remote_live(id);
        let was_local = self.is_local(id);
        if !was_local {
            // Another gateway's row, taken over: it becomes local.
            self.local += 1;
        }
        let age = (now, self.next_seq());
        let local = self.local_gateway.clone();
        let pending = self.merge_into(id, patch, now);
        if pending.entry.gateway_id.as_deref() != local.as_deref() {
            pending.entry.gateway_id = local.as_deref().map(str::to_owned);
        }
        pending.origin.record(write);
        if !was_local {
            self.gateways.add_use(self.local_id);
            let slot = self.slots[id].as_mut().expect("a live slot");
            let was = std::mem::replace(&mut slot.gateway, self.local_id);
            self.gateways.release(was);
        }
        let slot = self.slots[id]
            .as_mut()
            .expect("index names only live slots");
        slot.live = live;
        if std::mem::take(&mut slot.pinned) {
            self.pinned -= 1;
        }
        let old = std::mem::replace(&mut slot.age, age);
        self.by_age.moved(&old, age, id);
        self.changed = true;
        Outcome::Applied
    }

    /// Adds a row under a key that has none, then enforces the cap.
    fn insert_slot(&mut self, key: Key, entry: Entry, origin: Origin, live: bool, pinned: bool) {
        let age = (entry.ts, self.next_seq());
        let slot = Slot {
            key: key.clone(),
            gateway: self.gateways.acquire(entry.gateway_id.as_deref()),
            age,
            live,
            pinned,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id] = Some(slot);
                id
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        };
        let pending = Pending {
            entry,
            origin,
            listed: None,
        };
        self.pending.insert(id, Box::new(pending));
        self.pinned += usize::from(pinned);
        self.local += usize::from(self.is_local(id));
        self.index.insert(id, &self.slots);
        self.by_age.insert(age, id);
        self.changed = true;
        self.enforce_cap();
    }

    /// A tracked connection completed its handshake under `key`.
    pub fn connect(&mut self, conn: ConnId, key: Key, patch: Patch, now: Millis) -> Outcome {
        if key == self.self_key {
            return Outcome::Reserved;
        }
        let owners = self.owners.entry(key.clone()).or_default();
        if !owners.contains(&conn) {
            owners.push(conn);
        }
        self.upsert(key, patch, now)
    }

    /// A tracked connection closed. Marks the entry disconnected unless
    /// another live connection still owns the key. `tag` is the
    /// connection as its `hello-ok` named it, for the row's provenance.
    pub fn disconnect(
        &mut self,
        conn: ConnId,
        key: Key,
        is_node: bool,
        tag: Option<ConnTag>,
        now: Millis,
    ) -> Outcome {
        if key == self.self_key {
            return Outcome::Reserved;
        }
        if let Some(owners) = self.owners.get_mut(&key) {
            owners.retain(|&c| c != conn);
            if !owners.is_empty() {
                return Outcome::Superseded;
            }
            self.owners.remove(&key);
        }
        // A live row of another gateway waited behind this connection.
        if let Some(row) = self.shadows.remove(&key) {
            self.place_remote(row);
            return Outcome::Applied;
        }
        let mut patch = Patch::reason(disconnect_reason(is_node));
        patch.by = Writer {
            kind: WriteKind::Disconnect,
            conn: tag,
            source: KeySource::Unknown,
        };
        self.upsert(key, patch, now)
    }

    /// Empties slot `id`, already taken out of `by_age`.
    fn remove_slot(&mut self, id: SlotId) {
        let listed = self.listed(id);
        self.pending.remove(&id);
        let slot = self.slots[id].take().expect("by_age names only live slots");
        if let Some(ts) = listed {
            self.unlisted.push((ts, slot.key.clone()));
        }
        self.pinned -= usize::from(slot.pinned);
        self.local -= usize::from(slot.gateway == self.local_id);
        self.gateways.release(slot.gateway);
        self.index.remove(&slot.key, id);
        self.free.push(id);
    }
}

fn millis(duration: Duration) -> Millis {
    Millis::try_from(duration.as_millis()).unwrap_or(Millis::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::Snapshot;
    use publish::encode;

    const MIN: Millis = 60_000;

    fn self_entry() -> Entry {
        Entry {
            instance_id: Some("GW-UUID".into()),
            host: Some("gw".into()),
            mode: Some("gateway".into()),
            reason: Some("self".into()),
            text: "Gateway: gw".into(),
            ..Entry::default()
        }
    }

    fn store(max_entries: usize) -> Store {
        Store::new(
            StoreConfig {
                ttl: Duration::from_secs(300),
                max_entries,
            },
            self_entry(),
        )
    }

    fn key(s: &str) -> Key {
        Key::parse(s).unwrap()
    }

    fn host(h: &str) -> Patch {
        Patch {
            host: Some(h.into()),
            ..Patch::default()
        }
    }

    /// The list as a reply carries it, stamped when it was published.
    fn list_json(snapshot: &Snapshot) -> Vec<u8> {
        let mut out = Vec::new();
        snapshot.write_list(snapshot.published_at(), &mut out);
        out
    }

    fn keys(snapshot: &Snapshot) -> Vec<&str> {
        snapshot.entries().map(|e| e.key.as_str()).collect()
    }

    #[test]
    fn fresh_store_lists_only_self_at_version_one() {
        let mut s = store(10);
        let snap = s.publish(5);
        assert_eq!(snap.version(), 1);
        assert_eq!(keys(&snap), ["gw-uuid"]);
        assert_eq!(snap.own().ts, 5);
    }

    #[test]
    fn self_key_is_reserved() {
        let mut s = store(10);
        assert_eq!(s.upsert(key("gw-uuid"), host("evil"), 1), Outcome::Reserved);
        assert_eq!(
            s.connect(1, key("GW-uuid "), host("evil"), 1),
            Outcome::Reserved
        );
        assert!(!s.has_changes());
        assert_eq!(s.get(&key("gw-uuid")).unwrap().host.as_deref(), Some("gw"));
    }

    #[test]
    fn upsert_merges_under_case_insensitive_key() {
        let mut s = store(10);
        s.upsert(key("Mini"), host("mini"), 1);
        s.upsert(
            key("MINI "),
            Patch {
                version: Some("2".into()),
                ..Patch::default()
            },
            2,
        );
        assert_eq!(s.len(), 1);
        let e = s.get(&key("mini")).unwrap();
        assert_eq!(e.host.as_deref(), Some("mini"));
        assert_eq!(e.version.as_deref(), Some("2"));
        assert_eq!(e.ts, 2);
    }

    #[test]
    fn ttl_removes_old_entries_and_spares_self() {
        let mut s = store(10);
        s.upsert(key("old"), host("old"), 0);
        s.upsert(key("new"), host("new"), 4 * MIN);
        assert_eq!(s.next_expiry(), Some(5 * MIN + 1));
        assert_eq!(s.expire(5 * MIN), 0, "age == ttl is kept");
        assert_eq!(s.expire(5 * MIN + 1), 1);
        assert_eq!(s.get(&key("old")), None);
        assert!(s.get(&key("new")).is_some());
        assert_eq!(s.expire(100 * MIN), 1);
        let snap = s.publish(100 * MIN);
        assert_eq!(keys(&snap), ["gw-uuid"]);
        assert_eq!(s.stats().expired, 2);
    }

    #[test]
    fn cap_evicts_oldest_ts_first() {
        let mut s = store(2);
        s.upsert(key("a"), host("a"), 30);
        s.upsert(key("b"), host("b"), 10);
        s.upsert(key("c"), host("c"), 20);
        assert_eq!(s.len(), 2);
        assert_eq!(s.get(&key("b")), None);
        assert_eq!(s.stats().evicted, 1);
    }

    #[test]
    fn cap_evicts_least_recently_written_among_equal_ts() {
        let mut s = store(2);
        s.upsert(key("a"), host("a"), 10);
        s.upsert(key("b"), host("b"), 10);
        s.upsert(key("a"), host("a2"), 10);
        s.upsert(key("c"), host("c"), 10);
        assert_eq!(s.get(&key("b")), None, "b was written least recently");
        assert!(s.get(&key("a")).is_some());
    }

    #[test]
    fn the_ttl_renews_a_live_row_instead_of_removing_it() {
        let mut s = store(10);
        s.connect(1, key("live"), host("live"), 0);
        s.upsert(key("gone"), host("gone"), 0);
        s.publish(0);
        assert_eq!(
            s.expire(5 * MIN + 1),
            1,
            "only the row without a connection"
        );
        assert_eq!(s.get(&key("gone")), None);
        assert_eq!(s.get(&key("live")).unwrap().ts, 5 * MIN + 1);
        s.disconnect(1, key("live"), false, None, 6 * MIN);
        assert_eq!(s.expire(11 * MIN), 0, "ages from its disconnect");
        assert_eq!(s.expire(11 * MIN + 1), 1);
        assert!(s.is_empty());
    }

    #[test]
    fn renewal_moves_only_old_live_rows_and_changes_no_content_version() {
        let mut s = store(10);
        s.connect(1, key("old"), host("old"), 10);
        s.connect(2, key("new"), host("new"), 90);
        s.upsert(key("beacon-only"), host("b"), 10);
        let before = s.publish(100);
        assert_eq!(s.renew_live(100, 50), 1, "only `old` is live and 50 ms old");
        assert_eq!(s.get(&key("old")).unwrap().ts, 100);
        assert_eq!(s.get(&key("new")).unwrap().ts, 90);
        assert_eq!(s.get(&key("beacon-only")).unwrap().ts, 10);
        assert!(s.has_changes());
        let after = s.publish(100);
        assert_eq!(after.version(), before.version() + 1, "a new version");
        assert_eq!(after.change_version(), before.version(), "but no change");
        assert_eq!(keys(&after), ["gw-uuid", "old", "new", "beacon-only"]);
        assert_eq!(
            s.get(&key("old")).unwrap().host.as_deref(),
            Some("old"),
            "nothing but ts moved"
        );
        s.upsert(key("beacon-only"), host("b2"), 101);
        assert_eq!(s.publish(101).change_version(), after.version() + 1);
    }

    #[test]
    fn the_cap_evicts_rows_without_a_connection_before_live_ones() {
        let mut s = store(2);
        s.connect(1, key("live-old"), host("a"), 1);
        s.upsert(key("beacon"), host("b"), 5);
        s.connect(2, key("live-new"), host("c"), 9);
        assert_eq!(s.get(&key("beacon")), None, "not live: goes first");
        assert!(s.get(&key("live-old")).is_some());
        s.connect(3, key("live-3"), host("d"), 10);
        assert_eq!(s.get(&key("live-old")), None, "all live: the oldest goes");
        assert_eq!(s.len(), 2);
        assert_eq!(s.stats().evicted, 2);
    }

    #[test]
    fn list_is_ts_descending_with_ties_by_key() {
        let mut s = store(10);
        s.upsert(key("b"), host("b"), 10);
        s.upsert(key("c"), host("c"), 20);
        s.upsert(key("a"), host("a"), 10);
        s.upsert(key("d"), host("d"), 5);
        let snap = s.publish(30);
        assert_eq!(keys(&snap), ["gw-uuid", "c", "a", "b", "d"]);
    }

    #[test]
    fn disconnect_keeps_the_row_with_reason() {
        let mut s = store(10);
        s.connect(1, key("dev"), host("mini"), 1);
        assert_eq!(
            s.disconnect(1, key("dev"), false, None, 2),
            Outcome::Applied
        );
        let e = s.get(&key("dev")).unwrap();
        assert_eq!(e.reason.as_deref(), Some("disconnect"));
        assert_eq!(e.host.as_deref(), Some("mini"));
        assert_eq!(e.ts, 2);
        s.connect(2, key("node"), host("n"), 3);
        s.disconnect(2, key("node"), true, None, 4);
        assert_eq!(
            s.get(&key("node")).unwrap().reason.as_deref(),
            Some("node-disconnected")
        );
    }

    #[test]
    fn superseded_close_writes_nothing() {
        let mut s = store(10);
        s.connect(1, key("dev"), host("first"), 1);
        s.connect(2, key("dev"), host("second"), 2);
        s.publish(2);
        assert_eq!(
            s.disconnect(1, key("dev"), false, None, 3),
            Outcome::Superseded
        );
        assert!(!s.has_changes());
        assert_eq!(s.get(&key("dev")).unwrap().ts, 2);
        assert_eq!(
            s.disconnect(2, key("dev"), false, None, 4),
            Outcome::Applied
        );
        assert_eq!(
            s.get(&key("dev")).unwrap().reason.as_deref(),
            Some("disconnect")
        );
    }

    #[test]
    fn version_rises_once_per_publish_with_changes() {
        let mut s = store(10);
        assert_eq!(s.publish(1).version(), 1);
        s.upsert(key("a"), host("a"), 2);
        s.upsert(key("b"), host("b"), 2);
        assert_eq!(s.publish(2).version(), 2);
        assert_eq!(s.publish(3).version(), 2, "no change, same version");
        s.expire(10 * MIN);
        assert_eq!(s.publish(10 * MIN).version(), 3, "expiry is a change");
    }

    #[test]
    fn publish_reuses_unchanged_rows() {
        let mut s = store(10);
        s.upsert(key("a"), host("a"), 1);
        s.upsert(key("b"), host("b"), 2);
        let first = s.publish(2);
        s.upsert(key("b"), host("b2"), 3);
        let second = s.publish(3);
        let row = |snap: &Snapshot, k: &str| {
            snap.entries()
                .find(|e| e.key.as_str() == k)
                .cloned()
                .unwrap()
        };
        let (a1, a2) = (row(&first, "a"), row(&second, "a"));
        assert_eq!(a1.seq, a2.seq);
        assert_eq!(a1.json, a2.json);
        assert_ne!(row(&first, "b").seq, row(&second, "b").seq);
    }

    #[test]
    fn list_json_matches_entries_and_refreshes_self_ts() {
        let mut s = store(10);
        s.upsert(
            key("a"),
            Patch {
                text: Some(r#"tricky "ts":1} text"#.into()),
                ..Patch::default()
            },
            7,
        );
        let snap = s.publish(9);
        let parsed: serde_json::Value = serde_json::from_slice(&list_json(&snap)).unwrap();
        let expected: Vec<Entry> = snap.entries().map(|e| e.entry()).collect();
        assert_eq!(parsed, serde_json::to_value(&expected).unwrap());

        let mut fresh = Vec::new();
        snap.write_list(1234, &mut fresh);
        let fresh: serde_json::Value = serde_json::from_slice(&fresh).unwrap();
        assert_eq!(fresh[0]["ts"], 1234);
        assert_eq!(fresh[0]["instanceId"], "GW-UUID");
        assert_eq!(fresh[1], parsed[1]);
    }

    #[test]
    fn the_write_sequence_runs_out_without_changing_the_order() {
        let mut s = store(3);
        s.upsert(key("a"), host("a"), 10);
        s.upsert(key("b"), host("b"), 10);
        s.upsert(key("c"), host("c"), 5);
        s.write_seq = u32::MAX - 1;
        s.upsert(key("a"), host("a2"), 10);
        assert_eq!(s.slot(s.find(&key("a")).unwrap()).age, (10, u32::MAX));
        // Numbered again (c, b, a), then d; the cap takes the oldest ts.
        s.upsert(key("d"), host("d"), 10);
        assert_eq!(s.write_seq, 4);
        assert_eq!(s.get(&key("c")), None);
        // Among equal ts, b is still the least recently written.
        s.upsert(key("e"), host("e"), 10);
        assert_eq!(s.get(&key("b")), None);
        let order: Vec<&str> = s
            .by_age
            .iter()
            .map(|(_, id)| s.slot(id).key.as_str())
            .collect();
        assert_eq!(order, ["a", "d", "e"]);
        for (age, id) in s.by_age.iter() {
            assert_eq!(s.slot(id).age, age);
        }
    }

    #[test]
    fn a_renewal_pass_goes_on_after_the_rows_are_numbered_again() {
        let mut s = store(100);
        let row = |i: u64| key(&format!("r{i}"));
        for i in 0..6 {
            s.connect(i, row(i), host("h"), 10);
        }
        let mut pass = RenewalPass::new(1_000, 100).unwrap();
        assert_eq!(s.renew_some(1_000, &mut pass, 2), (2, false));
        s.write_seq = u32::MAX;
        s.upsert(key("other"), host("o"), 20);
        assert_eq!(s.numbering, 1, "numbered again");
        let mut renewed = 2;
        loop {
            let (n, finished) = s.renew_some(1_001, &mut pass, 2);
            renewed += n;
            if finished {
                break;
            }
        }
        assert_eq!(renewed, 6, "each live row once");
        assert!((0..6).all(|i| s.get(&row(i)).unwrap().ts >= 1_000));
    }

    #[test]
    fn a_slot_stays_small() {
        // benches/README.md: a row costs this much in the slab.
        assert_eq!(std::mem::size_of::<Option<Slot>>(), 32);
    }

    #[test]
    fn zero_cap_keeps_only_self() {
        let mut s = store(0);
        s.upsert(key("a"), host("a"), 1);
        assert!(s.is_empty());
        assert_eq!(keys(&s.publish(1)), ["gw-uuid"]);
    }
    #[test]
    fn unwritten_rows_keep_their_place_among_written_ones() {
        let mut s = store(10);
        for k in ["d", "b", "f"] {
            s.upsert(key(k), host(k), 10);
        }
        s.upsert(key("z"), host("z"), 5);
        s.publish(10);
        // Written at the same ts as unwritten rows: merged in by key.
        s.upsert(key("c"), host("c"), 10);
        s.upsert(key("a"), host("a"), 10);
        s.upsert(key("g"), host("g"), 10);
        // Written again, at the same ts: it keeps its place.
        s.upsert(key("b"), host("b2"), 10);
        let snap = s.publish(10);
        assert_eq!(keys(&snap), ["gw-uuid", "a", "b", "c", "d", "f", "g", "z"]);
        s.upsert(key("z"), host("z2"), 11);
        s.upsert(key("d"), host("d2"), 4);
        let snap = s.publish(11);
        assert_eq!(keys(&snap), ["gw-uuid", "z", "a", "b", "c", "f", "g", "d"]);
    }

    #[test]
    fn slot_freed_and_reused_between_publishes_lists_the_new_row_once() {
        let mut s = store(1);
        s.upsert(key("a"), host("a"), 1);
        s.publish(1);
        s.upsert(key("a"), host("a2"), 2);
        // `b` evicts `a`, written since the publish; `c` reuses `a`'s slot
        // and evicts `b`; so `a`'s slot is twice among the written ones.
        s.upsert(key("b"), host("b"), 3);
        s.upsert(key("c"), host("c"), 4);
        s.upsert(key("c"), host("c2"), 5);
        let snap = s.publish(5);
        assert_eq!(keys(&snap), ["gw-uuid", "c"]);
        assert_eq!(
            snap.rows().next().unwrap().entry().host.as_deref(),
            Some("c2")
        );
        s.expire(10 * MIN);
        s.upsert(key("d"), host("d"), 10 * MIN);
        assert_eq!(keys(&s.publish(10 * MIN)), ["gw-uuid", "d"]);
    }

    #[test]
    fn every_listed_row_is_encoded_from_its_current_entry() {
        let mut s = store(3);
        for round in 0..6 {
            for k in ["a", "b", "c", "d", "e"].iter().skip(round % 3).take(3) {
                s.upsert(key(k), host(&format!("{k}{round}")), round as Millis);
            }
            if round % 2 == 1 {
                s.expire(round as Millis + 5 * MIN);
            }
            let snap = s.publish(round as Millis);
            for row in snap.rows() {
                let entry = s.get(&row.key).expect("a listed row is in the store");
                assert_eq!(row.json, encode(&entry), "row {:?}", row.key);
                assert_eq!(row.ts, entry.ts);
            }
            assert_eq!(snap.len(), s.len() + 1);
        }
    }

    #[test]
    fn a_publish_after_many_writes_does_not_keep_their_map() {
        let mut s = store(10_000);
        for i in 0..10_000 {
            s.upsert(key(&format!("k{i}")), host("h"), 1);
        }
        assert!(s.pending.capacity() >= 10_000);
        assert_eq!(s.publish(1).entries().count(), 10_001);
        assert!(s.pending.is_empty());
        assert!(
            s.pending.capacity() >= 10_000,
            "kept while publishes take about that many rows"
        );
        s.upsert(key("k0"), host("h2"), 2);
        s.publish(2);
        assert!(s.pending.capacity() <= publish::SHRINK_ABOVE);
    }

    #[test]
    fn a_publish_shares_every_chunk_it_did_not_touch() {
        let mut s = store(10_000);
        for i in 0..5_000 {
            s.upsert(key(&format!("k{i:05}")), host("h"), i);
        }
        let first = s.publish(5_000);
        // One row rewritten, one removed: two chunks at most change, and
        // the rewritten row moves to the front.
        s.upsert(key("k02500"), host("moved"), 6_000);
        s.unlisted.push((10, key("k00010")));
        let id = s.find(&key("k00010")).unwrap();
        s.index.remove(&key("k00010"), id);
        let age = s.slot(id).age;
        s.by_age.remove(&age);
        s.slots[id] = None;
        s.free.push(id);
        let second = s.publish(6_000);
        let shared = first
            .list
            .chunks()
            .filter(|a| second.list.chunks().any(|b| b.as_ptr() == a.as_ptr()))
            .count();
        let chunks = first.list.chunks().count();
        assert!(shared + 3 >= chunks, "{shared} of {chunks} chunks shared");
        assert_eq!(second.rows().next().unwrap().key.as_str(), "k02500");
        assert_eq!(second.len(), 5_000);
        let (written, removed) = crate::presence::changed_rows(&first, &second);
        let written: Vec<&str> = written.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(written, ["gw-uuid", "k02500"]);
        assert_eq!(removed, [&key("k00010")]);
        let parsed: serde_json::Value = serde_json::from_slice(&list_json(&second)).unwrap();
        let expected: Vec<Entry> = second.entries().map(|e| e.entry()).collect();
        assert_eq!(parsed, serde_json::to_value(&expected).unwrap());
    }
}
