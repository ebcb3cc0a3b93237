//! What a fleet keeps in Redis and says on its channel: key names, the
//! record stored per row, and the change message. Pure encoders/decoders.
//!
//! Layout under prefix `P`, for each gateway `N`:
//! - `P:node:N:rows`: hash, presence key -> [`Record`] JSON;
//! - `P:node:N:expiry`: sorted set, presence key -> `ts + ttl` (ms), so
//!   expired rows of a dead gateway can be pruned without reading them;
//! - `P:node:N:lease`: the gateway's boot id, with a `PX` TTL (its lease);
//! - `P:node:N:stamp`: a [`Stamp`], written in the same transaction as
//!   every batch: which boot wrote the hash last, its message number and
//!   how many rows the hash must hold (anti-entropy compares it);
//! - `P:nodes`: set of every node id that has rows;
//! - channel `P:changes`: one [`FleetMessage`] per published batch.
//!
//! Invariant: a record's `entry` is byte-for-byte the row's JSON in the
//! origin's snapshot, so receivers decode exactly what the origin serves.

use crate::presence::{Entry, Key, Millis, RemoteRow};
use serde::Deserialize;

/// Redis key and channel names of one fleet.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Names under `prefix`.
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// The set of node ids.
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// The change channel.
    pub fn channel(&self) -> String {
        format!("{}:changes", self.prefix)
    }

    /// `node`'s rows.
    pub fn rows(&self, node: &str) -> String {
        format!("{}:node:{node}:rows", self.prefix)
    }

    /// `node`'s expiry index.
    pub fn expiry(&self, node: &str) -> String {
        format!("{}:node:{node}:expiry", self.prefix)
    }

    /// `node`'s lease.
    pub fn lease(&self, node: &str) -> String {
        format!("{}:node:{node}:lease", self.prefix)
    }

    /// `node`'s [`Stamp`].
    pub fn stamp(&self, node: &str) -> String {
        format!("{}:node:{node}:stamp", self.prefix)
    }
}

/// What a gateway's last write left beside its hash: `BOOT SEQ ROWS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// The boot id that wrote it.
    pub boot: String,
    /// The number of the message published with that write.
    pub seq: u64,
    /// How many rows the hash holds after that write.
    pub rows: u64,
}

impl Stamp {
    /// The stored form.
    pub fn encode(&self) -> String {
        format!("{} {} {}", self.boot, self.seq, self.rows)
    }

    /// Reads the stored form; `None` if it is not one.
    pub fn parse(raw: &str) -> Option<Stamp> {
        let mut parts = raw.split(' ');
        let boot = parts.next().filter(|b| !b.is_empty())?.to_owned();
        let seq = parts.next()?.parse().ok()?;
        let rows = parts.next()?.parse().ok()?;
        parts.next().is_none().then_some(Stamp { boot, seq, rows })
    }
}

/// One row as stored in a hash and carried in a message.
#[derive(Debug, Clone, Deserialize)]
pub struct Record {
    /// The presence key.
    pub key: String,
    /// The origin holds a live connection for it.
    #[serde(default)]
    pub live: bool,
    /// The origin's own entry.
    #[serde(default)]
    pub pinned: bool,
    /// The entry, as the origin serves it.
    pub entry: Entry,
}

