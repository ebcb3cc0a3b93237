//! `--fill N`: the rows a run starts with. Before the ramp, one operator
//! connection with `operator.admin` writes N rows under distinct
//! `instanceId`s (`load-RUN-fN`), [`WINDOW`] beacons in flight, and waits for
//! every reply, so the run then measures a gateway that already holds N
//! rows besides its own clients'.
//!
//! Invariant: the fill ends only when every row's beacon was acknowledged
//! (the gateway applied it), or fails naming how far it got.

use super::fleet::SimulatedFleet;
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

/// Writes `rows` rows through one admin connection.
pub async fn fill(fleet: &SimulatedFleet, rows: u32) -> Result<(), FillError> {
    let mut conn = dial(fleet, 0).await.map_err(FillError::Connect)?;
    let reply = hello(&mut conn, fleet.requests.fill_connect())
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
