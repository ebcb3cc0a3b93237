//! Frames out of one WebSocket, over any `AsyncWrite`: the writer loop
//! that drains a connection's outbox onto the socket. (Frames in are read
//! by [`crate::frame_reader`], shared with the client.) Nothing here knows
//! the protocol's methods or the presence engine.
//!
//! Invariants:
//! - Every broadcast event is numbered with the connection's next `seq` as
//!   it is written: 1, 2, 3, … with no gaps (docs/protocol.md §2).
//! - With permessage-deflate (RFC 7692) negotiated, the writer compresses
//!   nothing itself: an event's head and a list's rows
//!   come compressed once for every connection, and the per-connection
//!   bytes (`seq`, request id, the self entry) go around them as stored
//!   blocks. Small replies are sent uncompressed, as §6 of the RFC allows.

use super::list_frame::ListFrame;
use super::outbox::{Out, Receiver};
use super::render::Renderer;
use crate::compress::{write_message_end, write_stored};
use crate::protocol::Opcode;
use crate::protocol::ws;
use std::io::{self, IoSlice};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// How long a client may take to read its `hello-ok`, which holds a share
/// of the gateway's hello budget until it is written: as long as it had to
/// send `connect`.
const HELLO_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A write buffer grown past this by one large reply is freed after it.
const WRITE_BUFFER_KEEP: usize = 64 * 1024;

/// Most payload parts one frame is written from (an event's shared head
/// and its per-connection tail; a close's code and reason; a list reply's
/// own bytes around its shared rows).
pub const MAX_PARTS: usize = 3;

/// Shared rows shorter than this go out uncompressed: the stored blocks
/// around them would cost more than compressing saves.
const DEFLATE_MIN_ROWS: usize = 256;

/// Writes server frames: unmasked, final, header and payload parts in one
/// vectored write.
pub struct FrameWriter<W> {
    io: W,
    /// The `seq` of the last broadcast event written.
    seq: u64,
    /// The per-connection tail of the last event (`,"seq":N,…}`), kept for
    /// the next one.
    tail: Vec<u8>,
    /// Stored blocks around shared compressed bytes, reused.
    stored: Vec<u8>,
    /// permessage-deflate was negotiated.
    deflate: bool,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// Writes to `io`, the write half of an upgraded connection.
    pub fn new(io: W) -> Self {
        FrameWriter {
            io,
            seq: 0,
            tail: Vec::new(),
            stored: Vec::new(),
            deflate: false,
        }
    }

    /// Sends shared events and lists compressed (permessage-deflate was
    /// negotiated).
    pub fn with_deflate(mut self, deflate: bool) -> Self {
        self.deflate = deflate;
        self
    }

    /// Writes one frame whose payload is `parts` joined (at most
    /// [`MAX_PARTS`] of them), header included, in vectored writes and
    /// without allocating.
    pub async fn write_frame(&mut self, opcode: Opcode, parts: &[&[u8]]) -> io::Result<()> {
        self.write_frame_with(opcode, false, parts).await
    }

