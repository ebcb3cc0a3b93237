//! The listener: accepts TCP connections up to the connection limit,
//! serves HTTP/1 on each, hands WebSocket upgrades on `/` and `/ws` to the
//! connection task, and runs graceful shutdown.

use super::client_ip::client_ip;
use super::session::{self, CloseReason};
use super::state::State;
use crate::config::{ConfigError, ServeConfig};
use crate::http::{Body, route};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// Why the server could not start or run.
#[derive(Debug, Error)]
pub enum ServeError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A bound, not yet running gateway.
pub struct Server {
    listener: TcpListener,
    state: Arc<State>,
}

impl Server {
    /// Validates the configuration, starts the engine and binds the port.
    pub async fn bind(config: ServeConfig) -> Result<Server, ServeError> {
        config.validate()?;
        let addr = config.bind;
        let listener = listen(addr).map_err(|source| ServeError::Bind { addr, source })?;
        Ok(Server {
            listener,
            state: State::new(config),
        })
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
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                permit = Arc::clone(&limit).acquire_owned() => permit.expect("the semaphore is never closed"),
                _ = &mut shutdown => break,
            };
            let (socket, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            // A reply written as two segments would otherwise wait for the
            // peer's delayed ACK (about 40 ms).
            let _ = socket.set_nodelay(true);
            let state = Arc::clone(&state);
            // The slot goes to the WebSocket task on upgrade, so an upgraded
            // connection keeps counting against the limit after hyper's part
            // of it has ended; otherwise it is released with the HTTP task.
            let slot: PermitSlot = Arc::new(Mutex::new(Some(permit)));
            connections.spawn(async move {
                let service =
                    service_fn(move |req| handle(req, Arc::clone(&state), peer, Arc::clone(&slot)));
                let conn = http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service)
                    .with_upgrades();
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "http connection ended with an error");
                }
            });
            // Reap finished tasks so the set does not grow with history.
            while connections.try_join_next().is_some() {}
        }
        tracing::info!("shutting down: notifying connections");
        state.shutdown.send_replace(true);
        let _ = broadcaster.await;
        let grace = state.config.shutdown_grace;
        let drained = tokio::time::timeout(grace, async {
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
    state: Arc<State>,
    peer: SocketAddr,
    slot: PermitSlot,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path();
    let ws_path = path == "/" || path == "/ws";
    if ws_path && fastwebsockets::upgrade::is_upgrade_request(&req) {
        if state.is_shutting_down() {
            return Ok(crate::http::rest_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "gateway is shutting down",
            ));
        }
        let ip = client_ip(peer.ip(), req.headers(), &state.config.trusted_proxies);
        return Ok(match fastwebsockets::upgrade::upgrade(&mut req) {
            Ok((response, upgrade)) => {
                let permit = slot.lock().ok().and_then(|mut p| p.take());
                tokio::spawn(async move {
                    let _permit = permit;
                    let reason = session::serve(upgrade, state, ip).await;
                    match reason {
                        CloseReason::ClientClosed | CloseReason::Shutdown => {
                            tracing::trace!(%peer, ?reason, "connection closed")
                        }
                        _ => tracing::debug!(%peer, ?reason, "connection closed"),
                    }
                });
                response.map(|body| body.map_err(|never| match never {}).boxed())
            }
            Err(e) => crate::http::rest_error(
                StatusCode::BAD_REQUEST,
                &format!("bad WebSocket upgrade: {e}"),
            ),
        });
    }
    Ok(route(req, &state.http).await)
}
