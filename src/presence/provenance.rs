//! Provenance: why a row has its key, and the last few writes that touched
//! it. The writer keeps one [`Origin`] per row and publishes it next to the
//! entry, never inside it: the list OpenClaw clients receive is unchanged,
//! and only the doctor (`presence::diagnosis`) and its readers look at it.
//!
//! Invariants: an origin always has its creating write; `recent` holds the
//! last [`RECENT_WRITES`] writes, newest last, the creating one included
//! while it is among them.

use crate::clock::Millis;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// Writes remembered per row: enough to see a connect, a few beacons and
/// the disconnect that followed, small enough (an [`Origin`] is 80 bytes)
/// that a million-row fleet view pays about 80 MB for it.
pub const RECENT_WRITES: usize = 4;

/// Where a write's key came from (docs/protocol.md §5.1, §5.2), in the order of
/// precedence a connect or beacon applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeySource {
    /// Connect: `device.id`.
    DeviceId,
    /// Connect: `client.instanceId`.
    InstanceId,
    /// Connect without a stable id: the server-made connection id, new on
    /// every connection.
    ConnectionId,
    /// Connect whose `device.id` or `client.instanceId` named a row another
    /// principal holds (§5.1): the connection id instead.
    NotOwner,
    /// Beacon: its `deviceId` param.
    BeaconDeviceId,
    /// Beacon: its `instanceId` param.
    BeaconInstanceId,
    /// Beacon without ids: the host parsed from its text.
    TextHost,
    /// Beacon without ids or host: the ip parsed from its text.
    TextIp,
    /// Beacon without ids and with free text: the text's first 64 chars.
    Text,
    /// Beacon with nothing else to key it: the gateway's host name.
    GatewayHost,
    /// Another fleet gateway wrote the row, or a previous run did.
    Elsewhere,
    /// The gateway's own entry: its `instanceId`, made at start.
    Gateway,
    /// Not recorded: a row written by a tool that keeps no provenance; or,
    /// read from a report, a source this build does not know.
    #[serde(other)]
    Unknown,
}

impl KeySource {
    /// True when the key names the instance itself, so it survives a
    /// reconnect: a `device.id` or an `instanceId`.
    pub fn is_stable(self) -> bool {
        matches!(
            self,
            KeySource::DeviceId
                | KeySource::InstanceId
                | KeySource::BeaconDeviceId
                | KeySource::BeaconInstanceId
        )
    }

    /// True when the key is a stand-in that another write of the same
    /// instance may not reproduce: a connection id or something parsed.
    pub fn is_weak(self) -> bool {
        matches!(
            self,
            KeySource::ConnectionId
                | KeySource::NotOwner
                | KeySource::TextHost
                | KeySource::TextIp
                | KeySource::Text
                | KeySource::GatewayHost
        )
    }

    /// Plain words for a person reading the doctor's report.
    pub fn explain(self) -> &'static str {
        match self {
            KeySource::Unknown => "not recorded",
            KeySource::DeviceId => "the connect's device.id",
            KeySource::InstanceId => "the connect's client.instanceId",
            KeySource::ConnectionId => {
                "the connection id (the connect sent no client.instanceId or device.id)"
            }
            KeySource::NotOwner => {
                "the connection id: the key its connect named is held by another client \
                 (a live connection with another token, or a proven device), so it could not \
                 write that row"
            }
            KeySource::BeaconDeviceId => "the beacon's deviceId",
            KeySource::BeaconInstanceId => "the beacon's instanceId",
            KeySource::TextHost => "the host in a beacon's text (the beacon sent no instanceId)",
            KeySource::TextIp => {
                "the ip in a beacon's text (the beacon sent no instanceId and no host)"
            }
            KeySource::Text => "a beacon's text (the beacon sent no instanceId and no Node: line)",
            KeySource::GatewayHost => "the gateway's host name (the beacon named nothing else)",
            KeySource::Elsewhere => "another gateway of the fleet, or a previous run",
            KeySource::Gateway => "the gateway's own instanceId, made at start",
        }
    }
}

