//! One simulated client: connect, handshake, send requests, time the replies,
//! and reconnect when churn asks. One tokio task per client, nothing more.
//!
//! Invariants:
//! - A pending `read_frame` is never cancelled while the connection is in use:
//!   it is pinned outside the `select!` and only dropped once it yields a frame,
//!   or when the connection is being closed, after which the reader only waits
//!   for EOF. (fastwebsockets' reader is not cancel-safe: a frame header half
//!   consumed would be lost.)
//! - Writes go through the write half only, so they never wait on a read.
//! - Per-connection state is the split socket, fastwebsockets' read buffer, and a
//!   queue of `(id, sent_at)` for the requests in flight. Nothing else is kept
//!   between frames; the handshake's buffers (hyper's, and the one that held
//!   `hello-ok`) are gone once requests start.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::future::pending;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fastwebsockets::{Frame, OpCode, Payload, WebSocketError};
use serde::Deserialize;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::requests::{Kind, Requests};
use super::stats::{Failure, Method, Stats};
use super::ws::{self, ConnectError, Message, Opening, Target, WsConn};

/// Most open-loop beacons one client leaves unanswered before it skips sends.
/// Keeps a stalled server from growing every client's queue without bound.
const MAX_OPEN_LOOP_BACKLOG: usize = 64;

/// How long a client waits for the server to finish a close it started.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Which wire protocol the fleet speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The OpenClaw gateway protocol: challenge, `connect`, replies matched by id.
    Rollcall,
    /// Raw frames against an echo server: no handshake beyond the upgrade, and
    /// each text frame back answers the oldest request in flight.
    Echo,
}

/// Everything the clients of one run share.
pub struct Fleet {
    /// Where to connect.
    pub target: Target,
    /// Which protocol to speak.
    pub protocol: Protocol,
    /// The frames to send.
    pub requests: Requests,
    /// Requests each beacon client keeps in flight; `None` means the open loop.
    pub in_flight: Option<u32>,
    /// Beacon period in the open loop.
    pub beacon_interval: Duration,
    /// Requests each reader keeps in flight.
    pub reader_in_flight: u32,
    /// Bound on connect + upgrade + challenge + `connect` reply.
    pub handshake_timeout: Duration,
    /// Local addresses to bind before connecting, used round-robin; empty: no bind.
    pub source_ips: Vec<IpAddr>,
    /// One wake-up per beacon client for churn; empty when churn is off.
    pub churn: Box<[Notify]>,
    /// Where every figure goes.
    pub stats: Stats,
}

impl Fleet {
    fn source_ip(&self, client: u32) -> Option<IpAddr> {
        if self.source_ips.is_empty() {
            None
        } else {
            Some(self.source_ips[client as usize % self.source_ips.len()])
        }
    }

    fn frame(&self, kind: Kind, client: u32, id: u64) -> Vec<u8> {
        match kind {
            Kind::Beacon => self.requests.beacon(client, id),
            Kind::Reader => self.requests.presence(id),
        }
    }

    /// Requests kept in flight, or `None` for the timed open loop.
    fn window(&self, kind: Kind) -> Option<u32> {
        match kind {
            Kind::Beacon => self.in_flight,
            Kind::Reader => Some(self.reader_in_flight),
        }
    }
}

/// How a connection ended.
enum End {
    /// The run is over.
    Stop,
    /// Churn asked for a disconnect and reconnect.
    Churn,
    /// The connection broke.
    Lost(Failure),
}

/// The fields of an incoming frame that a load client looks at. Everything else
/// (payloads, snapshots) is skipped by the parser without being built.
#[derive(Deserialize)]
struct Inbound<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    ok: Option<bool>,
    #[serde(default, borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    error: Option<InboundError<'a>>,
}

#[derive(Deserialize)]
struct InboundError<'a> {
    #[serde(default, borrow)]
    code: Option<Cow<'a, str>>,
}

