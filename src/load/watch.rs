//! One watcher: an operator connection (`operator.read`) that holds a
//! presence feed open, full lists or deltas, and checks what arrives: the
//! `seq` of every event, the version it holds, and how late each version
//! arrives. One tokio task per watcher; it never reconnects, so a lost
//! watcher stays lost and shows in the summary as not held.
//!
//! Invariants:
//! - The version held starts at the `hello-ok` snapshot's
//!   `stateVersion.presence` and moves only with `presence` and
//!   `presence.delta` events; `tick` carries a `seq` but no version.
//! - Per-connection state between messages is the split socket, the
//!   reader's small buffer and a [`Watch`] (two integers): events are
//!   parsed in place and dropped, never kept.
//! - Watchers send nothing but pongs and the final close, so every text
//!   frame after the handshake is an event.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use fastwebsockets::{Frame, Payload};
use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::Instant;

use super::args::WatchFeed;
use super::fleet::SimulatedFleet;
use super::simulated_client::{
    close, count_attempt, dial, handshake, micros, read_failure, write_failure,
};
use super::stats::Failure;
use super::watch_stats::Seen;
use crate::client::WsConn;
use crate::clock::now_millis;
use crate::frame_reader::Message;

/// The fields of an event a watcher reads. Everything else is skipped by
/// the parser without being built; strings are borrowed when unescaped.
#[derive(Deserialize)]
struct EventFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default, rename = "stateVersion")]
    state_version: Option<StateVersion>,
    /// The payloads of `presence` (`presence`) and `presence.delta` (the rest)
    /// in one shape: each event fills the fields it has.
    #[serde(default, borrow)]
    payload: Option<EventPayload<'a>>,
}

#[derive(Deserialize)]
struct StateVersion {
    presence: u64,
}

#[derive(Deserialize, Default)]
struct EventPayload<'a> {
    #[serde(default, borrow)]
    presence: Vec<Row<'a>>,
    #[serde(default)]
    from: Option<u64>,
    #[serde(default)]
    to: Option<u64>,
    #[serde(default, borrow)]
    upserts: Vec<Row<'a>>,
}

/// The two fields of a presence entry the delay needs.
#[derive(Deserialize)]
struct Row<'a> {
    #[serde(default, borrow)]
    mode: Option<Cow<'a, str>>,
    #[serde(default)]
    ts: Option<u64>,
}

/// The `hello-ok` fields a watcher reads.
#[derive(Deserialize)]
struct HelloFrame {
    payload: HelloPayload,
}

#[derive(Deserialize)]
struct HelloPayload {
    snapshot: HelloSnapshot,
}

#[derive(Deserialize)]
struct HelloSnapshot {
    #[serde(rename = "stateVersion")]
    state_version: StateVersion,
}

/// The presence version in a `hello-ok`, if it is one.
fn hello_version(reply: &[u8]) -> Option<u64> {
    let hello: HelloFrame = serde_json::from_slice(reply).ok()?;
    Some(hello.payload.snapshot.state_version.presence)
}

/// The newest `ts` among `rows` that are not a gateway's own entry. A
/// gateway's entry gets a fresh `ts` in every list, so it says nothing about
/// when the change was published.
fn newest_client_ts(rows: &[Row<'_>]) -> Option<u64> {
    rows.iter()
        .filter(|r| r.mode.as_deref() != Some("gateway"))
        .filter_map(|r| r.ts)
        .max()
}

/// What one watcher holds between events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Watch {
    /// The presence version held.
    pub version: u64,
    /// The last `seq` seen; 0 before the first event.
    pub seq: u64,
}

impl Watch {
    /// A watcher whose `hello-ok` held `version`.
    pub fn new(version: u64) -> Self {
        Watch { version, seq: 0 }
    }

    /// Applies one text message and says what it showed. Frames that are
    /// not events show nothing; a message that is not a frame is an error.
    pub fn apply(&mut self, text: &[u8]) -> Result<Seen, serde_json::Error> {
        let frame: EventFrame = serde_json::from_slice(text)?;
        let mut seen = Seen::default();
        if frame.kind != "event" {
            return Ok(seen);
        }
        if let Some(seq) = frame.seq {
            seen.seq_gap = seq != self.seq + 1;
            self.seq = seq;
        }
        let payload = frame.payload.unwrap_or_default();
        let version = frame.state_version.map(|v| v.presence);
        let version = match frame.event.as_deref() {
            Some("presence") => {
                seen.newest_ts = newest_client_ts(&payload.presence);
                version
            }
            Some("presence.delta") => {
                seen.delta_gap = payload.from != Some(self.version);
                seen.newest_ts = newest_client_ts(&payload.upserts);
                version.or(payload.to)
            }
            _ => return Ok(seen),
        };
        seen.presence = true;
        if let Some(v) = version {
            self.version = v;
        }
        Ok(seen)
    }
}

