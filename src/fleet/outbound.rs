//! What this gateway owes the fleet: the difference between the last
//! snapshot it synced and the newest one, restricted to its own rows.
//!
//! Invariant: a row is this gateway's when its `gatewayId` is this node id;
//! a key whose row stopped being ours (expired, evicted, or taken over by
//! another gateway) is removed from our hash, never left behind.

use super::wire::Record;
use crate::presence::{Key, Millis, RowDiff, Snapshot, SnapshotEntry};
use std::collections::{HashMap, HashSet};

/// Own rows to write and keys to drop, as one Redis batch.
#[derive(Debug, Default)]
pub struct Outbound {
    /// (key, encoded [`Record`], expiry in ms) per written row.
    pub records: Vec<(Key, Vec<u8>, Millis)>,
    /// Keys of ours that are gone.
    pub removed: Vec<Key>,
}

impl Outbound {
    /// True if there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.removed.is_empty()
    }
}

fn is_ours(row: &SnapshotEntry, node: &str) -> bool {
    row.gateway.as_deref() == Some(node)
}

/// Encodes one row as the record the fleet stores.
pub fn record(row: &SnapshotEntry, pinned: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(row.json.len() + row.key.as_str().len() + 48);
    Record::write(&mut out, row.key.as_str(), row.live, pinned, &row.json);
    out
}

/// The own rows (the self entry left out) that differ between `before`
/// and `after`; every own row of `after` when there is no `before`. A row
/// that is live on both sides and differs only in `ts` (renewed) is not
/// sent: every gateway renews the live rows it shows (docs/protocol.md §5.4).
/// O(rows changed) with a `before` (see [`RowDiff`]).
pub fn diff(before: Option<&Snapshot>, after: &Snapshot, node: &str, ttl: Millis) -> Outbound {
    let mut out = Outbound::default();
    let written = |out: &mut Outbound, row: &SnapshotEntry| {
        let expiry = row.ts.saturating_add(ttl);
        out.records
            .push((row.key.clone(), record(row, false), expiry));
    };
    let Some(before) = before else {
        for row in after.rows().filter(|row| is_ours(row, node)) {
            written(&mut out, row);
        }
        return out;
    };
    let changes = RowDiff::between(before, after);
    let own_key = &after.own().key;
    // Only own rows can be renewed ones to leave out: the others' rows,
    // which every gateway renews too, are not looked up.
    let was: HashMap<&Key, &SnapshotEntry> = changes
        .replaced
        .iter()
        .filter(|row| is_ours(row, node))
        .map(|row| (&row.key, *row))
        .collect();
    let renewed = |row: &SnapshotEntry| {
        was.get(&row.key).is_some_and(|old| {
            is_ours(old, node) && old.live && row.live && old.entry().same_but_ts(&row.entry())
        })
    };
    let mut ours: HashSet<&Key> = HashSet::new();
    for row in changes.written.iter().filter(|row| is_ours(row, node)) {
        if row.key != *own_key {
            ours.insert(&row.key);
            if !renewed(row) {
                written(&mut out, row);
            }
        }
    }
    // A key of ours whose row is gone, or is no longer ours.
    let gone = changes
        .replaced
        .iter()
        .filter(|row| is_ours(row, node) && !ours.contains(&row.key));
    out.removed = gone.map(|row| row.key.clone()).collect();
    out
}

/// How many own rows (the self entry left out) `snapshot` holds: what
/// our hash holds, besides the self entry, once it is synced. O(1): the
/// writer counts the rows that name its gateway ([`Snapshot::local_rows`]);
/// a snapshot of another node's writer has none of `node`'s.
pub fn own_rows(snapshot: &Snapshot, node: &str) -> u64 {
    if is_ours(snapshot.own(), node) {
        snapshot.local_rows() as u64
    } else {
        0
    }
}

/// The self entry as a pinned record, its `ts` set to `now`.
pub fn self_record(snapshot: &Snapshot, now: Millis) -> (Key, Vec<u8>) {
    let row = snapshot.own();
    let mut entry = row.entry();
    entry.ts = now;
    let json = serde_json::to_vec(&entry).expect("an Entry always encodes");
    let mut out = Vec::with_capacity(json.len() + 64);
    Record::write(&mut out, row.key.as_str(), true, true, &json);
    (row.key.clone(), out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::{Entry, Patch, RemoteOp, RemoteRow, Store, StoreConfig};

    fn store() -> Store {
        let me = Entry {
            instance_id: Some("me".into()),
            gateway_id: Some("a".into()),
            ..Entry::default()
        };
        Store::new(StoreConfig::default(), me)
    }

    fn keys(list: &[(Key, Vec<u8>, Millis)]) -> Vec<&str> {
        list.iter().map(|(k, _, _)| k.as_str()).collect()
    }

    #[test]
    fn a_renewed_row_is_not_sent_again() {
        let mut s = store();
        let key = Key::parse("live").unwrap();
        s.connect(1, key.clone(), Patch::reason("connect"), 1);
        let before = s.publish(1);
        assert_eq!(s.renew_live(50_000, 0), 1);
        let after = s.publish(50_000);
        assert_eq!(after.rows().next().unwrap().ts, 50_000);
        assert!(diff(Some(&before), &after, "a", 300_000).is_empty());
        s.disconnect(1, key, false, None, 60_000);
        let closed = s.publish(60_000);
        assert_eq!(
            keys(&diff(Some(&after), &closed, "a", 300_000).records),
            ["live"]
        );
    }

    #[test]
    fn only_own_changed_rows_are_sent_and_lost_ones_removed() {
        let mut s = store();
        s.upsert(Key::parse("x").unwrap(), Patch::reason("periodic"), 1);
        s.upsert(Key::parse("y").unwrap(), Patch::reason("periodic"), 1);
        let row = RemoteRow {
            key: Key::parse("r").unwrap(),
            entry: Entry {
                ts: 1,
                ..Entry::default()
            },
            live: true,
            pinned: false,
        };
        s.apply_remote(RemoteOp::Upsert {
            node: "b".into(),
            row: Box::new(row),
        });
        let first = s.publish(1);
        let full = diff(None, &first, "a", 100);
        assert_eq!(keys(&full.records), ["x", "y"]);
        assert_eq!(own_rows(&first, "a"), 2, "x and y, not b's r");
        assert_eq!(own_rows(&first, "b"), 0, "not this writer's node");
        assert_eq!(full.records[0].2, 101);
        s.upsert(Key::parse("y").unwrap(), Patch::reason("periodic"), 2);
        s.expire(1 + crate::presence::DEFAULT_TTL.as_millis() as Millis);
        let second = s.publish(3);
        let out = diff(Some(&first), &second, "a", 100);
        assert_eq!(keys(&out.records), ["y"]);
        assert!(out.removed.is_empty());
        let record: Record = serde_json::from_slice(&out.records[0].1).unwrap();
        assert_eq!(record.entry.gateway_id.as_deref(), Some("a"));
        s.expire(10 * crate::presence::DEFAULT_TTL.as_millis() as Millis);
        let third = s.publish(4);
        let out = diff(Some(&second), &third, "a", 100);
        let mut removed: Vec<&str> = out.removed.iter().map(Key::as_str).collect();
        removed.sort();
        assert_eq!(removed, ["x", "y"]);
    }

    #[test]
    fn the_self_record_is_pinned_and_fresh() {
        let mut s = store();
        let snap = s.publish(1);
        let (key, bytes) = self_record(&snap, 77);
        let record: Record = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(key.as_str(), "me");
        assert!(record.pinned && record.live);
        assert_eq!(record.entry.ts, 77);
    }
}
