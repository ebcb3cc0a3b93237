//! The client side of the application handshake: wait for
//! `connect.challenge`, send `connect`, wait for its reply. Shared by the CLI
//! and every simulated client of `rollcall load`; each builds its own
//! `connect` request (id [`CONNECT_ID`]) and reads the reply its own way.
//!
//! Invariants: the first text message must be the challenge; pings are
//! answered as they come; events before the reply are skipped; the reply is
//! recognised by its id, and its bytes are handed over, not copied.

use std::borrow::Cow;
use std::time::Duration;

use fastwebsockets::{Frame, Payload, WebSocketError};
use serde::Deserialize;
use tokio::time::Instant;

use super::ws_dial::WsConn;
use crate::frame_reader::{Message, ReadError};

/// The request id of `connect`, which the reply carries back.
pub const CONNECT_ID: &str = "connect";

/// The fields of an incoming frame a client dispatches on. Everything else
/// (payloads, snapshots) is skipped by the parser without being built.
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    /// `res`, `event`, ...
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// A reply's request id.
    #[serde(default, borrow)]
    pub id: Option<Cow<'a, str>>,
    /// A reply's outcome.
    #[serde(default)]
    pub ok: Option<bool>,
    /// An event's name.
    #[serde(default, borrow)]
    pub event: Option<Cow<'a, str>>,
    /// A failed reply's error.
    #[serde(default, borrow)]
    error: Option<EnvelopeError<'a>>,
}

#[derive(Debug, Deserialize)]
struct EnvelopeError<'a> {
    #[serde(default, borrow)]
    code: Option<Cow<'a, str>>,
}

impl Envelope<'_> {
    /// A failed reply's `error.code`, `UNKNOWN` when it has none.
    pub fn error_code(&self) -> &str {
        self.error
            .as_ref()
            .and_then(|e| e.code.as_deref())
            .unwrap_or("UNKNOWN")
    }

    /// True for a `res` with `ok: true`.
    pub fn is_ok(&self) -> bool {
        self.ok == Some(true)
    }
}

/// The reply to `connect`.
#[derive(Debug)]
pub struct HelloReply {
    /// `ok: true`: the connection is ready.
    pub ok: bool,
    /// `error.code` of a refusal.
    pub error_code: Option<String>,
    /// From sending `connect` to its reply.
    pub latency: Duration,
    /// The whole reply (`hello-ok` or the error), for callers that read more.
    pub reply: Vec<u8>,
}

/// Why the handshake did not get a reply.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Reading failed: the socket closed, or the frames broke the protocol.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Writing `connect` or a pong failed.
    #[error("write failed")]
    Write(#[from] WebSocketError),
    /// The server sent a close frame, with this reason.
    #[error("the gateway closed the connection ({0})")]
    Closed(String),
    /// The first message was not `connect.challenge`.
    #[error("the gateway sent no connect.challenge")]
    NoChallenge,
    /// A message was not the JSON of a frame.
    #[error("invalid JSON from the gateway")]
    Json(#[from] serde_json::Error),
}

/// The reason of a close frame's payload, `no reason` when it has none.
pub fn close_reason(payload: &[u8]) -> String {
    if payload.len() > 2 {
        String::from_utf8_lossy(&payload[2..]).into_owned()
    } else {
        "no reason".into()
    }
}

/// Reads the next text message, answering pings on the way.
pub async fn next_text(conn: &mut WsConn) -> Result<&mut Vec<u8>, HandshakeError> {
    let WsConn { read, write } = conn;
    loop {
        match read.read_message().await? {
            Message::Text(_) => break,
            Message::Ping(payload) => {
                write
                    .write_frame(Frame::pong(Payload::Borrowed(payload)))
                    .await?
            }
            Message::Pong(_) => {}
            Message::Close(payload) => return Err(HandshakeError::Closed(close_reason(payload))),
        }
    }
    Ok(read.last_text())
}

/// Runs the handshake on a fresh connection with `connect`, a request whose
/// id is [`CONNECT_ID`], and returns the reply.
pub async fn hello(conn: &mut WsConn, connect: Vec<u8>) -> Result<HelloReply, HandshakeError> {
    let challenge = next_text(conn).await?;
    let msg: Envelope = serde_json::from_slice(challenge)?;
    if msg.kind != "event" || msg.event.as_deref() != Some("connect.challenge") {
        return Err(HandshakeError::NoChallenge);
    }
    let sent_at = Instant::now();
    conn.write
        .write_frame(Frame::text(Payload::Owned(connect)))
        .await?;
    loop {
        let text = next_text(conn).await?;
        let msg: Envelope = serde_json::from_slice(text)?;
        if msg.kind != "res" || msg.id.as_deref() != Some(CONNECT_ID) {
            continue;
        }
        let latency = sent_at.elapsed();
        let ok = msg.is_ok();
        let error_code = (!ok).then(|| msg.error_code().to_owned());
        // Taken, not copied: a `hello-ok` with a snapshot is large.
        let reply = std::mem::take(text);
        return Ok(HelloReply {
            ok,
            error_code,
            latency,
            reply,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_skips_payload_and_reads_error_code() {
        let msg: Envelope = serde_json::from_slice(
            br#"{"type":"res","id":"9","ok":false,"payload":[{"a":1}],"error":{"code":"FORBIDDEN","message":"m"}}"#,
        )
        .unwrap();
        assert_eq!(msg.kind, "res");
        assert_eq!(msg.id.as_deref(), Some("9"));
        assert_eq!(msg.error_code(), "FORBIDDEN");
        assert!(!msg.is_ok());
    }

    #[test]
    fn close_reason_skips_the_code() {
        assert_eq!(close_reason(b"\x03\xe8bye"), "bye");
        assert_eq!(close_reason(b"\x03\xe8"), "no reason");
    }
}
