//! One WebSocket connection's life (docs/protocol.md §3, §4): the challenge,
//! the handshake under its timeout, then requests until the socket closes,
//! then the disconnect.
//!
//! One task per connection polls two halves side by side: the reader,
//! which owns the read half and answers requests, and the writer loop,
//! which owns the write half and drains the connection's [`Outbox`]. A
//! reply therefore needs no hop to another task, yet a socket that does not
//! take writes stalls only the writer half: reading goes on (and a backlog
//! of replies closes the connection as a slow consumer), and broadcasts,
//! which only ever touch the outbox, never wait for this connection.
//! A protocol violation closes only this connection; the reason is
//! returned to the accept loop, which logs it once.

use super::admission::{Admission, Handshake, Refused, send_challenge};
use super::frames::write_loop;
use super::keepalive::{self, Heard};
use super::methods::{Reply, dispatch};
use super::outbox::{Out, Outbox, Receiver, SlowConsumer, outbox};
use super::state::State;
use crate::config::PRE_AUTH_MAX_PAYLOAD;
use crate::engine::Event;
use crate::frame_reader::{FrameReader, Message, ReadConfig, ReadError};
use crate::http::OriginRefusal;
use crate::metrics::ModeLabels;
use crate::protocol::{Close, ErrorShape, Role, SharedEvent, parse_request, write_response_err};
use bytes::Bytes;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio::io::AsyncRead;

/// How long the writer gets to flush after the reader is done.
const WRITER_LINGER: Duration = Duration::from_secs(2);

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed, or the socket ended.
    ClientClosed,
    /// No valid `connect` in time.
    HandshakeTimeout,
    /// Handshake refused; the string says why.
    HandshakeRefused(&'static str),
    /// Its outbox overflowed with replies.
    SlowConsumer,
    /// The client's frames broke a rule (RFC 6455, RFC 7692: a header, a
    /// fragment sequence, the size limit, binary, UTF-8); the text names
    /// it, and the close it was sent is `ReadError::close`'s.
    Protocol(String),
    /// The socket failed.
    Transport(String),
    /// The upgrade never completed.
    Upgrade(String),
    /// Graceful shutdown.
    Shutdown,
    /// Nothing came back between two keepalive pings (docs/protocol.md §1).
    KeepaliveTimeout,
}

/// Runs one upgraded connection to its end; `deflate` when it negotiated
/// permessage-deflate.
pub async fn serve(
    upgrade: fastwebsockets::upgrade::UpgradeFut,
    state: Arc<State>,
    client_ip: IpAddr,
    origin: Result<(), OriginRefusal>,
    deflate: bool,
) -> CloseReason {
    let ws = match upgrade.await {
        Ok(ws) => ws,
        Err(e) => return CloseReason::Upgrade(e.to_string()),
    };
    let (reader, writer) = tokio::io::split(ws.into_inner());
    let outbox = outbox(state.config.max_buffered_bytes);
    let receiver = Receiver::new(&outbox);
    let renderer = Arc::clone(&state.renderer);
    let writing = write_loop(writer, receiver, &renderer, deflate);
    tokio::pin!(writing);
    let mut conn = Session {
        id: state.next_conn_id(),
        state,
        outbox,
        client_ip,
        origin,
        admission: None,
        deflate,
    };
    let heard = AtomicBool::new(false);
    let config = ReadConfig::from_client(PRE_AUTH_MAX_PAYLOAD).with_deflate(deflate);
    let mut reader = FrameReader::new(Heard::new(reader, &heard), config);
    let pinger = conn.outbox.clone();
    let keepalive = conn.state.config.keepalive;
    // A writer that ends first (the socket failed, or a hello was not taken
    // in time) ends the connection: nothing more could be sent on it.
    let (reason, writer_done) = tokio::select! {
        biased;
        reason = conn.run(&mut reader) => (reason, false),
        () = &mut writing => (CloseReason::Transport("writing failed or stalled".into()), true),
        keepalive::Unanswered = keepalive::watch(keepalive, &heard, &pinger) => {
            (CloseReason::KeepaliveTimeout, false)
        }
    };
    drop(pinger);
    conn.finish(&reason);
    conn.outbox.end();
    drop(conn);
    // The writer ends once a close is written or the ended outbox is
    // drained; a client that stopped reading gets a bounded grace period.
    if !writer_done {
        let _ = tokio::time::timeout(WRITER_LINGER, &mut writing).await;
    }
    reason
}

struct Session {
    state: Arc<State>,
    outbox: Outbox,
    client_ip: IpAddr,
    /// The upgrade's `Origin` verdict (§3.6), answered at `connect`.
    origin: Result<(), OriginRefusal>,
    id: u64,
    admission: Option<Admission>,
    deflate: bool,
}

impl Session {
    async fn run<R: AsyncRead + Unpin>(&mut self, reader: &mut FrameReader<R>) -> CloseReason {
        let nonce = send_challenge(&self.outbox);
        if let Err(reason) = self.handshake(reader, &nonce).await {
            return reason;
        }
        reader.set_limit(self.state.config.max_payload);
        loop {
            if let Err(reason) = self.next_text(reader).await {
                return reason;
            }
            if let Err(SlowConsumer) = self.handle_request(reader.last_text()) {
                return self.slow_consumer();
            }
            reader.release();
        }
    }