/// Runs watcher `watcher` until `stop` fires or its connection is lost.
/// `source` picks its loopback source address.
pub(super) async fn run_watcher(
    fleet: Arc<SimulatedFleet>,
    watcher: u32,
    source: u32,
    mut stop: watch::Receiver<bool>,
) {
    let stats = &fleet.stats;
    let opened = tokio::select! {
        biased;
        _ = stop.changed() => {
            stats.first_attempts.fetch_add(1, Ordering::Relaxed);
            return;
        }
        r = tokio::time::timeout(fleet.handshake_timeout, open(&fleet, watcher, source)) => {
            r.unwrap_or(Err(Failure::HandshakeTimeout))
        }
    };
    count_attempt(stats, true, opened.is_ok());
    let (mut conn, mut held) = match opened {
        Ok(pair) => pair,
        Err(cause) => return stats.fail(cause),
    };
    // Relaxed: a counter read for progress and the summary.
    stats.held.fetch_add(1, Ordering::Relaxed);
    let end = follow(&fleet, watcher, &mut conn, &mut held, &mut stop).await;
    stats.held.fetch_sub(1, Ordering::Relaxed);
    let read = &conn.read;
    fleet
        .watch
        .ended(watcher, read.bytes_received(), read.bytes_inflated());
    match end {
        Ok(()) => close(&mut conn).await,
        Err(cause) => stats.fail(cause),
    }
}

/// Connects and handshakes as a watcher; returns the connection and what
/// its `hello-ok` holds.
async fn open(
    fleet: &SimulatedFleet,
    watcher: u32,
    source: u32,
) -> Result<(WsConn, Watch), Failure> {
    let started = Instant::now();
    let mut conn = dial(fleet, source).await?;
    let delta = fleet.watch_feed == WatchFeed::Delta;
    let request = fleet
        .requests
        .watcher_connect(watcher, &fleet.watch_mode, delta);
    let reply = handshake(fleet, source, &mut conn, request).await?;
    let version = hello_version(&reply.reply).ok_or(Failure::Protocol)?;
    fleet
        .watch
        .connected(watcher, micros(started.elapsed()), version);
    Ok((conn, Watch::new(version)))
}

/// Reads events until `stop` fires (`Ok`) or the connection is lost.
async fn follow(
    fleet: &SimulatedFleet,
    watcher: u32,
    conn: &mut WsConn,
    held: &mut Watch,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), Failure> {
    let WsConn { read, write } = conn;
    loop {
        let message = tokio::select! {
            biased;
            _ = stop.changed() => return Ok(()),
            m = read.read_message() => m,
        };
        match message {
            Ok(Message::Text(text)) => {
                let seen = held.apply(text).map_err(|_| Failure::Protocol)?;
                // Before 1970 only on a broken clock; the delay then reads large.
                let now = u64::try_from(now_millis()).unwrap_or(0);
                fleet.watch.record(watcher, seen, held.version, now);
            }
            Ok(Message::Ping(payload)) => write
                .write_frame(Frame::pong(Payload::Borrowed(payload)))
                .await
                .map_err(|e| write_failure(&e))?,
            Ok(Message::Pong(_)) => {}
            Ok(Message::Close(_)) => return Err(Failure::ClosedByServer),
            Err(e) => return Err(read_failure(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(w: &mut Watch, frame: &str) -> Seen {
        w.apply(frame.as_bytes()).unwrap()
    }

    #[test]
    fn full_lists_move_the_version_and_skip_the_gateway_row() {
        let mut w = Watch::new(3);
        let seen = apply(
            &mut w,
            r#"{"type":"event","event":"presence","payload":{"presence":[
                {"mode":"gateway","ts":900},{"mode":"ui","ts":500},{"ts":700}]},
                "seq":1,"stateVersion":{"presence":5,"health":1}}"#,
        );
        assert_eq!(w, Watch { version: 5, seq: 1 });
        assert!(seen.presence && !seen.seq_gap && !seen.delta_gap);
        assert_eq!(seen.newest_ts, Some(700));
    }

    #[test]
    fn a_tick_counts_its_seq_and_leaves_the_version() {
        let mut w = Watch::new(3);
        let seen = apply(
            &mut w,
            r#"{"type":"event","event":"tick","payload":{"ts":1},"seq":2}"#,
        );
        assert!(seen.seq_gap, "seq 2 after none is a gap");
        assert!(!seen.presence);
        assert_eq!(w, Watch { version: 3, seq: 2 });
        let seen = apply(
            &mut w,
            r#"{"type":"event","event":"tick","payload":{"ts":2},"seq":3}"#,
        );
        assert!(!seen.seq_gap);
    }

    #[test]
    fn a_delta_from_another_version_is_a_gap() {
        let mut w = Watch::new(3);
        let delta = |from: u64, to: u64, seq: u64| {
            format!(
                r#"{{"type":"event","event":"presence.delta","payload":{{"from":{from},"to":{to},
                "upserts":[{{"mode":"ui","ts":40}}],"removed":["k"]}},"seq":{seq},
                "stateVersion":{{"presence":{to},"health":1}}}}"#
            )
        };
        let seen = apply(&mut w, &delta(3, 6, 1));
        assert!(!seen.delta_gap);
        assert_eq!((w.version, seen.newest_ts), (6, Some(40)));
        let seen = apply(&mut w, &delta(7, 8, 2));
        assert!(seen.delta_gap && !seen.seq_gap);
        assert_eq!(w.version, 8);
    }

    #[test]
    fn hello_ok_gives_the_snapshot_version() {
        let reply = br#"{"type":"res","id":"connect","ok":true,"payload":{"type":"hello-ok",
            "snapshot":{"presence":[],"health":{},"stateVersion":{"presence":17,"health":1}}}}"#;
        assert_eq!(hello_version(reply), Some(17));
        assert_eq!(hello_version(br#"{"type":"res","ok":false}"#), None);
    }
}
