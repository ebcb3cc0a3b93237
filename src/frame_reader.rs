//! Whole WebSocket messages read off any `AsyncRead`, for both ends of a
//! connection: the gateway reading its clients' frames, and rollcall's
//! client (`rollcall presence`, `beacon`, `load`) reading a server's. One
//! reader and one error type; the two differ only in their [`ReadConfig`]:
//! who sends the frames (clients mask every frame, servers none, RFC 6455
//! §5.1), the message limit, and whether permessage-deflate (RFC 7692) was
//! negotiated. Control frames are handed to the caller, who owes the pongs
//! and the close echo.
//!
//! Invariants:
//! - A frame is checked from its header before its payload is read: the
//!   §5 rules for the configured sender (`protocol::ws`) and the message
//!   limit (`protocol::Reassembler`), so a header alone never makes the
//!   reader allocate more than the limit.
//! - A compressed message (RSV1 on its first frame, allowed only when
//!   negotiated) is inflated under the same limit, counted after
//!   inflation.
//! - A data payload is copied once: from the socket, or from the small read
//!   buffer that holds what came with a header, straight into the message.
//!   A control payload is unmasked in the read buffer and lent out.
//! - Between messages the reader holds no buffer: its read buffer is freed
//!   whenever the socket has nothing more to give, and the message's on the
//!   next read or [`FrameReader::release`]. An idle connection's memory
//!   does not depend on the largest message it ever read.
//! - [`FrameReader::read_message`] is cancel safe: every byte taken off the
//!   socket is kept in the reader with how far its frame got, so a read
//!   dropped mid-frame (a `select!` that took another branch) resumes where
//!   it stopped.
//! - After a message error (a binary frame, a broken fragment sequence, a
//!   message over the limit) the refused frame's payload is skipped by the
//!   next read, so a caller may read on; a header error leaves the stream
//!   unframed and every later read repeats it.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::io::poll_read_buf;

use crate::protocol::ws::{self, HeaderError, MAX_CONTROL_PAYLOAD, Parsed, Sender};
use crate::protocol::{Close, MessageError, Opcode, Progress, Reassembler};

/// Bytes asked of the socket per read into the read buffer: a few
/// requests, or a frame header and the start of a large payload.
const READ_CHUNK: usize = 4096;

/// What a reader accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadConfig {
    /// Who sends the frames: it decides the masking rule (§5.1).
    pub sender: Sender,
    /// The longest message, all fragments together, counted after
    /// inflation.
    pub limit: usize,
    /// permessage-deflate was negotiated: RSV1 marks a compressed message.
    pub deflate: bool,
}

impl ReadConfig {
    /// A server reading a client's frames (each masked), up to `limit`.
    pub const fn from_client(limit: usize) -> Self {
        ReadConfig {
            sender: Sender::Client,
            limit,
            deflate: false,
        }
    }

    /// A client reading a server's frames (none masked), up to `limit`.
    pub const fn from_server(limit: usize) -> Self {
        ReadConfig {
            sender: Sender::Server,
            limit,
            deflate: false,
        }
    }

    /// The same, accepting compressed messages when `deflate` (the
    /// extension was negotiated).
    pub const fn with_deflate(self, deflate: bool) -> Self {
        ReadConfig { deflate, ..self }
    }
}

