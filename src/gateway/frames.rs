//! Frames out of one WebSocket, over any `AsyncWrite`: the writer loop
//! that drains a connection's outbox onto the socket. (Frames in are read
//! by [`crate::frame_reader`], shared with the client.) Nothing here knows
//! the protocol's methods or the presence engine.
//!
//! Invariants:
//! - Every broadcast event is numbered with the connection's next `seq` as
//!   it is written: 1, 2, 3, … with no gaps (docs/protocol.md §2).
//! - Frames leave in the order they were queued. Small ones that are ready
//!   together (the replies one engine batch acknowledged, a pong, a `tick`)
//!   are gathered and written in one write; nothing is gathered across a
//!   wait, so gathering delays no frame.
//! - A frame that carries a snapshot's rows (`hello-ok`, `system-presence`)
//!   is its own bytes around the rows' shared chunks, in the same one
//!   vectored write as what was gathered before it.
//! - With permessage-deflate (RFC 7692) negotiated, the writer
//!   compresses nothing of its own: an event's head comes compressed once
//!   for every connection, a list's rows as the segments of their chunks,
//!   each compressed once for every version sharing it (`list_frame.rs`),
//!   and the per-connection bytes (`seq`, request id, the self entry) go
//!   around them as stored blocks. Small replies are sent uncompressed, as
//!   §6 of the RFC allows.

use super::outbox::{Out, Receiver};
use super::render::Renderer;
use crate::protocol::{Opcode, SharedEvent};
use std::io::{self, IoSlice};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

mod lists;

/// How long a client may take to read its `hello-ok`, which holds a share
/// of the gateway's hello budget until it is written: as long as it had to
/// send `connect`.
const HELLO_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A write buffer grown past this by one large reply is freed after it.
const WRITE_BUFFER_KEEP: usize = 64 * 1024;

/// Frames up to this size (header included) are gathered and written
/// together with the next ones: the replies a wake-up finds ready cost one
/// write, not one each.
const GATHER_FRAME_MAX: usize = 2048;

/// Gathered bytes past this are written at once.
const GATHER_MAX: usize = 16 * 1024;

/// Writes server frames: unmasked, final, header and payload parts in one
/// vectored write. Small frames are gathered until [`FrameWriter::flush`],
/// a large frame, or [`GATHER_MAX`] bytes, and go out in that one write.
pub struct FrameWriter<W> {
    io: W,
    /// Small frames not yet written, in order.
    gathered: Vec<u8>,
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
            gathered: Vec::new(),
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

    /// Writes one frame whose payload is `parts` joined, header included:
    /// a small one is gathered (see [`FrameWriter::flush`]), a large one
    /// goes out at once with what was gathered before it, in vectored
    /// writes and without copying.
    pub async fn write_frame(&mut self, opcode: Opcode, parts: &[&[u8]]) -> io::Result<()> {
        self.write_pieces(opcode, false, parts.iter().copied())
            .await
    }

    /// True when gathered frames wait for [`FrameWriter::flush`].
    pub fn has_gathered(&self) -> bool {
        !self.gathered.is_empty()
    }

    /// Writes the gathered frames, in one write unless the socket takes
    /// less.
    pub async fn flush(&mut self) -> io::Result<()> {
        if self.gathered.is_empty() {
            return Ok(());
        }
        self.io.write_all(&self.gathered).await?;
        self.gathered.clear();
        if self.gathered.capacity() > WRITE_BUFFER_KEEP {
            self.gathered = Vec::new();
        }
        self.io.flush().await
    }

    /// Adds a small frame (its header, then its payload `pieces`) to the
    /// gathered ones, and writes them all once they pass [`GATHER_MAX`].
    async fn gather<'a>(
        &mut self,
        header: &[u8],
        pieces: impl Iterator<Item = &'a [u8]>,
    ) -> io::Result<()> {
        self.gathered.extend_from_slice(header);
        pieces.for_each(|piece| self.gathered.extend_from_slice(piece));
        if self.gathered.len() >= GATHER_MAX {
            return self.flush().await;
        }
        Ok(())
    }

    /// Writes a broadcast event numbered with this connection's next `seq`.
    pub async fn write_event(&mut self, event: &SharedEvent) -> io::Result<()> {
        self.seq += 1;
        // Reused: no allocation per event after the first.
        let mut tail = std::mem::take(&mut self.tail);
        tail.clear();
        event.write_tail(Some(self.seq), &mut tail);
        let written = self.write_shared_event(event, &tail).await;
        self.tail = tail;
        written
    }
}

