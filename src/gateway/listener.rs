//! The listener: accepts TCP connections up to the connection limit,
//! serves HTTP/1 on each, hands WebSocket upgrades on `/` and `/ws` to the
//! connection task, and runs graceful shutdown.
//!
//! Invariants against clients that never finish a request:
//! - every HTTP connection must send a complete request head within
//!   `--http-timeout`, and an idle keep-alive connection is closed after it
//!   (hyper's header read timeout runs whenever it waits for a head);
//! - connections that have not sent a request yet are also held in a pool
//!   of their own, smaller than the connection limit; when it is full, the
//!   oldest is closed to make room once it has waited a second
//!   (`waiting.rs`), so silent or slowloris sockets can never lock
//!   WebSocket clients out.
//! - with TLS, the handshake happens inside the same bounds: a socket that
//!   never sends a ClientHello is closed after `--http-timeout`, and stays
//!   in the waiting pool until its first request head, so TLS handshakes
//!   count like silent sockets. A plain HTTP request on a TLS port gets a
//!   400 saying so, not a TLS alert it cannot read.

use super::client_ip::client_ip;
use super::connection::{self, CloseReason};
use super::state::State;
use super::waiting::{Waiting, WaitingPool};
use crate::clock::Clock;
use crate::compress::negotiate;
use crate::config::{ConfigError, ServeConfig};
use crate::http::{Body, CloseConnection, OriginPolicy, route};
use crate::tls::{ServerTls, TlsError};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_VERSION};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;

/// Why the server could not start or run.
#[derive(Debug, Error)]
pub enum ServeError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The certificate could not be loaded or made.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The fleet refuses this gateway (its node id is taken) or its URL.
    #[error(transparent)]
    Fleet(#[from] crate::fleet::FleetError),
}

/// A bound, not yet running gateway.
pub struct Server {
    listener: TcpListener,
    state: Arc<State>,
    tls: Option<Arc<ServerTls>>,
}

/// What one accepted connection's HTTP side holds.
struct Accepted {
    state: Arc<State>,
    peer: SocketAddr,
    /// Its place under `--max-connections`; handed to the WebSocket task on
    /// upgrade, so an upgraded connection keeps counting.
    slot: PermitSlot,
    /// Its place in the pool of connections that have not sent a request.
    waiting: Waiting,
    /// Closes the connection: an SSE stream that stopped reading uses it.
    close: CloseConnection,
}

impl Server {
    /// Validates the configuration, starts the engine and binds the port.
    pub async fn bind(config: ServeConfig) -> Result<Server, ServeError> {
        Server::bind_with_clock(config, Clock::system()).await
    }

    /// Like [`Server::bind`], on `clock` instead of the system clock: a
    /// test passes [`Clock::adjustable`] to move time past a TTL.
    pub async fn bind_with_clock(config: ServeConfig, clock: Clock) -> Result<Server, ServeError> {
        config.validate()?;
        if let Some(bad) = OriginPolicy::first_invalid(&config.allowed_origins) {
            return Err(ConfigError::AllowedOrigin(bad.clone()).into());
        }
        let addr = config.bind;
        let tls = match config.tls.files().map_err(ConfigError::from)? {
            Some(files) => Some(Arc::new(ServerTls::new(
                &files.cert,
                &files.key,
                files.self_signed,
                addr,
            )?)),
            None => None,
        };
        if tls.is_none() && !addr.ip().is_loopback() {
            tracing::warn!(
                %addr,
                "serving without TLS beyond loopback: tokens, hosts, IPs and device ids travel \
                 in clear; pass --tls-cert/--tls-key or --tls-self-signed"
            );
        }
        let listener = listen(addr).map_err(|source| ServeError::Bind { addr, source })?;
        let resolver = tls.as_ref().map(|t| Arc::clone(t.resolver()));
        Ok(Server {
            listener,
            state: State::new(config, resolver, clock)?,
            tls,
        })
    }

