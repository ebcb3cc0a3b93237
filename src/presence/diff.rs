//! What changed between two snapshots: the rows written and the keys
//! removed, for `presence.delta` (PROTOCOL.md §7).
//!
//! Invariant: a row counts as written when its allocation differs between
//! the snapshots (unchanged rows share their `Arc` across publishes), so the
//! diff is O(rows) pointer compares, with no field-by-field comparison.

use super::snapshot::Snapshot;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The changes from one snapshot to a later one.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes<'a> {
    /// Rows of the later snapshot that are new or rewritten, in list order,
    /// each one serialized entry.
    pub upserts: Vec<&'a [u8]>,
    /// Keys of the earlier snapshot that the later one no longer has.
    pub removed: Vec<&'a str>,
}

/// The changes from `before` to `after`.
pub fn changes<'a>(before: &'a Snapshot, after: &'a Snapshot) -> Changes<'a> {
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
        .map(|row| &row.json[..])
        .collect();
    let now: HashSet<&str> = after.entries().iter().map(|row| row.key.as_str()).collect();
    let removed = before
        .entries()
        .iter()
        .map(|row| row.key.as_str())
        .filter(|key| !now.contains(key))
        .collect();
    Changes { upserts, removed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::{Entry, Key, Patch, Store, StoreConfig};

    fn store() -> Store {
        let me = Entry {
            host: Some("gw".into()),
            instance_id: Some("self".into()),
            ..Entry::default()
        };
        Store::new(StoreConfig::default(), me)
    }

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
        let c = changes(&before, &after);
        let rows: Vec<&str> = c
            .upserts
            .iter()
            .map(|row| std::str::from_utf8(row).unwrap())
            .collect();
        assert!(
            rows.iter().any(|r| r.contains(r#""host":"b2""#)),
            "{rows:?}"
        );
        assert!(
            !rows.iter().any(|r| r.contains(r#""host":"a""#)),
            "{rows:?}"
        );
        assert!(c.removed.is_empty());
    }

    #[test]
    fn removed_keys_are_listed() {
        let mut s = store();
        s.upsert(Key::parse("a").unwrap(), patch("a"), 1);
        let before = s.publish(1);
        s.expire(1 + crate::presence::DEFAULT_TTL.as_millis() as i64 + 1);
        let after = s.publish(1 + crate::presence::DEFAULT_TTL.as_millis() as i64 + 1);
        let c = changes(&before, &after);
        assert_eq!(c.removed, vec!["a"]);
    }

    #[test]
    fn a_snapshot_has_no_changes_from_itself() {
        let mut s = store();
        s.upsert(Key::parse("a").unwrap(), patch("a"), 1);
        let snap = s.publish(1);
        assert_eq!(changes(&snap, &snap), Changes::default());
    }
}
