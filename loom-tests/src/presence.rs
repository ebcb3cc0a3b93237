//! The real `src/presence/list.rs` (the persistent list snapshots share),
//! compiled against loom, with toy stand-ins for the rows it holds.
//!
//! The list's nodes count their owners with loom's `Arc` under the flag
//! (see the top of `list.rs`), so loom explores the writer's "is this node
//! mine alone?" checks against readers cloning and dropping snapshots. The
//! rows are reduced to what the list reads: a key, a `ts`, the write's
//! `seq`, and the row's JSON.

/// `crate::presence::entry`, reduced to its time type.
pub mod entry {
    /// Milliseconds, as in the crate.
    pub type Millis = i64;
}

/// `crate::presence::key`: an ordered, cheaply cloned name.
pub mod key {
    /// A row's key.
    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub struct Key(pub String);
}

/// `crate::presence::row`, reduced to the fields the list reads.
pub mod row {
    use super::entry::Millis;
    use super::key::Key;
    use bytes::Bytes;

    /// One row.
    #[derive(Debug, Clone)]
    pub struct SnapshotEntry {
        pub key: Key,
        pub ts: Millis,
        pub seq: u64,
        pub json: Bytes,
    }

    /// As the crate's: points each row's `json` into `joined`.
    pub fn point_into(rows: &mut [SnapshotEntry], joined: Vec<u8>) -> Bytes {
        let joined = Bytes::from(joined);
        let mut at = 0;
        for row in rows {
            let end = at + 1 + row.json.len();
            row.json = joined.slice(at + 1..end);
            at = end;
        }
        joined
    }
}

#[path = "../../src/presence/list.rs"]
pub mod list;