    /// With TLS, the certificate served: its fingerprint, and whether this
    /// start made it (`--tls-self-signed`).
    pub fn tls(&self) -> Option<&ServerTls> {
        self.tls.as_deref()
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The shared state, for embedding and tests.
    pub fn state(&self) -> Arc<State> {
        Arc::clone(&self.state)
    }

    /// Serves until `shutdown` resolves, then sends `shutdown` to every
    /// connection, closes them with 1001, waits up to the grace period,
    /// and drains the presence engine.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let state = self.state;
        let broadcaster = tokio::spawn(super::broadcast::run(Arc::clone(&state)));
        let limit = Arc::new(Semaphore::new(state.config.max_connections));
        let pool = &state.waiting;
        let mut connections = JoinSet::new();
        if let Some(tls) = &self.tls {
            tls.watch(state.config.tls.watch_interval, state.shutdown.subscribe());
        }
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                permit = slot(&limit, pool, &state) => permit,
                _ = &mut shutdown => break,
            };
            let (socket, peer) = tokio::select! {
                accepted = accept(&self.listener) => accepted,
                _ = &mut shutdown => break,
            };
            let (waiting, evicted) = pool.enter();
            state.metrics().waiting_evicted.inc_by(evicted);
            let accepted = Accepted {
                state: Arc::clone(&state),
                peer,
                slot: Arc::new(Mutex::new(Some(permit))),
                waiting,
                close: CloseConnection::default(),
            };
            connections.spawn(serve(socket, accepted, self.tls.clone()));
            // Reap finished tasks so the set does not grow with history.
            while connections.try_join_next().is_some() {}
        }
        drain(state, broadcaster, connections).await;
    }
}

/// A place under `--max-connections`. While there is none, connections
/// that have waited long enough without a request are closed to make one.
async fn slot(limit: &Arc<Semaphore>, pool: &WaitingPool, state: &State) -> OwnedSemaphorePermit {
    loop {
        if let Ok(permit) = Arc::clone(limit).try_acquire_owned() {
            return permit;
        }
        if pool.evict_oldest() {
            state.metrics().waiting_evicted.inc();
        }
        // The evicted connection's task releases its place as it ends.
        tokio::select! {
            permit = Arc::clone(limit).acquire_owned() => {
                return permit.expect("the semaphore is never closed");
            }
            () = tokio::time::sleep(WaitingPool::MIN_WAIT / 4) => {}
        }
    }
}

/// Accepts the next connection, backing off on errors such as EMFILE
/// instead of spinning.
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                // A reply written as two segments would otherwise wait for
                // the peer's delayed ACK (about 40 ms).
                let _ = socket.set_nodelay(true);
                return (socket, peer);
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves one connection, through TLS when it is on: the handshake must
/// end within `--http-timeout`, and eviction from the waiting pool ends it.
async fn serve(socket: TcpStream, accepted: Accepted, tls: Option<Arc<ServerTls>>) {
    let evicted = accepted.waiting.evicted();
    let Some(tls) = tls else {
        return serve_http(socket, accepted, evicted).await;
    };
    let peer = accepted.peer;
    let timeout = accepted.state.config.http_timeout;
    let handshake = tokio::time::timeout(timeout, tls_handshake(socket, &tls));
    tokio::pin!(evicted);
    let stream = tokio::select! {
        done = handshake => match done {
            Ok(Ok(Some(stream))) => stream,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => return tracing::debug!(%peer, "no TLS handshake within the HTTP timeout"),
        },
        () = &mut evicted => return tracing::debug!(%peer, "closed to make room: no TLS handshake yet"),
    };
    serve_http(stream, accepted, evicted).await
}

/// The server side of a TLS handshake. A socket whose first byte cannot
/// start a TLS record (a plain HTTP request) is answered with a 400 that
/// says to use TLS, and closed: `None`.
async fn tls_handshake(
    socket: TcpStream,
    tls: &ServerTls,
) -> std::io::Result<Option<TlsStream<TcpStream>>> {
    /// The content type of a TLS handshake record (RFC 8446 §5.1).
    const HANDSHAKE_RECORD: u8 = 0x16;
    let mut first = [0u8; 1];
    if socket.peek(&mut first).await? == 0 {
        return Ok(None);
    }
    if first[0] != HANDSHAKE_RECORD {
        let mut socket = socket;
        socket.write_all(PLAIN_ON_TLS_PORT).await?;
        let _ = socket.shutdown().await;
        return Ok(None);
    }
    tls.acceptor().accept(socket).await.map(Some)
}

/// The answer to plain HTTP on a TLS port.
const PLAIN_ON_TLS_PORT: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
    content-type: text/plain; charset=utf-8\r\nconnection: close\r\ncontent-length: 62\r\n\r\n\
    this port speaks TLS only: use https:// or wss:// to reach it\n";

