//! One WebSocket connection: the challenge, the `connect` handshake, then
//! requests until the socket closes (PROTOCOL.md §3, §4).
//!
//! The task owns the read half. Everything it sends goes through its
//! [`Outbox`] to a writer task that owns the write half, so a slow socket
//! never blocks reading, and broadcasts never wait for this connection.
//! A protocol violation closes only this connection; the reason is
//! returned to the accept loop, which logs it once.

use super::broadcast::{PresenceFeed, Subscriber};
use super::outbox::{Out, Outbox, SlowConsumer, outbox, run_writer};
use super::state::State;
use crate::clock::now_millis;
use crate::config::PRE_AUTH_MAX_PAYLOAD;
use crate::engine::{Event, PushError};
use crate::presence::{self, ConnectInfo, Key};
use crate::protocol::{
    ConnectParams, ErrorShape, OPERATOR_ADMIN, OPERATOR_READ, READ_SCOPES, Request, Role,
    grants_read, parse_connect, parse_request, parse_system_event, write_event, write_response_err,
    write_response_ok_with,
};
use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, WebSocketError, WebSocketRead};
use serde_json::json;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncRead;

/// Methods this gateway answers, as `hello-ok` lists them.
pub const METHODS: [&str; 3] = ["system-presence", "system-event", "health"];
/// Events this gateway sends, as `hello-ok` lists them.
pub const EVENTS: [&str; 5] = [
    "connect.challenge",
    "presence",
    "presence.delta",
    "tick",
    "shutdown",
];
/// How long a full queue asks clients to wait before retrying.
const RETRY_AFTER_MS: u64 = 100;
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
    /// A frame or message over the size limit.
    TooLarge,
    /// A binary frame.
    Binary,
    /// Invalid UTF-8 in a text message.
    InvalidUtf8,
    /// Its outbox overflowed with replies.
    SlowConsumer,
    /// The WebSocket layer failed.
    Transport(String),
    /// The upgrade never completed.
    Upgrade(String),
    /// Graceful shutdown.
    Shutdown,
}

/// What the accept loop knows about a new connection.
pub struct Accepted {
    /// Shared state.
    pub state: Arc<State>,
    /// The client IP (§5.3).
    pub client_ip: IpAddr,
}

/// Runs one upgraded connection to its end.
pub async fn serve(
    upgrade: fastwebsockets::upgrade::UpgradeFut,
    accepted: Accepted,
) -> CloseReason {
    let ws = match upgrade.await {
        Ok(ws) => ws,
        Err(e) => return CloseReason::Upgrade(e.to_string()),
    };
    let io = ws.into_inner();
    let (read, write) = tokio::io::split(io);
    let (mut reader, writer) =
        fastwebsockets::after_handshake_split(read, write, fastwebsockets::Role::Server);
    let state = accepted.state;
    let outbox = outbox(state.config.max_buffered_bytes);
    let mut writer_task = tokio::spawn(run_writer(writer, outbox.clone(), Arc::clone(&state)));
    let mut conn = Connection {
        state: Arc::clone(&state),
        outbox,
        client_ip: accepted.client_ip,
        id: state.next_conn_id(),
        session: None,
        message: Vec::new(),
    };
    let reason = conn.run(&mut reader).await;
    conn.finish(&reason);
    conn.outbox.end();
    drop(conn);
    // The writer ends once a close is written or the ended outbox is
    // drained; a client that stopped reading gets a bounded grace period.
    if tokio::time::timeout(WRITER_LINGER, &mut writer_task)
        .await
        .is_err()
    {
        writer_task.abort();
    }
    reason
}

/// What the handshake established.
struct Session {
    role: Role,
    scopes: Vec<String>,
    mode: &'static str,
    /// The presence key, when the connection is tracked.
    tracked: Option<Key>,
}

struct Connection {
    state: Arc<State>,
    outbox: Outbox,
    client_ip: IpAddr,
    id: u64,
    session: Option<Session>,
    /// The message being read, reused across messages.
    message: Vec<u8>,
}

/// What to do about one request.
enum Reply {
    /// Queue this, about this many bytes.
    Send(Out, usize),
    /// Answer the request id with this error.
    Refuse(String, ErrorShape),
}