/// What kind of write touched a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WriteKind {
    /// A tracked connection's handshake.
    Connect,
    /// A `system-event`.
    Beacon,
    /// A tracked connection closed.
    Disconnect,
    /// Another fleet gateway's row arrived.
    Remote,
    /// The gateway holding the row's connection stopped renewing its lease.
    Lapse,
    /// The row came back from Redis or the state file at start.
    Restore,
    /// The gateway wrote its own entry at start.
    Start,
    /// Read from a report: a kind this build does not know (a newer
    /// gateway's). Never recorded.
    #[serde(other)]
    Unknown,
}

/// A connection, as its `hello-ok` named it (`server.connId`): the client's
/// own logs show the same id. Kept as bytes, not a `u128`, so that a
/// [`Write`] is 32 bytes instead of 64 (a `u128` is 16-byte aligned).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnTag([u8; 16]);

impl ConnTag {
    /// The tag of the connection whose `connId` is the UUID `id`.
    pub fn from_u128(id: u128) -> ConnTag {
        ConnTag(id.to_be_bytes())
    }
}

impl fmt::Display for ConnTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&uuid::Uuid::from_bytes(self.0).hyphenated(), f)
    }
}

impl fmt::Debug for ConnTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for ConnTag {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ConnTag {
    /// The `connId` UUID, as [`Serialize`] writes it.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <Cow<'de, str>>::deserialize(deserializer)?;
        uuid::Uuid::parse_str(&text)
            .map(|id| ConnTag(id.into_bytes()))
            .map_err(serde::de::Error::custom)
    }
}

/// Who asks for a write, and why its key is what it is. Producers fill it
/// in with the key; the store stamps the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Writer {
    /// What kind of write.
    pub kind: WriteKind,
    /// The connection that sent it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn: Option<ConnTag>,
    /// Where its key came from.
    #[serde(default = "unknown_source")]
    pub source: KeySource,
}

fn unknown_source() -> KeySource {
    KeySource::Unknown
}

impl Writer {
    /// A write whose producer kept no provenance.
    pub const UNKNOWN: Writer = Writer {
        kind: WriteKind::Beacon,
        conn: None,
        source: KeySource::Unknown,
    };

    /// A write from outside this gateway (fleet, restore, lapse).
    pub fn elsewhere(kind: WriteKind) -> Writer {
        Writer {
            kind,
            conn: None,
            source: KeySource::Elsewhere,
        }
    }
}

impl Default for Writer {
    fn default() -> Self {
        Writer::UNKNOWN
    }
}

/// One recorded write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Write {
    /// Who wrote, and why the key.
    #[serde(flatten)]
    pub by: Writer,
    /// Server time of the write (the row's `ts` it set).
    pub at: Millis,
}

/// A row's provenance: its creating write and its last [`RECENT_WRITES`],
/// each packed into 8 bytes, with the connections they name kept once
/// each (an origin is 80 bytes; one is kept inline in every row).
///
/// Lossless: up to `1 + RECENT_WRITES` distinct connections; the first
/// two inline, the rest (a row whose last writes came from
/// three connections or more, as while a client reconnects) in `more`.
/// The layout is canonical (the same writes always pack the same way), so
/// the derived equality is the writes' equality.
#[derive(Clone, PartialEq, Eq)]
pub struct Origin {
    /// The creating write, then the remembered ones oldest first; [`EMPTY`]
    /// past the last.
    writes: [u64; 1 + RECENT_WRITES],
    /// The connections the writes name, in order of first mention; unused
    /// ones zero.
    conns: [[u8; 16]; INLINE_CONNS],
    /// The connections past [`INLINE_CONNS`], if the writes name more.
    more: Option<Box<[[u8; 16]; MORE_CONNS]>>,
}

/// Connections an [`Origin`] keeps inline: the creating write's and the
/// current one's, for a client that connected again.
const INLINE_CONNS: usize = 2;
/// The rest of the `1 + RECENT_WRITES` an origin may name.
const MORE_CONNS: usize = 1 + RECENT_WRITES - INLINE_CONNS;

/// A write slot of an [`Origin`] that holds none.
const EMPTY: u64 = u64::MAX;

