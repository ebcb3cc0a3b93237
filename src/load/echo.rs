//! The transport baseline for `rollcall load --echo`: a bare WebSocket echo
//! server, tokio + hyper + fastwebsockets and nothing else.
//!
//! It upgrades on any path and writes every text frame back unchanged.
//! Whatever rollcall adds on top of this (JSON, the handshake, presence)
//! shows up as the gap between `rollcall load` against rollcall and against
//! this server. `examples/echo.rs` runs it; the load generator's tests use it
//! in-process.

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, WebSocket, WebSocketError, upgrade};
use http_body_util::{Either, Empty, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::time::Duration;
use tokio::net::TcpListener;

/// Same limit as rollcall's `maxPayload`, so both servers refuse the same frames.
const MAX_MESSAGE_BYTES: usize = 1 << 20;

type Body = Either<Empty<Bytes>, Full<Bytes>>;

/// Serves echo WebSockets on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "echo: accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Same as rollcall: no delayed-ACK stalls on small replies.
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .with_upgrades();
            let _ = conn.await;
        });
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
            // A peer that vanishes mid-frame is normal under load.
            let _ = echo(ws).await;
        }
    });
    Ok(res.map(Either::Left))
}

async fn echo(mut ws: WebSocket<TokioIo<Upgraded>>) -> Result<(), WebSocketError> {
    // Auto-pong and auto-close stay on (fastwebsockets' defaults).
    ws.set_max_message_size(MAX_MESSAGE_BYTES);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            // Fragments go back as they came, so a fragmented message echoes
            // whole. A fresh frame: the one read keeps the client's mask key
            // (its payload already unmasked), and a server must not mask.
            OpCode::Text | OpCode::Continuation => {
                let echoed = Frame::new(frame.fin, frame.opcode, None, frame.payload);
                ws.write_frame(echoed).await?
            }
            OpCode::Close => return Ok(()),
            _ => {}
        }
    }
}
