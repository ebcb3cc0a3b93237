//! Dialing a client WebSocket: resolve a `ws://` or `wss://` URL, connect
//! TCP (and TLS, `stream.rs`), upgrade through fastwebsockets. The one client transport of the crate, shared by
//! `rollcall presence`, `rollcall beacon` and `rollcall load`.
//!
//! Invariants:
//! - Every socket has `TCP_NODELAY` set before the upgrade request is written.
//! - After [`connect_from`] returns, no hyper machinery is left per connection:
//!   the upgraded stream is downcast back to the [`ClientStream`], and any
//!   bytes hyper read past the `101` response are copied into the
//!   [`FrameReader`], so hyper's read buffer is freed.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use fastwebsockets::{Role, WebSocketWrite, handshake};
use http_body_util::Empty;
use hyper::Request;
use hyper::header::{CONNECTION, HOST, SEC_WEBSOCKET_EXTENSIONS, UPGRADE};
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;

use super::stream::{ClientStream, StreamRead, StreamWrite, TlsTarget, TransportError, dial};
use crate::frame_reader::{FrameReader, ReadConfig};
use crate::tls::{ClientTls, ClientTlsError, TlsArgs};

/// An open client WebSocket, split so a pending read never blocks a write.
pub struct WsConn {
    /// Whole messages from the server. Pings are not answered by themselves:
    /// the caller answers them on the write half.
    pub read: FrameReader<StreamRead>,
    /// Frames to the server; the client role masks every frame.
    pub write: WebSocketWrite<StreamWrite>,
}

/// Why a `--url` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    /// The URL is not a `ws://` or `wss://` URL with a host.
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
    /// The TLS options cannot be used.
    #[error(transparent)]
    Tls(#[from] ClientTlsError),
}

