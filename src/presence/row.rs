//! One row of a published list: its key, its JSON, the few fields the
//! writer and the fleet read on every change, and its provenance.
//!
//! Invariants: `json` is the encoding of the row's [`Entry`], and `ts` and
//! `gateway` are that entry's `ts` and `gatewayId`. The entry itself is
//! kept only as its JSON ([`SnapshotEntry::entry`] parses it back): a row
//! costs its JSON, not a parsed copy besides (issue 19, benches/README.md).
//! In a published list `json` is a range of its chunk's joined bytes (see
//! `list.rs`): a [`RowJson`], 16 bytes where a `Bytes` is 32 (issue 19).

use super::entry::{Entry, Millis, Patch};
use super::entry_ref::EntryRef;
use super::key::Key;
use super::provenance::Origin;
use arcstr::ArcStr;
use bytes::Bytes;
use std::sync::Arc;

/// One row of a snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotEntry {
    /// The row's key.
    pub key: Key,
    /// The row encoded as a JSON object.
    pub json: RowJson,
    /// The entry's `ts`: where the row sits in the list.
    pub ts: Millis,
    /// The entry's `gatewayId`, shared by every row of that gateway (one
    /// pointer: an `ArcStr`).
    pub gateway: Option<ArcStr>,
    /// The writer's number for this write of the row, new on every
    /// publish that rewrote it: two rows of one writer's snapshots with
    /// the same `seq` are the same row, unchanged.
    pub seq: u64,
    /// A connection for this row is live: on this gateway, or on the
    /// fleet gateway named by its `gatewayId`. The self entry's is true.
    pub live: bool,
    /// A gateway's own entry (this one's, or another fleet gateway's):
    /// exempt from the cap, and never a client the doctor speaks of.
    pub pinned: bool,
    /// Why the row has its key and who wrote it last. Not part of `json`:
    /// only the doctor reads it. Kept here alone (80 bytes, inline): the
    /// writer copies it back out when it writes the row again.
    pub origin: Origin,
}

impl SnapshotEntry {
    /// A row of `entry`, encoded here, numbered `seq`.
    pub fn new(key: Key, entry: &Entry, seq: u64, origin: Origin) -> SnapshotEntry {
        SnapshotEntry {
            key,
            json: encode(entry),
            ts: entry.ts,
            gateway: entry.gateway_id.as_deref().map(ArcStr::from),
            seq,
            live: false,
            pinned: false,
            origin,
        }
    }

    /// The row's entry, parsed from its JSON: O(row), an allocation per
    /// field. Hot paths read `ts`, `gateway` and `json` instead.
    pub fn entry(&self) -> Entry {
        decode(&self.json)
    }

    /// The row's entry with `patch` merged at `ts`: as
    /// `self.entry().merge(patch, ts)`, but copying only the fields the
    /// patch does not replace (`entry_ref.rs`).
    pub fn merged(&self, patch: Patch, ts: Millis) -> Entry {
        EntryRef::parse(&self.json).merged(patch, ts)
    }
}

/// A row's JSON: a range of a shared buffer, its chunk's joined JSON once
/// the list holds it (or its own encoding before). Reads as the bytes.
#[derive(Clone)]
pub struct RowJson {
    buf: Arc<Vec<u8>>,
    start: u32,
    len: u32,
}

impl RowJson {
    /// `buf[start..start + len]`.
    fn range(buf: &Arc<Vec<u8>>, start: usize, len: usize) -> RowJson {
        debug_assert!(start + len <= buf.len());
        RowJson {
            buf: Arc::clone(buf),
            start: u32::try_from(start).expect("a chunk under 4 GiB"),
            len: u32::try_from(len).expect("a row under 4 GiB"),
        }
    }
}

impl From<Vec<u8>> for RowJson {
    fn from(json: Vec<u8>) -> RowJson {
        let len = json.len();
        RowJson::range(&Arc::new(json), 0, len)
    }
}

impl std::ops::Deref for RowJson {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        let start = self.start as usize;
        &self.buf[start..start + self.len as usize]
    }
}

impl AsRef<[u8]> for RowJson {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl PartialEq for RowJson {
    fn eq(&self, other: &RowJson) -> bool {
        **self == **other
    }
}

impl Eq for RowJson {}

impl std::fmt::Debug for RowJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&String::from_utf8_lossy(self), f)
    }
}