impl Inbound<'_> {
    fn error_code(&self) -> &str {
        self.error
            .as_ref()
            .and_then(|e| e.code.as_deref())
            .unwrap_or("UNKNOWN")
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Runs client `client` until `stop` fires or its connection is lost for good.
/// The first connection attempt counts toward the ramp; later ones are churn.
pub async fn run_client(
    fleet: Arc<Fleet>,
    client: u32,
    kind: Kind,
    mut stop: watch::Receiver<bool>,
) {
    let stats = &fleet.stats;
    let mut first = true;
    loop {
        let opened = tokio::select! {
            biased;
            _ = stop.changed() => None,
            r = tokio::time::timeout(fleet.handshake_timeout, open(&fleet, client, kind)) => Some(r),
        };
        let mut conn = match opened {
            None => {
                if first {
                    stats.first_attempts.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
            Some(Err(_elapsed)) => Err(Failure::HandshakeTimeout),
            Some(Ok(r)) => r,
        };
        // Relaxed on these counters: they are read for progress and, once the
        // tasks are joined, for the summary; nothing is published through them.
        if first {
            first = false;
            stats.first_attempts.fetch_add(1, Ordering::Relaxed);
            if conn.is_ok() {
                stats.first_connected.fetch_add(1, Ordering::Relaxed);
            }
        } else if conn.is_ok() && stats.is_measuring() {
            stats.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        let end = match &mut conn {
            Ok(c) => {
                stats.held.fetch_add(1, Ordering::Relaxed);
                let end = drive(&fleet, client, kind, c, &mut stop).await;
                stats.held.fetch_sub(1, Ordering::Relaxed);
                end
            }
            Err(cause) => End::Lost(*cause),
        };
        if let (Ok(c), End::Stop | End::Churn) = (&mut conn, &end) {
            close(c).await;
        }
        match end {
            End::Stop => return,
            End::Churn => continue,
            End::Lost(cause) => {
                stats.fail(cause);
                return;
            }
        }
    }
}

/// Closes the WebSocket the way RFC 6455 asks: send a Close frame, then read
/// until the server has answered and closed TCP, bounded by [`CLOSE_WAIT`].
/// The server closing first leaves TIME_WAIT on its side, not on this
/// client's ephemeral port, which a churning fleet would otherwise run out of.
async fn close(conn: &mut WsConn) {
    let WsConn { read, write } = conn;
    if write.write_frame(Frame::close(1000, b"")).await.is_err() {
        return;
    }
    let mut sink = ws::ignore_obligation;
    // Whatever arrives before EOF (late replies, the Close answer) is dropped.
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while read.read_frame(&mut sink).await.is_ok() {}
    })
    .await;
}

/// Connects and, in the rollcall protocol, completes the handshake.
async fn open(fleet: &Fleet, client: u32, kind: Kind) -> Result<WsConn, Failure> {
    let started = Instant::now();
    let mut opening = ws::connect(&fleet.target, fleet.source_ip(client))
        .await
        .map_err(classify_connect)?;
    if fleet.protocol == Protocol::Rollcall {
        hello(fleet, client, kind, &mut opening).await?;
    }
    fleet
        .stats
        .record_handshake(client, micros(started.elapsed()));
    Ok(opening.open())
}

fn classify_connect(e: ConnectError) -> Failure {
    match e {
        ConnectError::Tcp(io) => match io.raw_os_error() {
            Some(libc::ECONNREFUSED) => Failure::Refused,
            Some(libc::EADDRNOTAVAIL) => Failure::AddrNotAvailable,
            Some(libc::EMFILE) | Some(libc::ENFILE) => Failure::TooManyOpenFiles,
            _ => Failure::Tcp,
        },
        ConnectError::UpgradeRejected(_) => Failure::UpgradeRejected,
        ConnectError::Upgrade(_) | ConnectError::Downcast => Failure::UpgradeFailed,
    }
}

fn handshake_read_failure(e: std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::InvalidData {
        Failure::Protocol
    } else {
        Failure::ClosedInHandshake
    }
}

/// Waits for `connect.challenge`, sends `connect`, waits for its reply.
async fn hello(fleet: &Fleet, client: u32, kind: Kind, conn: &mut Opening) -> Result<(), Failure> {
    let mut challenged = false;
    let mut sent_at = Instant::now();
    loop {
        let text = match conn.read_message().await.map_err(handshake_read_failure)? {
            Message::Text(text) => text,
            Message::Ping(payload) => {
                conn.write
                    .write_frame(Frame::pong(Payload::Owned(payload)))
                    .await
                    .map_err(|_| Failure::ClosedInHandshake)?;
                continue;
            }
            Message::Close => return Err(Failure::ClosedInHandshake),
            Message::Other => continue,
        };
        let msg: Inbound = serde_json::from_slice(&text).map_err(|_| Failure::Protocol)?;
        if !challenged {
            if msg.kind == "event" && msg.event.as_deref() == Some("connect.challenge") {
                challenged = true;
                let req = fleet.requests.connect(client, kind);
                sent_at = Instant::now();
                conn.write
                    .write_frame(Frame::text(Payload::Owned(req)))
                    .await
                    .map_err(|_| Failure::ClosedInHandshake)?;
            }
            continue;
        }
        if msg.kind != "res" || msg.id.as_deref() != Some("connect") {
            continue;
        }
        let latency = micros(sent_at.elapsed());
        return if msg.ok == Some(true) {
            fleet
                .stats
                .record_reply(client, Method::Connect, latency, Ok(()));
            Ok(())
        } else {
            let code = msg.error_code();
            fleet
                .stats
                .record_reply(client, Method::Connect, latency, Err(code));
            Err(Failure::ConnectRejected)
        };
    }
}

/// What the read loop woke up for.
enum Wake<'a> {
    Stop,
    Churn,
    Frame(Result<Frame<'a>, WebSocketError>),
    WriteFailed,
}

async fn churn_wait(fleet: &Fleet, client: u32) {
    match (fleet.churn.get(client as usize), fleet.churn.is_empty()) {
        (Some(n), false) => n.notified().await,
        _ => pending().await,
    }
}

/// Spreads the first open-loop beacon of each client over one interval, so a
/// fleet that connected in a burst does not beacon in a burst.
fn first_beacon_delay(interval: Duration, client: u32) -> Duration {
    // Fibonacci hashing: consecutive clients land far apart in [0, 1).
    let frac = (client as u64).wrapping_mul(0x9E37_79B9) as u32 as f64 / (u32::MAX as f64 + 1.0);
    interval.mul_f64(frac)
}

fn read_failure(e: &WebSocketError) -> Failure {
    match e {
        WebSocketError::UnexpectedEOF | WebSocketError::ConnectionClosed => Failure::ClosedByServer,
        WebSocketError::IoError(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ) =>
        {
            Failure::ClosedByServer
        }
        WebSocketError::IoError(_) => Failure::Io,
        _ => Failure::Protocol,
    }
}

/// The requests a connection has sent and not yet seen answered.
struct InFlight {
    queue: VecDeque<(u64, Instant)>,
    next_id: u64,
}

impl InFlight {
    /// Removes request `id` and returns when it was sent.
    fn take(&mut self, id: u64) -> Option<Instant> {
        // Replies usually come in order, so the front is nearly always it.
        let at = self.queue.iter().position(|(i, _)| *i == id)?;
        self.queue.remove(at).map(|(_, t)| t)
    }
}

async fn send(
    fleet: &Fleet,
    client: u32,
    kind: Kind,
    write: &mut fastwebsockets::WebSocketWrite<tokio::net::tcp::OwnedWriteHalf>,
    inflight: &mut InFlight,
) -> Result<(), WebSocketError> {
    let id = inflight.next_id;
    inflight.next_id += 1;
    let frame = fleet.frame(kind, client, id);
    inflight.queue.push_back((id, Instant::now()));
    write.write_frame(Frame::text(Payload::Owned(frame))).await
}

/// Sends and times requests on an open connection until stop, churn or loss.
async fn drive(
    fleet: &Fleet,
    client: u32,
    kind: Kind,
    conn: &mut WsConn,
    stop: &mut watch::Receiver<bool>,
) -> End {
    let stats = &fleet.stats;
    let method = match kind {
        Kind::Beacon => Method::SystemEvent,
        Kind::Reader => Method::SystemPresence,
    };
    let window = fleet.window(kind);
    let open_loop = window.is_none();
    let WsConn { read, write } = conn;
    let mut inflight = InFlight {
        queue: VecDeque::new(),
        next_id: 1,
    };
    // A message split over several frames, being reassembled.
    let mut partial: Option<Vec<u8>> = None;

    for _ in 0..window.unwrap_or(0) {
        if let Err(e) = send(fleet, client, kind, write, &mut inflight).await {
            return End::Lost(read_failure(&e));
        }
    }
    let interval = fleet.beacon_interval;
    let mut sink = ws::ignore_obligation;
    let beacon = tokio::time::sleep(first_beacon_delay(interval, client));
    tokio::pin!(beacon);

    loop {
        let wake = {
            let next = read.read_frame(&mut sink);
            tokio::pin!(next);
            loop {
                tokio::select! {
                    biased;
                    _ = stop.changed() => break Wake::Stop,
                    () = churn_wait(fleet, client), if kind == Kind::Beacon => break Wake::Churn,
                    r = &mut next => break Wake::Frame(r),
                    () = &mut beacon, if open_loop => {
                        let due = beacon.deadline() + interval;
                        beacon.as_mut().reset(due);
                        if inflight.queue.len() >= MAX_OPEN_LOOP_BACKLOG {
                            stats.skipped.fetch_add(1, Ordering::Relaxed);
                        } else if send(fleet, client, kind, write, &mut inflight).await.is_err() {
                            break Wake::WriteFailed;
                        }
                    }
                }
            }
        };
        let frame = match wake {
            Wake::Stop => {
                let n = inflight.queue.len() as u64;
                stats.unanswered.fetch_add(n, Ordering::Relaxed);
                return End::Stop;
            }
            Wake::Churn => return End::Churn,
            Wake::WriteFailed => return End::Lost(Failure::ClosedByServer),
            Wake::Frame(Err(e)) => return End::Lost(read_failure(&e)),
            Wake::Frame(Ok(frame)) => frame,
        };

        let whole: Cow<'_, [u8]> = match frame.opcode {
            OpCode::Text if frame.fin => Cow::Borrowed(&frame.payload[..]),
            OpCode::Text => {
                partial = Some(frame.payload.to_vec());
                continue;
            }
            OpCode::Continuation => match partial.as_mut() {
                Some(buf) => {
                    buf.extend_from_slice(&frame.payload);
                    if !frame.fin {
                        continue;
                    }
                    // Just checked it is Some.
                    Cow::Owned(partial.take().expect("partial message"))
                }
                None => return End::Lost(Failure::Protocol),
            },
            OpCode::Ping => {
                if write.write_frame(Frame::pong(frame.payload)).await.is_err() {
                    return End::Lost(Failure::ClosedByServer);
                }
                continue;
            }
            OpCode::Pong => continue,
            OpCode::Close => return End::Lost(Failure::ClosedByServer),
            OpCode::Binary => {
                if fleet.protocol == Protocol::Rollcall {
                    return End::Lost(Failure::Protocol);
                }
                Cow::Borrowed(&frame.payload[..])
            }
        };

        let answered = match fleet.protocol {
            Protocol::Echo => inflight
                .queue
                .pop_front()
                .map(|(_, sent)| (sent, Ok::<(), String>(()))),
            Protocol::Rollcall => {
                let Ok(msg) = serde_json::from_slice::<Inbound>(&whole) else {
                    return End::Lost(Failure::Protocol);
                };
                if msg.kind != "res" {
                    // Events (tick, presence) are not replies.
                    continue;
                }
                let id = msg.id.as_deref().and_then(|s| s.parse::<u64>().ok());
                id.and_then(|id| inflight.take(id)).map(|sent| {
                    let outcome = if msg.ok == Some(true) {
                        Ok(())
                    } else {
                        Err(msg.error_code().to_owned())
                    };
                    (sent, outcome)
                })
            }
        };
        let Some((sent, outcome)) = answered else {
            stats.unmatched.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if stats.is_measuring() {
            let latency = micros(sent.elapsed());
            stats.record_reply(
                client,
                method,
                latency,
                outcome.as_ref().map(|_| ()).map_err(String::as_str),
            );
        }
        if !open_loop
            && send(fleet, client, kind, write, &mut inflight)
                .await
                .is_err()
        {
            return End::Lost(Failure::ClosedByServer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_beacons_spread_over_the_interval() {
        let i = Duration::from_secs(10);
        let d: Vec<_> = (0..4).map(|c| first_beacon_delay(i, c)).collect();
        assert!(d.iter().all(|d| *d < i));
        assert_ne!(d[1], d[2]);
    }

    #[test]
    fn inbound_skips_payload_and_reads_error_code() {
        let msg: Inbound = serde_json::from_slice(
            br#"{"type":"res","id":"9","ok":false,"payload":[{"a":1}],"error":{"code":"FORBIDDEN","message":"m"}}"#,
        )
        .unwrap();
        assert_eq!(msg.kind, "res");
        assert_eq!(msg.id.as_deref(), Some("9"));
        assert_eq!(msg.error_code(), "FORBIDDEN");
    }

    #[test]
    fn in_flight_take_finds_out_of_order_replies() {
        let now = Instant::now();
        let mut f = InFlight {
            queue: [(1, now), (2, now), (3, now)].into(),
            next_id: 4,
        };
        assert!(f.take(2).is_some());
        assert!(f.take(2).is_none());
        assert_eq!(f.queue.len(), 2);
    }
}
