//! Frames in and out of one WebSocket, over any `AsyncRead`/`AsyncWrite`:
//! whole messages read with reassembly and size limits, and the writer loop
//! that drains a connection's outbox onto the socket. Nothing here knows
//! the protocol's methods or the presence engine.
//!
//! Invariants:
//! - Between messages a reader holds no buffer: its read buffer is freed
//!   whenever the socket has nothing more to give, and the reassembler's on
//!   [`FrameReader::release`]. An idle connection's memory therefore does
//!   not depend on the largest message it ever sent.
//! - A frame is checked from its header before its payload is read:
//!   RFC 6455 §5 rules (`protocol::ws`) and the message limit, so a header
//!   alone never makes the reader allocate more than the limit.
//! - Every broadcast event is numbered with the connection's next `seq` as
//!   it is written: 1, 2, 3, … with no gaps (docs/protocol.md §2).
//! - With permessage-deflate (RFC 7692) negotiated, a client message with
//!   RSV1 is inflated under the same limit, counted after inflation. The
//!   writer compresses nothing itself: an event's head and a list's rows
//!   come compressed once for every connection, and the per-connection
//!   bytes (`seq`, request id, the self entry) go around them as stored
//!   blocks. Small replies are sent uncompressed, as §6 of the RFC allows.

use super::list_frame::ListFrame;
use super::outbox::{Out, Receiver};
use super::render::Renderer;
use crate::compress::{write_message_end, write_stored};
use crate::protocol::ws::{self, FrameHeader, HeaderError, MAX_CONTROL_PAYLOAD, Parsed};
use crate::protocol::{MessageError, Opcode, Progress, Reassembler};
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Bytes asked of the socket per read: a few requests, or a frame header
/// and the start of a large payload.
const READ_CHUNK: usize = 4096;

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

/// A control frame the peer is owed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Obligation {
    /// A pong, answering a ping with this payload.
    Pong(Vec<u8>),
    /// The echo of the peer's close frame (its code and reason).
    CloseEcho(Vec<u8>),
}

