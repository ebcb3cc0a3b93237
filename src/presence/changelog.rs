//! A bounded log of which keys changed between recent presence versions,
//! so a `presence.delta` client can be brought from any recent version to
//! the current one in one merged delta (docs/protocol.md §7, `presenceSince`),
//! at O(changes) rather than O(list).
//!
//! Invariants: records are contiguous (each starts where the last ended);
//! the log holds at most `max_keys` keys in all, dropping the oldest
//! records first; [`ChangeLog::since`] answers only for a version the log
//! covers, `oldest() ..= newest()`, and otherwise says it cannot.

use super::diff::changed_rows;
use super::entry::Millis;
use super::key::Key;
use super::snapshot::{Snapshot, SnapshotEntry};
use std::collections::{HashMap, VecDeque};

/// Keys a log holds by default: a few minutes of a busy 200-entry gateway,
/// a few seconds of a 20,000-entry one.
pub const DEFAULT_LOG_KEYS: usize = 65_536;

/// One step: the keys written or removed from `from` to `to`, each with
/// the `ts` of its row at `to`, or `None` if `to` has no row for it.
#[derive(Debug)]
struct Record {
    from: u64,
    to: u64,
    keys: Vec<(Key, Option<Millis>)>,
}

/// Recent changes, by version.
#[derive(Debug)]
pub struct ChangeLog {
    records: VecDeque<Record>,
    /// The version the log starts at when it has no records.
    base: u64,
    keys: usize,
    max_keys: usize,
}

/// A merged change from some version to the log's newest: rows to upsert
/// (from the newest snapshot, in list order) and keys to remove.
#[derive(Debug)]
pub struct Merged<'a> {
    /// The version the client holds.
    pub from: u64,
    /// The newest version.
    pub to: u64,
    /// Rows written since `from`.
    pub upserts: Vec<&'a SnapshotEntry>,
    /// Keys removed since `from`.
    pub removed: Vec<Key>,
}

impl<'a> Merged<'a> {
    /// The change of one step, from `before` to `after`.
    pub fn between(before: &'a Snapshot, after: &'a Snapshot) -> Merged<'a> {
        let (upserts, removed) = changed_rows(before, after);
        Merged {
            from: before.version(),
            to: after.version(),
            upserts,
            removed: removed.into_iter().cloned().collect(),
        }
    }
}

impl ChangeLog {
    /// An empty log at version `base`, holding at most `max_keys` keys.
    pub fn new(base: u64, max_keys: usize) -> ChangeLog {
        ChangeLog {
            records: VecDeque::new(),
            base,
            keys: 0,
            max_keys,
        }
    }

    /// The oldest version a merged change can start from.
    pub fn oldest(&self) -> u64 {
        self.records.front().map_or(self.base, |r| r.from)
    }

    /// The newest version recorded.
    pub fn newest(&self) -> u64 {
        self.records.back().map_or(self.base, |r| r.to)
    }

    /// Records `step` (see [`Merged::between`]), which must start at
    /// [`ChangeLog::newest`]; a step that does not is a restart: the log
    /// forgets everything and starts where the step ends.
    pub fn record(&mut self, step: &Merged<'_>) {
        if step.from != self.newest() || step.to <= step.from {
            *self = ChangeLog::new(step.to, self.max_keys);
            return;
        }
        let keys: Vec<(Key, Option<Millis>)> = step
            .upserts
            .iter()
            .map(|row| (row.key.clone(), Some(row.ts)))
            .chain(step.removed.iter().map(|key| (key.clone(), None)))
            .collect();
        self.keys += keys.len();
        self.records.push_back(Record {
            from: step.from,
            to: step.to,
            keys,
        });
        while self.keys > self.max_keys {
            let Some(old) = self.records.pop_front() else {
                break;
            };
            self.keys -= old.keys.len();
            if self.records.is_empty() {
                self.base = old.to;
            }
        }
    }