/// Serves HTTP/1 on one connection until it ends, upgrades, times out, or
/// is evicted from the waiting pool before sending a request.
async fn serve_http<IO>(io: IO, accepted: Accepted, evicted: impl Future<Output = ()>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timeout = accepted.state.config.http_timeout;
    let peer = accepted.peer;
    let close = Arc::clone(&accepted.close.0);
    let accepted = Arc::new(accepted);
    let service = service_fn(move |req| handle(req, Arc::clone(&accepted)));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::select! {
        result = conn => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "http connection ended with an error");
            }
        }
        () = evicted => tracing::debug!(%peer, "closed to make room: no request yet"),
        () = close.notified() => tracing::debug!(%peer, "closed: its stream stopped reading"),
    }
}

/// Tells every connection that the gateway is going away, waits up to the
/// grace period for them to close, and drains the presence engine.
async fn drain(
    state: Arc<State>,
    broadcaster: tokio::task::JoinHandle<()>,
    mut connections: JoinSet<()>,
) {
    tracing::info!("shutting down: notifying connections");
    state.shutdown.send_replace(true);
    let _ = broadcaster.await;
    let drained = tokio::time::timeout(state.config.shutdown_grace, async {
        while !state.registry.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = state.registry.len(),
            "grace period over; closing the rest"
        );
    }
    connections.abort_all();
    let engine_state = Arc::clone(&state);
    let _ = tokio::task::spawn_blocking(move || engine_state.stop_engine()).await;
    tracing::info!("stopped");
}

/// Connections the kernel queues before `accept`: a fleet ramping up at
/// thousands of connections per second overflows the usual 1024, and each
/// dropped SYN costs the client a one-second retransmit.
pub const ACCEPT_BACKLOG: u32 = 4096;

/// Binds `addr` with [`ACCEPT_BACKLOG`] and `SO_REUSEADDR`.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// A connection's place under `--max-connections`, held by whoever serves it.
type PermitSlot = Arc<Mutex<Option<OwnedSemaphorePermit>>>;

async fn handle(
    mut req: Request<Incoming>,
    accepted: Arc<Accepted>,
) -> Result<Response<Body>, Infallible> {
    // A whole request head arrived: the connection is no longer waiting.
    accepted.waiting.leave();
    req.extensions_mut().insert(accepted.close.clone());
    let state = &accepted.state;
    let path = req.uri().path();
    let ws_path = path == "/" || path == "/ws";
    let ip = client_ip(
        accepted.peer.ip(),
        req.headers(),
        &state.config.trusted_proxies,
    );
    let origin = crate::http::screen_origin(&req, &state.http.origins, ip);
    if !(ws_path && fastwebsockets::upgrade::is_upgrade_request(&req)) {
        if let Some(refusal) = crate::http::screen_http(&req, &state.http.origins, origin) {
            return Ok(refusal);
        }
        return Ok(route(req, &state.http).await);
    }
    if state.is_shutting_down() {
        return Ok(crate::http::rest_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "gateway is shutting down",
        ));
    }
    // permessage-deflate (RFC 7692): the first offer rollcall can honor,
    // or none; declining never fails the upgrade.
    let offers = req.headers().get_all(SEC_WEBSOCKET_EXTENSIONS);
    let deflate = negotiate(offers.iter().filter_map(|v| v.to_str().ok()));
    Ok(match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok((mut response, upgrade)) => {
            if let Some(agreed) = &deflate {
                let value = HeaderValue::from_str(&agreed.response)
                    .expect("the answer is a valid header value");
                response
                    .headers_mut()
                    .insert(SEC_WEBSOCKET_EXTENSIONS, value);
            }
            let permit = accepted.slot.lock().ok().and_then(|mut p| p.take());
            let (state, peer) = (Arc::clone(state), accepted.peer);
            let deflate = deflate.is_some();
            tokio::spawn(async move {
                let _permit = permit;
                let serve = connection::serve(upgrade, state, ip, origin, deflate);
                log_close(peer, serve.await);
            });
            response.map(|body| body.map_err(|never| match never {}).boxed())
        }
        Err(e) => bad_upgrade(&e),
    })
}

/// A refused upgrade: 400, naming the version this server speaks
/// (RFC 6455 §4.4).
fn bad_upgrade(e: &fastwebsockets::WebSocketError) -> Response<Body> {
    let mut response = crate::http::rest_error(
        StatusCode::BAD_REQUEST,
        &format!("bad WebSocket upgrade: {e}"),
    );
    response
        .headers_mut()
        .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    response
}

fn log_close(peer: SocketAddr, reason: CloseReason) {
    match reason {
        CloseReason::ClientClosed | CloseReason::Shutdown => {
            tracing::trace!(%peer, ?reason, "connection closed")
        }
        _ => tracing::debug!(%peer, ?reason, "connection closed"),
    }
}
