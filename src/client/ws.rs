//! Client side of the WebSocket transport: TCP connect (optionally from a chosen
//! local address), the HTTP/1.1 upgrade through fastwebsockets, a small reader
//! for the application handshake, and the split into a read half and a write
//! half that one task can drive with `select!`.
//!
//! Invariants:
//! - Every socket has `TCP_NODELAY` set before the upgrade request is written.
//! - After [`connect`] returns, no hyper machinery is left per connection: the
//!   upgraded stream is downcast back to the plain `TcpStream`, and any bytes
//!   hyper read past the `101` response are carried over, copied, so hyper's
//!   read buffer is freed.
//! - Until [`Opening::open`], messages are read with a buffer that is dropped
//!   afterwards: a large handshake reply does not stay resident.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::io::{self, Cursor};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use bytes::{Bytes, BytesMut};
use fastwebsockets::{Frame, Role, WebSocketRead, WebSocketWrite, handshake};
use http_body_util::Empty;
use hyper::Request;
use hyper::header::{CONNECTION, HOST, UPGRADE};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, Chain};
use tokio::net::TcpSocket;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Largest message a load client accepts. A `system-presence` reply with a
/// full store (200 entries) is well under this; OpenClaw's `maxPayload` is 1 MiB.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// The read side: bytes read past the last handshake message, then the socket.
pub type ReadStream = Chain<Cursor<Bytes>, OwnedReadHalf>;

/// An open client WebSocket, split so a pending read never blocks a write.
pub struct WsConn {
    /// Frames from the server. Auto-pong and auto-close are off: the caller
    /// answers pings and closes on the write half itself.
    pub read: WebSocketRead<ReadStream>,
    /// Frames to the server; the client role masks every frame.
    pub write: WebSocketWrite<OwnedWriteHalf>,
}

/// Why a `--url` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    /// The URL is not a `ws://` URL with a host.
    #[error("invalid --url {url:?}: {reason}")]
    Invalid {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The host did not resolve.
    #[error("cannot resolve {host}")]
    Resolve {
        /// `host:port` looked up.
        host: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
}

/// Parses a `ws://host[:port][/path]` URL and resolves its host (IPv4
/// preferred) into a connect target. Shared by every client command.
pub async fn resolve(url: &str) -> Result<Target, UrlError> {
    let bad = |reason| UrlError::Invalid {
        url: url.to_owned(),
        reason,
    };
    let uri: hyper::Uri = url.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("ws") => {}
        Some("wss") => return Err(bad("wss:// is not supported; use ws://")),
        _ => return Err(bad("the scheme must be ws://")),
    }
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    let port = uri.port_u16().unwrap_or(80);
    let path = uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        path
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let lookup = format!("{bare}:{port}");
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&lookup)
        .await
        .map_err(|source| UrlError::Resolve {
            host: lookup.clone(),
            source,
        })?
        .collect();
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| UrlError::Resolve {
            host: lookup.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses"),
        })?;
    let host_header = match uri.port_u16() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    Ok(Target {
        addr,
        host_header,
        path,
    })
}

