//! The read side of a client WebSocket: frames off the socket, joined into
//! whole messages by the crate's [`Reassembler`].
//!
//! Invariants:
//! - Between messages the reader holds at most [`BUFFER_BYTES`] of socket
//!   buffer plus the reassembler's retained capacity: a `hello-ok` carrying a
//!   full presence snapshot (~70 KiB) does not stay resident in every
//!   connection. That is why the client reads with this small reader and not
//!   with fastwebsockets', whose buffer keeps the size of the largest frame it
//!   ever held.
//! - [`Reader::read_message`] is cancel safe: bytes are kept in the reader as
//!   soon as they are read, and a frame is parsed and pushed without awaiting.
//! - No message is longer than [`MAX_MESSAGE_BYTES`].

use std::io;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

use super::stream::StreamRead;

use crate::protocol::ws::{self, HeaderError, Parsed};
use crate::protocol::{MessageError, Opcode, Progress, Reassembler};

/// Largest message a client accepts. A `system-presence` reply with a full
/// store (200 entries) is well under this; OpenClaw's `maxPayload` is 1 MiB.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Socket buffer kept between frames: a challenge, a reply or the start of a
/// `hello-ok` fits. A larger one, grown by one big frame, is given back.
pub const BUFFER_BYTES: usize = 4096;

/// One message read by [`Reader::read_message`].
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A whole text message (fragments joined), valid UTF-8.
    Text(&'a mut Vec<u8>),
    /// A ping, to be answered with a pong carrying the same payload.
    Ping(BytesMut),
    /// A pong, which clients ignore.
    Pong,
    /// A close frame and its payload (code and reason).
    Close(BytesMut),
}