    /// What changed from `version` to the newest, given `newest`, the
    /// snapshot at [`ChangeLog::newest`]. `None` when the log does not cover
    /// `version` (too old, or ahead of it). O(keys changed since `version`
    /// × log rows): each key's last record says where its row is now.
    pub fn since<'a>(&self, version: u64, newest: &'a Snapshot) -> Option<Merged<'a>> {
        if version < self.oldest() || version > self.newest() || newest.version() != self.newest() {
            return None;
        }
        let mut last: HashMap<&Key, Option<Millis>> = HashMap::new();
        for record in self.records.iter().filter(|r| r.to > version) {
            last.extend(record.keys.iter().map(|(key, ts)| (key, *ts)));
        }
        let mut upserts: Vec<&SnapshotEntry> = Vec::new();
        let mut removed: Vec<Key> = Vec::new();
        for (key, ts) in last {
            match ts.and_then(|ts| newest.get(ts, key)) {
                Some(row) => upserts.push(row),
                None => removed.push(key.clone()),
            }
        }
        // List order, as a whole list would show them; the self entry
        // first.
        let own = |row: &SnapshotEntry| std::ptr::eq(row, newest.own());
        upserts.sort_by(|a, b| {
            own(b)
                .cmp(&own(a))
                .then_with(|| b.ts.cmp(&a.ts))
                .then_with(|| a.key.cmp(&b.key))
        });
        removed.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Some(Merged {
            from: version,
            to: self.newest(),
            upserts,
            removed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::diff::test_store as store;
    use super::*;
    use crate::presence::{Patch, Store};

    fn key(s: &str) -> Key {
        Key::parse(s).unwrap()
    }

    fn upsert(s: &mut Store, k: &str, host: &str, now: i64) {
        let patch = Patch {
            host: Some(host.into()),
            ..Patch::default()
        };
        s.upsert(key(k), patch, now);
    }

    fn hosts(m: &Merged<'_>) -> Vec<String> {
        // The self row is rewritten by every publish; leave it out.
        m.upserts
            .iter()
            .filter_map(|r| r.entry().host)
            .filter(|h| h != "gw")
            .collect()
    }

    #[test]
    fn merged_change_covers_every_step_since_the_version() {
        let mut s = store();
        let v1 = s.publish(1);
        let mut log = ChangeLog::new(v1.version(), 100);
        upsert(&mut s, "a", "a1", 2);
        let v2 = s.publish(2);
        log.record(&Merged::between(&v1, &v2));
        upsert(&mut s, "b", "b1", 3);
        upsert(&mut s, "a", "a2", 3);
        let v3 = s.publish(3);
        log.record(&Merged::between(&v2, &v3));
        let from_v1 = log.since(v1.version(), &v3).unwrap();
        assert_eq!(from_v1.to, v3.version());
        let mut got = hosts(&from_v1);
        got.sort();
        assert_eq!(got, ["a2", "b1"], "current rows, each once");
        let from_v2 = log.since(v2.version(), &v3).unwrap();
        let mut got = hosts(&from_v2);
        got.sort();
        assert_eq!(got, ["a2", "b1"]);
        let from_v3 = log.since(v3.version(), &v3).unwrap();
        assert!(hosts(&from_v3).is_empty() && from_v3.removed.is_empty());
    }

    #[test]
    fn a_key_removed_after_the_version_is_listed_as_removed() {
        let mut s = store();
        upsert(&mut s, "a", "a", 1);
        let v1 = s.publish(1);
        let mut log = ChangeLog::new(v1.version(), 100);
        let ttl = crate::presence::DEFAULT_TTL.as_millis() as i64;
        s.expire(ttl + 2);
        let v2 = s.publish(ttl + 2);
        log.record(&Merged::between(&v1, &v2));
        let merged = log.since(v1.version(), &v2).unwrap();
        assert_eq!(merged.removed, vec![key("a")]);
    }

    #[test]
    fn versions_outside_the_log_are_refused() {
        let mut s = store();
        let v1 = s.publish(1);
        // Each step writes two keys (the row and the self row): room for one.
        let mut log = ChangeLog::new(v1.version(), 3);
        upsert(&mut s, "a", "a", 2);
        let v2 = s.publish(2);
        log.record(&Merged::between(&v1, &v2));
        upsert(&mut s, "b", "b", 3);
        let v3 = s.publish(3);
        log.record(&Merged::between(&v2, &v3));
        assert_eq!(
            log.oldest(),
            v2.version(),
            "the bound dropped the first step"
        );
        assert!(log.since(v1.version(), &v3).is_none(), "too old");
        assert!(
            log.since(v3.version() + 1, &v3).is_none(),
            "ahead of the server"
        );
        assert!(log.since(v2.version(), &v3).is_some());
    }
}