    /// [`FrameWriter::write_frame`], with RSV1 set when the parts are one
    /// compressed message.
    async fn write_frame_with(
        &mut self,
        opcode: Opcode,
        compressed: bool,
        parts: &[&[u8]],
    ) -> io::Result<()> {
        debug_assert!(
            parts.len() <= MAX_PARTS,
            "a frame has at most {MAX_PARTS} parts"
        );
        let mut header = [0u8; ws::MAX_HEADER_LEN];
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let n = ws::write_header_with(&mut header, opcode, compressed, len);
        let mut slices = [IoSlice::new(&[]); MAX_PARTS + 1];
        slices[0] = IoSlice::new(&header[..n]);
        let mut used = 1;
        for part in parts.iter().filter(|p| !p.is_empty()).take(MAX_PARTS) {
            slices[used] = IoSlice::new(part);
            used += 1;
        }
        let mut slices = &mut slices[..used];
        while !slices.is_empty() {
            let written = self.io.write_vectored(slices).await?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut slices, written);
        }
        self.io.flush().await
    }

    /// Writes a broadcast event numbered with this connection's next `seq`.
    pub async fn write_event(&mut self, event: &crate::protocol::SharedEvent) -> io::Result<()> {
        self.seq += 1;
        // Reused: no allocation per event after the first.
        let mut tail = std::mem::take(&mut self.tail);
        tail.clear();
        event.write_tail(Some(self.seq), &mut tail);
        let written = match event.deflated().filter(|_| self.deflate) {
            Some(head) => {
                let mut stored = std::mem::take(&mut self.stored);
                stored.clear();
                write_stored(&mut stored, &tail);
                write_message_end(&mut stored);
                let parts: [&[u8]; 2] = [&head.bytes, &stored];
                let written = self.write_frame_with(Opcode::Text, true, &parts).await;
                self.stored = stored;
                written
            }
            None => self.write_frame(Opcode::Text, &[event.head(), &tail]).await,
        };
        self.tail = tail;
        written
    }

    /// Writes a reply carrying shared rows: compressed around the rows'
    /// shared compressed bytes when that pays, else plain.
    pub async fn write_list(&mut self, frame: &ListFrame) -> io::Result<()> {
        let rows = frame
            .rows()
            .filter(|rows| self.deflate && rows.plain().len() >= DEFLATE_MIN_ROWS);
        let Some(rows) = rows else {
            return self.write_frame(Opcode::Text, &frame.parts()).await;
        };
        let (before, after) = frame.around();
        let mut stored = std::mem::take(&mut self.stored);
        stored.clear();
        write_stored(&mut stored, before);
        let mid = stored.len();
        write_stored(&mut stored, after);
        write_message_end(&mut stored);
        let parts: [&[u8]; 3] = [&stored[..mid], &rows.deflated().bytes, &stored[mid..]];
        let written = self.write_frame_with(Opcode::Text, true, &parts).await;
        if stored.capacity() > WRITE_BUFFER_KEEP {
            stored = Vec::new();
        }
        self.stored = stored;
        written
    }
}

/// Writes the outbox to the socket until a close is written, the outbox is
/// ended and drained, or the socket fails. Late-bound replies are rendered
/// by `renderer` when their turn comes.
pub async fn write_loop<W: AsyncWrite + Unpin>(
    io: W,
    outbox: Receiver,
    renderer: &Renderer,
    deflate: bool,
) {
    let mut ws = FrameWriter::new(io).with_deflate(deflate);
    let mut buf = Vec::new();
    while let Some((out, size)) = outbox.next().await {
        buf.clear();
        let result = match out {
            Out::Text(bytes) => ws.write_frame(Opcode::Text, &[&bytes]).await,
            // The permit goes with the frame: the next hello may be rendered.
            // The permit goes with the frame: the next hello may be
            // rendered. A client that does not take its hello in time gives
            // its share of the budget back by losing the connection.
            Out::Hello {
                frame,
                permit: _permit,
            } => {
                let write = ws.write_list(&frame);
                tokio::time::timeout(HELLO_WRITE_TIMEOUT, write)
                    .await
                    .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
            }
            Out::Event(event) => ws.write_event(&event).await,
            Out::Applied { id, applied } => {
                renderer.applied(&id, applied.await.is_ok(), &mut buf);
                ws.write_frame(Opcode::Text, &[&buf]).await
            }
            Out::Presence { id } => ws.write_list(&renderer.presence(&id)).await,
            Out::Health { id } => {
                renderer.health(&id, &mut buf);
                ws.write_frame(Opcode::Text, &[&buf]).await
            }
            Out::Pong(data) => ws.write_frame(Opcode::Pong, &[&data]).await,
            Out::Ping => ws.write_frame(Opcode::Ping, &[]).await,
            Out::CloseEcho(data) => {
                let _ = ws.write_frame(Opcode::Close, &[&data]).await;
                break;
            }
            Out::Close(close) => {
                let code = close.code.code().to_be_bytes();
                let _ = ws
                    .write_frame(Opcode::Close, &[&code, close.reason.as_bytes()])
                    .await;
                break;
            }
        };
        outbox.written(size);
        if buf.capacity() > WRITE_BUFFER_KEEP {
            buf = Vec::new();
        }
        if result.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_are_numbered_per_connection_without_gaps() {
        let mut out = Vec::new();
        let mut writer = FrameWriter::new(&mut out);
        let event = crate::protocol::SharedEvent::tick(5);
        writer.write_event(&event).await.unwrap();
        writer.write_event(&event).await.unwrap();
        // Two unmasked frames: 2-byte headers, then the JSON.
        let first_len = usize::from(out[1]);
        let first: serde_json::Value = serde_json::from_slice(&out[2..2 + first_len]).unwrap();
        let rest = &out[2 + first_len..];
        let second: serde_json::Value = serde_json::from_slice(&rest[2..]).unwrap();
        assert_eq!(
            (first["seq"].as_u64(), second["seq"].as_u64()),
            (Some(1), Some(2))
        );
    }
}