/// What is wrong with a command's `--url` or TLS options, found before
/// anything is dialled: the failures `rollcall presence`/`beacon`
/// ([`CliError`](super::cli::CliError)) and `rollcall doctor`
/// ([`DoctorError`](super::doctor_cli::DoctorError)) share; both exit 2
/// for them.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The URL is not one the command takes.
    #[error("bad --url {url:?}: {why}")]
    BadUrl {
        /// What was given.
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// `--ca-file` or the system's roots cannot be used.
    #[error(transparent)]
    Tls(#[from] ClientTlsError),
}

/// Parses a `ws://` or `wss://host[:port][/path]` URL and resolves its
/// host (IPv4 preferred) into a connect target; `wss://` trusts what `tls`
/// says. Shared by every client command.
pub async fn resolve(url: &str, tls: &TlsArgs) -> Result<Target, UrlError> {
    let bad = |reason| UrlError::Invalid {
        url: url.to_owned(),
        reason,
    };
    let uri: hyper::Uri = url.parse().map_err(|_| bad("not a URL"))?;
    let secure = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        _ => return Err(bad("the scheme must be ws:// or wss://")),
    };
    if !secure && tls.tls_fingerprint.is_some() {
        return Err(bad("--tls-fingerprint needs a wss:// URL"));
    }
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
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
    let tls = match secure {
        true => Some(TlsTarget {
            config: ClientTls::new(tls)?,
            name: bare.to_owned(),
        }),
        false => None,
    };
    Ok(Target {
        addr,
        host_header,
        path,
        tls,
        deflate: false,
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
    /// For `wss://`: the TLS to speak.
    pub tls: Option<TlsTarget>,
    /// Offer permessage-deflate (RFC 7692), as browsers and Node's `ws` do.
    pub deflate: bool,
}

#[cfg(test)]
impl Target {
    /// `ws://addr/`: no TLS, no deflate; for the unit tests' servers.
    pub(crate) fn plain(addr: SocketAddr) -> Target {
        Target {
            addr,
            host_header: addr.to_string(),
            path: "/".into(),
            tls: None,
            deflate: false,
        }
    }
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// Creating, binding or connecting the TCP socket failed.
    #[error("tcp connect failed")]
    Tcp(#[source] io::Error),
    /// The TLS handshake failed (untrusted or unpinned certificate, or a
    /// port that speaks no TLS).
    #[error("TLS handshake failed")]
    Tls(#[source] io::Error),
    /// The server answered the upgrade request with something other than `101`.
    #[error("upgrade rejected with HTTP {0}")]
    UpgradeRejected(u16),
    /// The upgrade failed for another reason (I/O, bad headers, early close).
    #[error("websocket upgrade failed")]
    Upgrade(#[source] fastwebsockets::WebSocketError),
    /// hyper handed back an upgraded stream of an unexpected type.
    #[error("upgraded stream is not the stream dialled")]
    Downcast,
}

impl From<TransportError> for DialError {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Tcp(e) => DialError::Tcp(e),
            TransportError::Tls(e) => DialError::Tls(e),
        }
    }
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

/// A fresh TCP socket of the target's address family.
pub fn socket_for(target: &Target) -> io::Result<TcpSocket> {
    match target.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
}

/// Opens one WebSocket to `target` from a fresh socket.
pub async fn connect(target: &Target) -> Result<WsConn, DialError> {
    let socket = socket_for(target).map_err(DialError::Tcp)?;
    connect_from(target, socket).await
}

/// Opens one WebSocket to `target` from `socket`, which the caller may have
/// bound to a local address first (so a fleet can spread over several
/// loopback source addresses).
pub async fn connect_from(target: &Target, socket: TcpSocket) -> Result<WsConn, DialError> {
    let stream = dial(socket, target.addr, target.tls.as_ref()).await?;
    let (ws, response) =
        match handshake::client(&SpawnExecutor, upgrade_request(target), stream).await {
            Ok(pair) => pair,
            Err(fastwebsockets::WebSocketError::InvalidStatusCode(code)) => {
                return Err(DialError::UpgradeRejected(code));
            }
            Err(e) => return Err(DialError::Upgrade(e)),
        };
    let parts = ws
        .into_inner()
        .into_inner()
        .downcast::<TokioIo<ClientStream>>()
        .map_err(|_| DialError::Downcast)?;
    let (rd, wr) = parts.io.into_inner().split();
    // Copying `parts.read_buf` lets hyper's read buffer, which it views, go.
    let agreed = response
        .headers()
        .get_all(SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.trim_start().starts_with(PERMESSAGE_DEFLATE));
    let config = ReadConfig::from_server(MAX_MESSAGE_BYTES).with_deflate(target.deflate && agreed);
    let read = FrameReader::new(rd, config).with_buffered(&parts.read_buf);
    // fastwebsockets makes halves only in pairs; the read half is dropped at once.
    let (_, write) = fastwebsockets::after_handshake_split(tokio::io::empty(), wr, Role::Client);
    Ok(WsConn { read, write })
}

/// Largest message a client accepts, counted after inflation. A
/// `system-presence` reply with a full store (200 entries) is well under
/// this; OpenClaw's `maxPayload` is 1 MiB.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// The extension's name, in the server's answer.
const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// What this client offers: the server must compress each message on its
/// own (or decline), since the reader inflates each with a fresh window.
const DEFLATE_OFFER: &str = "permessage-deflate; server_no_context_takeover";

fn upgrade_request(target: &Target) -> Request<Empty<Bytes>> {
    let builder = match target.deflate {
        true => Request::builder().header(SEC_WEBSOCKET_EXTENSIONS, DEFLATE_OFFER),
        false => Request::builder(),
    };
    builder
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
        .expect("upgrade request from a validated target")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame_reader::Message;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn url_parts_become_the_target() {
        let none = TlsArgs::default();
        let t = resolve("ws://127.0.0.1:9/ws?x=1", &none).await.unwrap();
        assert_eq!(t.addr, "127.0.0.1:9".parse().unwrap());
        assert_eq!(t.path, "/ws?x=1");
        assert_eq!(t.host_header, "127.0.0.1:9");
        assert!(t.tls.is_none());
        assert!(resolve("http://127.0.0.1:9/", &none).await.is_err());
        let pinned = TlsArgs {
            tls_fingerprint: Some(crate::tls::Fingerprint::of(b"c")),
            ..TlsArgs::default()
        };
        let t = resolve("wss://127.0.0.1/", &pinned).await.unwrap();
        assert_eq!(t.addr.port(), 443);
        assert_eq!(t.tls.unwrap().name, "127.0.0.1");
        let err = resolve("ws://127.0.0.1:9/", &pinned).await.unwrap_err();
        assert!(err.to_string().contains("needs a wss:// URL"), "{err}");
    }

    /// A server that sends its first frames in the same write as the `101`, as
    /// a gateway sending `connect.challenge` at once may. hyper reads them;
    /// they must still reach the WebSocket reader.
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
        let target = Target::plain(addr);
        let mut conn = connect(&target).await.unwrap();
        for want in [&b"hello"[..], b"after"] {
            match conn.read.read_message().await.unwrap() {
                Message::Text(text) => assert_eq!(text.as_slice(), want),
                other => panic!("not text: {other:?}"),
            }
        }
        drop(conn);
        server.await.unwrap();
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
        let target = Target::plain(addr);
        let err = connect(&target).await.err().unwrap();
        assert!(matches!(err, DialError::UpgradeRejected(404)), "{err}");
    }
}