/// One thing read by [`FrameReader::read_message`]. What it borrows stays
/// valid until the next read.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A whole text message (fragments joined, inflated), valid UTF-8;
    /// mutable because simd-json parses in place.
    Text(&'a mut Vec<u8>),
    /// A ping: the peer is owed a pong with this payload.
    Ping(&'a [u8]),
    /// A pong and its payload.
    Pong(&'a [u8]),
    /// A close frame and its payload (code and reason); the peer is owed
    /// its echo.
    Close(&'a [u8]),
}

/// Why no message was read. Each variant names what was wrong;
/// [`ReadError::close`] is the close it calls for.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A frame header broke RFC 6455 §5 (masking, reserved bits, opcode,
    /// control frame rules, length).
    #[error("frame breaks RFC 6455: {0}")]
    Frame(#[from] HeaderError),
    /// The frames broke a message rule (size, binary, UTF-8, fragments,
    /// compressed data).
    #[error(transparent)]
    Message(#[from] MessageError),
    /// The socket failed or ended (`UnexpectedEof`).
    #[error("socket: {0}")]
    Io(#[from] io::Error),
}

impl ReadError {
    /// The close frame this error calls for, or `None` when the peer is
    /// gone (a socket error). The one place read errors meet close codes.
    pub fn close(&self) -> Option<Close> {
        Some(match self {
            ReadError::Message(
                MessageError::TooLarge { .. }
                | MessageError::CompressedTooLarge { .. }
                | MessageError::InflatedTooLarge { .. },
            ) => Close::TOO_LARGE,
            ReadError::Message(MessageError::Binary) => Close::BINARY,
            ReadError::Message(MessageError::InvalidUtf8) => Close::INVALID_UTF8,
            ReadError::Message(MessageError::Corrupt) => Close::INVALID_DEFLATE,
            ReadError::Message(_) | ReadError::Frame(_) => Close::PROTOCOL_ERROR,
            ReadError::Io(_) => return None,
        })
    }

    /// True when the peer went away (EOF, reset) rather than broke a rule.
    pub fn is_closed(&self) -> bool {
        matches!(self, ReadError::Io(e) if matches!(
            e.kind(),
            io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
        ))
    }
}

/// Where the reader is in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The next bytes are a frame header.
    Header,
    /// A data frame's payload is going into the reassembler: `filled` of
    /// `len` bytes are in.
    Payload {
        mask: Option<[u8; 4]>,
        fin: bool,
        len: usize,
        filled: usize,
    },
    /// A refused frame's payload is being discarded: `left` bytes to go.
    Skip { left: u64 },
    /// The last read returned a text message, still in the reassembler.
    Delivered,
}

/// What a poll completed, before it is lent out as a [`Message`].
#[derive(Debug, Clone, Copy)]
enum Ready {
    /// A text message is in the reassembler.
    Text,
    /// A control frame; its unmasked payload is `buf[at..at + len]`.
    Control {
        opcode: Opcode,
        at: usize,
        len: usize,
    },
}

/// Reads whole messages from one connection.
pub struct FrameReader<R> {
    io: R,
    config: ReadConfig,
    /// Bytes read and not yet consumed, from `start`. Empty and unallocated
    /// while the connection is idle.
    buf: Vec<u8>,
    start: usize,
    /// Joins fragments; holds the message being read, or the last one.
    message: Reassembler,
    state: State,
    /// Bytes taken off the socket, frame headers included.
    received: u64,
    /// Bytes of the text messages delivered, after inflation.
    inflated: u64,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads frames from `io` as `config` says.
    pub fn new(io: R, config: ReadConfig) -> Self {
        FrameReader {
            io,
            config,
            buf: Vec::new(),
            start: 0,
            message: Reassembler::new(),
            state: State::Header,
            received: 0,
            inflated: 0,
        }
    }

    /// Starts with `early` already read from the socket (what an HTTP
    /// client read past the `101`).
    pub fn with_buffered(mut self, early: &[u8]) -> Self {
        self.buf.extend_from_slice(early);
        self.received += early.len() as u64;
        self
    }

    /// What this reader accepts.
    pub fn config(&self) -> ReadConfig {
        self.config
    }

    /// Sets the message limit from the next message on (a server raises it
    /// once the handshake is done).
    pub fn set_limit(&mut self, limit: usize) {
        self.config.limit = limit;
    }

    /// Reads until one whole text message or one control frame is in.
    /// Cancel safe: see the module's invariants.
    pub async fn read_message(&mut self) -> Result<Message<'_>, ReadError> {
        let ready = poll_fn(|cx| self.poll_ready(cx)).await?;
        Ok(match ready {
            Ready::Text => Message::Text(self.message.message_mut()),
            Ready::Control { opcode, at, len } => {
                let payload = &self.buf[at..at + len];
                match opcode {
                    Opcode::Ping => Message::Ping(payload),
                    Opcode::Pong => Message::Pong(payload),
                    _ => Message::Close(payload),
                }
            }
        })
    }

    /// The last text message read, until the next read (for a caller that
    /// cannot keep the borrow [`Message::Text`] holds across its loop).
    pub fn last_text(&mut self) -> &mut Vec<u8> {
        self.message.message_mut()
    }

    /// Frees the last message's buffer, and the read buffer if nothing is
    /// left in it. A message being joined is kept.
    pub fn release(&mut self) {
        if self.state == State::Delivered {
            self.message.release();
            self.state = State::Header;
        }
        if self.start == self.buf.len() {
            self.buf = Vec::new();
            self.start = 0;
        }
    }

    /// Bytes this reader holds allocated (for tests and memory accounting).
    pub fn allocated(&self) -> usize {
        self.buf.capacity() + self.message.capacity()
    }

    /// Bytes taken off the socket so far, frame headers included, whether
    /// or not they have been parsed yet.
    pub fn bytes_received(&self) -> u64 {
        self.received
    }

    /// Bytes of the text messages read so far, after inflation: what
    /// [`FrameReader::bytes_received`] would be, less frame headers and
    /// control frames, without compression.
    pub fn bytes_inflated(&self) -> u64 {
        self.inflated
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<Ready, ReadError>> {
        loop {
            let done = match self.state {
                State::Delivered => {
                    // The caller is done with the last message.
                    self.message.release();
                    self.state = State::Header;
                    None
                }
                State::Header => ready!(self.poll_header(cx))?,
                State::Payload { .. } => ready!(self.poll_payload(cx))?,
                State::Skip { left } => {
                    ready!(self.poll_skip(cx, left))?;
                    None
                }
            };
            if let Some(done) = done {
                return Poll::Ready(Ok(done));
            }
        }
    }

    /// Reads a frame header. A control frame is read whole and returned; a
    /// data frame's space is taken in the reassembler and its payload
    /// comes next.
    fn poll_header(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Ready>, ReadError>> {
        let mut need = 2;
        let (header, used) = loop {
            ready!(self.poll_fill(cx, need))?;
            let (sender, deflate) = (self.config.sender, self.config.deflate);
            match ws::parse_header_with(&self.buf[self.start..], sender, deflate)? {
                Parsed::Incomplete(n) => need = n,
                Parsed::Header(header, used) => break (header, used),
            }
        };
        if header.opcode.is_control() {
            // The header check bounds a control payload to 125 bytes.
            let len = usize::try_from(header.len).unwrap_or(MAX_CONTROL_PAYLOAD);
            ready!(self.poll_fill(cx, used + len))?;
            let at = self.start + used;
            if let Some(mask) = header.mask {
                ws::unmask(&mut self.buf[at..at + len], mask, 0);
            }
            self.start = at + len;
            let opcode = header.opcode;
            return Poll::Ready(Ok(Some(Ready::Control { opcode, at, len })));
        }
        self.start += used;
        let len = usize::try_from(header.len).unwrap_or(usize::MAX);
        let (opcode, compressed) = (header.opcode, header.compressed);
        if let Err(e) = self
            .message
            .begin_frame(opcode, compressed, len, self.config.limit)
        {
            self.state = State::Skip { left: header.len };
            return Poll::Ready(Err(e.into()));
        }
        self.state = State::Payload {
            mask: header.mask,
            fin: header.fin,
            len,
            filled: 0,
        };
        Poll::Ready(Ok(None))
    }

    /// Fills the data frame's space in the reassembler, first from the read
    /// buffer, then straight from the socket; ends the frame when full.
    fn poll_payload(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Ready>, ReadError>> {
        let State::Payload {
            mask,
            fin,
            len,
            mut filled,
        } = self.state
        else {
            unreachable!("poll_payload runs in the payload state only");
        };
        let slot = self.message.frame_mut();
        debug_assert_eq!(slot.len(), len, "the frame's space was taken");
        let buffered = (self.buf.len() - self.start).min(len - filled);
        slot[filled..filled + buffered].copy_from_slice(&self.buf[self.start..][..buffered]);
        self.start += buffered;
        filled += buffered;
        while filled < len {
            let mut read_buf = ReadBuf::new(&mut slot[filled..]);
            let polled = Pin::new(&mut self.io).poll_read(cx, &mut read_buf);
            let got = read_buf.filled().len();
            filled += got;
            self.received += got as u64;
            let end = match polled {
                Poll::Ready(Ok(())) if got > 0 => continue,
                Poll::Ready(Ok(())) => {
                    Poll::Ready(Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
                Poll::Pending => Poll::Pending,
            };
            self.state = State::Payload {
                mask,
                fin,
                len,
                filled,
            };
            return end;
        }
        if let Some(mask) = mask {
            ws::unmask(slot, mask, 0);
        }
        self.state = State::Header;
        let progress = self.message.end_frame(fin).inspect_err(|_| {
            // The message ended, refused: its buffer goes on the next read.
            self.state = State::Delivered;
        })?;
        if progress != Progress::Complete {
            return Poll::Ready(Ok(None));
        }
        self.state = State::Delivered;
        self.inflated += self.message.message_mut().len() as u64;
        Poll::Ready(Ok(Some(Ready::Text)))
    }

    /// Discards `left` more bytes of a refused frame's payload.
    fn poll_skip(&mut self, cx: &mut Context<'_>, mut left: u64) -> Poll<Result<(), ReadError>> {
        loop {
            let buffered = self.buf.len() - self.start;
            let take = usize::try_from(left).map_or(buffered, |left| left.min(buffered));
            self.start += take;
            left -= take as u64;
            if left == 0 {
                self.state = State::Header;
                return Poll::Ready(Ok(()));
            }
            self.state = State::Skip { left };
            ready!(self.poll_fill(cx, 1))?;
        }
    }

    /// Makes sure `n` unconsumed bytes are in the read buffer.
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
            // Reads into the spare capacity: no zeroing of the chunk first.
            self.buf.reserve((n - have).max(READ_CHUNK));
            match poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf) {
                Poll::Pending => {
                    if self.buf.is_empty() {
                        // Idle: hold no buffer while waiting.
                        self.buf = Vec::new();
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                }
                Poll::Ready(Ok(got)) => self.received += got as u64,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::deflate_sync;
    use std::future::Future;
    use std::task::Waker;
    use tokio::io::AsyncWriteExt;

    const BOTH: [Sender; 2] = [Sender::Client, Sender::Server];

    /// A frame as `sender` writes it: masked (with a fixed key) when a
    /// client sends it. `b0` is the first byte: FIN, RSV bits, opcode.
    fn frame(sender: Sender, b0: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let masked = u8::from(sender == Sender::Client) << 7;
        let mut out = vec![b0];
        match payload.len() {
            n if n < 126 => out.push(masked | n as u8),
            n if n <= 0xffff => {
                out.push(masked | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(masked | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match sender {
            Sender::Client => {
                out.extend_from_slice(&mask);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            }
            Sender::Server => out.extend_from_slice(payload),
        }
        out
    }

    /// `text` compressed as one permessage-deflate message (its
    /// `00 00 ff ff` removed, RFC 7692 §7.2.1).
    fn deflated(text: &[u8]) -> Vec<u8> {
        let bytes = deflate_sync(text).bytes;
        bytes[..bytes.len() - 4].to_vec()
    }

    fn config(sender: Sender, limit: usize) -> ReadConfig {
        ReadConfig {
            sender,
            limit,
            deflate: false,
        }
    }

    /// What a read gave, owned.
    #[derive(Debug, PartialEq, Eq)]
    enum Got {
        Text(String),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Vec<u8>),
    }

    /// Reads `input` to its end: what was read, and the error that ended it.
    async fn read_all(input: &[u8], config: ReadConfig) -> (Vec<Got>, ReadError) {
        let mut reader = FrameReader::new(input, config);
        let mut got = Vec::new();
        loop {
            got.push(match reader.read_message().await {
                Ok(Message::Text(t)) => Got::Text(String::from_utf8(t.clone()).unwrap()),
                Ok(Message::Ping(p)) => Got::Ping(p.to_vec()),
                Ok(Message::Pong(p)) => Got::Pong(p.to_vec()),
                Ok(Message::Close(p)) => Got::Close(p.to_vec()),
                Err(e) => return (got, e),
            });
        }
    }

    fn text(s: &str) -> Got {
        Got::Text(s.into())
    }

    #[tokio::test]
    async fn fragments_join_with_control_frames_between_in_both_roles() {
        for sender in BOTH {
            let mut input = frame(sender, 0x01, br#"{"a":"#);
            input.extend(frame(sender, 0x89, b"p"));
            input.extend(frame(sender, 0x00, b"1"));
            input.extend(frame(sender, 0x8A, b"q"));
            input.extend(frame(sender, 0x80, b"}"));
            input.extend(frame(sender, 0x81, &[b'b'; 300]));
            input.extend(frame(sender, 0x88, &1000u16.to_be_bytes()));
            let (got, end) = read_all(&input, config(sender, 1024)).await;
            let long = "b".repeat(300);
            let want = [
                Got::Ping(b"p".to_vec()),
                Got::Pong(b"q".to_vec()),
                text(r#"{"a":1}"#),
                text(&long),
                Got::Close(1000u16.to_be_bytes().to_vec()),
            ];
            assert_eq!(got, want, "{sender:?}");
            assert!(end.is_closed(), "{sender:?}: {end:?}");
        }
    }

    #[tokio::test]
    async fn each_role_refuses_the_other_roles_masking() {
        let (_, end) = read_all(
            &frame(Sender::Server, 0x81, b"hi"),
            config(Sender::Client, 64),
        )
        .await;
        assert!(
            matches!(end, ReadError::Frame(HeaderError::Unmasked)),
            "{end:?}"
        );
        let (_, end) = read_all(
            &frame(Sender::Client, 0x81, b"hi"),
            config(Sender::Server, 64),
        )
        .await;
        assert!(
            matches!(end, ReadError::Frame(HeaderError::Masked)),
            "{end:?}"
        );
        assert_eq!(end.close(), Some(Close::PROTOCOL_ERROR));
    }

    #[tokio::test]
    async fn reserved_bits_are_refused_unless_deflate_allows_rsv1_on_a_first_frame() {
        for sender in BOTH {
            let plain = config(sender, 64);
            let deflate = plain.with_deflate(true);
            // RSV1 without the extension; RSV2 and RSV3 always; RSV1 on a
            // continuation or a control frame (RFC 7692 §6.1).
            let mut continued = frame(sender, 0x01, b"a");
            continued.extend(frame(sender, 0xC0, b"b"));
            let cases = [
                (plain, frame(sender, 0xC1, b"a")),
                (deflate, frame(sender, 0xA1, b"a")),
                (deflate, frame(sender, 0x91, b"a")),
                (deflate, continued),
                (deflate, frame(sender, 0xC9, b"")),
            ];
            for (config, input) in cases {
                let (_, end) = read_all(&input, config).await;
                assert!(
                    matches!(end, ReadError::Frame(HeaderError::ReservedBits)),
                    "{sender:?} {input:x?}: {end:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn compressed_messages_inflate_under_the_limit_in_both_roles() {
        for sender in BOTH {
            let deflate = config(sender, 1000).with_deflate(true);
            let body = deflated(&[b'a'; 1000]);
            let (got, _) = read_all(&frame(sender, 0xC1, &body), deflate).await;
            assert_eq!(got, [text(&"a".repeat(1000))], "{sender:?}");
            // Fragmented: RSV1 on the first frame only.
            let (head, tail) = body.split_at(body.len() / 2);
            let mut input = frame(sender, 0x41, head);
            input.extend(frame(sender, 0x89, b""));
            input.extend(frame(sender, 0x80, tail));
            let (got, _) = read_all(&input, deflate).await;
            assert_eq!(got, [Got::Ping(vec![]), text(&"a".repeat(1000))]);
        }
    }

    #[tokio::test]
    async fn a_message_over_the_limit_after_inflation_is_refused() {
        for sender in BOTH {
            let deflate = config(sender, 1000).with_deflate(true);
            let bomb = deflated(&[b'a'; 1001]);
            assert!(bomb.len() < 100, "small on the wire");
            let (got, end) = read_all(&frame(sender, 0xC1, &bomb), deflate).await;
            assert!(got.is_empty());
            assert!(
                matches!(
                    end,
                    ReadError::Message(MessageError::InflatedTooLarge { limit: 1000 })
                ),
                "{sender:?}: {end:?}"
            );
            assert_eq!(end.close(), Some(Close::TOO_LARGE));
            assert_eq!(
                end.to_string(),
                "a compressed message inflates past the 1000-byte limit"
            );
        }
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_is_refused_from_its_header() {
        for sender in BOTH {
            // Only the header is sent: the payload is never waited for.
            let input = &frame(sender, 0x81, &[b'a'; 200])[..8];
            let (_, end) = read_all(input, config(sender, 100)).await;
            assert!(
                matches!(
                    end,
                    ReadError::Message(MessageError::TooLarge {
                        size: 200,
                        limit: 100
                    })
                ),
                "{end:?}"
            );
            assert_eq!(
                end.to_string(),
                "a message of at least 200 bytes exceeds the 100-byte limit"
            );
            assert_eq!(end.close(), Some(Close::TOO_LARGE));
        }
    }

    #[tokio::test]
    async fn fragments_together_over_the_limit_are_refused() {
        for sender in BOTH {
            let mut input = frame(sender, 0x01, &[b'a'; 60]);
            input.extend(frame(sender, 0x80, &[b'a'; 60]));
            let (got, end) = read_all(&input, config(sender, 100)).await;
            assert!(got.is_empty());
            assert!(
                matches!(
                    end,
                    ReadError::Message(MessageError::TooLarge {
                        size: 120,
                        limit: 100
                    })
                ),
                "{end:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_refused_binary_frame_is_skipped_and_reading_goes_on() {
        for sender in BOTH {
            let mut input = frame(sender, 0x82, &[7; 5000]);
            input.extend(frame(sender, 0x81, b"next"));
            let mut reader = FrameReader::new(&input[..], config(sender, 100));
            let err = reader.read_message().await.unwrap_err();
            assert!(
                matches!(err, ReadError::Message(MessageError::Binary)),
                "{err:?}"
            );
            assert_eq!(err.close(), Some(Close::BINARY));
            let next = reader.read_message().await.unwrap();
            assert_eq!(next, Message::Text(&mut b"next".to_vec()));
        }
    }

    #[tokio::test]
    async fn invalid_utf8_and_corrupt_deflate_name_their_close() {
        let sender = Sender::Client;
        let (_, end) = read_all(&frame(sender, 0x81, &[0xff]), config(sender, 64)).await;
        assert_eq!(end.close(), Some(Close::INVALID_UTF8));
        let deflate = config(sender, 64).with_deflate(true);
        let (_, end) = read_all(&frame(sender, 0xC1, &[0xff; 8]), deflate).await;
        assert_eq!(end.close(), Some(Close::INVALID_DEFLATE), "{end:?}");
    }

    #[tokio::test]
    async fn a_read_dropped_mid_frame_resumes_where_it_stopped() {
        for sender in BOTH {
            let (mut peer, io) = tokio::io::duplex(1 << 16);
            let mut reader = FrameReader::new(io, config(sender, 1 << 16));
            let mut input = frame(sender, 0x01, &[b'x'; 3000]);
            input.extend(frame(sender, 0x80, b"!"));
            // Cut inside the first frame's header, then inside its payload.
            for cut in [&input[..1], &input[1..1500], &input[1500..]] {
                let mut read = std::pin::pin!(reader.read_message());
                let pending = read.as_mut().poll(&mut Context::from_waker(Waker::noop()));
                assert!(pending.is_pending(), "{sender:?}");
                peer.write_all(cut).await.unwrap();
            }
            let mut want = vec![b'x'; 3000];
            want.push(b'!');
            assert_eq!(
                reader.read_message().await.unwrap(),
                Message::Text(&mut want)
            );
            assert_eq!(reader.bytes_received(), input.len() as u64);
        }
    }

    #[tokio::test]
    async fn an_idle_reader_holds_no_buffer_after_a_large_message() {
        for sender in BOTH {
            let (mut peer, io) = tokio::io::duplex(1 << 17);
            let mut reader = FrameReader::new(io, config(sender, 1 << 20));
            peer.write_all(&frame(sender, 0x81, &[b'a'; 70_000]))
                .await
                .unwrap();
            let Message::Text(message) = reader.read_message().await.unwrap() else {
                panic!("not text");
            };
            assert_eq!(message.len(), 70_000);
            reader.release();
            assert_eq!(reader.allocated(), 0, "{sender:?}: released");
            // A read that waits holds nothing either.
            {
                let mut read = std::pin::pin!(reader.read_message());
                let pending = read.as_mut().poll(&mut Context::from_waker(Waker::noop()));
                assert!(pending.is_pending());
            }
            assert_eq!(reader.allocated(), 0, "{sender:?}: waiting");
        }
    }

    #[tokio::test]
    async fn bytes_already_read_come_first_and_are_counted() {
        let early = frame(Sender::Server, 0x81, b"hello");
        let rest = frame(Sender::Server, 0x81, b"after");
        let mut reader =
            FrameReader::new(&rest[..], config(Sender::Server, 64)).with_buffered(&early);
        for want in [&b"hello"[..], b"after"] {
            assert_eq!(
                reader.read_message().await.unwrap(),
                Message::Text(&mut want.to_vec())
            );
        }
        assert_eq!(reader.bytes_received(), (early.len() + rest.len()) as u64);
        assert_eq!(reader.bytes_inflated(), 10);
    }
}
