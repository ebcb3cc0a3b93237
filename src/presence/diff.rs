//! What changed between two snapshots: the rows written and the keys
//! removed, for `presence.delta` (docs/protocol.md §7) and the fleet.
//!
//! Invariant: a row counts as written when its place or its `seq` differs
//! between the snapshots (every publish numbers the rows it rewrote
//! anew), and the lists share every chunk of rows neither changed, so
//! the diff walks only the chunks that differ: O(changes), not O(rows).

use super::key::Key;
use super::list;
use super::snapshot::{Snapshot, SnapshotEntry};
use std::collections::HashSet;

/// What one snapshot has that another has not, row by row.
#[derive(Debug, Default)]
pub struct RowDiff<'a> {
    /// Rows of the later snapshot that are new or rewritten (moved rows
    /// included), in list order; the self entry first when it changed.
    pub written: Vec<&'a SnapshotEntry>,
    /// Rows of the earlier snapshot that the later one no longer has as
    /// they were: removed, or replaced by one in `written`.
    pub replaced: Vec<&'a SnapshotEntry>,
}

impl<'a> RowDiff<'a> {
    /// The rows that differ from `before` to `after`, two snapshots of one
    /// store.
    pub fn between(before: &'a Snapshot, after: &'a Snapshot) -> RowDiff<'a> {
        let mut diff = RowDiff::default();
        if before.own.seq != after.own.seq {
            diff.written.push(&after.own);
        }
        list::diff(
            &before.list,
            &after.list,
            &mut diff.written,
            &mut diff.replaced,
        );
        diff
    }

    /// The keys of `replaced` rows that no row of `written` brings back.
    pub fn removed(&self) -> Vec<&'a Key> {
        let back: HashSet<&Key> = self.written.iter().map(|row| &row.key).collect();
        self.replaced
            .iter()
            .map(|row| &row.key)
            .filter(|key| !back.contains(key))
            .collect()
    }
}

/// The rows of `after` that are new or rewritten since `before`, in list
/// order, and the keys of `before` that `after` no longer has.
pub fn changed_rows<'a>(
    before: &'a Snapshot,
    after: &'a Snapshot,
) -> (Vec<&'a SnapshotEntry>, Vec<&'a Key>) {
    let diff = RowDiff::between(before, after);
    let removed = diff.removed();
    (diff.written, removed)
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
