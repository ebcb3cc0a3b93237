//! Every event frame rollcall sends (§3.1, §7) and the SSE payload (§9):
//! pure encoders, so the fuzzer and the tests reach the exact bytes.
//!
//! Invariants: each encoder appends exactly one JSON object. A presence list
//! is written in place by a caller-supplied closure (it is spliced from a
//! snapshot's cached bytes, never parsed or re-encoded); the closure must
//! append exactly one JSON array.

use super::frame::{StateVersion, write_event_with, write_json, write_json_str};
use crate::clock::Millis;

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

/// `tick` `{"ts":TS}` (§7).
pub fn write_tick(out: &mut Vec<u8>, ts: Millis, seq: u64) {
    write_event_with(
        out,
        "tick",
        |out| {
            out.extend_from_slice(br#"{"ts":"#);
            write_json(out, &ts);
            out.push(b'}');
        },
        Some(seq),
        None,
    );
}

/// `shutdown` `{"reason":…}` (§7). `seq` is `None` for a connection that
/// never completed its handshake (it has no broadcast numbering).
pub fn write_shutdown(out: &mut Vec<u8>, seq: Option<u64>) {
    write_event_with(
        out,
        "shutdown",
        |out| {
            out.extend_from_slice(br#"{"reason":"#);
            write_json_str(out, SHUTDOWN_REASON);
            out.push(b'}');
        },
        seq,
        None,
    );
}

/// `presence` `{"presence":[…]}` with `seq` and `stateVersion` (§7); `list`
/// appends the list.
pub fn write_presence(out: &mut Vec<u8>, version: u64, seq: u64, list: impl FnOnce(&mut Vec<u8>)) {
    write_event_with(
        out,
        "presence",
        |out| {
            out.extend_from_slice(br#"{"presence":"#);
            list(out);
            out.push(b'}');
        },
        Some(seq),
        Some(state_version(version)),
    );
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

/// `presence.delta` `{"from":V1,"to":V2,"upserts":[…],"removed":[…]}` with
/// `seq` and `stateVersion` (§7).
pub fn write_delta<'a, U, R>(out: &mut Vec<u8>, delta: Delta<'a, U, R>, seq: u64)
where
    U: IntoIterator<Item = &'a [u8]>,
    R: IntoIterator<Item = &'a str>,
{
    let to = delta.to;
    write_event_with(
        out,
        "presence.delta",
        |out| write_delta_payload(out, delta),
        Some(seq),
        Some(state_version(to)),
    );
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
