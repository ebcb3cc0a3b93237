//! One row of a published list: its key, entry, JSON and provenance.
//!
//! Invariant: `json` is the encoding of `entry`; in a published list it is
//! a slice of its chunk's joined bytes (see `list.rs`).

use super::entry::Entry;
use super::key::Key;
use super::provenance::Origin;
use bytes::Bytes;
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
