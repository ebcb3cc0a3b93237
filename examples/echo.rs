//! The transport baseline for `rollcall load --echo`: a bare WebSocket echo
//! server, tokio + hyper 1 + fastwebsockets and nothing else.
//!
//! It upgrades on any path and writes every text frame back unchanged. Whatever
//! rollcall adds on top of this (JSON, the handshake, presence) shows up as the
//! gap between `rollcall load` against rollcall and against this server.
//!
//! ```text
//! cargo run --release --example echo -- --bind 127.0.0.1:18790
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use fastwebsockets::{OpCode, WebSocket, WebSocketError, upgrade};
use http_body_util::{Either, Empty, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Same limit as rollcall's `maxPayload`, so both servers refuse the same frames.
const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Accept queue length; the kernel caps it at `net.core.somaxconn` (4096 by default).
const LISTEN_BACKLOG: u32 = 4096;

/// A bare WebSocket echo server.
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18790")]
    bind: SocketAddr,
}

type Body = Either<Empty<Bytes>, Full<Bytes>>;

/// Raises the soft open-file limit to the hard one, so the baseline holds as
/// many connections as the system allows (a server at 100k sockets needs it).
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit; getrlimit only writes into it.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 && lim.rlim_cur < lim.rlim_max
    {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: a valid rlimit with soft == hard, which any process may set.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}

async fn echo(mut ws: WebSocket<TokioIo<Upgraded>>) -> Result<(), WebSocketError> {
    // Auto-pong and auto-close stay on (fastwebsockets' defaults).
    ws.set_max_message_size(MAX_MESSAGE_BYTES);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            // Fragments go back as they came, so a fragmented message echoes whole.
            OpCode::Text | OpCode::Continuation => ws.write_frame(frame).await?,
            OpCode::Close => return Ok(()),
            _ => {}
        }
    }
}

async fn handle(mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if !upgrade::is_upgrade_request(&req) {
        let mut res = Response::new(Either::Right(Full::from(
            "websocket echo: upgrade required\n",
        )));
        *res.status_mut() = StatusCode::UPGRADE_REQUIRED;
        return Ok(res);
    }
    let (res, fut) = match upgrade::upgrade(&mut req) {
        Ok(pair) => pair,
        Err(_) => {
            let mut res = Response::new(Either::Right(Full::from("bad upgrade request\n")));
            *res.status_mut() = StatusCode::BAD_REQUEST;
            return Ok(res);
        }
    };
    tokio::spawn(async move {
        if let Ok(ws) = fut.await {
            // A peer that vanishes mid-frame is normal under load; nothing to report.
            let _ = echo(ws).await;
        }
    });
    Ok(res.map(Either::Left))
}

/// Binds with a deep accept queue. tokio's default backlog (1024) overflows
/// while a load generator ramps thousands of connections a second, and every
/// dropped SYN costs that client a 1 s retransmit.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    raise_nofile();
    let listener = listen(args.bind).with_context(|| format!("bind {}", args.bind))?;
    println!("echo listening on ws://{}/", listener.local_addr()?);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning; the listener stays.
                eprintln!("echo: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            eprintln!("echo: TCP_NODELAY: {e}");
            continue;
        }
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .with_upgrades();
            let _ = conn.await;
        });
    }
}