/// Writes all of `slices`: vectored writes, each going on where the last
/// stopped (the kernel takes at most `IOV_MAX` slices at a time).
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    io: &mut W,
    mut slices: &mut [IoSlice<'_>],
) -> io::Result<()> {
    while !slices.is_empty() {
        let written = io.write_vectored(slices).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, written);
    }
    Ok(())
}

/// Writes the outbox to the socket until a close is written, the outbox is
/// ended and drained, or the socket fails. Late-bound replies are rendered
/// by `renderer` when their turn comes. What is ready when the writer wakes
/// goes out together: small frames are gathered, and written once nothing
/// more is ready (or before waiting for an acknowledgement).
pub async fn write_loop<W: AsyncWrite + Unpin>(
    io: W,
    outbox: Receiver,
    renderer: &Renderer,
    deflate: bool,
) {
    let mut drain = Drain {
        ws: FrameWriter::new(io).with_deflate(deflate),
        outbox: &outbox,
        renderer,
        buf: Vec::new(),
        unwritten: 0,
    };
    loop {
        let (out, size) = match outbox.try_next() {
            Some(item) => item,
            None => {
                if drain.flush().await.is_err() {
                    return;
                }
                match outbox.next().await {
                    Some(item) => item,
                    None => break,
                }
            }
        };
        match drain.write(out).await {
            Ok(Step::Next) => drain.written(size),
            Ok(Step::Stop) | Err(_) => return,
        }
    }
    // Ended and drained: what is gathered is the last of it.
    let _ = drain.ws.flush().await;
}

/// What the writer does after an item.
enum Step {
    /// Takes the next one.
    Next,
    /// Stops: a close frame went out.
    Stop,
}

/// The writer loop's state: the socket's writer and the budget of what it
/// gathered and has not written yet.
struct Drain<'a, W> {
    ws: FrameWriter<W>,
    outbox: &'a Receiver,
    renderer: &'a Renderer,
    /// Reused for rendered replies.
    buf: Vec<u8>,
    /// Budget of the gathered items, released once they are written.
    unwritten: usize,
}

