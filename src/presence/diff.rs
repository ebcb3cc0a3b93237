//! What changed between two snapshots: the rows written and the keys
//! removed, for `presence.delta` (docs/protocol.md §7).
//!
//! Invariant: a row counts as written when its allocation differs between
//! the snapshots (unchanged rows share their `Arc` across publishes), so the
//! diff is O(rows) pointer compares, with no field-by-field comparison.

use super::key::Key;
use super::snapshot::{Snapshot, SnapshotEntry};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The rows of `after` that are new or rewritten since `before`, in list
/// order, and the keys of `before` that `after` no longer has.
pub fn changed_rows<'a>(
    before: &'a Snapshot,
    after: &'a Snapshot,
) -> (Vec<&'a SnapshotEntry>, Vec<&'a Key>) {
    let old: HashMap<&str, &Arc<super::Entry>> = before
        .entries()
        .iter()
        .map(|row| (row.key.as_str(), &row.entry))
        .collect();
    let upserts = after
        .entries()
        .iter()
        .filter(|row| {
            !old.get(row.key.as_str())
                .is_some_and(|e| Arc::ptr_eq(e, &row.entry))
        })
        .collect();
    let now: HashSet<&str> = after.entries().iter().map(|row| row.key.as_str()).collect();
    let removed = before
        .entries()
        .iter()
        .map(|row| &row.key)
        .filter(|key| !now.contains(key.as_str()))
        .collect();
    (upserts, removed)
}

/// A store with the defaults and a self entry on host `gw` (tests).
#[cfg(test)]
pub(super) fn test_store() -> super::Store {
    let me = super::Entry {
        host: Some("gw".into()),
        instance_id: Some("self".into()),
        ..super::Entry::default()
    };
    super::Store::new(super::StoreConfig::default(), me)
}

#[cfg(test)]
mod tests {
    use super::test_store as store;
    use super::*;
    use crate::presence::{Key, Patch};

    fn patch(host: &str) -> Patch {
        Patch {
            host: Some(host.into()),
            ..Patch::default()
        }
    }

    #[test]
    fn unchanged_rows_are_not_upserts() {
        let mut s = store();
        s.upsert(Key::parse("a").unwrap(), patch("a"), 1);
        s.upsert(Key::parse("b").unwrap(), patch("b"), 1);
        let before = s.publish(1);
        s.upsert(Key::parse("b").unwrap(), patch("b2"), 2);
        let after = s.publish(2);
        let (upserts, removed) = changed_rows(&before, &after);
        let rows: Vec<&str> = upserts
            .iter()
            .map(|row| std::str::from_utf8(&row.json).unwrap())
            .collect();
        assert!(
            rows.iter().any(|r| r.contains(r#""host":"b2""#)),
            "{rows:?}"
        );
        assert!(
            !rows.iter().any(|r| r.contains(r#""host":"a""#)),
            "{rows:?}"
        );
        assert!(removed.is_empty());
    }

    #[test]
    fn removed_keys_are_listed() {
        let mut s = store();
        s.upsert(Key::parse("a").unwrap(), patch("a"), 1);
        let before = s.publish(1);
        s.expire(1 + crate::presence::DEFAULT_TTL.as_millis() as i64 + 1);
        let after = s.publish(1 + crate::presence::DEFAULT_TTL.as_millis() as i64 + 1);
        let (_, removed) = changed_rows(&before, &after);
        assert_eq!(removed, vec![&Key::parse("a").unwrap()]);
    }

    #[test]
    fn a_snapshot_has_no_changes_from_itself() {
        let mut s = store();
        s.upsert(Key::parse("a").unwrap(), patch("a"), 1);
        let snap = s.publish(1);
        let (upserts, removed) = changed_rows(&snap, &snap);
        assert!(upserts.is_empty() && removed.is_empty());
    }
}