/// Why no message was read.
enum ReadError {
    Closed,
    TooLarge,
    Binary,
    InvalidUtf8,
    Transport(WebSocketError),
}

impl From<ReadError> for CloseReason {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Closed => CloseReason::ClientClosed,
            ReadError::TooLarge => CloseReason::TooLarge,
            ReadError::Binary => CloseReason::Binary,
            ReadError::InvalidUtf8 => CloseReason::InvalidUtf8,
            ReadError::Transport(WebSocketError::UnexpectedEOF) => CloseReason::ClientClosed,
            ReadError::Transport(e) => CloseReason::Transport(e.to_string()),
        }
    }
}

impl Connection {
    async fn run<S: AsyncRead + Unpin>(&mut self, reader: &mut WebSocketRead<S>) -> CloseReason {
        self.send_challenge();
        let timeout = self.state.config.handshake_timeout;
        let mut shutdown = self.state.shutdown.subscribe();
        let first = tokio::select! {
            read = tokio::time::timeout(timeout, self.read_message(reader, PRE_AUTH_MAX_PAYLOAD)) => read,
            // Not registered yet, so the broadcaster will not notify this
            // connection: it says goodbye itself (§7, graceful shutdown).
            _ = async { shutdown.wait_for(|down| *down).await.is_ok() } => {
                self.state.metrics.handshake(Some("shutdown"));
                let mut frame = Vec::with_capacity(64);
                write_event(&mut frame, "shutdown", super::broadcast::SHUTDOWN_PAYLOAD, None, None);
                let _ = self.outbox.reply(Out::Text(Bytes::from(frame)), 0);
                self.outbox.close(1001, "gateway shutting down");
                return CloseReason::Shutdown;
            }
        };
        match first {
            Err(_) => {
                self.state.metrics.handshake(Some("timeout"));
                self.outbox.close(1008, "handshake timeout");
                return CloseReason::HandshakeTimeout;
            }
            Ok(Err(e)) => {
                self.state.metrics.handshake(Some("transport"));
                return self.close_for(e);
            }
            Ok(Ok(())) => {}
        }
        // Boxed: the handshake's state is large and short-lived; inline, it would
        // size every idle connection's future.
        if let Err(reason) = Box::pin(self.handshake()).await {
            return reason;
        }
        let limit = self.state.config.max_payload;
        loop {
            if let Err(e) = self.read_message(reader, limit).await {
                return self.close_for(e);
            }
            if let Err(SlowConsumer) = self.handle_request() {
                self.state.metrics.slow_consumers.inc();
                self.outbox.close(1008, "slow consumer");
                return CloseReason::SlowConsumer;
            }
        }
    }

    fn close_for(&self, e: ReadError) -> CloseReason {
        match e {
            ReadError::TooLarge => self.outbox.close(1009, "message too large"),
            ReadError::Binary => self.outbox.close(1003, "binary frames are not supported"),
            ReadError::InvalidUtf8 => self.outbox.close(1007, "invalid UTF-8"),
            ReadError::Closed | ReadError::Transport(_) => {}
        }
        e.into()
    }

