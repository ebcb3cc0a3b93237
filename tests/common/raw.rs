//! A raw WebSocket client over TCP, for what a WebSocket library refuses
//! to do: unmasked frames, ping floods, never reading, half-sent requests.

use super::{TIMEOUT, within};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A client frame: FIN set, `opcode`, masked with a fixed key unless
/// `masked` is false.
pub fn frame(opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    let bit = if masked { 0x80 } else { 0 };
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(bit | n as u8),
        n if n <= 0xffff => {
            out.push(bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// The request head of a WebSocket upgrade on `/`.
pub fn upgrade_request(addr: SocketAddr, version: &str) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: {version}\r\n\r\n"
    )
}

/// A TCP connection that has completed the upgrade (the 101 head is read).
pub struct RawWs {
    /// The socket.
    pub tcp: TcpStream,
    /// Bytes read past the 101 head.
    pub pending: Vec<u8>,
}

impl RawWs {
    /// Connects and upgrades.
    pub async fn open(addr: SocketAddr) -> RawWs {
        within("a raw upgrade", async {
            let mut tcp = TcpStream::connect(addr).await.expect("TCP connect");
            tcp.write_all(upgrade_request(addr, "13").as_bytes())
                .await
                .expect("send the upgrade");
            let (head, pending) = read_head(&mut tcp).await;
            assert!(head.starts_with("HTTP/1.1 101"), "{head}");
            RawWs { tcp, pending }
        })
        .await
    }

    /// Sends raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tcp.write_all(bytes).await
    }

    /// Reads server frames until a close frame; its code. `None` if the
    /// socket ended without one.
    pub async fn close_code(&mut self) -> Option<u16> {
        let mut buf = std::mem::take(&mut self.pending);
        within("a close frame", async {
            loop {
                while let Some((opcode, payload, used)) = parse_server_frame(&buf) {
                    if opcode == 0x8 {
                        return payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
                    }
                    buf.drain(..used);
                }
                let mut chunk = [0u8; 4096];
                match self.tcp.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await
    }
}

/// Reads an HTTP response head; the head and the bytes after it.
pub async fn read_head(tcp: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..at]).into_owned();
            return (head, buf[at + 4..].to_vec());
        }
        let mut chunk = [0u8; 1024];
        let n = tcp.read(&mut chunk).await.expect("read the head");
        assert!(n > 0, "the server closed before answering: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One unmasked server frame at the start of `buf`: (opcode, payload, bytes used).
pub fn parse_server_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let (len, head) = match b1 & 0x7f {
        126 => (
            usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => (
            usize::try_from(u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)).ok()?,
            10,
        ),
        n => (usize::from(n), 2),
    };
    let payload = buf.get(head..head + len)?.to_vec();
    Some((b0 & 0x0f, payload, head + len))
}

/// Waits until the peer closes `tcp` (EOF or reset); false if it stays
/// open for [`TIMEOUT`].
pub async fn closed_by_server(tcp: &mut TcpStream) -> bool {
    let mut chunk = [0u8; 1024];
    let wait = async {
        loop {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(TIMEOUT, wait).await.is_ok()
}
