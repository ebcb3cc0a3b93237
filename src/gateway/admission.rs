//! The handshake (docs/protocol.md §3): the challenge, validation of the first
//! message as `connect`, auth and scopes, the connect upsert, and `hello-ok`.
//!
//! Invariants: a refused handshake answers only a request-shaped frame,
//! counts the refusal once, and queues the close that names it; a tracked
//! connection's own entry is applied before its hello is rendered, so the
//! hello's list already holds it.

use super::beacon_rows::BeaconRows;
use super::claims::Principal;
use super::list_frame::{ListFrame, wire_len};
use super::outbox::{Out, Outbox};
use super::push::unavailable;
use super::registry::{HelloList, PresenceFeed, Subscriber};
use super::self_entry::VERSION;
use super::state::{HELLO_BUDGET_KIB, State};
use crate::auth::AuthError;
use crate::clock::now_millis;
use crate::engine::Event;
use crate::http::OriginRefusal;
use crate::presence::{self, ConnTag, ConnectInfo, Key, KeySource, Patch};
use crate::protocol::{
    Close, CloseCode, ConnectParams, ErrorShape, Hello, Policy, ProvenDevice, Role, Signed,
    grants_read, parse_connect, parse_request, write_challenge, write_hello, write_response_err,
};
use bytes::Bytes;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;

/// What the handshake established: the role, scopes and keys a
/// connection was admitted with, for the rest of its session.
pub struct Admission {
    /// The role the client connected as.
    pub role: Role,
    /// The granted scopes.
    pub scopes: Vec<String>,
    /// The client's mode, as a metrics label.
    pub mode: &'static str,
    /// The presence key, when the connection is tracked.
    pub tracked: Option<Key>,
    /// The key its connect upserts under (or would, if untracked): the
    /// only entry a node may beacon (§5.2). `None` for the reserved key.
    pub own_key: Option<Key>,
    /// Where `own_key` came from, for the provenance of a node's beacons.
    pub own_source: KeySource,
    /// The connection as `hello-ok` names it (`server.connId`).
    pub conn_tag: ConnTag,
    /// Who it acts for: the rows it may write (§5.1).
    pub principal: Principal,
    /// Keys besides its own this connection beaconed in the current TTL
    /// window (docs/protocol.md §5.4).
    pub beacon_rows: Mutex<BeaconRows>,
}

/// What a client that passed every check was granted.
struct Admitted {
    protocol: u32,
    scopes: Vec<String>,
    device: Option<ProvenDevice>,
}

/// A refused handshake: the close was queued; the reason names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub &'static str);

/// One connection's handshake.
pub struct Handshake<'a> {
    /// Shared state.
    pub state: &'a State,
    /// The connection's outbox.
    pub outbox: &'a Outbox,
    /// The connection's number.
    pub conn: u64,
    /// The client IP (§5.3).
    pub client_ip: IpAddr,
    /// The upgrade's `Origin` verdict (§3.6).
    pub origin: Result<(), OriginRefusal>,
    /// The nonce of the challenge this connection was sent (§3.1).
    pub nonce: &'a str,
    /// The connection negotiated permessage-deflate.
    pub deflate: bool,
}

/// Queues `connect.challenge` (§3.1); its nonce, which a device signs.
pub fn send_challenge(outbox: &Outbox) -> String {
    let nonce = uuid::Uuid::new_v4().to_string();
    let mut frame = Vec::with_capacity(128);
    write_challenge(&mut frame, &nonce, now_millis());
    let _ = outbox.reply(Out::Text(Bytes::from(frame)), 0);
    nonce
}