    /// Reads one whole text message into `self.message`, reassembling
    /// fragments, with `limit` on the whole message.
    async fn read_message<S: AsyncRead + Unpin>(
        &mut self,
        reader: &mut WebSocketRead<S>,
        limit: usize,
    ) -> Result<(), ReadError> {
        // Frames over the limit are refused by fastwebsockets from their
        // header, before their payload is read (its check is `>=`).
        reader.set_max_message_size(limit + 1);
        self.message.clear();
        let mut assembling = false;
        let outbox = &self.outbox;
        let mut obligated = |frame: Frame<'_>| {
            let out = match frame.opcode {
                OpCode::Pong => Out::Pong(frame.payload.to_vec()),
                _ => Out::CloseEcho(frame.payload.to_vec()),
            };
            // Control replies are tiny and must go out even when the
            // connection is over budget.
            let _ = outbox.reply(out, 0);
            std::future::ready(Ok::<(), std::convert::Infallible>(()))
        };
        loop {
            let frame = match reader.read_frame(&mut obligated).await {
                Ok(frame) => frame,
                Err(WebSocketError::FrameTooLarge) => return Err(ReadError::TooLarge),
                Err(WebSocketError::InvalidUTF8) => return Err(ReadError::InvalidUtf8),
                Err(e) => return Err(ReadError::Transport(e)),
            };
            match frame.opcode {
                OpCode::Text if !assembling => {
                    self.message.extend_from_slice(&frame.payload);
                    if frame.fin {
                        return Ok(());
                    }
                    assembling = true;
                }
                OpCode::Continuation if assembling => {
                    if self.message.len() + frame.payload.len() > limit {
                        return Err(ReadError::TooLarge);
                    }
                    self.message.extend_from_slice(&frame.payload);
                    if frame.fin {
                        return match std::str::from_utf8(&self.message) {
                            Ok(_) => Ok(()),
                            Err(_) => Err(ReadError::InvalidUtf8),
                        };
                    }
                }
                OpCode::Binary => return Err(ReadError::Binary),
                OpCode::Close => return Err(ReadError::Closed),
                OpCode::Ping | OpCode::Pong => {}
                _ => {
                    return Err(ReadError::Transport(WebSocketError::InvalidFragment));
                }
            }
        }
    }

    fn send_challenge(&self) {
        let payload = json!({"nonce": uuid::Uuid::new_v4().to_string(), "ts": now_millis()});
        let mut frame = Vec::with_capacity(128);
        write_event(
            &mut frame,
            "connect.challenge",
            payload.to_string().as_bytes(),
            None,
            None,
        );
        let _ = self.outbox.reply(Out::Text(Bytes::from(frame)), 0);
    }

    fn reply_error(&self, id: &str, error: &ErrorShape) -> Result<(), SlowConsumer> {
        let mut frame = Vec::with_capacity(128);
        write_response_err(&mut frame, id, error);
        let size = frame.len();
        self.outbox.reply(Out::Text(Bytes::from(frame)), size)
    }

    /// Answers, counts and closes for a refused handshake.
    fn refuse(
        &self,
        id: Option<&str>,
        error: Option<ErrorShape>,
        code: u16,
        why: &'static str,
    ) -> CloseReason {
        if let (Some(id), Some(error)) = (id, error) {
            let _ = self.reply_error(id, &error);
        }
        self.state.metrics.handshake(Some(why));
        self.outbox.close(code, why);
        CloseReason::HandshakeRefused(why)
    }

    /// Validates the first message as `connect` and completes the handshake.
    async fn handshake(&mut self) -> Result<(), CloseReason> {
        let request = match parse_request(&mut self.message) {
            Ok(request) => request,
            // Not a request at all: close without an answer (§3.3).
            Err(_) => return Err(self.refuse(None, None, 1008, "invalid handshake frame")),
        };
        if request.method != "connect" {
            return Err(self.refuse(
                Some(&request.id),
                Some(ErrorShape::first_request_must_be_connect()),
                1008,
                "first request must be connect",
            ));
        }
        let params = match parse_connect(request.params.as_ref()) {
            Ok(params) => params,
            Err(e) => {
                return Err(self.refuse(
                    Some(&request.id),
                    Some(e.to_error_shape()),
                    1008,
                    "invalid connect params",
                ));
            }
        };
        let Some(protocol) = params.negotiate() else {
            return Err(self.refuse(
                Some(&request.id),
                Some(ErrorShape::protocol_mismatch()),
                1002,
                "protocol mismatch",
            ));
        };
        let scopes = match self
            .state
            .auth
            .grant(params.auth.token.as_deref(), &params.scopes)
        {
            Ok(scopes) => scopes,
            Err(_) => {
                return Err(self.refuse(
                    Some(&request.id),
                    Some(ErrorShape::unauthorized()),
                    1008,
                    "unauthorized",
                ));
            }
        };
        let conn_uuid = uuid::Uuid::new_v4().to_string();
        let mode = params.client.mode.as_str();
        let mut tracked = None;
        if !self.state.config.is_untracked(mode) {
            let (key, patch) =
                presence::connect(connect_info(&params, &conn_uuid, &scopes, self.client_ip));
            // A client claiming the gateway's own key is served but not
            // tracked: the self entry is reserved (§5.1).
            if key != *self.state.self_key() {
                let event = Event::Connect {
                    conn: self.id,
                    key: key.clone(),
                    patch,
                };
                match self.state.sender.try_push_acked(event) {
                    Ok(applied) => {
                        // A dropped ack means the engine is stopping; the
                        // hello below then simply lacks our own row.
                        let _ = applied.await;
                        tracked = Some(key);
                    }
                    Err(e) => {
                        let error = unavailable(&e);
                        return Err(self.refuse(
                            Some(&request.id),
                            Some(error),
                            1013,
                            "presence queue full",
                        ));
                    }
                }
            }
        }
        self.session = Some(Session {
            role: params.role,
            scopes: scopes.clone(),
            mode,
            tracked,
        });
        let feed = if params.role == Role::Node || !grants_read(&scopes) {
            PresenceFeed::None
        } else if params.has_cap("presence.delta") {
            PresenceFeed::Delta
        } else {
            PresenceFeed::Full
        };
        self.send_hello(&request, protocol, &conn_uuid, &params, &scopes, feed);
        self.state.metrics.handshake(None);
        self.state
            .metrics
            .connections
            .get_or_create(&crate::metrics::ModeLabels { mode })
            .inc();
        Ok(())
    }

    /// Queues `hello-ok` and registers for broadcasts so that no broadcast
    /// newer than the hello's snapshot is missed (see `Registry::join`).
    fn send_hello(
        &self,
        request: &Request,
        protocol: u32,
        conn_uuid: &str,
        params: &ConnectParams,
        scopes: &[String],
        feed: PresenceFeed,
    ) {
        // The small parts are encoded by serde; the presence list, the only
        // large part, is spliced in from the snapshot's bytes, never parsed
        // or re-encoded.
        let head = json!({
            "type": "hello-ok",
            "protocol": protocol,
            "server": {"version": super::self_entry::VERSION, "connId": conn_uuid},
            "features": {"methods": METHODS, "events": EVENTS},
        })
        .to_string();
        let tail = json!({
            "auth": {"role": params.role.as_str(), "scopes": scopes},
            "policy": {
                "maxPayload": self.state.config.max_payload,
                "maxBufferedBytes": self.state.config.max_buffered_bytes,
                "tickIntervalMs": u64::try_from(self.state.config.tick_interval.as_millis()).unwrap_or(u64::MAX),
            },
        })
        .to_string();
        let render = || {
            let snapshot = self.state.reader.load_full();
            let mut frame =
                Vec::with_capacity(snapshot.list_json().len() + head.len() + tail.len() + 192);
            write_response_ok_with(&mut frame, &request.id, |out| {
                // `head` and `tail` are JSON objects: drop head's closing brace
                // and tail's opening one, and put the snapshot between them.
                out.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
                out.extend_from_slice(br#","snapshot":{"presence":"#);
                snapshot.write_list(now_millis(), out);
                out.extend_from_slice(
                    format!(
                        r#","health":{{}},"stateVersion":{{"presence":{},"health":{}}},"uptimeMs":{}}},"#,
                        snapshot.version(),
                        super::broadcast::HEALTH_VERSION,
                        self.state.uptime_ms()
                    )
                    .as_bytes(),
                );
                out.extend_from_slice(&tail.as_bytes()[1..]);
            });
            (snapshot.version(), Bytes::from(frame))
        };
        let subscriber = Subscriber {
            outbox: self.outbox.clone(),
            feed,
            // `join` sets it to the hello's version.
            since: 0,
        };
        self.state.registry.join(self.id, subscriber, render);
    }

    fn session(&self) -> &Session {
        self.session
            .as_ref()
            .expect("requests are handled only after the handshake")
    }

    /// Answers one request read after the handshake.
    fn handle_request(&mut self) -> Result<(), SlowConsumer> {
        let request = match parse_request(&mut self.message) {
            Ok(request) => request,
            Err(e) => {
                self.state.metrics.request("invalid", "INVALID_REQUEST");
                return self.reply_error(e.reply_id(), &ErrorShape::invalid_request_frame(&e));
            }
        };
        let method: &'static str = match request.method.as_str() {
            "system-presence" => "system-presence",
            "system-event" => "system-event",
            "health" => "health",
            "connect" => "connect",
            _ => "unknown",
        };
        match self.dispatch(request) {
            Reply::Send(out, size) => {
                self.state.metrics.request(method, "ok");
                self.outbox.reply(out, size)
            }
            Reply::Refuse(id, error) => {
                self.state.metrics.request(method, error.code.as_str());
                self.reply_error(&id, &error)
            }
        }
    }

    /// The reply to queue for `request`, or the error to answer with.
    fn dispatch(&self, request: Request) -> Reply {
        let session = self.session();
        let id = request.id;
        match request.method.as_str() {
            "system-presence" => {
                if !grants_read(&session.scopes) {
                    return Reply::Refuse(
                        id,
                        ErrorShape::missing_scope(OPERATOR_READ, &READ_SCOPES),
                    );
                }
                let size = self.state.reader.load().list_json().len() + id.len() + 64;
                Reply::Send(Out::Presence { id }, size)
            }
            "system-event" => {
                if session.role != Role::Node && !session.scopes.iter().any(|s| s == OPERATOR_ADMIN)
                {
                    return Reply::Refuse(
                        id,
                        ErrorShape::missing_scope(OPERATOR_ADMIN, &[OPERATOR_ADMIN]),
                    );
                }
                let params = match parse_system_event(request.params.as_ref()) {
                    Ok(params) => params,
                    Err(why) => {
                        return Reply::Refuse(id, ErrorShape::invalid_params("system-event", why));
                    }
                };
                let (key, patch) = presence::beacon(params.beacon, &self.state.self_info.host);
                if key == *self.state.self_key() {
                    let error = ErrorShape::invalid_request(
                        "invalid system-event params: the key is reserved for the gateway's own entry",
                    );
                    return Reply::Refuse(id, error);
                }
                match self
                    .state
                    .sender
                    .try_push_acked(Event::Beacon { key, patch })
                {
                    Ok(applied) => {
                        let size = id.len() + 64;
                        Reply::Send(Out::Applied { id, applied }, size)
                    }
                    Err(e) => Reply::Refuse(id, unavailable(&e)),
                }
            }
            "health" => {
                let size = id.len() + 128;
                Reply::Send(Out::Health { id }, size)
            }
            "connect" => Reply::Refuse(id, ErrorShape::invalid_request("already connected")),
            other => {
                let error = ErrorShape::unknown_method(other);
                Reply::Refuse(id, error)
            }
        }
    }

    /// Releases what the connection holds: its registration, its metrics
    /// and, if tracked, its presence row (marked disconnected).
    fn finish(&mut self, reason: &CloseReason) {
        self.state.registry.unregister(self.id);
        let Some(session) = self.session.take() else {
            return;
        };
        self.state
            .metrics
            .connections
            .get_or_create(&crate::metrics::ModeLabels { mode: session.mode })
            .dec();
        if let Some(key) = session.tracked {
            let event = Event::Disconnect {
                conn: self.id,
                key,
                is_node: session.role == Role::Node,
            };
            // Fails only when the engine has stopped; nothing is left to mark.
            let _ = self.state.sender.push_control(event);
        }
        if *reason == CloseReason::Shutdown {
            self.outbox.close(1001, "gateway shutting down");
        }
    }
}

fn connect_info(
    params: &ConnectParams,
    conn_uuid: &str,
    scopes: &[String],
    ip: IpAddr,
) -> ConnectInfo {
    let client = &params.client;
    ConnectInfo {
        conn_id: conn_uuid.to_owned(),
        client_id: client.id.clone(),
        display_name: client.display_name.clone(),
        version: client.version.clone(),
        platform: client.platform.clone(),
        mode: client.mode.as_str().to_owned(),
        device_family: client.device_family.clone(),
        model_identifier: client.model_identifier.clone(),
        instance_id: client.instance_id.clone(),
        device_id: params.device_id.clone(),
        is_node: params.role == Role::Node,
        role: params.role.as_str().to_owned(),
        scopes: scopes.to_vec(),
        ip: Some(ip.to_string()),
    }
}

fn unavailable<E>(e: &PushError<E>) -> ErrorShape {
    match e {
        PushError::Full(_) => ErrorShape::unavailable("presence queue is full", RETRY_AFTER_MS),
        PushError::Closed(_) => ErrorShape::unavailable("gateway is shutting down", 1000),
    }
}
