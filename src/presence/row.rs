//! One row of a published list: its key, its JSON, the few fields the
//! writer and the fleet read on every change, and its provenance.
//!
//! Invariants: `json` is the encoding of the row's [`Entry`], and `ts` and
//! `gateway` are that entry's `ts` and `gatewayId`. The entry itself is
//! kept only as its JSON ([`SnapshotEntry::entry`] parses it back): a row
//! costs its JSON, not a parsed copy besides (issue 19, benches/README.md).
//! In a published list `json` is a slice of its chunk's joined bytes (see
//! `list.rs`).

use super::entry::{Entry, Millis, Patch};
use super::entry_ref::EntryRef;
use super::key::Key;
use super::provenance::Origin;
use bytes::Bytes;
use std::sync::Arc;

/// One row of a snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotEntry {
    /// The row's key.
    pub key: Key,
    /// The row encoded as a JSON object.
    pub json: Bytes,
    /// The entry's `ts`: where the row sits in the list.
    pub ts: Millis,
    /// The entry's `gatewayId`, shared by every row of that gateway.
    pub gateway: Option<Arc<str>>,
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
    /// only the doctor reads it. Kept here alone (124 bytes, inline): the
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
            gateway: entry.gateway_id.as_deref().map(Arc::from),
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

/// Writes a row's JSON the way every snapshot carries it.
pub(crate) fn encode(entry: &Entry) -> Bytes {
    let mut out = Vec::with_capacity(256);
    serde_json::to_writer(&mut out, entry).expect("an Entry always encodes");
    Bytes::from(out)
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