    /// Reads until a text message is in (`reader.last_text()`), answering
    /// control frames on the way: a ping's pong counts against the budget
    /// (at most one is pending), a close is echoed and ends the connection.
    async fn next_text<R: AsyncRead + Unpin>(
        &self,
        reader: &mut FrameReader<R>,
    ) -> Result<(), CloseReason> {
        loop {
            let owed = match reader.read_message().await {
                Ok(Message::Text(_)) => return Ok(()),
                Ok(Message::Ping(payload)) => self.outbox.pong(payload.to_vec()),
                Ok(Message::Pong(_)) => Ok(()),
                Ok(Message::Close(payload)) => {
                    let echo = Out::CloseEcho(payload.to_vec());
                    match self.outbox.reply(echo, 0) {
                        Ok(()) => return Err(CloseReason::ClientClosed),
                        Err(SlowConsumer) => Err(SlowConsumer),
                    }
                }
                Err(e) => return Err(self.close_for(e)),
            };
            owed.map_err(|SlowConsumer| self.slow_consumer())?;
        }
    }

    fn slow_consumer(&self) -> CloseReason {
        self.state.metrics().slow_consumers.inc();
        self.outbox.close(Close::SLOW_CONSUMER);
        CloseReason::SlowConsumer
    }

    /// Reads the first message under the handshake timeout and completes
    /// the handshake, unless shutdown begins first.
    async fn handshake<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut FrameReader<R>,
        nonce: &str,
    ) -> Result<(), CloseReason> {
        let timeout = self.state.config.handshake_timeout;
        let mut shutdown = self.state.shutdown.subscribe();
        let first = tokio::select! {
            read = tokio::time::timeout(timeout, self.next_text(reader)) => read,
            // Not registered yet, so the broadcaster will not notify this
            // connection: it says goodbye itself (§7, graceful shutdown).
            _ = shutdown.wait_for(|down| *down) => {
                self.state.metrics().handshake(Some("shutdown"));
                let frame = SharedEvent::shutdown().to_frame(None);
                let _ = self.outbox.reply(Out::Text(Bytes::from(frame)), 0);
                self.outbox.close(Close::SHUTDOWN);
                return Err(CloseReason::Shutdown);
            }
        };
        match first {
            Err(_) => {
                self.state.metrics().handshake(Some("timeout"));
                self.outbox.close(Close::HANDSHAKE_TIMEOUT);
                return Err(CloseReason::HandshakeTimeout);
            }
            Ok(Err(reason)) => {
                let why = match reason {
                    CloseReason::SlowConsumer => "slow consumer",
                    _ => "transport",
                };
                self.state.metrics().handshake(Some(why));
                return Err(reason);
            }
            Ok(Ok(())) => {}
        }
        let message = reader.last_text();
        let handshake = Handshake {
            state: &self.state,
            outbox: &self.outbox,
            conn: self.id,
            client_ip: self.client_ip,
            origin: self.origin,
            nonce,
            deflate: self.deflate,
        };
        // Boxed: the handshake's state is large and short-lived; inline, it
        // would size every idle connection's future.
        let admission = Box::pin(handshake.run(message))
            .await
            .map_err(|Refused(why)| CloseReason::HandshakeRefused(why))?;
        self.count_connection(admission.mode, 1);
        self.admission = Some(admission);
        reader.release();
        Ok(())
    }

    /// Moves the open-connections gauge of `mode` by `delta`.
    fn count_connection(&self, mode: &'static str, delta: i64) {
        let metrics = self.state.metrics();
        metrics
            .connections
            .get_or_create(&ModeLabels { mode })
            .inc_by(delta);
    }

    /// Queues the close a read error calls for; the reason to report.
    fn close_for(&self, e: ReadError) -> CloseReason {
        if e.is_closed() {
            return CloseReason::ClientClosed;
        }
        match e.close() {
            Some(close) => {
                self.outbox.close(close);
                CloseReason::Protocol(e.to_string())
            }
            None => CloseReason::Transport(e.to_string()),
        }
    }

    /// Answers one request read after the handshake.
    fn handle_request(&self, message: &mut [u8]) -> Result<(), SlowConsumer> {
        let metrics = self.state.metrics();
        let request = match parse_request(message) {
            Ok(request) => request,
            Err(e) => {
                metrics.request("invalid", "INVALID_REQUEST");
                return self.reply_error(e.reply_id(), &ErrorShape::invalid_request_frame(&e));
            }
        };
        let admission = self
            .admission
            .as_ref()
            .expect("requests are read only after the handshake");
        match dispatch(&self.state, admission, request) {
            (method, Reply::Send(out, size)) => {
                metrics.request(method, "ok");
                self.outbox.reply(out, size)
            }
            (method, Reply::Refuse(id, error)) => {
                metrics.request(method, error.code.as_str());
                self.reply_error(&id, &error)
            }
        }
    }

    fn reply_error(&self, id: &str, error: &ErrorShape) -> Result<(), SlowConsumer> {
        let mut frame = Vec::with_capacity(128);
        write_response_err(&mut frame, id, error);
        let size = frame.len();
        self.outbox.reply(Out::Text(Bytes::from(frame)), size)
    }

    /// Releases what the connection holds: its registration, its metrics
    /// and, if tracked, its presence row (marked disconnected).
    fn finish(&mut self, reason: &CloseReason) {
        self.state.registry.unregister(self.id);
        let Some(admission) = self.admission.take() else {
            return;
        };
        self.count_connection(admission.mode, -1);
        if let Some(key) = admission.tracked {
            self.state.claims.release(&key, self.id);
            let event = Event::Disconnect {
                conn: self.id,
                key,
                is_node: admission.role == Role::Node,
                tag: Some(admission.conn_tag),
            };
            // Fails only when the engine has stopped; nothing is left to mark.
            let _ = self.state.sender.push_control(event);
        }
        if *reason == CloseReason::Shutdown {
            self.outbox.close(Close::SHUTDOWN);
        }
    }
}