impl Handshake<'_> {
    /// Validates the first message as `connect` and completes the handshake.
    pub async fn run(&self, message: &mut [u8]) -> Result<Admission, Refused> {
        let request = match parse_request(message) {
            Ok(request) => request,
            // Not a request at all: close without an answer (§3.3).
            Err(_) => {
                return Err(self.refuse(
                    None,
                    Close::new(CloseCode::PolicyViolation, "invalid handshake frame"),
                ));
            }
        };
        let id = request.id.as_str();
        if request.method != "connect" {
            let error = ErrorShape::first_request_must_be_connect();
            return Err(self.refuse(Some((id, error)), policy("first request must be connect")));
        }
        let params = match parse_connect(request.params()) {
            Ok(params) => params,
            Err(e) => {
                return Err(self.refuse(
                    Some((id, e.to_error_shape())),
                    policy("invalid connect params"),
                ));
            }
        };
        let admitted = self.admit(id, &params)?;
        self.complete(id, &params, admitted).await
    }

    /// The checks that decide whether the client is let in, in the order
    /// of §3: protocol, origin, token, device identity.
    fn admit(&self, id: &str, params: &ConnectParams) -> Result<Admitted, Refused> {
        let Some(protocol) = params.negotiate() else {
            let close = Close::new(CloseCode::ProtocolError, "protocol mismatch");
            return Err(self.refuse(Some((id, ErrorShape::protocol_mismatch())), close));
        };
        if let Err(refusal) = self.origin {
            let error = ErrorShape::origin_not_allowed(refusal.reason());
            return Err(self.refuse(Some((id, error)), policy("origin not allowed")));
        }
        // A locked-out address is answered before any secret is checked.
        let failures = &self.state.auth_failures;
        let now = now_millis();
        if let Err(retry_after_ms) = failures.check(self.client_ip, now) {
            let error = ErrorShape::auth_rate_limited(retry_after_ms);
            return Err(self.refuse(Some((id, error)), policy("auth rate limited")));
        }
        let token = params.auth.token.as_deref();
        let scopes = match self.state.auth().grant(token, &params.scopes, params.role) {
            Ok(scopes) => scopes,
            Err(e) => {
                if e == AuthError::Mismatch {
                    failures.record(self.client_ip, now);
                }
                let error = ErrorShape::unauthorized(e.detail_code());
                return Err(self.refuse(Some((id, error)), policy("unauthorized")));
            }
        };
        let device = match &params.device {
            None => None,
            Some(block) => match block.verify(&signed(params), self.nonce, now) {
                Ok(proven) => Some(proven),
                Err(e) => {
                    failures.record(self.client_ip, now);
                    let error = ErrorShape::device_auth(e);
                    return Err(self.refuse(Some((id, error)), policy("device auth failed")));
                }
            },
        };
        Ok(Admitted {
            protocol,
            scopes,
            device,
        })
    }

    /// Tracks the admitted connection and sends its `hello-ok`.
    async fn complete(
        &self,
        id: &str,
        params: &ConnectParams,
        admitted: Admitted,
    ) -> Result<Admission, Refused> {
        let conn_tag = ConnTag::from_u128(uuid::Uuid::new_v4().as_u128());
        let conn_uuid = conn_tag.to_string();
        let device = admitted.device.map(|d| d.id);
        let principal = Principal::of(
            device.as_deref(),
            params.auth.token.as_deref(),
            self.state.auth().required(),
        );
        let mut info = connect_info(params, &conn_uuid, &admitted.scopes, self.client_ip);
        info.device_id.clone_from(&device);
        info.conn = Some(conn_tag);
        let is_tracked = !self.state.config.is_untracked(params.client.mode.as_str());
        let (own_key, patch) = self.own_key(info, &principal, is_tracked);
        let own_source = patch.by.source;
        let tracked = match &own_key {
            Some(key) if is_tracked => {
                let tracked = self.track(id, key.clone(), patch).await;
                if tracked.is_err() {
                    self.state.claims.release(key, self.conn);
                }
                tracked?
            }
            _ => None,
        };
        let session = Admission {
            role: params.role,
            mode: params.client.mode.as_str(),
            scopes: admitted.scopes,
            tracked,
            own_key,
            own_source,
            conn_tag,
            principal,
            beacon_rows: Mutex::default(),
        };
        let feed = feed(&session, params);
        let hello = HelloParts {
            id,
            protocol: admitted.protocol,
            conn_uuid: &conn_uuid,
            resume_from: params.presence_since,
        };
        self.send_hello(&hello, &session, feed).await;
        self.state.metrics().handshake(None);
        Ok(session)
    }

    /// The key the connection's row has (`None` for the reserved key) and
    /// its connect upsert. A tracked connection claims its key (§5.1); when
    /// another principal holds it, the connection is tracked under its
    /// connection id instead, and its row's provenance says why.
    fn own_key(
        &self,
        info: ConnectInfo,
        principal: &Principal,
        is_tracked: bool,
    ) -> (Option<Key>, Patch) {
        let (key, patch) = presence::connect(info.clone());
        // The gateway's own key is reserved (§5.1): a client claiming it is
        // served, but neither tracked nor allowed to beacon it.
        if key == *self.state.self_key() {
            return (None, patch);
        }
        let claims = &self.state.claims;
        if !is_tracked || claims.claim(&key, principal, self.conn) {
            return (Some(key), patch);
        }
        let unkeyed = ConnectInfo {
            device_id: None,
            instance_id: None,
            ..info
        };
        let (key, mut patch) = presence::connect(unkeyed);
        patch.by.source = KeySource::NotOwner;
        // A fresh connection id: nobody else holds it.
        claims.claim(&key, principal, self.conn);
        (Some(key), patch)
    }

    /// Upserts the connection's entry and waits until it is applied, so
    /// the hello's list holds it; the key it was written under.
    async fn track(&self, id: &str, key: Key, patch: Patch) -> Result<Option<Key>, Refused> {
        let event = Event::Connect {
            conn: self.conn,
            key: key.clone(),
            patch,
        };
        match self.state.sender.try_push_acked(event) {
            Ok(applied) => {
                // A dropped ack means the engine is stopping; the hello
                // then simply lacks our own row.
                let _ = applied.await;
                Ok(Some(key))
            }
            Err(e) => {
                let close = Close::new(CloseCode::TryAgainLater, "presence queue full");
                Err(self.refuse(Some((id, unavailable(&e))), close))
            }
        }
    }

    /// Answers (when there is a request to answer), counts and closes.
    fn refuse(&self, answer: Option<(&str, ErrorShape)>, close: Close) -> Refused {
        if let Some((id, error)) = answer {
            let mut frame = Vec::with_capacity(128);
            write_response_err(&mut frame, id, &error);
            let size = frame.len();
            let _ = self.outbox.reply(Out::Text(Bytes::from(frame)), size);
        }
        self.state.metrics().handshake(Some(close.reason));
        self.outbox.close(close);
        Refused(close.reason)
    }

    /// Queues `hello-ok` and registers for broadcasts so that no broadcast
    /// newer than the hello's snapshot is missed (see `Registry::join`).
    /// The list is shown only to a connection that may read presence
    /// (§3.10); a delta client resuming from a version the log covers gets
    /// none either, and a merged delta instead.
    async fn send_hello(&self, parts: &HelloParts<'_>, session: &Admission, feed: PresenceFeed) {
        // A hello carrying the list waits for its share of the budget for
        // hellos in flight: thousands of clients joining a large list must
        // not each hold a copy of it at once. An empty hello does not wait.
        let permit = if feed == PresenceFeed::None {
            None
        } else {
            // Counted as the connection will get it: compressed with
            // permessage-deflate.
            let list = wire_len(&self.state.reader.load(), self.deflate);
            let kib = list.div_ceil(1024);
            let want = u32::try_from(kib)
                .unwrap_or(u32::MAX)
                .clamp(1, HELLO_BUDGET_KIB);
            Arc::clone(&self.state.hellos)
                .acquire_many_owned(want)
                .await
                .ok()
        };
        let config = &self.state.config;
        let policy = Policy {
            max_payload: config.max_payload,
            max_buffered_bytes: config.max_buffered_bytes,
            tick_interval_ms: u64::try_from(config.tick_interval.as_millis()).unwrap_or(u64::MAX),
        };
        let render = |list: HelloList| {
            let snapshot = self.state.reader.load_full();
            let (version, show) = match list {
                HelloList::Full => (snapshot.version(), feed != PresenceFeed::None),
                HelloList::Resumed(version) => (version, false),
            };
            let hello = Hello {
                protocol: parts.protocol,
                server_version: VERSION,
                conn_id: parts.conn_uuid,
                role: session.role.as_str(),
                scopes: &session.scopes,
                policy,
                presence_version: version,
                uptime_ms: self.state.renderer.uptime_ms(),
            };
            let now = self.state.renderer.now();
            let frame = ListFrame::render(&snapshot, now, |out, list| {
                write_hello(out, parts.id, &hello, |out| {
                    if show {
                        list(out);
                    } else {
                        out.extend_from_slice(b"[]");
                    }
                });
            });
            (version, frame)
        };
        let subscriber = Subscriber {
            outbox: self.outbox.clone(),
            feed,
            // `join` sets it to the hello's version.
            held: 0,
            deflate: self.deflate,
        };
        let registry = &self.state.registry;
        registry.join(self.conn, subscriber, parts.resume_from, permit, render);
    }
}

/// What `hello-ok` needs from the request.
struct HelloParts<'a> {
    id: &'a str,
    protocol: u32,
    conn_uuid: &'a str,
    /// `presenceSince`, for a delta client resuming.
    resume_from: Option<u64>,
}

fn policy(reason: &'static str) -> Close {
    Close::new(CloseCode::PolicyViolation, reason)
}

/// Which presence broadcasts the session gets.
fn feed(session: &Admission, params: &ConnectParams) -> PresenceFeed {
    if session.role == Role::Node || !grants_read(&session.scopes) {
        PresenceFeed::None
    } else if params.has_cap("presence.delta") {
        PresenceFeed::Delta
    } else {
        PresenceFeed::Full
    }
}

/// What of `connect` a device's signature covers besides its block.
fn signed(params: &ConnectParams) -> Signed<'_> {
    Signed {
        client_id: &params.client.id,
        role: params.role.as_str(),
        scopes: &params.scopes,
        platform: &params.client.platform,
        device_family: params.client.device_family.as_deref().unwrap_or_default(),
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
        device_id: None,
        is_node: params.role == Role::Node,
        role: params.role.as_str().to_owned(),
        scopes: scopes.to_vec(),
        ip: Some(ip.to_string()),
        conn: None,
    }
}
