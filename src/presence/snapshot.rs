//! The immutable, published view of the store: entries in list order plus
//! the list already encoded as JSON.
//!
//! Invariants: `entries[0]` is the self entry; the rest are sorted by `ts`
//! descending, ties by key ascending; `list` is exactly the JSON array of
//! `entries` (self `ts` = `published_at`); `self_prefix` is the self entry's
//! bytes up to and including `"ts":`, and `rest` is every later entry,
//! each preceded by a comma. Readers splice a fresh `ts` between the two
//! instead of re-encoding anything.

use super::entry::{Entry, Millis};
use super::key::Key;
use bytes::Bytes;
use std::ops::Range;
use std::sync::Arc;

/// One row of a snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotEntry {
    /// The row's key.
    pub key: Key,
    /// The row. Unchanged rows share this allocation across snapshots, so
    /// `Arc::ptr_eq` tells whether a row changed between two snapshots.
    pub entry: Arc<Entry>,
    /// The row encoded as a JSON object.
    pub json: Bytes,
}

/// One published version of the presence list.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub(crate) version: u64,
    pub(crate) published_at: Millis,
    pub(crate) entries: Vec<SnapshotEntry>,
    pub(crate) list: Bytes,
    pub(crate) self_prefix: Range<usize>,
    pub(crate) rest: Range<usize>,
}

impl Snapshot {
    /// `stateVersion.presence` of this snapshot.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// When the writer published it.
    pub fn published_at(&self) -> Millis {
        self.published_at
    }

    /// The rows in list order, self first.
    pub fn entries(&self) -> &[SnapshotEntry] {
        &self.entries
    }

    /// Number of rows, the self entry included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Always false: the self entry is always present.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The list as a JSON array, as of [`Snapshot::published_at`].
    pub fn list_json(&self) -> &Bytes {
        &self.list
    }

    /// Appends the list as a JSON array with the self entry's `ts` set to
    /// `now` ("every list refreshes its ts"). A byte copy, no encoding.
    pub fn write_list(&self, now: Millis, out: &mut Vec<u8>) {
        out.reserve(self.list.len() + 8);
        out.push(b'[');
        out.extend_from_slice(&self.list[self.self_prefix.clone()]);
        out.extend_from_slice(
            itoa::Buffer::new()
                .format(now.max(self.published_at))
                .as_bytes(),
        );
        out.push(b'}');
        out.extend_from_slice(&self.list[self.rest.clone()]);
        out.push(b']');
    }

    /// Builds a snapshot from rows in list order; `entries[0]` must be the
    /// self entry, encoded with `ts` last.
    pub(crate) fn build(version: u64, published_at: Millis, entries: Vec<SnapshotEntry>) -> Self {
        let total: usize = entries.iter().map(|e| e.json.len() + 1).sum();
        let mut list = Vec::with_capacity(total + 2);
        list.push(b'[');
        let first = &entries[0].json;
        let ts_at = ts_value_start(first);
        let self_prefix = 1..1 + ts_at;
        list.extend_from_slice(first);
        let rest_start = list.len();
        for row in &entries[1..] {
            list.push(b',');
            list.extend_from_slice(&row.json);
        }
        let rest = rest_start..list.len();
        list.push(b']');
        Snapshot {
            version,
            published_at,
            entries,
            list: Bytes::from(list),
            self_prefix,
            rest,
        }
    }
}

/// Offset of the first digit of the trailing `"ts":N}` in an encoded entry.
fn ts_value_start(json: &[u8]) -> usize {
    const TS: &[u8] = b"\"ts\":";
    // `ts` is the last field of every encoded `Entry` (see entry.rs), so its
    // name is the last occurrence of the pattern, even when a string value
    // earlier in the object contains the same bytes.
    json.windows(TS.len())
        .rposition(|w| w == TS)
        .map(|at| at + TS.len())
        .expect("every encoded entry ends with its ts field")
}
