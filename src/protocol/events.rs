//! Every event frame rollcall sends (§3.1, §7) and the SSE payload (§9):
//! pure encoders, so the fuzzer and the tests reach the exact bytes.
//!
//! Invariants: each encoder appends exactly one JSON object. A presence list
//! is written in place by a caller-supplied closure (it is spliced from a
//! snapshot's cached bytes, never parsed or re-encoded); the closure must
//! append exactly one JSON array.

use super::frame::{StateVersion, write_event_with, write_json, write_json_str};
use crate::clock::Millis;
use crate::compress::{Deflated, deflate_segment, deflate_sync};
use crate::presence::Snapshot;
use bytes::Bytes;
use std::sync::{Arc, OnceLock};

/// The `health` half of `stateVersion`; rollcall publishes no health changes.
pub const HEALTH_VERSION: u64 = 1;

/// The reason every `shutdown` event gives.
pub const SHUTDOWN_REASON: &str = "gateway shutting down";

/// The `stateVersion` of a presence version.
pub fn state_version(presence: u64) -> StateVersion {
    StateVersion {
        presence,
        health: HEALTH_VERSION,
    }
}

/// `connect.challenge` `{"nonce":NONCE,"ts":TS}` (§3.1): no `seq`, it is
/// not a broadcast.
pub fn write_challenge(out: &mut Vec<u8>, nonce: &str, ts: Millis) {
    write_event_with(
        out,
        "connect.challenge",
        |out| {
            out.extend_from_slice(br#"{"nonce":"#);
            write_json_str(out, nonce);
            out.extend_from_slice(br#","ts":"#);
            write_json(out, &ts);
            out.push(b'}');
        },
        None,
        None,
    );
}

/// A broadcast event as every connection shares it: the frame's bytes up to
/// where the per-connection part begins. Each connection's writer appends
/// [`SharedEvent::write_tail`] with its own `seq` (§2: numbered per
/// connection when written), so the large part is encoded once and shared.
/// For permessage-deflate connections the head is also compressed once, by
/// the first to ask ([`SharedEvent::deflated`]), and shared the same way.
///
/// A `presence` event made from a snapshot ([`SharedEvent::presence_of`])
/// does not copy its list: the head ends with the self entry, the
/// snapshot's chunks of rows follow it ([`SharedEvent::rows`]), and the
/// tail begins by closing the list. Compressed, the rows are the chunks'
/// own segments, shared with every other version and reply holding them.
#[derive(Debug, Clone)]
pub struct SharedEvent {
    /// `{"type":"event","event":NAME,"payload":PAYLOAD` with no closing
    /// brace; for a snapshot's `presence`, up to its self entry.
    head: Bytes,
    /// The snapshot whose rows follow the head, for a snapshot's `presence`.
    rows: Option<Arc<Snapshot>>,
    /// The `stateVersion` the tail carries, for presence events.
    state_version: Option<StateVersion>,
    /// The head compressed, when that makes it smaller; shared by clones.
    deflated: Arc<OnceLock<Option<Deflated>>>,
}

impl PartialEq for SharedEvent {
    fn eq(&self, other: &Self) -> bool {
        self.head == other.head
            && self.rows().eq(other.rows())
            && self.state_version == other.state_version
    }
}

impl Eq for SharedEvent {}

/// What compressing must save for a compressed event to be sent: the
/// stored block around the tail costs 6 bytes.
const DEFLATE_MIN_SAVING: usize = 16;

impl SharedEvent {
    fn build(
        event: &str,
        state_version: Option<StateVersion>,
        payload: impl FnOnce(&mut Vec<u8>),
        hint: usize,
    ) -> SharedEvent {
        let mut head = Vec::with_capacity(hint + 48);
        head.extend_from_slice(br#"{"type":"event","event":"#);
        write_json_str(&mut head, event);
        head.extend_from_slice(br#","payload":"#);
        payload(&mut head);
        SharedEvent {
            head: Bytes::from(head),
            rows: None,
            state_version,
            deflated: Arc::default(),
        }
    }

    /// `presence` with the list of `snapshot`, its self entry stamped
    /// `now` (§7): the rows are the snapshot's chunks, not a copy.
    pub fn presence_of(snapshot: &Arc<Snapshot>, now: Millis) -> SharedEvent {
        let version = Some(state_version(snapshot.version()));
        let mut event = SharedEvent::build(
            "presence",
            version,
            |out| {
                out.extend_from_slice(br#"{"presence":"#);
                snapshot.write_list_head(now, out);
            },
            512,
        );
        event.rows = Some(Arc::clone(snapshot));
        event
    }

    /// `presence.delta` `{"from":V1,"to":V2,"upserts":[…],"removed":[…]}` (§7).
    pub fn delta<'a, U, R>(delta: Delta<'a, U, R>) -> SharedEvent
    where
        U: IntoIterator<Item = &'a [u8]>,
        R: IntoIterator<Item = &'a str>,
    {
        let to = delta.to;
        SharedEvent::build(
            "presence.delta",
            Some(state_version(to)),
            |out| write_delta_payload(out, delta),
            256,
        )
    }

    /// `tick` `{"ts":TS}` (§7).
    pub fn tick(ts: Millis) -> SharedEvent {
        SharedEvent::build(
            "tick",
            None,
            |out| {
                out.extend_from_slice(br#"{"ts":"#);
                write_json(out, &ts);
                out.push(b'}');
            },
            16,
        )
    }

    /// `shutdown` `{"reason":…}` (§7).
    pub fn shutdown() -> SharedEvent {
        SharedEvent::build(
            "shutdown",
            None,
            |out| {
                out.extend_from_slice(br#"{"reason":"#);
                write_json_str(out, SHUTDOWN_REASON);
                out.push(b'}');
            },
            48,
        )
    }

    /// The shared bytes before the rows, if any.
    pub fn head(&self) -> &Bytes {
        &self.head
    }

    /// The chunks of rows that follow the head (none but in a snapshot's
    /// `presence`).
    pub fn rows(&self) -> impl Iterator<Item = &Bytes> + Clone {
        self.rows.iter().flat_map(|r| r.rest_chunks())
    }

    /// True for a snapshot's `presence`, whose rows follow the head.
    pub fn has_rows(&self) -> bool {
        self.rows.is_some()
    }

    /// The shared bytes: the head and the rows.
    pub fn len(&self) -> usize {
        self.head.len() + self.rows.as_ref().map_or(0, |r| r.rest_len())
    }

    /// Always false: every event has a head.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The head as a raw DEFLATE stream ending at a sync flush, made once
    /// for every clone; `None` when compressing does not pay (a `tick`).
    /// An event with rows is always compressed: its rows are.
    pub fn deflated(&self) -> Option<&Deflated> {
        self.deflated
            .get_or_init(|| {
                let deflated = deflate_sync(&self.head);
                let pays = deflated.bytes.len() + DEFLATE_MIN_SAVING < self.head.len();
                (pays || self.has_rows()).then_some(deflated)
            })
            .as_ref()
    }

    /// The rows' compressed segments, in order (each made once for every
    /// version sharing its chunk).
    pub fn segments(&self) -> impl Iterator<Item = &Bytes> + Clone {
        self.rows
            .iter()
            .flat_map(|r| r.rest_deflated(deflate_segment))
    }

    /// The shared bytes a permessage-deflate connection gets: the
    /// compressed head and segments, or [`SharedEvent::len`] when
    /// compressing does not pay.
    pub fn deflated_len(&self) -> usize {
        match self.deflated() {
            Some(head) => head.bytes.len() + self.segments().map(Bytes::len).sum::<usize>(),
            None => self.len(),
        }
    }

    /// Appends the per-connection end of the frame: `,"seq":N`, the
    /// `stateVersion` if any, and the closing brace. `None` leaves `seq`
    /// out (an event to a connection that has no broadcast numbering yet).
    pub fn write_tail(&self, seq: Option<u64>, out: &mut Vec<u8>) {
        if self.has_rows() {
            // The end of the list and of the payload.
            out.extend_from_slice(b"]}");
        }
        if let Some(seq) = seq {
            out.extend_from_slice(br#","seq":"#);
            write_json(out, &seq);
        }
        if let Some(version) = self.state_version {
            out.extend_from_slice(br#","stateVersion":"#);
            write_json(out, &version);
        }
        out.push(b'}');
    }

    /// The whole frame with `seq`, as one buffer.
    pub fn to_frame(&self, seq: Option<u64>) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len() + 64);
        out.extend_from_slice(&self.head);
        self.rows().for_each(|chunk| out.extend_from_slice(chunk));
        self.write_tail(seq, &mut out);
        out
    }
}

/// What changed between two presence versions.
pub struct Delta<'a, U, R>
where
    U: IntoIterator<Item = &'a [u8]>,
    R: IntoIterator<Item = &'a str>,
{
    /// The version the client holds.
    pub from: u64,
    /// The version this delta brings it to.
    pub to: u64,
    /// Rows written since `from`, each one serialized entry.
    pub upserts: U,
    /// Keys removed since `from`.
    pub removed: R,
}

/// The `presence.delta` payload alone.
pub fn write_delta_payload<'a, U, R>(out: &mut Vec<u8>, delta: Delta<'a, U, R>)
where
    U: IntoIterator<Item = &'a [u8]>,
    R: IntoIterator<Item = &'a str>,
{
    out.extend_from_slice(br#"{"from":"#);
    write_json(out, &delta.from);
    out.extend_from_slice(br#","to":"#);
    write_json(out, &delta.to);
    out.extend_from_slice(br#","upserts":["#);
    for (i, row) in delta.upserts.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(row);
    }
    out.extend_from_slice(br#"],"removed":["#);
    for (i, key) in delta.removed.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_str(out, key);
    }
    out.extend_from_slice(b"]}");
}

/// The `data:` JSON of an SSE `presence` event (§9):
/// `{"version":V,"serverTime":MS,"presence":[…]}`.
pub fn write_sse_presence(
    out: &mut Vec<u8>,
    version: u64,
    server_time: Millis,
    list: impl FnOnce(&mut Vec<u8>),
) {
    out.extend_from_slice(br#"{"version":"#);
    write_json(out, &version);
    out.extend_from_slice(br#","serverTime":"#);
    write_json(out, &server_time);
    out.extend_from_slice(br#","presence":"#);
    list(out);
    out.push(b'}');
}