/// Why no message could be read.
#[derive(Debug, thiserror::Error)]
pub enum WsReadError {
    /// The socket failed or reached EOF (`UnexpectedEof`).
    #[error("read failed")]
    Io(#[from] io::Error),
    /// A frame header that breaks RFC 6455 §5.
    #[error("bad frame: {0}")]
    Frame(#[from] HeaderError),
    /// The frames do not make a valid message.
    #[error(transparent)]
    Message(#[from] MessageError),
}

impl WsReadError {
    /// True when the peer went away (EOF, reset) rather than broke a rule.
    pub fn is_closed(&self) -> bool {
        matches!(self, WsReadError::Io(e) if matches!(
            e.kind(),
            io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
        ))
    }
}

/// Reads whole messages from one socket.
pub struct Reader {
    read: StreamRead,
    /// Bytes read from the socket and not yet consumed as frames.
    pending: BytesMut,
    /// Joins fragments; its buffer holds the last text message.
    messages: Reassembler,
    /// The last call returned a text message, still in `messages`.
    delivered: bool,
    /// Bytes taken off the socket so far, frame headers included.
    received: u64,
    /// Bytes of the text messages delivered, after inflation.
    inflated: u64,
    /// permessage-deflate was negotiated: RSV1 marks a compressed message.
    deflate: bool,
}

/// A frame header: where the payload starts and how long it is.
struct Header {
    fin: bool,
    compressed: bool,
    opcode: Opcode,
    /// Header bytes (a server's frames carry no mask key).
    len: usize,
    payload: usize,
}

impl Reader {
    /// A reader over `read`, starting with `early` bytes already read from it
    /// (what hyper read past the `101`).
    pub fn new(read: StreamRead, early: &[u8]) -> Self {
        let mut pending = BytesMut::with_capacity(early.len().max(BUFFER_BYTES));
        pending.extend_from_slice(early);
        Reader {
            read,
            pending,
            messages: Reassembler::new(),
            delivered: false,
            received: early.len() as u64,
            inflated: 0,
            deflate: false,
        }
    }

    /// Accepts compressed messages (the server agreed to permessage-deflate).
    pub fn with_deflate(mut self, deflate: bool) -> Self {
        self.deflate = deflate;
        self
    }

    /// Whether permessage-deflate is in use on this connection.
    pub fn deflate(&self) -> bool {
        self.deflate
    }

    /// Reads until one whole message or control frame is in. Text messages
    /// over [`MAX_MESSAGE_BYTES`], binary messages and broken fragment
    /// sequences are errors.
    pub async fn read_message(&mut self) -> Result<Message<'_>, WsReadError> {
        if std::mem::take(&mut self.delivered) {
            // The caller is done with the last message: free what it grew.
            self.messages.release();
        }
        loop {
            let header = self.header().await?;
            self.fill(header.len + header.payload).await?;
            let payload = self.take_frame(&header);
            let progress = if header.opcode.is_control() {
                Progress::Control(header.opcode)
            } else {
                let (op, compressed) = (header.opcode, header.compressed);
                self.messages
                    .begin_frame(op, compressed, payload.len(), MAX_MESSAGE_BYTES)?
                    .copy_from_slice(&payload);
                self.messages.end_frame(header.fin)?
            };
            match progress {
                Progress::Partial => {}
                Progress::Complete => {
                    self.delivered = true;
                    self.inflated += self.messages.message_mut().len() as u64;
                    return Ok(Message::Text(self.messages.message_mut()));
                }
                Progress::Control(Opcode::Ping) => return Ok(Message::Ping(payload)),
                Progress::Control(Opcode::Close) => return Ok(Message::Close(payload)),
                Progress::Control(_) => return Ok(Message::Pong),
            }
        }
    }

    /// Bytes read from the socket since the `101`, frame headers included:
    /// what the server sent, whether or not it has been parsed yet.
    pub fn bytes_received(&self) -> u64 {
        self.received
    }

    /// Bytes of the text messages read so far, after inflation: what
    /// [`Reader::bytes_received`] would be, less frame headers, without
    /// compression.
    pub fn bytes_inflated(&self) -> u64 {
        self.inflated
    }

    /// The text of the last [`Message::Text`] returned, until the next read.
    pub fn last_text(&mut self) -> &mut Vec<u8> {
        self.messages.message_mut()
    }

    /// Buffers and decodes the next frame's header, consuming nothing.
    async fn header(&mut self) -> Result<Header, WsReadError> {
        let mut need = 2;
        let (frame, len) = loop {
            self.fill(need).await?;
            match ws::parse_header_with(&self.pending, ws::Sender::Server, self.deflate)? {
                Parsed::Incomplete(n) => need = n,
                Parsed::Header(frame, len) => break (frame, len),
            }
        };
        let payload = usize::try_from(frame.len)
            .ok()
            .filter(|&n| n <= MAX_MESSAGE_BYTES)
            .ok_or(WsReadError::Message(MessageError::TooLarge {
                limit: MAX_MESSAGE_BYTES,
            }))?;
        Ok(Header {
            fin: frame.fin,
            compressed: frame.compressed,
            opcode: frame.opcode,
            len,
            payload,
        })
    }

    /// Removes one buffered frame and returns its payload. After a frame
    /// larger than [`BUFFER_BYTES`] the rest is moved to a fresh buffer, so
    /// the large allocation goes when the payload does.
    fn take_frame(&mut self, header: &Header) -> BytesMut {
        let total = header.len + header.payload;
        let mut frame = self.pending.split_to(total);
        if total > BUFFER_BYTES {
            let mut fresh = BytesMut::with_capacity(self.pending.len().max(BUFFER_BYTES));
            fresh.extend_from_slice(&self.pending);
            self.pending = fresh;
        }
        frame.split_off(header.len)
    }

    /// Makes sure `n` bytes are buffered, reading more from the socket as needed.
    async fn fill(&mut self, n: usize) -> io::Result<()> {
        while self.pending.len() < n {
            self.pending.reserve(n - self.pending.len());
            let n = self.read.read_buf(&mut self.pending).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.received += n as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;
    use tokio::net::{TcpListener, TcpStream};

    /// A [`Reader`] over a real loopback socket, and the server's end of it.
    async fn reader_pair() -> (Reader, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (rd, _wr) = client.into_split();
        (Reader::new(StreamRead::Plain(rd), &[]), server)
    }

    async fn text(reader: &mut Reader) -> Vec<u8> {
        match reader.read_message().await.unwrap() {
            Message::Text(t) => t.clone(),
            other => panic!("not text: {other:?}"),
        }
    }

    #[tokio::test]
    async fn read_message_joins_fragments_and_passes_pings_through() {
        let (mut reader, mut server) = reader_pair().await;
        let mut wire = vec![0x01, 3];
        wire.extend_from_slice(b"hel");
        wire.extend_from_slice(&[0x89, 1, b'p']); // a ping between the fragments
        wire.extend_from_slice(&[0x80, 2]);
        wire.extend_from_slice(b"lo");
        // A frame with a 16-bit length: 200 bytes of 'a'.
        wire.extend_from_slice(&[0x81, 126, 0, 200]);
        wire.extend(std::iter::repeat_n(b'a', 200));
        wire.extend_from_slice(&[0x88, 0]);
        server.write_all(&wire).await.unwrap();
        assert_eq!(
            reader.read_message().await.unwrap(),
            Message::Ping(BytesMut::from(&b"p"[..]))
        );
        assert_eq!(text(&mut reader).await, b"hello");
        assert_eq!(text(&mut reader).await, vec![b'a'; 200]);
        assert!(reader.bytes_received() >= 5 + 3 + 4 + 4 + 200);
        assert!(matches!(
            reader.read_message().await.unwrap(),
            Message::Close(_)
        ));
        drop(server);
        let eof = reader.read_message().await.unwrap_err();
        assert!(eof.is_closed(), "{eof:?}");
    }

    #[tokio::test]
    async fn read_message_refuses_oversized_frames() {
        let (mut reader, mut server) = reader_pair().await;
        let mut wire = vec![0x81, 127];
        wire.extend_from_slice(&(MAX_MESSAGE_BYTES as u64 + 1).to_be_bytes());
        server.write_all(&wire).await.unwrap();
        let err = reader.read_message().await.unwrap_err();
        assert!(
            matches!(err, WsReadError::Message(MessageError::TooLarge { .. })),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_large_message_does_not_stay_resident() {
        let (mut reader, mut server) = reader_pair().await;
        let big = 70 * 1024;
        let mut wire = vec![0x81, 127];
        wire.extend_from_slice(&(big as u64).to_be_bytes());
        wire.extend(std::iter::repeat_n(b'a', big));
        wire.extend_from_slice(&[0x81, 2]);
        wire.extend_from_slice(b"ok");
        server.write_all(&wire).await.unwrap();
        assert_eq!(text(&mut reader).await.len(), big);
        assert_eq!(text(&mut reader).await, b"ok");
        assert!(reader.pending.capacity() <= BUFFER_BYTES);
        assert!(
            reader.messages.capacity() < big,
            "the large message's buffer is gone"
        );
    }

    #[tokio::test]
    async fn a_masked_server_frame_is_refused() {
        let (mut reader, mut server) = reader_pair().await;
        server
            .write_all(&[0x81, 0x81, 1, 1, 1, 1, b'a' ^ 1])
            .await
            .unwrap();
        let err = reader.read_message().await.unwrap_err();
        assert!(
            matches!(err, WsReadError::Frame(HeaderError::Masked)),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn binary_and_unknown_opcodes_are_refused() {
        let (mut reader, mut server) = reader_pair().await;
        server.write_all(&[0x82, 1, b'x', 0x83, 0]).await.unwrap();
        let err = reader.read_message().await.unwrap_err();
        assert!(matches!(err, WsReadError::Message(MessageError::Binary)));
        let err = reader.read_message().await.unwrap_err();
        assert!(matches!(err, WsReadError::Frame(_)), "{err:?}");
    }
}