/// Where and how to open client connections.
#[derive(Debug, Clone)]
pub struct Target {
    /// Server socket address (resolved once, before the run).
    pub addr: SocketAddr,
    /// Value of the `Host` header.
    pub host_header: String,
    /// Request target of the upgrade request (`/`, `/ws`, ...).
    pub path: String,
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Creating, binding or connecting the TCP socket failed.
    #[error("tcp connect failed")]
    Tcp(#[source] io::Error),
    /// The server answered the upgrade request with something other than `101`.
    #[error("upgrade rejected with HTTP {0}")]
    UpgradeRejected(u16),
    /// The upgrade failed for another reason (I/O, bad headers, early close).
    #[error("websocket upgrade failed")]
    Upgrade(#[source] fastwebsockets::WebSocketError),
    /// hyper handed back an upgraded stream of an unexpected type.
    #[error("upgraded stream is not a TcpStream")]
    Downcast,
}

/// Runs hyper's per-connection driver for the short life of the upgrade.
struct SpawnExecutor;

impl<Fut> hyper::rt::Executor<Fut> for SpawnExecutor
where
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    fn execute(&self, fut: Fut) {
        tokio::spawn(fut);
    }
}

/// Opens one WebSocket to `target`, binding the socket to `local` first when given
/// (so a fleet can spread over several loopback source addresses). The result
/// reads the application handshake; [`Opening::open`] then gives the [`WsConn`].
pub async fn connect(target: &Target, local: Option<IpAddr>) -> Result<Opening, ConnectError> {
    let socket = match target.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(ConnectError::Tcp)?;
    if let Some(ip) = local {
        if ip.is_ipv4() {
            // Best effort: without it the port is picked at bind time, which
            // works too, only with fewer ports (no TIME_WAIT reuse).
            let _ = bind_address_no_port(&socket);
        }
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(ConnectError::Tcp)?;
    }
    let stream = socket
        .connect(target.addr)
        .await
        .map_err(ConnectError::Tcp)?;
    // Before the first write: a request written as header + body segments
    // must not wait for a delayed ACK.
    stream.set_nodelay(true).map_err(ConnectError::Tcp)?;

    let req = Request::builder()
        .method("GET")
        .uri(target.path.as_str())
        .header(HOST, target.host_header.as_str())
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "upgrade")
        .header("Sec-WebSocket-Key", handshake::generate_key())
        .header("Sec-WebSocket-Version", "13")
        .body(Empty::<Bytes>::new())
        // The method, path and header values were validated when the target
        // was parsed, so building the request cannot fail.
        .expect("upgrade request from a validated target");

    let (ws, _response) = match handshake::client(&SpawnExecutor, req, stream).await {
        Ok(pair) => pair,
        Err(fastwebsockets::WebSocketError::InvalidStatusCode(code)) => {
            return Err(ConnectError::UpgradeRejected(code));
        }
        Err(e) => return Err(ConnectError::Upgrade(e)),
    };
    let parts = ws
        .into_inner()
        .into_inner()
        .downcast::<TokioIo<TcpStream>>()
        .map_err(|_| ConnectError::Downcast)?;
    let (rd, wr) = parts.io.into_inner().into_split();
    let mut pending = BytesMut::with_capacity(parts.read_buf.len().max(OPENING_BUFFER_BYTES));
    pending.extend_from_slice(&parts.read_buf);
    // Dropping `parts.read_buf` here frees hyper's read buffer, which it views.
    // fastwebsockets makes halves only in pairs; the read half is dropped at once.
    let (_, write) = fastwebsockets::after_handshake_split(tokio::io::empty(), wr, Role::Client);
    Ok(Opening {
        read: rd,
        pending,
        partial: None,
        write,
    })
}

/// A connection right after the upgrade, before the application handshake.
///
/// Messages are read here by a small reader of its own, not fastwebsockets':
/// that reader's buffer keeps the size of the largest message it ever held, and
/// a `hello-ok` carrying a full presence snapshot (~70 KiB) would stay resident
/// in every connection. This buffer is dropped by [`Opening::open`], and only the
/// bytes it read past the last message are carried over.
pub struct Opening {
    read: OwnedReadHalf,
    /// Bytes read from the socket and not yet consumed as messages.
    pending: BytesMut,
    /// A fragmented text message being joined; kept across calls, because a
    /// control frame may arrive between its fragments.
    partial: Option<Vec<u8>>,
    /// Frames to the server; the same half [`WsConn`] keeps.
    pub write: WebSocketWrite<OwnedWriteHalf>,
}

/// One whole message read by [`Opening::read_message`].
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message (fragments joined).
    Text(Vec<u8>),
    /// A ping, to be answered with a pong carrying the same payload.
    Ping(Vec<u8>),
    /// A close frame.
    Close,
    /// A binary, pong or other frame, which the handshake ignores.
    Other,
}

/// First capacity of [`Opening`]'s buffer: a challenge, or the start of a `hello-ok`.
const OPENING_BUFFER_BYTES: usize = 4096;