impl<W: AsyncWrite + Unpin> Drain<'_, W> {
    /// Writes (or gathers) one item.
    async fn write(&mut self, out: Out) -> io::Result<Step> {
        self.buf.clear();
        if self.buf.capacity() > WRITE_BUFFER_KEEP {
            self.buf = Vec::new();
        }
        let (ws, buf, renderer) = (&mut self.ws, &mut self.buf, self.renderer);
        match out {
            Out::Text(bytes) => ws.write_frame(Opcode::Text, &[&bytes]).await?,
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
                    .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))?;
            }
            Out::Event(event) => ws.write_event(&event).await?,
            Out::Applied { id, mut applied } => {
                let ok = match applied.try_recv() {
                    Ok(_) => true,
                    Err(oneshot::error::TryRecvError::Closed) => false,
                    // Not applied yet: what is gathered goes out meanwhile.
                    Err(oneshot::error::TryRecvError::Empty) => {
                        self.flush().await?;
                        applied.await.is_ok()
                    }
                };
                self.renderer.applied(&id, ok, &mut self.buf);
                self.ws.write_frame(Opcode::Text, &[&self.buf]).await?;
            }
            Out::Presence { id } => ws.write_list(&renderer.presence(&id)).await?,
            Out::Health { id } => {
                renderer.health(&id, buf);
                ws.write_frame(Opcode::Text, &[buf]).await?;
            }
            Out::Pong(data) => ws.write_frame(Opcode::Pong, &[&data]).await?,
            Out::Ping => ws.write_frame(Opcode::Ping, &[]).await?,
            Out::CloseEcho(data) => {
                ws.write_frame(Opcode::Close, &[&data]).await?;
                ws.flush().await?;
                return Ok(Step::Stop);
            }
            Out::Close(close) => {
                let code = close.code.code().to_be_bytes();
                let parts = [&code[..], close.reason.as_bytes()];
                ws.write_frame(Opcode::Close, &parts).await?;
                ws.flush().await?;
                return Ok(Step::Stop);
            }
        }
        Ok(Step::Next)
    }

    /// `size` bytes of budget are handled: released now if nothing waits
    /// in the gathered frames, else when they are written.
    fn written(&mut self, size: usize) {
        self.unwritten += size;
        if !self.ws.has_gathered() {
            self.outbox.written(std::mem::take(&mut self.unwritten));
        }
    }

    /// Writes what is gathered and releases its budget.
    async fn flush(&mut self) -> io::Result<()> {
        self.ws.flush().await?;
        self.outbox.written(std::mem::take(&mut self.unwritten));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// Records each write call's bytes separately.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl AsyncWrite for Writes {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.0.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let joined: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            let n = joined.len();
            self.0.push(joined);
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn small_frames_go_out_together_in_order_and_before_a_large_one() {
        let mut writes = Writes::default();
        let mut writer = FrameWriter::new(&mut writes);
        for reply in [&b"one"[..], b"two", b"three"] {
            writer.write_frame(Opcode::Text, &[reply]).await.unwrap();
        }
        writer.flush().await.unwrap();
        writer.write_frame(Opcode::Text, &[b"four"]).await.unwrap();
        let large = vec![b'x'; GATHER_FRAME_MAX];
        writer.write_frame(Opcode::Text, &[&large]).await.unwrap();
        assert!(!writer.has_gathered());
        let expected_first = [
            &[0x81, 3][..],
            b"one",
            &[0x81, 3],
            b"two",
            &[0x81, 5],
            b"three",
        ];
        assert_eq!(writes.0[0], expected_first.concat(), "one write, in order");
        assert_eq!(
            writes.0.len(),
            2,
            "the gathered frame rides with the large one"
        );
        assert_eq!(&writes.0[1][..6], &[0x81, 4, b'f', b'o', b'u', b'r']);
        assert_eq!(writes.0[1].len(), 6 + 4 + GATHER_FRAME_MAX);
    }

    #[tokio::test]
    async fn events_are_numbered_per_connection_without_gaps() {
        let mut out = Vec::new();
        let mut writer = FrameWriter::new(&mut out);
        let event = crate::protocol::SharedEvent::tick(5);
        writer.write_event(&event).await.unwrap();
        writer.write_event(&event).await.unwrap();
        assert!(writer.has_gathered(), "small frames wait for the flush");
        writer.flush().await.unwrap();
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

    /// The payload of the one server frame at the start of `bytes`, and
    /// whether RSV1 (compressed) was set.
    fn only_frame(bytes: &[u8]) -> (&[u8], bool) {
        let (len, at) = match bytes[1] {
            126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 => (
                usize::try_from(u64::from_be_bytes(bytes[2..10].try_into().unwrap())).unwrap(),
                10,
            ),
            n => (usize::from(n), 2),
        };
        assert_eq!(bytes.len(), at + len, "exactly one frame");
        (&bytes[at..], bytes[0] & 0x40 != 0)
    }

    #[tokio::test]
    async fn a_list_goes_out_after_the_gathered_frames_in_one_write_plain_or_compressed() {
        use crate::config::ServeConfig;
        use crate::engine::Event;
        use crate::gateway::state::State;
        use crate::presence::{Key, Patch};
        let state = State::new(ServeConfig::defaults(), None, crate::clock::Clock::system())
            .expect("no fleet");
        for i in 0..300 {
            let id = format!("5d0f3c2e-7a41-4b8e-9c1d-{i:012}");
            let event = Event::Beacon {
                key: Key::parse(&id).expect("a test key is not blank"),
                patch: Patch {
                    instance_id: Some(id.clone()),
                    text: Some(format!("Node: mac-{i} · up {} s", i * 37)),
                    ..Patch::default()
                },
            };
            let applied = state.sender.try_push_acked(event).expect("room");
            applied.await.expect("the writer applies it");
        }
        let frame = state.renderer.presence("7");
        let plain = frame.to_bytes();
        for deflate in [false, true] {
            let mut writes = Writes::default();
            let mut writer = FrameWriter::new(&mut writes).with_deflate(deflate);
            writer.write_frame(Opcode::Text, &[b"small"]).await.unwrap();
            writer.write_list(&frame).await.unwrap();
            assert!(!writer.has_gathered());
            assert_eq!(writes.0.len(), 1, "one write, deflate {deflate}");
            let (small, list) = writes.0[0].split_at(7);
            assert_eq!(small, b"\x81\x05small");
            let (payload, compressed) = only_frame(list);
            assert_eq!(compressed, deflate);
            if !deflate {
                assert_eq!(payload, &plain[..]);
                continue;
            }
            assert!(payload.len() > GATHER_FRAME_MAX, "not gathered");
            assert!(payload.len() * 4 < plain.len(), "{} bytes", payload.len());
            let mut inflated = Vec::with_capacity(plain.len() + 1);
            let mut inflater = flate2::Decompress::new(false);
            let input = [payload, &[0, 0, 0xff, 0xff]].concat();
            inflater
                .decompress_vec(&input, &mut inflated, flate2::FlushDecompress::Sync)
                .unwrap();
            assert_eq!(inflated, plain);
        }
    }
}
