//! `--fill N`: the rows a run starts with. Before the ramp, one operator
//! connection with `operator.admin` writes N rows under distinct
//! `instanceId`s (`load-RUN-fN`), [`WINDOW`] beacons in flight, and waits for
//! every reply, so the run then measures a gateway that already holds N
//! rows besides its own clients'.
//!
//! Every scope that may beacon for another instance also reads presence
//! (docs/protocol.md §4, §7), so the fill connection cannot opt out of
//! presence events. It takes the smallest feed there is instead: it lists
//! the `presence.delta` cap (each event carries only the rows changed since
//! the last, a coalescing interval's worth of its own beacons) and resumes
//! at the gateway's current version (`presenceSince`, read first with
//! `health` over a probe connection that receives no presence), so its
//! `hello-ok` carries no list either. Without that, a gateway already
//! holding more than about 50,000 rows sent it lists over the client's
//! message limit. If the probe fails, the fill connects without
//! `presenceSince` and gets the full list once, in its `hello-ok`. Events are
//! dropped unparsed.
//!
//! Invariant: the fill ends only when every row's beacon was acknowledged
//! (the gateway applied it), or fails naming how far it got.

use super::fleet::SimulatedFleet;
use super::settle::Probe;
use super::simulated_client::{close, dial};
use super::stats::Failure;
use crate::client::{Envelope, hello};
use crate::frame_reader::Message;
use fastwebsockets::{Frame, Payload};

/// Beacons in flight while filling: enough to keep the writer's batches
/// full without queueing much in the gateway.
const WINDOW: u32 = 256;

/// Why the fill stopped.
#[derive(Debug, thiserror::Error)]
pub enum FillError {
    /// The fill connection could not be opened or was refused.
    #[error("the --fill connection failed: {0:?}")]
    Connect(Failure),
    /// The connection broke or sent something that is not the protocol.
    #[error("the --fill connection was lost after {done} of {rows} rows")]
    Lost {
        /// Rows acknowledged.
        done: u32,
        /// Rows asked for.
        rows: u32,
    },
    /// The gateway refused a beacon.
    #[error("the gateway refused a --fill beacon: {code} (does the token grant operator.admin?)")]
    Refused {
        /// The reply's error code.
        code: String,
    },
}

/// How rollcall begins every event frame (docs/protocol.md §2 shape, fields
/// in that order): the fill drops those without parsing them, and parses
/// anything else.
const EVENT_PREFIX: &[u8] = br#"{"type":"event""#;

/// The gateway's presence version, read with `health` over a probe that
/// receives no presence; `None` when the probe cannot connect or answer.
async fn current_version(fleet: &SimulatedFleet) -> Option<u64> {
    let mut probe = Probe::open(fleet).await?;
    let version = probe.version(fleet).await;
    probe.close().await;
    version
}

/// Writes `rows` rows through one admin connection.
pub async fn fill(fleet: &SimulatedFleet, rows: u32) -> Result<(), FillError> {
    let since = current_version(fleet).await;
    let mut conn = dial(fleet, 0).await.map_err(FillError::Connect)?;
    let reply = hello(&mut conn, fleet.requests.fill_connect(since))
        .await
        .map_err(|_| FillError::Connect(Failure::Protocol))?;
    if !reply.ok {
        return Err(FillError::Connect(Failure::ConnectRejected));
    }
    let (mut sent, mut done) = (0u32, 0u32);
    let lost = |done| FillError::Lost { done, rows };
    while done < rows {
        while sent < rows && sent - done < WINDOW {
            let frame = Frame::text(Payload::Owned(fleet.requests.fill_beacon(sent)));
            conn.write
                .write_frame(frame)
                .await
                .map_err(|_| lost(done))?;
            sent += 1;
        }
        let text = match conn.read.read_message().await {
            Ok(Message::Text(text)) => text,
            Ok(Message::Ping(payload)) => {
                let pong = Frame::pong(Payload::Borrowed(payload));
                conn.write.write_frame(pong).await.map_err(|_| lost(done))?;
                continue;
            }
            Ok(Message::Pong(_)) => continue,
            Ok(Message::Close(_)) | Err(_) => return Err(lost(done)),
        };
        if text.starts_with(EVENT_PREFIX) {
            continue;
        }
        let msg: Envelope = serde_json::from_slice(text).map_err(|_| lost(done))?;
        if msg.kind != "res" {
            continue;
        }
        if !msg.is_ok() {
            let code = msg.error_code().to_owned();
            return Err(FillError::Refused { code });
        }
        done += 1;
    }
    close(&mut conn).await;
    Ok(())
}
