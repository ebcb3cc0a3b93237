//! The byte stream under a client connection: plain TCP for `ws://` and
//! `http://`, TLS over it for `wss://` and `https://`. One dial for the
//! WebSocket commands, the doctor and the load generator.
//!
//! Invariant: `TCP_NODELAY` is set before the first byte is written, TLS
//! handshake included.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

use crate::tls::{ClientTls, PinMismatch};

/// How a target is reached through TLS: whom to trust, and the name the
/// certificate must carry (a DNS name or an IP address).
#[derive(Debug, Clone)]
pub struct TlsTarget {
    /// The client configuration.
    pub config: ClientTls,
    /// The URL's host, sent as SNI when it is a name.
    pub name: String,
}

/// A connected client stream.
pub enum ClientStream {
    /// `ws://`, `http://`.
    Plain(TcpStream),
    /// `wss://`, `https://`. Boxed: rustls's state is large, and plain
    /// connections should not carry its size.
    Tls(Box<TlsStream<TcpStream>>),
}

/// The read half of a [`ClientStream`].
pub enum StreamRead {
    /// A plain socket's read half (no lock).
    Plain(OwnedReadHalf),
    /// A TLS stream's read half (shares a lock with the write half).
    Tls(tokio::io::ReadHalf<TlsStream<TcpStream>>),
}

/// The write half of a [`ClientStream`].
pub enum StreamWrite {
    /// A plain socket's write half.
    Plain(OwnedWriteHalf),
    /// A TLS stream's write half.
    Tls(tokio::io::WriteHalf<TlsStream<TcpStream>>),
}

/// Connects `socket` to `addr` and, with `tls`, runs the TLS handshake.
/// TCP and TLS failures are told apart.
pub async fn dial(
    socket: TcpSocket,
    addr: std::net::SocketAddr,
    tls: Option<&TlsTarget>,
) -> Result<ClientStream, TransportError> {
    let tcp = socket.connect(addr).await.map_err(TransportError::Tcp)?;
    // Before the first write: a request written as header + body segments
    // must not wait for a delayed ACK.
    tcp.set_nodelay(true).map_err(TransportError::Tcp)?;
    match tls {
        None => Ok(ClientStream::Plain(tcp)),
        Some(tls) => {
            let stream = tls
                .config
                .connect(&tls.name, tcp)
                .await
                .map_err(|e| TransportError::Tls(explain(e)))?;
            Ok(ClientStream::Tls(Box::new(stream)))
        }
    }
}

/// A failed handshake's error, with a pin mismatch said in words.
fn explain(error: io::Error) -> io::Error {
    match PinMismatch::find(&error) {
        Some(mismatch) => io::Error::new(io::ErrorKind::InvalidData, mismatch.to_string()),
        None => error,
    }
}

/// Why [`dial`] failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The TCP connection failed.
    #[error("tcp connect failed")]
    Tcp(#[source] io::Error),
    /// The TLS handshake failed: untrusted or mismatched certificate, or a
    /// server that does not speak TLS.
    #[error("TLS handshake failed")]
    Tls(#[source] io::Error),
}

impl ClientStream {
    /// Splits into halves that read and write independently.
    pub fn split(self) -> (StreamRead, StreamWrite) {
        match self {
            ClientStream::Plain(tcp) => {
                let (r, w) = tcp.into_split();
                (StreamRead::Plain(r), StreamWrite::Plain(w))
            }
            ClientStream::Tls(tls) => {
                let (r, w) = tokio::io::split(*tls);
                (StreamRead::Tls(r), StreamWrite::Tls(w))
            }
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl AsyncRead for StreamRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            StreamRead::Plain(s) => Pin::new(s).poll_read(cx, buf),
            StreamRead::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for StreamWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            StreamWrite::Plain(s) => Pin::new(s).poll_write(cx, buf),
            StreamWrite::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            StreamWrite::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            StreamWrite::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            StreamWrite::Plain(s) => s.is_write_vectored(),
            StreamWrite::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            StreamWrite::Plain(s) => Pin::new(s).poll_flush(cx),
            StreamWrite::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            StreamWrite::Plain(s) => Pin::new(s).poll_shutdown(cx),
            StreamWrite::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
