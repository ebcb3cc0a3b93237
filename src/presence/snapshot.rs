//! The immutable, published view of the store: the self entry, then the
//! other rows in list order, each already encoded as JSON.
//!
//! Invariants: the self entry comes first; the rest (`list.rs`) are sorted by
//! `ts` descending, ties by key ascending, and their chunks hold their JSON
//! joined; `own.json` is the self entry with `ts` = `published_at`, its
//! digits starting at `own_ts_at` and followed only by `}`. Readers splice
//! a fresh `ts` there instead of re-encoding anything, and copy the chunks.

use super::entry::Millis;
use super::key::Key;
use super::list::List;
use super::pressure::Pressure;
pub use super::row::SnapshotEntry;
use bytes::Bytes;

/// One published version of the presence list.
///
/// A snapshot is the self row plus a persistent list of rows (`list.rs`): cloning one, or publishing
/// the next, shares every chunk of rows the two versions have in common.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub(crate) version: u64,
    pub(crate) published_at: Millis,
    /// The self entry, encoded with `ts` = `published_at`, last.
    pub(crate) own: SnapshotEntry,
    /// Offset of the first digit of the self entry's `ts` in `own.json`.
    pub(crate) own_ts_at: usize,
    pub(crate) list: List,
    pub(crate) pressure: Pressure,
    pub(crate) change_version: u64,
    /// Rows besides the self entry whose `gatewayId` is the self entry's.
    pub(crate) local_rows: usize,
}

impl Snapshot {
    /// A snapshot of `own` (the self entry, its `ts` encoded last) and the
    /// sealed `list`.
    pub(crate) fn new(
        version: u64,
        published_at: Millis,
        own: SnapshotEntry,
        list: List,
        pressure: Pressure,
    ) -> Self {
        let own_ts_at = ts_value_start(&own.json);
        Snapshot {
            version,
            published_at,
            own,
            own_ts_at,
            list,
            pressure,
            change_version: version,
            local_rows: 0,
        }
    }

    /// `stateVersion.presence` of this snapshot.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// When the writer published it.
    pub fn published_at(&self) -> Millis {
        self.published_at
    }

    /// Every row in list order: the self entry first, then [`Snapshot::rows`].
    pub fn entries(&self) -> impl Iterator<Item = &SnapshotEntry> + Clone {
        std::iter::once(&self.own).chain(self.list.iter())
    }

    /// The self entry's row.
    pub fn own(&self) -> &SnapshotEntry {
        &self.own
    }

    /// The rows after the self entry, in list order.
    pub fn rows(&self) -> impl Iterator<Item = &SnapshotEntry> + Clone {
        self.list.iter()
    }

    /// The row under `key` whose `ts` is `ts`, the self entry's whatever
    /// its `ts`. O(log rows).
    pub fn get(&self, ts: Millis, key: &Key) -> Option<&SnapshotEntry> {
        if *key == self.own.key {
            return Some(&self.own);
        }
        self.list.get(ts, key)
    }

    /// Number of rows, the self entry included.
    pub fn len(&self) -> usize {
        self.list.len() + 1
    }

    /// Always false: the self entry is always present.
    pub fn is_empty(&self) -> bool {
        false
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

    /// How many rows after the self entry are this gateway's own: their
    /// `gatewayId` is the self entry's (every row, outside a fleet). The
    /// writer counts them as rows come and go, so this is O(1).
    pub fn local_rows(&self) -> usize {
        self.local_rows
    }

    /// The same snapshot, with `local_rows` rows of this gateway's own.
    pub(crate) fn with_local_rows(mut self, local_rows: usize) -> Self {
        self.local_rows = local_rows;
        self
    }

    /// The same snapshot, naming `change_version` as its last change.
    pub(crate) fn with_change_version(mut self, change_version: u64) -> Self {
        self.change_version = change_version.min(self.version);
        self
    }

    /// Bytes [`Snapshot::write_list`] appends, give or take the digits of
    /// the self entry's `ts`.
    pub fn list_len(&self) -> usize {
        self.own.json.len() + self.list.bytes_len() + 2
    }

    /// Appends the list as a JSON array with the self entry's `ts` set to
    /// `now` ("every list refreshes its ts"). A byte copy of the chunks the
    /// writer joined, no encoding.
    pub fn write_list(&self, now: Millis, out: &mut Vec<u8>) {
        out.reserve(self.list_len() + 8);
        self.write_list_head(now, out);
        for chunk in self.list.chunks() {
            out.extend_from_slice(chunk);
        }
        out.push(b']');
    }

    /// The start of [`Snapshot::write_list`]: `[` and the self entry with
    /// its `ts` set to `now`. [`Snapshot::rest_chunks`] and `]` complete it.
    pub fn write_list_head(&self, now: Millis, out: &mut Vec<u8>) {
        out.push(b'[');
        out.extend_from_slice(&self.own.json[..self.own_ts_at]);
        out.extend_from_slice(
            itoa::Buffer::new()
                .format(now.max(self.published_at))
                .as_bytes(),
        );
        out.push(b'}');
    }

    /// The rows after the self entry, each with its leading comma: the
    /// part of the list that is the same in every answer at this version,
    /// chunk by chunk, shared, not joined.
    pub fn rest_chunks(&self) -> impl Iterator<Item = &Bytes> + Clone {
        self.list.chunks()
    }

    /// Bytes of [`Snapshot::rest_chunks`].
    pub fn rest_len(&self) -> usize {
        self.list.bytes_len()
    }

    /// [`Snapshot::rest_chunks`], each compressed by `deflate` on its own,
    /// once for every version that shares the chunk (`list.rs`).
    pub fn rest_deflated(
        &self,
        deflate: fn(&[u8]) -> Bytes,
    ) -> impl Iterator<Item = &Bytes> + Clone {
        self.list.deflated_chunks(deflate)
    }

    /// The checksum of [`Snapshot::rest_chunks`] by `hash`, combined with
    /// `combine` from one kept per chunk and per part, so a version sums
    /// only the chunks it changed (`List::checksum`, `list.rs`).
    pub fn rest_checksum(
        &self,
        hash: fn(&[u8]) -> u32,
        combine: fn(u32, u32, usize) -> u32,
    ) -> u32 {
        self.list.checksum(hash, combine)
    }

    /// The list as [`Snapshot::write_list`] writes it, as shared pieces
    /// (for a vectored write): the head ([`Snapshot::write_list_head`]),
    /// every chunk of rows, `]`.
    pub fn list_pieces(&self, now: Millis) -> impl Iterator<Item = Bytes> + '_ {
        let mut head = Vec::with_capacity(self.own_ts_at + 24);
        self.write_list_head(now, &mut head);
        std::iter::once(Bytes::from(head))
            .chain(self.list.chunks().cloned())
            .chain(std::iter::once(Bytes::from_static(b"]")))
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
