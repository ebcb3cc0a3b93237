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

    /// Reads client frames straight from `read`, as a server does after the
    /// upgrade (for tests and the fuzzer, which have no socket).
    pub fn over(read: R) -> Self {
        let (ws, _) = fastwebsockets::after_handshake_split(
            read,
            tokio::io::sink(),
            fastwebsockets::Role::Server,
        );
        FrameReader::new(ws)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::MessageError;

    /// A client frame: FIN bit, opcode, masked with a fixed key.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![(u8::from(fin) << 7) | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    async fn read_all(input: Vec<u8>, limit: usize) -> (Vec<String>, Vec<Obligation>, ReadError) {
        let mut reader = FrameReader::over(&input[..]);
        let (mut messages, mut owed) = (Vec::new(), Vec::new());
        loop {
            match reader.read_message(limit, |o| owed.push(o)).await {
                Ok(m) => messages.push(String::from_utf8(m.clone()).unwrap()),
                Err(e) => return (messages, owed, e),
            }
        }
    }

    #[tokio::test]
    async fn fragments_are_joined_and_pings_answered_in_between() {
        let mut input = frame(false, 0x1, b"{\"a\":");
        input.extend(frame(true, 0x9, b"p"));
        input.extend(frame(true, 0x0, b"1}"));
        input.extend(frame(true, 0x1, b"next"));
        let (messages, owed, end) = read_all(input, 64).await;
        assert_eq!(messages, ["{\"a\":1}", "next"]);
        assert_eq!(owed, [Obligation::Pong(b"p".to_vec())]);
        assert!(matches!(
            end,
            ReadError::Transport(WebSocketError::UnexpectedEOF)
        ));
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_is_refused_from_its_header() {
        let (messages, _, end) = read_all(frame(true, 0x1, &[b'a'; 200]), 100).await;
        assert!(messages.is_empty());
        assert!(matches!(
            end,
            ReadError::Message(MessageError::TooLarge { limit: 100 })
        ));
    }

    #[tokio::test]
    async fn fragments_together_over_the_limit_are_refused() {
        let mut input = frame(false, 0x1, &[b'a'; 60]);
        input.extend(frame(true, 0x0, &[b'a'; 60]));
        let (_, _, end) = read_all(input, 100).await;
        assert!(matches!(
            end,
            ReadError::Message(MessageError::TooLarge { limit: 100 })
        ));
    }

    #[tokio::test]
    async fn binary_and_close_end_the_read() {
        let (_, _, end) = read_all(frame(true, 0x2, b"x"), 64).await;
        assert!(matches!(end, ReadError::Message(MessageError::Binary)));
        let (_, owed, end) = read_all(frame(true, 0x8, &1000u16.to_be_bytes()), 64).await;
        assert!(matches!(end, ReadError::Closed));
        assert!(matches!(owed[..], [Obligation::CloseEcho(_)]));
    }

    #[tokio::test]
    async fn a_large_message_does_not_stay_resident() {
        let (big, small) = (vec![b'a'; 40_000], b"ok".to_vec());
        let mut input = frame(true, 0x1, &big);
        input.extend(frame(true, 0x1, &small));
        let mut reader = FrameReader::over(&input[..]);
        assert_eq!(
            reader.read_message(1 << 20, |_| {}).await.unwrap().len(),
            big.len()
        );
        assert_eq!(reader.read_message(1 << 20, |_| {}).await.unwrap(), &small);
        assert!(reader.message.capacity() <= crate::protocol::message::RETAINED_CAPACITY);
    }
}