// A packed write: `at` in bits 0..48 (signed, saturating: ±4,400 years
// around 1970), the [`WriteKind`] in 48..51, the [`KeySource`] in 51..55,
// and in 55..58 the connection: 0 for none, else its place in the
// origin's connections plus one. [`EMPTY`] has 7 there, never a place.
const AT_BITS: u32 = 48;
const KIND_SHIFT: u32 = 48;
const SOURCE_SHIFT: u32 = 51;
const CONN_SHIFT: u32 = 55;

/// Every [`WriteKind`], in declaration order: its index is its `as u8`.
const KINDS: [WriteKind; 8] = [
    WriteKind::Connect,
    WriteKind::Beacon,
    WriteKind::Disconnect,
    WriteKind::Remote,
    WriteKind::Lapse,
    WriteKind::Restore,
    WriteKind::Start,
    WriteKind::Unknown,
];

/// Every [`KeySource`], in declaration order: its index is its `as u8`
/// (kept complete by the test `all_lists_every_source_in_order`).
const SOURCES: [KeySource; 13] = [
    KeySource::DeviceId,
    KeySource::InstanceId,
    KeySource::ConnectionId,
    KeySource::NotOwner,
    KeySource::BeaconDeviceId,
    KeySource::BeaconInstanceId,
    KeySource::TextHost,
    KeySource::TextIp,
    KeySource::Text,
    KeySource::GatewayHost,
    KeySource::Elsewhere,
    KeySource::Gateway,
    KeySource::Unknown,
];

/// The range of `at` a packed write keeps: 48 bits, signed.
const AT_MAX: Millis = (1 << (AT_BITS - 1)) - 1;

/// `write` packed, naming connection `conn` (0: none; else a place + 1).
fn pack(write: Write, conn: u64) -> u64 {
    let at = write.at.clamp(-AT_MAX - 1, AT_MAX) as u64 & ((1 << AT_BITS) - 1);
    at | (write.by.kind as u64) << KIND_SHIFT
        | (write.by.source as u64) << SOURCE_SHIFT
        | conn << CONN_SHIFT
}

impl Origin {
    /// The origin of a row `write` just created.
    pub fn new(write: Write) -> Origin {
        Origin::of(write, &[write])
    }

    /// The origin of `created` and then `recent` (at most
    /// [`RECENT_WRITES`], oldest first).
    fn of(created: Write, recent: &[Write]) -> Origin {
        let mut tags = [[0u8; 16]; 1 + RECENT_WRITES];
        let mut named = 0;
        let mut writes = [EMPTY; 1 + RECENT_WRITES];
        for (slot, write) in writes
            .iter_mut()
            .zip(std::iter::once(&created).chain(recent))
        {
            let conn = match write.by.conn {
                None => 0,
                Some(ConnTag(tag)) => {
                    let at = tags[..named].iter().position(|t| *t == tag);
                    let at = at.unwrap_or_else(|| {
                        tags[named] = tag;
                        named += 1;
                        named - 1
                    });
                    at as u64 + 1
                }
            };
            *slot = pack(*write, conn);
        }
        let mut conns = [[0u8; 16]; INLINE_CONNS];
        conns.copy_from_slice(&tags[..INLINE_CONNS]);
        let more = (named > INLINE_CONNS).then(|| {
            let mut more = [[0u8; 16]; MORE_CONNS];
            more.copy_from_slice(&tags[INLINE_CONNS..]);
            Box::new(more)
        });
        Origin {
            writes,
            conns,
            more,
        }
    }

    /// Remembers one more write, forgetting the oldest past the limit.
    pub fn record(&mut self, write: Write) {
        let mut recent = [write; RECENT_WRITES + 1];
        let mut len = 0;
        for old in self.recent() {
            recent[len] = old;
            len += 1;
        }
        recent[len] = write;
        let first = (len + 1).saturating_sub(RECENT_WRITES);
        *self = Origin::of(self.created(), &recent[first..=len]);
    }