fn invalid(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

impl Opening {
    /// Makes sure `n` bytes are buffered, reading more from the socket as needed.
    async fn fill(&mut self, n: usize) -> io::Result<()> {
        while self.pending.len() < n {
            self.pending.reserve(n - self.pending.len());
            if self.read.read_buf(&mut self.pending).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(())
    }

    /// Reads one whole message (fragments are joined; control frames come back
    /// as they arrive). Messages over [`MAX_MESSAGE_BYTES`] are an error.
    pub async fn read_message(&mut self) -> io::Result<Message> {
        loop {
            self.fill(2).await?;
            let (b0, b1) = (self.pending[0], self.pending[1]);
            if b0 & 0x70 != 0 {
                return Err(invalid("reserved bits set"));
            }
            let (fin, opcode, masked) = (b0 & 0x80 != 0, b0 & 0x0f, b1 & 0x80 != 0);
            let ext = match b1 & 0x7f {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            let head = 2 + ext + if masked { 4 } else { 0 };
            self.fill(head).await?;
            let len = match ext {
                0 => u64::from(b1 & 0x7f),
                2 => u64::from(u16::from_be_bytes([self.pending[2], self.pending[3]])),
                _ => {
                    let mut be = [0u8; 8];
                    be.copy_from_slice(&self.pending[2..10]);
                    u64::from_be_bytes(be)
                }
            };
            let len = usize::try_from(len)
                .ok()
                .filter(|&l| l <= MAX_MESSAGE_BYTES)
                .ok_or_else(|| invalid("message too large"))?;
            self.fill(head + len).await?;
            let mut frame = self.pending.split_to(head + len);
            let mut payload = frame.split_off(head);
            if masked {
                let mask = [
                    frame[head - 4],
                    frame[head - 3],
                    frame[head - 2],
                    frame[head - 1],
                ];
                fastwebsockets::unmask(&mut payload, mask);
            }
            match opcode {
                0x1 if fin && self.partial.is_none() => return Ok(Message::Text(payload.to_vec())),
                0x1 if self.partial.is_none() => self.partial = Some(payload.to_vec()),
                0x0 => {
                    let buf = self
                        .partial
                        .as_mut()
                        .ok_or_else(|| invalid("continuation without a start"))?;
                    if buf.len() + payload.len() > MAX_MESSAGE_BYTES {
                        return Err(invalid("message too large"));
                    }
                    buf.extend_from_slice(&payload);
                    if fin {
                        // Just extended, so it is Some.
                        return Ok(Message::Text(
                            self.partial.take().expect("message in progress"),
                        ));
                    }
                }
                0x8 => return Ok(Message::Close),
                0x9 => return Ok(Message::Ping(payload.to_vec())),
                0x1 => return Err(invalid("new message inside a fragmented one")),
                _ => return Ok(Message::Other),
            }
        }
    }

    /// Hands the connection to fastwebsockets for the rest of its life. Bytes
    /// already read past the last message are replayed ahead of the socket.
    pub fn open(self) -> WsConn {
        let replay = Cursor::new(Bytes::copy_from_slice(&self.pending));
        // Halves come in pairs; the write half over `sink()` is dropped at once.
        let mut read = fastwebsockets::after_handshake_split(
            replay.chain(self.read),
            tokio::io::sink(),
            Role::Client,
        )
        .0;
        read.set_auto_pong(false);
        read.set_auto_close(false);
        read.set_max_message_size(MAX_MESSAGE_BYTES);
        WsConn {
            read,
            write: self.write,
        }
    }
}

/// Sets `IP_BIND_ADDRESS_NO_PORT`: binding a source address then leaves the port
/// to `connect`, which picks it per 4-tuple and may reuse ports in TIME_WAIT on
/// loopback. Churn through bound sockets would otherwise run out of ports.
fn bind_address_no_port(socket: &TcpSocket) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: the descriptor belongs to `socket`, which outlives the call; the
    // option value points at a live c_int whose size is passed alongside.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The obligation sink for [`WebSocketRead::read_frame`]. Auto-pong and
/// auto-close are off, so the reader never hands it a frame to send.
pub fn ignore_obligation(_frame: Frame<'_>) -> Ready<Result<(), Infallible>> {
    ready(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastwebsockets::OpCode;
    use tokio::io::AsyncWriteExt as _;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn url_parts_become_the_target() {
        let t = resolve("ws://127.0.0.1:9/ws?x=1").await.unwrap();
        assert_eq!(t.addr, "127.0.0.1:9".parse().unwrap());
        assert_eq!(t.path, "/ws?x=1");
        assert_eq!(t.host_header, "127.0.0.1:9");
        assert!(resolve("http://127.0.0.1:9/").await.is_err());
        assert!(resolve("wss://127.0.0.1:9/").await.is_err());
    }

    /// A server that sends its first frame in the same write as the `101`, as a
    /// gateway sending `connect.challenge` at once may. hyper reads both; the
    /// frame must still reach the WebSocket reader.
    #[tokio::test]
    async fn frame_sent_with_the_101_is_not_lost() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                req.extend_from_slice(&buf[..n]);
            }
            let mut out = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n"
                .to_vec();
            out.extend_from_slice(&[0x81, 5]);
            out.extend_from_slice(b"hello");
            out.extend_from_slice(&[0x81, 5]);
            out.extend_from_slice(b"after");
            s.write_all(&out).await.unwrap();
            // Keep the socket open until the client has read.
            let _ = s.read(&mut buf).await;
        });
        let target = Target {
            addr,
            host_header: addr.to_string(),
            path: "/".into(),
        };
        let mut opening = connect(&target, None).await.unwrap();
        assert_eq!(
            opening.read_message().await.unwrap(),
            Message::Text(b"hello".to_vec())
        );
        // The next two frames arrive together: one message is read, the
        // other must survive the hand-over to fastwebsockets.
        let mut conn = opening.open();
        let mut sink = ignore_obligation;
        let frame = conn.read.read_frame(&mut sink).await.unwrap();
        assert_eq!(frame.opcode, OpCode::Text);
        assert_eq!(&frame.payload[..], b"after");
        drop(conn);
        server.await.unwrap();
    }

    /// An [`Opening`] over a real loopback socket, and the server's end of it.
    async fn opening_pair() -> (Opening, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (rd, wr) = client.into_split();
        let (_, write) =
            fastwebsockets::after_handshake_split(tokio::io::empty(), wr, Role::Client);
        let opening = Opening {
            read: rd,
            pending: BytesMut::new(),
            partial: None,
            write,
        };
        (opening, server)
    }

    #[tokio::test]
    async fn read_message_joins_fragments_and_passes_pings_through() {
        let (mut opening, mut server) = opening_pair().await;
        let mut wire = vec![0x01, 3];
        wire.extend_from_slice(b"hel");
        wire.extend_from_slice(&[0x89, 1, b'p']); // a ping between the fragments
        wire.extend_from_slice(&[0x80, 2]);
        wire.extend_from_slice(b"lo");
        // A masked frame with a 16-bit length: 200 bytes of 'a' masked with 0x01.
        wire.extend_from_slice(&[0x81, 0x80 | 126, 0, 200, 1, 1, 1, 1]);
        wire.extend(std::iter::repeat_n(b'a' ^ 1, 200));
        wire.extend_from_slice(&[0x88, 0]);
        server.write_all(&wire).await.unwrap();
        assert_eq!(
            opening.read_message().await.unwrap(),
            Message::Ping(b"p".to_vec())
        );
        assert_eq!(
            opening.read_message().await.unwrap(),
            Message::Text(b"hello".to_vec())
        );
        assert_eq!(
            opening.read_message().await.unwrap(),
            Message::Text(vec![b'a'; 200])
        );
        assert_eq!(opening.read_message().await.unwrap(), Message::Close);
        drop(server);
        let eof = opening.read_message().await.unwrap_err();
        assert_eq!(eof.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn read_message_refuses_oversized_frames() {
        let (mut opening, mut server) = opening_pair().await;
        let mut wire = vec![0x81, 127];
        wire.extend_from_slice(&(MAX_MESSAGE_BYTES as u64 + 1).to_be_bytes());
        server.write_all(&wire).await.unwrap();
        let err = opening.read_message().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn non_101_answer_is_an_upgrade_rejection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            s.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            let _ = s.read(&mut buf).await;
        });
        let target = Target {
            addr,
            host_header: addr.to_string(),
            path: "/".into(),
        };
        let err = connect(&target, None).await.err().unwrap();
        assert!(matches!(err, ConnectError::UpgradeRejected(404)), "{err}");
    }
}
