//! Frames in and out of one WebSocket, over any `AsyncRead`/`AsyncWrite`:
//! whole messages read with reassembly and size limits, and the writer loop
//! that drains a connection's outbox onto the socket. Nothing here knows
//! the protocol's methods or the presence engine.
//!
//! Invariants: a message is never longer than the limit the caller passes
//! (fastwebsockets refuses an oversized frame from its header, before its
//! payload is read; the reassembler bounds fragments together); control
//! replies that fastwebsockets is obliged to send (pongs, the close echo)
//! are handed to the caller, which queues them behind earlier replies.

use super::outbox::{Out, Receiver};
use super::render::Renderer;
use crate::protocol::{MessageError, Progress, Reassembler};
use fastwebsockets::{Frame, OpCode, Payload, WebSocketError, WebSocketRead, WebSocketWrite};
use std::convert::Infallible;
use std::future::{Ready, ready};
use tokio::io::{AsyncRead, AsyncWrite};

/// A control frame the peer is owed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Obligation {
    /// A pong, answering a ping with this payload.
    Pong(Vec<u8>),
    /// The echo of the peer's close frame.
    CloseEcho(Vec<u8>),
}

/// Why no message was read.
#[derive(Debug)]
pub enum ReadError {
    /// The peer sent a close frame.
    Closed,
    /// The frames broke a message rule (size, binary, UTF-8, fragments).
    Message(MessageError),
    /// The WebSocket layer failed (bad frame, socket error, EOF).
    Transport(WebSocketError),
}

/// Reads whole text messages from one connection.
pub struct FrameReader<R> {
    ws: WebSocketRead<R>,
    message: Reassembler,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads from `ws`, the read half of an upgraded connection.
    pub fn new(ws: WebSocketRead<R>) -> Self {
        FrameReader {
            ws,
            message: Reassembler::new(),
        }
    }

    /// Reads one whole text message of at most `limit` bytes, reassembling
    /// fragments. `owed` gets the control frames the peer must be sent.
    /// The message stays valid until the next read or [`FrameReader::release`].
    pub async fn read_message(
        &mut self,
        limit: usize,
        mut owed: impl FnMut(Obligation),
    ) -> Result<&mut Vec<u8>, ReadError> {
        // fastwebsockets' check is `>=`: allow exactly `limit`.
        self.ws.set_max_message_size(limit + 1);
        self.message.release();
        let mut obligated = |frame: Frame<'_>| -> Ready<Result<(), Infallible>> {
            owed(match frame.opcode {
                OpCode::Pong => Obligation::Pong(frame.payload.to_vec()),
                _ => Obligation::CloseEcho(frame.payload.to_vec()),
            });
            ready(Ok(()))
        };
        loop {
            let frame = self
                .ws
                .read_frame(&mut obligated)
                .await
                .map_err(|e| match e {
                    WebSocketError::FrameTooLarge => {
                        ReadError::Message(MessageError::TooLarge { limit })
                    }
                    WebSocketError::InvalidUTF8 => ReadError::Message(MessageError::InvalidUtf8),
                    e => ReadError::Transport(e),
                })?;
            let progress = self
                .message
                .push(frame.opcode.into(), frame.fin, &frame.payload, limit)
                .map_err(ReadError::Message)?;
            match progress {
                Progress::Complete => return Ok(self.message.message_mut()),
                Progress::Control(crate::protocol::Opcode::Close) => return Err(ReadError::Closed),
                Progress::Partial | Progress::Control(_) => {}
            }
        }
    }

    /// Frees the last message's buffer if a large one grew it.
    pub fn release(&mut self) {
        self.message.release();
    }
}

/// Writes the outbox to the socket until a close is written, the outbox is
/// ended and drained, or the socket fails. Late-bound replies are rendered
/// by `renderer` when their turn comes.
pub async fn write_loop<W: AsyncWrite + Unpin>(
    mut ws: WebSocketWrite<W>,
    outbox: Receiver,
    renderer: &Renderer,
) {
    let mut buf = Vec::with_capacity(256);
    while let Some((out, size)) = outbox.next().await {
        buf.clear();
        let result = match out {
            Out::Text(bytes) => ws.write_frame(Frame::text(Payload::Borrowed(&bytes))).await,
            Out::Applied { id, applied } => {
                renderer.applied(&id, applied.await.is_ok(), &mut buf);
                ws.write_frame(Frame::text(Payload::Borrowed(&buf))).await
            }
            Out::Presence { id } => {
                renderer.presence(&id, &mut buf);
                ws.write_frame(Frame::text(Payload::Borrowed(&buf))).await
            }
            Out::Health { id } => {
                renderer.health(&id, &mut buf);
                ws.write_frame(Frame::text(Payload::Borrowed(&buf))).await
            }
            Out::Pong(data) => ws.write_frame(Frame::pong(Payload::Owned(data))).await,
            Out::CloseEcho(data) => {
                let _ = ws.write_frame(Frame::close_raw(Payload::Owned(data))).await;
                break;
            }
            Out::Close(close) => {
                let frame = Frame::close(close.code.code(), close.reason.as_bytes());
                let _ = ws.write_frame(frame).await;
                break;
            }
        };
        outbox.written(size);
        if result.is_err() {
            break;
        }
    }
}