/// A chunk's joined buffer, as the `Bytes` readers write out.
struct Joined(Arc<Vec<u8>>);

impl AsRef<[u8]> for Joined {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Points each of `rows`' `json` into `joined` (`,json` of each row, in
/// order), and returns `joined` as `Bytes`, sharing the buffer the rows
/// now hold (`list.rs` joins a chunk with it).
pub(crate) fn point_into(rows: &mut [SnapshotEntry], joined: Vec<u8>) -> Bytes {
    let joined = Arc::new(joined);
    let mut at = 0;
    for row in rows {
        let len = row.json.len();
        debug_assert_eq!(joined[at], b',');
        row.json = RowJson::range(&joined, at + 1, len);
        at += 1 + len;
    }
    debug_assert_eq!(at, joined.len());
    Bytes::from_owner(Joined(joined))
}

/// Writes a row's JSON the way every snapshot carries it, into a buffer
/// of its exact size (encoded into a scratch buffer first, so the
/// writer's rows do not each grow a buffer by doubling).
pub(crate) fn encode(entry: &Entry) -> RowJson {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with_borrow_mut(|out| {
        out.clear();
        serde_json::to_writer(&mut *out, entry).expect("an Entry always encodes");
        RowJson::from(out.to_vec())
    })
}

/// Reads back what [`encode`] wrote.
pub(crate) fn decode(json: &[u8]) -> Entry {
    serde_json::from_slice(json).expect("a row's json is an encoded Entry")
}

/// A row with its entry parsed, for readers that look at many fields of
/// many rows (the doctor): parse once, then read fields. Derefs to the row.
#[derive(Debug)]
pub struct ParsedRow<'a> {
    /// The row.
    pub row: &'a SnapshotEntry,
    /// Its entry, parsed from `row.json`.
    pub entry: Entry,
}

impl<'a> ParsedRow<'a> {
    /// Parses `row`'s entry.
    pub fn new(row: &'a SnapshotEntry) -> ParsedRow<'a> {
        ParsedRow {
            row,
            entry: row.entry(),
        }
    }
}

impl std::ops::Deref for ParsedRow<'_> {
    type Target = SnapshotEntry;

    fn deref(&self) -> &SnapshotEntry {
        self.row
    }
}

/// The one field [`SnapshotEntry::mode`] reads, borrowed from the JSON.
#[derive(serde::Deserialize)]
struct ModeOnly<'a> {
    #[serde(borrow, default)]
    mode: Option<std::borrow::Cow<'a, str>>,
}

impl SnapshotEntry {
    /// The entry's `mode`, read from the JSON without building the entry
    /// (an allocation only when the value has escapes).
    pub fn mode(&self) -> Option<std::borrow::Cow<'_, str>> {
        serde_json::from_slice::<ModeOnly<'_>>(&self.json)
            .expect("a row's json is an encoded Entry")
            .mode
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_stays_small() {
        // benches/README.md: a list row costs this much besides its JSON
        // and its key's text.
        assert_eq!(std::mem::size_of::<RowJson>(), 16);
        assert_eq!(std::mem::size_of::<SnapshotEntry>(), 136);
    }

    #[test]
    fn a_row_reads_its_own_range_of_a_joined_chunk() {
        let entry = |host: &str| Entry {
            host: Some(host.into()),
            ..Entry::default()
        };
        let mut rows = vec![
            SnapshotEntry::new(Key::parse("a").unwrap(), &entry("a"), 1, origin()),
            SnapshotEntry::new(Key::parse("b").unwrap(), &entry("bb"), 2, origin()),
        ];
        let mut joined = Vec::new();
        for row in &rows {
            joined.push(b',');
            joined.extend_from_slice(&row.json);
        }
        let bytes = point_into(&mut rows, joined.clone());
        assert_eq!(&bytes[..], &joined[..]);
        assert_eq!(rows[0].json, encode(&entry("a")));
        assert_eq!(rows[1].entry(), entry("bb"));
        assert_eq!(
            rows[1].json.as_ptr(),
            bytes[1 + rows[0].json.len() + 1..].as_ptr()
        );
    }

    fn origin() -> Origin {
        use crate::presence::provenance::{Write, Writer};
        Origin::new(Write {
            by: Writer::UNKNOWN,
            at: 0,
        })
    }
}
