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
use super::origin::Origin;
use super::pressure::Pressure;
use bytes::Bytes;
use std::ops::Range;
use std::sync::{Arc, Mutex};

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
    /// A connection for this row is live: on this gateway, or on the
    /// fleet gateway named by its `gatewayId`. The self entry's is true.
    pub live: bool,
    /// A gateway's own entry (this one's, or another fleet gateway's):
    /// exempt from the cap, and never a client the doctor speaks of.
    pub pinned: bool,
    /// Why the row has its key and who wrote it last. Not part of `json`:
    /// only the doctor reads it.
    pub origin: Arc<Origin>,
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
    pub(crate) pressure: Pressure,
    pub(crate) change_version: u64,
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

    /// The cap and the removals of the last TTL, as of this snapshot.
    pub fn pressure(&self) -> Pressure {
        self.pressure
    }

    /// The last version at or before this one that changed more than the
    /// `ts` of live rows: a snapshot whose `change_version` is below its
    /// `version` differs from the one before only by renewals (docs/protocol.md
    /// §5.4), which watchers are not woken for.
    pub fn change_version(&self) -> u64 {
        self.change_version
    }

    /// The same snapshot, naming `change_version` as its last change.
    pub(crate) fn with_change_version(mut self, change_version: u64) -> Self {
        self.change_version = change_version.min(self.version);
        self
    }

    /// The same snapshot, reporting `pressure`.
    pub(crate) fn with_pressure(mut self, pressure: Pressure) -> Self {
        self.pressure = pressure;
        self
    }

    /// The list as a JSON array, as of [`Snapshot::published_at`].
    pub fn list_json(&self) -> &Bytes {
        &self.list
    }

    /// Appends the list as a JSON array with the self entry's `ts` set to
    /// `now` ("every list refreshes its ts"). A byte copy, no encoding.
    pub fn write_list(&self, now: Millis, out: &mut Vec<u8>) {
        out.reserve(self.list.len() + 8);
        self.write_list_head(now, out);
        out.extend_from_slice(&self.list[self.rest.clone()]);
        out.push(b']');
    }

    /// The start of [`Snapshot::write_list`]: `[` and the self entry with
    /// its `ts` set to `now`. [`Snapshot::list_rest`] and `]` complete it.
    pub fn write_list_head(&self, now: Millis, out: &mut Vec<u8>) {
        out.push(b'[');
        out.extend_from_slice(&self.list[self.self_prefix.clone()]);
        out.extend_from_slice(
            itoa::Buffer::new()
                .format(now.max(self.published_at))
                .as_bytes(),
        );
        out.push(b'}');
    }

    /// The rows after the self entry, each with its leading comma: the
    /// part of the list that is the same in every answer at this version.
    pub fn list_rest(&self) -> Bytes {
        self.list.slice(self.rest.clone())
    }

    /// Builds a snapshot from rows in list order; `entries[0]` must be the
    /// self entry, encoded with `ts` last. The list is written into a
    /// buffer from `lists`, and goes back there when the snapshot is gone.
    pub(crate) fn build(
        version: u64,
        published_at: Millis,
        entries: Vec<SnapshotEntry>,
        lists: &ListPool,
    ) -> Self {
        let total: usize = entries.iter().map(|e| e.json.len() + 1).sum();
        let mut list = lists.take(total + 2);
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
            list: Bytes::from_owner(PooledList {
                bytes: list,
                home: lists.clone(),
            }),
            self_prefix,
            rest,
            pressure: Pressure::default(),
            change_version: version,
        }
    }
}

/// Spare list buffers kept for the next publish.
///
/// At 100k entries a list is ~30 MB. A fresh buffer of that size comes
/// straight from the OS, and the writer then spends milliseconds per
/// publish faulting in and zeroing its pages; a buffer that held an earlier
/// list is already mapped. A snapshot hands its buffer back when its last
/// reader drops it, on that reader's thread, hence the lock (taken once per
/// snapshot, never while reading).
#[derive(Debug, Clone, Default)]
pub(crate) struct ListPool(Arc<Mutex<Vec<Vec<u8>>>>);

/// Spares kept: the writer builds one list while readers may still hold
/// the previous one, so two cover the steady state.
const SPARE_LISTS: usize = 2;

impl ListPool {
    /// An empty buffer with room for `len` bytes: a spare one if it fits,
    /// else a new one with some headroom, so that it still fits when the
    /// list has grown a little by the time it comes back.
    fn take(&self, len: usize) -> Vec<u8> {
        let spare = self.0.lock().ok().and_then(|mut spares| spares.pop());
        match spare {
            // Growing a spare would copy its old bytes for nothing, and a
            // store that shrank should not keep a buffer for its old size.
            Some(mut buffer) if (len..=len.saturating_mul(4)).contains(&buffer.capacity()) => {
                buffer.clear();
                buffer
            }
            _ => Vec::with_capacity(len + len / 8),
        }
    }

    fn give_back(&self, buffer: Vec<u8>) {
        if let Ok(mut spares) = self.0.lock() {
            if spares.len() < SPARE_LISTS {
                spares.push(buffer);
            }
        }
    }
}

/// A list buffer that returns to its pool when the last `Bytes` of it goes.
struct PooledList {
    bytes: Vec<u8>,
    home: ListPool,
}

impl AsRef<[u8]> for PooledList {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for PooledList {
    fn drop(&mut self) {
        self.home.give_back(std::mem::take(&mut self.bytes));
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