/// Why no message was read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The peer sent a close frame.
    #[error("the peer closed")]
    Closed,
    /// A frame header broke RFC 6455 §5.
    #[error("protocol error: {0}")]
    Frame(#[from] HeaderError),
    /// The frames broke a message rule (size, binary, UTF-8, fragments).
    #[error(transparent)]
    Message(#[from] MessageError),
    /// The socket failed or ended.
    #[error("socket: {0}")]
    Io(#[from] io::Error),
}

/// Reads whole text messages from one connection.
pub struct FrameReader<R> {
    io: R,
    /// Bytes read and not yet consumed, from `start`. Empty and unallocated
    /// while the connection is idle.
    buf: Vec<u8>,
    start: usize,
    message: Reassembler,
    /// permessage-deflate was negotiated: RSV1 marks a compressed message.
    deflate: bool,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads client frames from `io`, the read half of an upgraded connection.
    pub fn new(io: R) -> Self {
        FrameReader {
            io,
            buf: Vec::new(),
            start: 0,
            message: Reassembler::new(),
            deflate: false,
        }
    }

    /// Accepts compressed messages (permessage-deflate was negotiated).
    pub fn with_deflate(mut self, deflate: bool) -> Self {
        self.deflate = deflate;
        self
    }

    /// Reads one whole text message of at most `limit` bytes, reassembling
    /// fragments. `owed` gets the control frames the peer must be sent; it
    /// may refuse one (the connection is over its budget), which ends the
    /// read with that error. The message stays valid until the next read or
    /// [`FrameReader::release`].
    pub async fn read_message<E>(
        &mut self,
        limit: usize,
        mut owed: impl FnMut(Obligation) -> Result<(), E>,
    ) -> Result<&mut Vec<u8>, ReadEnd<E>> {
        self.message.release();
        loop {
            let header = self.read_header().await?;
            if header.opcode.is_control() {
                let payload = self.read_control(&header).await?;
                match header.opcode {
                    Opcode::Ping => owed(Obligation::Pong(payload)).map_err(ReadEnd::Refused)?,
                    Opcode::Close => {
                        owed(Obligation::CloseEcho(payload)).map_err(ReadEnd::Refused)?;
                        return Err(ReadError::Closed.into());
                    }
                    _ => {}
                }
                continue;
            }
            let len = usize::try_from(header.len).unwrap_or(usize::MAX);
            self.read_payload(&header, len, limit).await?;
            if self
                .message
                .end_frame(header.fin)
                .map_err(ReadError::from)?
                == Progress::Complete
            {
                return Ok(self.message.message_mut());
            }
        }
    }

    /// Frees the last message's buffer, and the read buffer if nothing is
    /// left in it.
    pub fn release(&mut self) {
        self.message.release();
        if self.start == self.buf.len() {
            self.buf = Vec::new();
            self.start = 0;
        }
    }

    /// Bytes this reader holds allocated (for tests and memory accounting).
    pub fn allocated(&self) -> usize {
        self.buf.capacity() + self.message.capacity()
    }

    async fn read_header(&mut self) -> Result<FrameHeader, ReadError> {
        let mut need = 2;
        loop {
            self.fill(need).await?;
            match ws::parse_header_with(&self.buf[self.start..], ws::Sender::Client, self.deflate)?
            {
                Parsed::Incomplete(n) => need = n,
                Parsed::Header(header, used) => {
                    self.start += used;
                    return Ok(header);
                }
            }
        }
    }

    async fn read_control(&mut self, header: &FrameHeader) -> Result<Vec<u8>, ReadError> {
        // The header check bounds a control payload to 125 bytes.
        let len = usize::try_from(header.len).unwrap_or(MAX_CONTROL_PAYLOAD);
        self.fill(len).await?;
        let mut payload = self.buf[self.start..self.start + len].to_vec();
        self.start += len;
        if let Some(mask) = header.mask {
            ws::unmask(&mut payload, mask, 0);
        }
        Ok(payload)
    }

    /// Reads a data frame's payload into the reassembler: what is buffered
    /// is copied, the rest is read straight into place.
    async fn read_payload(
        &mut self,
        header: &FrameHeader,
        len: usize,
        limit: usize,
    ) -> Result<(), ReadError> {
        let slot = self
            .message
            .begin_frame(header.opcode, header.compressed, len, limit)?;
        let buffered = (self.buf.len() - self.start).min(len);
        slot[..buffered].copy_from_slice(&self.buf[self.start..self.start + buffered]);
        self.start += buffered;
        let mut filled = buffered;
        while filled < len {
            let mut read_buf = ReadBuf::new(&mut slot[filled..]);
            poll_fn(|cx| Pin::new(&mut self.io).poll_read(cx, &mut read_buf)).await?;
            let n = read_buf.filled().len();
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
            filled += n;
        }
        if let Some(mask) = header.mask {
            ws::unmask(slot, mask, 0);
        }
        Ok(())
    }

    /// Makes sure `n` unconsumed bytes are buffered.
    async fn fill(&mut self, n: usize) -> io::Result<()> {
        poll_fn(|cx| self.poll_fill(cx, n)).await
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>, n: usize) -> Poll<io::Result<()>> {
        loop {
            let have = self.buf.len() - self.start;
            if have >= n {
                return Poll::Ready(Ok(()));
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let filled = self.buf.len();
            self.buf.resize(filled + (n - have).max(READ_CHUNK), 0);
            let mut read_buf = ReadBuf::new(&mut self.buf[filled..]);
            let polled = Pin::new(&mut self.io).poll_read(cx, &mut read_buf);
            let got = read_buf.filled().len();
            self.buf.truncate(filled + got);
            match polled {
                Poll::Pending => {
                    if self.buf.is_empty() {
                        // Idle: hold no buffer while waiting.
                        self.buf = Vec::new();
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if got == 0 => {
                    return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                }
                Poll::Ready(Ok(())) => {}
            }
        }
    }
}

/// Why a read ended: a read error, or a control reply the caller refused.
#[derive(Debug)]
pub enum ReadEnd<E> {
    /// The read failed.
    Read(ReadError),
    /// `owed` refused a control reply with this error.
    Refused(E),
}

impl<E> From<ReadError> for ReadEnd<E> {
    fn from(e: ReadError) -> Self {
        ReadEnd::Read(e)
    }
}

impl<E> From<HeaderError> for ReadEnd<E> {
    fn from(e: HeaderError) -> Self {
        ReadEnd::Read(e.into())
    }
}

impl<E> From<io::Error> for ReadEnd<E> {
    fn from(e: io::Error) -> Self {
        ReadEnd::Read(e.into())
    }
}

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
    use std::convert::Infallible;

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
        let mut reader = FrameReader::new(&input[..]);
        let (mut messages, mut owed) = (Vec::new(), Vec::new());
        loop {
            let read = reader
                .read_message(limit, |o| {
                    owed.push(o);
                    Ok::<(), Infallible>(())
                })
                .await;
            match read {
                Ok(m) => messages.push(String::from_utf8(m.clone()).unwrap()),
                Err(ReadEnd::Read(e)) => return (messages, owed, e),
                Err(ReadEnd::Refused(never)) => match never {},
            }
        }
    }

    fn is_eof(e: &ReadError) -> bool {
        matches!(e, ReadError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof)
    }

    #[tokio::test]
    async fn fragments_are_joined_and_pings_answered_in_between() {
        let mut input = frame(false, 0x1, br#"{"a":"#);
        input.extend(frame(true, 0x9, b"p"));
        input.extend(frame(true, 0x0, b"1}"));
        input.extend(frame(true, 0x1, b"next"));
        let (messages, owed, end) = read_all(input, 64).await;
        assert_eq!(messages, [r#"{"a":1}"#, "next"]);
        assert_eq!(owed, [Obligation::Pong(b"p".to_vec())]);
        assert!(is_eof(&end), "{end:?}");
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_is_refused_from_its_header() {
        // Only the header is sent: the payload is never waited for.
        let input = frame(true, 0x1, &[b'a'; 200])[..8].to_vec();
        let (messages, _, end) = read_all(input, 100).await;
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
        assert_eq!(
            owed,
            [Obligation::CloseEcho(1000u16.to_be_bytes().to_vec())]
        );
    }

    #[tokio::test]
    async fn an_unmasked_frame_fails_the_read() {
        let (_, _, end) = read_all(vec![0x81, 0x02, b'h', b'i'], 64).await;
        assert!(matches!(end, ReadError::Frame(HeaderError::Unmasked)));
    }

    #[tokio::test]
    async fn an_idle_reader_holds_no_buffer_after_a_large_message() {
        let big = vec![b'a'; 40_000];
        let input = frame(true, 0x1, &big);
        let mut reader = FrameReader::new(&input[..]);
        let message = reader
            .read_message(1 << 20, |_| Ok::<(), Infallible>(()))
            .await
            .unwrap();
        assert_eq!(message.len(), big.len());
        reader.release();
        assert_eq!(reader.allocated(), 0);
    }

    #[tokio::test]
    async fn a_refused_pong_ends_the_read() {
        let input = frame(true, 0x9, b"");
        let mut reader = FrameReader::new(&input[..]);
        let read = reader.read_message(64, |_| Err("over budget")).await;
        assert!(matches!(read, Err(ReadEnd::Refused("over budget"))));
    }

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