    /// Packed write `packed`, read back.
    fn unpack(&self, packed: u64) -> Write {
        let conn = match (packed >> CONN_SHIFT) & 7 {
            0 => None,
            n => {
                let at = n as usize - 1;
                let tag = match at.checked_sub(INLINE_CONNS) {
                    None => self.conns[at],
                    Some(more) => self.more.as_ref().expect("a place past the inline ones")[more],
                };
                Some(ConnTag(tag))
            }
        };
        Write {
            by: Writer {
                kind: KINDS[((packed >> KIND_SHIFT) & 7) as usize],
                conn,
                source: SOURCES[((packed >> SOURCE_SHIFT) & 15) as usize],
            },
            at: ((packed << (64 - AT_BITS)) as i64) >> (64 - AT_BITS),
        }
    }

    /// The write that created the row.
    pub fn created(&self) -> Write {
        self.unpack(self.writes[0])
    }

    /// The remembered writes, oldest first.
    pub fn recent(&self) -> impl DoubleEndedIterator<Item = Write> + '_ {
        let len = self.writes[1..].iter().take_while(|&&w| w != EMPTY).count();
        self.writes[1..=len].iter().map(|&w| self.unpack(w))
    }

    /// The newest write.
    pub fn last(&self) -> Write {
        self.recent()
            .next_back()
            .expect("an origin always holds its newest write")
    }

    /// Where the key came from: the newest write that named it (a
    /// disconnect or a fleet write repeats what is there), else the
    /// creating write's source.
    pub fn key_source(&self) -> KeySource {
        self.recent()
            .rev()
            .map(|w| w.by.source)
            .find(|s| !matches!(s, KeySource::Unknown | KeySource::Elsewhere))
            .unwrap_or(self.created().by.source)
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Origin")
            .field("created", &self.created())
            .field("recent", &self.recent().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(kind: WriteKind, at: Millis) -> Write {
        Write {
            by: Writer {
                kind,
                conn: Some(ConnTag::from_u128(7)),
                source: KeySource::ConnectionId,
            },
            at,
        }
    }

    #[test]
    fn recent_keeps_the_newest_writes_in_order() {
        let mut origin = Origin::new(write(WriteKind::Connect, 1));
        for at in 2..=6 {
            origin.record(write(WriteKind::Beacon, at));
        }
        let ats: Vec<Millis> = origin.recent().map(|w| w.at).collect();
        assert_eq!(ats, [3, 4, 5, 6]);
        assert_eq!(origin.created().at, 1);
        assert_eq!(origin.created().by.kind, WriteKind::Connect);
        assert_eq!(origin.last().at, 6);
    }

    #[test]
    fn a_new_origin_lists_its_creating_write() {
        let origin = Origin::new(write(WriteKind::Connect, 1));
        assert_eq!(origin.recent().count(), 1);
        assert_eq!(origin.last(), origin.created());
    }

    #[test]
    fn key_source_skips_writes_that_did_not_name_the_key() {
        let mut origin = Origin::new(write(WriteKind::Connect, 1));
        origin.record(Write {
            by: Writer::elsewhere(WriteKind::Lapse),
            at: 2,
        });
        assert_eq!(origin.key_source(), KeySource::ConnectionId);
        let restored = Origin::new(Write {
            by: Writer::elsewhere(WriteKind::Restore),
            at: 1,
        });
        assert_eq!(restored.key_source(), KeySource::Elsewhere);
    }

    #[test]
    fn an_origin_stays_small() {
        // benches/README.md and RECENT_WRITES promise this much per row.
        assert_eq!(std::mem::size_of::<Write>(), 32);
        assert_eq!(std::mem::size_of::<Origin>(), 80);
    }

    #[test]
    fn a_packed_write_reads_back_as_written() {
        for (i, &kind) in KINDS.iter().enumerate() {
            assert_eq!(kind as usize, i, "{kind:?}");
        }
        for (i, &source) in SOURCES.iter().enumerate() {
            assert_eq!(source as usize, i, "{source:?}");
        }
        for at in [0, 1, -1, 1_780_000_000_123, -AT_MAX - 1, AT_MAX] {
            for &kind in &KINDS {
                for (&source, conn) in SOURCES
                    .iter()
                    .zip([None, Some(ConnTag([0; 16]))].iter().cycle())
                {
                    let write = Write {
                        by: Writer {
                            kind,
                            conn: *conn,
                            source,
                        },
                        at,
                    };
                    assert_eq!(Origin::new(write).created(), write);
                }
            }
        }
        let far = Write {
            by: Writer::UNKNOWN,
            at: Millis::MAX,
        };
        assert_eq!(Origin::new(far).created().at, AT_MAX, "saturates");
        let near = Write {
            by: Writer::UNKNOWN,
            at: Millis::MIN,
        };
        assert_eq!(Origin::new(near).created().at, -AT_MAX - 1, "saturates");
    }

    proptest::proptest! {
        /// An origin reads back exactly the writes a plain list keeps: the
        /// first, and the last `RECENT_WRITES`, however many connections
        /// they name; and equal writes make equal origins.
        #[test]
        fn an_origin_keeps_what_a_list_of_writes_keeps(
            writes in proptest::collection::vec(
                (0..8usize, 0..13usize, proptest::option::of(0..7u128), -5i64..5),
                1..12,
            )
        ) {
            let writes: Vec<Write> = writes
                .into_iter()
                .map(|(kind, source, conn, at)| Write {
                    by: Writer {
                        kind: KINDS[kind],
                        conn: conn.map(ConnTag::from_u128),
                        source: SOURCES[source],
                    },
                    at: 1_780_000_000_000 + at,
                })
                .collect();
            let mut origin = Origin::new(writes[0]);
            let mut again = Origin::new(writes[0]);
            for (n, &write) in writes.iter().enumerate().skip(1) {
                origin.record(write);
                again.record(write);
                let first = (n + 1).saturating_sub(RECENT_WRITES);
                let recent: Vec<Write> = origin.recent().collect();
                proptest::prop_assert_eq!(&recent[..], &writes[first..=n]);
            }
            proptest::prop_assert_eq!(origin.created(), writes[0]);
            proptest::prop_assert_eq!(origin.last(), *writes.last().unwrap());
            proptest::prop_assert!(origin == again);
        }
    }

    #[test]
    fn an_origin_keeps_five_connections() {
        let mut origin = Origin::new(write(WriteKind::Connect, 1));
        for conn in 2..=5u128 {
            origin.record(Write {
                by: Writer {
                    kind: WriteKind::Beacon,
                    conn: Some(ConnTag::from_u128(conn)),
                    source: KeySource::InstanceId,
                },
                at: conn as Millis,
            });
        }
        let conns: Vec<Option<ConnTag>> = std::iter::once(origin.created())
            .chain(origin.recent())
            .map(|w| w.by.conn)
            .collect();
        let expected: Vec<Option<ConnTag>> = [7, 2, 3, 4, 5]
            .into_iter()
            .map(|c| Some(ConnTag::from_u128(c)))
            .collect();
        assert_eq!(conns, expected);
        assert!(origin.more.is_some());
        // Once the writes name two connections again, none is spilled.
        for at in 6..=9 {
            origin.record(write(WriteKind::Beacon, at));
        }
        assert!(origin.more.is_none());
        assert_eq!(origin.created().by.conn, Some(ConnTag::from_u128(7)));
    }

    #[test]
    fn conn_tags_print_as_the_hello_conn_id() {
        let tag = ConnTag::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(tag.to_string(), "01234567-89ab-cdef-0123-456789abcdef");
    }

    #[test]
    fn all_lists_every_source_in_order() {
        use KeySource::*;
        // Exhaustive: a new source fails to compile here until it has a
        // place, and the place must be its place in SOURCES.
        let place = |source| match source {
            DeviceId => 0,
            InstanceId => 1,
            ConnectionId => 2,
            NotOwner => 3,
            BeaconDeviceId => 4,
            BeaconInstanceId => 5,
            TextHost => 6,
            TextIp => 7,
            Text => 8,
            GatewayHost => 9,
            Elsewhere => 10,
            Gateway => 11,
            Unknown => 12,
        };
        for (i, source) in SOURCES.into_iter().enumerate() {
            assert_eq!(place(source), i, "{source:?}");
        }
    }

    #[test]
    fn stable_and_weak_sources_do_not_overlap() {
        for source in SOURCES {
            assert!(!(source.is_stable() && source.is_weak()), "{source:?}");
            assert!(!source.explain().is_empty());
        }
    }
}