impl Record {
    /// Appends a record built from a row's already encoded JSON.
    pub fn write(out: &mut Vec<u8>, key: &str, live: bool, pinned: bool, entry_json: &[u8]) {
        out.extend_from_slice(br#"{"key":"#);
        serde_json::to_writer(&mut *out, key).expect("a str always encodes");
        out.extend_from_slice(if live {
            br#","live":true"#
        } else {
            br#","live":false"#
        });
        if pinned {
            out.extend_from_slice(br#","pinned":true"#);
        }
        out.extend_from_slice(br#","entry":"#);
        out.extend_from_slice(entry_json);
        out.push(b'}');
    }

    /// The row this record describes, or `None` if its key is blank.
    pub fn into_row(self) -> Option<RemoteRow> {
        Some(RemoteRow {
            key: Key::parse(&self.key)?,
            entry: self.entry,
            live: self.live,
            pinned: self.pinned,
        })
    }
}

/// What the fleet says on its channel after each batch.
#[derive(Debug, Clone, Deserialize)]
pub struct FleetMessage {
    /// The origin's node id.
    pub node: String,
    /// The origin's boot id: a new one after every restart.
    pub boot: String,
    /// Numbered 1, 2, 3… per boot; a gap means a receiver missed one.
    pub seq: u64,
    /// The origin rewrote its whole hash: reload it.
    #[serde(default)]
    pub reset: bool,
    /// Rows written.
    #[serde(default)]
    pub upserts: Vec<Record>,
    /// Keys the origin no longer holds.
    #[serde(default)]
    pub removed: Vec<String>,
    /// When the origin published it (ms), by its clock: propagation
    /// measurements, and each peer's clock skew.
    #[serde(default)]
    pub at: Millis,
    /// A heartbeat: no rows, `seq` is the origin's last message number
    /// (receivers that hold less missed one).
    #[serde(default)]
    pub beat: bool,
}

/// A heartbeat message: the origin's clock and last message number.
pub fn beat_message(node: &str, boot: &str, seq: u64, at: Millis) -> Vec<u8> {
    let mut message = begin_message(node, boot, seq, false, at);
    message.truncate(message.len() - br#","upserts":["#.len());
    message.extend_from_slice(br#","beat":true}"#);
    message
}

/// Starts a message; add records with [`push_record`] and finish with
/// [`finish_message`].
pub fn begin_message(node: &str, boot: &str, seq: u64, reset: bool, at: Millis) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(br#"{"node":"#);
    serde_json::to_writer(&mut out, node).expect("a str always encodes");
    out.extend_from_slice(br#","boot":"#);
    serde_json::to_writer(&mut out, boot).expect("a str always encodes");
    out.extend_from_slice(format!(r#","seq":{seq},"at":{at}"#).as_bytes());
    if reset {
        out.extend_from_slice(br#","reset":true"#);
    }
    out.extend_from_slice(br#","upserts":["#);
    out
}

/// Appends one already encoded record to the `upserts` of a message.
pub fn push_record(message: &mut Vec<u8>, record: &[u8]) {
    if message.last() != Some(&b'[') {
        message.push(b',');
    }
    message.extend_from_slice(record);
}

/// Closes `upserts` and appends `removed`.
pub fn finish_message<'a>(mut message: Vec<u8>, removed: impl Iterator<Item = &'a str>) -> Vec<u8> {
    message.extend_from_slice(br#"],"removed":"#);
    let removed: Vec<&str> = removed.collect();
    serde_json::to_writer(&mut message, &removed).expect("strs always encode");
    message.push(b'}');
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_round_trips_with_its_records() {
        let mut record = Vec::new();
        Record::write(
            &mut record,
            "mac \"1\"",
            true,
            false,
            br#"{"host":"m","text":"t","ts":5}"#,
        );
        let mut message = begin_message("gw-a", "boot", 3, false, 99);
        push_record(&mut message, &record);
        push_record(&mut message, &record);
        let message = finish_message(message, ["gone"].into_iter());
        let parsed: FleetMessage = serde_json::from_slice(&message).unwrap();
        assert_eq!(
            (parsed.node.as_str(), parsed.seq, parsed.at),
            ("gw-a", 3, 99)
        );
        assert!(!parsed.reset);
        assert_eq!(parsed.removed, ["gone"]);
        let row = parsed.upserts[1].clone().into_row().unwrap();
        assert_eq!(row.key.as_str(), "mac \"1\"");
        assert!(row.live && !row.pinned);
        assert_eq!((row.entry.host.as_deref(), row.entry.ts), (Some("m"), 5));
    }

    #[test]
    fn a_beat_carries_no_rows() {
        let parsed: FleetMessage = serde_json::from_slice(&beat_message("n", "b", 7, 42)).unwrap();
        assert!(parsed.beat && !parsed.reset);
        assert_eq!((parsed.seq, parsed.at), (7, 42));
        assert!(parsed.upserts.is_empty() && parsed.removed.is_empty());
    }

    #[test]
    fn a_blank_key_has_no_row() {
        let record: Record = serde_json::from_str(r#"{"key":" ","entry":{"ts":1}}"#).unwrap();
        assert!(record.into_row().is_none());
    }

    #[test]
    fn a_stamp_round_trips_and_garbage_is_no_stamp() {
        let stamp = Stamp {
            boot: "b-1".into(),
            seq: 7,
            rows: 3,
        };
        assert_eq!(Stamp::parse(&stamp.encode()), Some(stamp));
        for raw in ["", "b 1", "b x 1", "b 1 2 3", " 1 2"] {
            assert_eq!(Stamp::parse(raw), None, "{raw:?}");
        }
    }

    #[test]
    fn keys_live_under_the_prefix() {
        let keys = Keys::new("rc");
        assert_eq!(keys.rows("a:1"), "rc:node:a:1:rows");
        assert_eq!(keys.lease("a"), "rc:node:a:lease");
        assert_eq!(keys.channel(), "rc:changes");
    }
}
