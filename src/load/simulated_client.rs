//! One simulated client: connect, handshake, send requests, time the replies,
//! and reconnect when churn asks. One tokio task per client, nothing more.
//!
//! Invariants:
//! - Reads go through [`FrameReader::read_message`](crate::frame_reader::FrameReader::read_message),
//!   which is cancel safe, so the read may lose a `select!` to a stop, churn or
//!   beacon timer without losing a byte.
//! - Writes go through the write half only, so they never wait on a read.
//! - Per-connection state is the split socket, the reader's small buffer, and a
//!   queue of `(id, sent_at)` for the requests in flight. Nothing else is kept
//!   between messages; the `hello-ok` is dropped once the handshake is done.

use std::collections::VecDeque;
use std::future::pending;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fastwebsockets::{Frame, Payload, WebSocketError, WebSocketWrite};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use super::fleet::{Protocol, SimulatedFleet};
use super::requests::Kind;
use super::source_ips::socket_from;
use super::stats::{Failure, Stats, TimedMethod};
use crate::client::{
    DialError, Envelope, HandshakeError, HelloReply, StreamWrite, WsConn, connect_from, hello,
};
use crate::frame_reader::{Message, ReadError};
use crate::protocol::MessageError;

/// Most open-loop beacons one client leaves unanswered before it skips sends.
/// Keeps a stalled server from growing every client's queue without bound.
const MAX_OPEN_LOOP_BACKLOG: usize = 64;

/// How long a client waits for the server to finish a close it started.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// How a connection ended.
enum End {
    /// The run is over.
    Stop,
    /// Churn asked for a disconnect and reconnect.
    Churn,
    /// The connection broke.
    Lost(Failure),
}

pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Runs client `client` until `stop` fires or its connection is lost for good.
/// The first connection attempt counts toward the ramp; later ones are churn.
pub async fn run_client(
    fleet: Arc<SimulatedFleet>,
    client: u32,
    kind: Kind,
    mut stop: watch::Receiver<bool>,
) {
    let stats = &fleet.stats;
    let mut first = true;
    loop {
        let Some(mut conn) = attempt(&fleet, client, kind, &mut stop).await else {
            if first {
                stats.first_attempts.fetch_add(1, Ordering::Relaxed);
            }
            return;
        };
        count_attempt(stats, std::mem::take(&mut first), conn.is_ok());
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

/// One connection attempt bounded by the handshake timeout; `None` when
/// the run stopped first.
async fn attempt(
    fleet: &SimulatedFleet,
    client: u32,
    kind: Kind,
    stop: &mut watch::Receiver<bool>,
) -> Option<Result<WsConn, Failure>> {
    tokio::select! {
        biased;
        _ = stop.changed() => None,
        r = tokio::time::timeout(fleet.handshake_timeout, open(fleet, client, kind)) => {
            Some(r.unwrap_or(Err(Failure::HandshakeTimeout)))
        }
    }
}

/// Counts a finished attempt: toward the ramp if it was the first, as a
/// reconnect if a later one succeeded while measuring.
pub(super) fn count_attempt(stats: &Stats, first: bool, connected: bool) {
    // Relaxed on these counters: they are read for progress and, once the
    // tasks are joined, for the summary; nothing is published through them.
    if first {
        stats.first_attempts.fetch_add(1, Ordering::Relaxed);
        if connected {
            stats.first_connected.fetch_add(1, Ordering::Relaxed);
        }
    } else if connected && stats.is_measuring() {
        stats.reconnects.fetch_add(1, Ordering::Relaxed);
    }
}

/// Closes the WebSocket the way RFC 6455 asks: send a Close frame, then read
/// until the server has answered and closed TCP, bounded by [`CLOSE_WAIT`].
/// The server closing first leaves TIME_WAIT on its side, not on this
/// client's ephemeral port, which a churning fleet would otherwise run out of.
pub(super) async fn close(conn: &mut WsConn) {
    let WsConn { read, write } = conn;
    if write.write_frame(Frame::close(1000, b"")).await.is_err() {
        return;
    }
    // Whatever arrives before EOF (late replies, the Close answer) is dropped.
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while read.read_message().await.is_ok() {}
    })
    .await;
}

/// Connects and, in the rollcall protocol, completes the handshake.
async fn open(fleet: &SimulatedFleet, client: u32, kind: Kind) -> Result<WsConn, Failure> {
    let started = Instant::now();
    let mut conn = dial(fleet, client).await?;
    if fleet.protocol == Protocol::Rollcall {
        handshake(
            fleet,
            client,
            &mut conn,
            fleet.requests.connect(client, kind),
        )
        .await?;
    }
    fleet
        .stats
        .record_handshake(client, micros(started.elapsed()));
    Ok(conn)
}

/// Opens a WebSocket from the source address of slot `source`.
pub(super) async fn dial(fleet: &SimulatedFleet, source: u32) -> Result<WsConn, Failure> {
    let socket = socket_from(&fleet.target, fleet.source_ip(source))
        .map_err(|e| connect_failure(DialError::Tcp(e)))?;
    connect_from(&fleet.target, socket)
        .await
        .map_err(connect_failure)
}

/// Runs the gateway handshake with `request` and records the `connect`
/// reply (as `client`'s); a refusal is [`Failure::ConnectRejected`].
pub(super) async fn handshake(
    fleet: &SimulatedFleet,
    client: u32,
    conn: &mut WsConn,
    request: Vec<u8>,
) -> Result<HelloReply, Failure> {
    let reply = hello(conn, request).await.map_err(handshake_failure)?;
    let outcome = reply.error_code.as_deref().map_or(Ok(()), Err);
    fleet
        .stats
        .record_reply(client, TimedMethod::Connect, micros(reply.latency), outcome);
    if !reply.ok {
        return Err(Failure::ConnectRejected);
    }
    Ok(reply)
}

fn connect_failure(e: DialError) -> Failure {
    match e {
        DialError::Tcp(io) => match io.raw_os_error() {
            Some(libc::ECONNREFUSED) => Failure::Refused,
            Some(libc::EADDRNOTAVAIL) => Failure::AddrNotAvailable,
            Some(libc::EMFILE) | Some(libc::ENFILE) => Failure::TooManyOpenFiles,
            _ => Failure::Tcp,
        },
        DialError::Tls(_) => Failure::Tls,
        DialError::UpgradeRejected(_) => Failure::UpgradeRejected,
        DialError::Upgrade(_) | DialError::Downcast => Failure::UpgradeFailed,
    }
}

fn handshake_failure(e: HandshakeError) -> Failure {
    match e {
        HandshakeError::Read(ReadError::Io(_))
        | HandshakeError::Write(_)
        | HandshakeError::Closed(_) => Failure::ClosedInHandshake,
        HandshakeError::Read(_) | HandshakeError::NoChallenge | HandshakeError::Json(_) => {
            Failure::Protocol
        }
    }
}

/// Why a read ended an established connection.
pub(super) fn read_failure(e: &ReadError) -> Failure {
    match e {
        e if e.is_closed() => Failure::ClosedByServer,
        ReadError::Io(_) => Failure::Io,
        ReadError::Frame(_) | ReadError::Message(_) => Failure::Protocol,
    }
}

/// Why a first send on an established connection failed.
pub(super) fn write_failure(e: &WebSocketError) -> Failure {
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

async fn churn_wait(fleet: &SimulatedFleet, client: u32) {
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

/// What the read loop woke up for.
enum Wake<'a> {
    Stop,
    Churn,
    Message(Result<Message<'a>, ReadError>),
    Beacon,
}

/// A request answered: when it was sent, and `Err(code)` for an error reply.
type Answer = (Instant, Result<(), String>);

/// One established connection's request loop.
struct Driver<'f> {
    fleet: &'f SimulatedFleet,
    client: u32,
    kind: Kind,
    inflight: InFlight,
}

/// Sends and times requests on an open connection until stop, churn or loss.
async fn drive(
    fleet: &SimulatedFleet,
    client: u32,
    kind: Kind,
    conn: &mut WsConn,
    stop: &mut watch::Receiver<bool>,
) -> End {
    let mut driver = Driver {
        fleet,
        client,
        kind,
        inflight: InFlight {
            queue: VecDeque::new(),
            next_id: 1,
        },
    };
    let Err(end) = driver.serve(conn, stop).await;
    end
}

impl Driver<'_> {
    fn open_loop(&self) -> bool {
        self.fleet.window(self.kind).is_none()
    }

    /// Fills the window, then reacts to whatever comes first until the
    /// connection ends; never returns `Ok`.
    async fn serve(
        &mut self,
        conn: &mut WsConn,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<std::convert::Infallible, End> {
        let WsConn { read, write } = conn;
        for _ in 0..self.fleet.window(self.kind).unwrap_or(0) {
            self.send(write)
                .await
                .map_err(|e| End::Lost(write_failure(&e)))?;
        }
        let interval = self.fleet.beacon_interval;
        let beacon = tokio::time::sleep(first_beacon_delay(interval, self.client));
        tokio::pin!(beacon);
        let open_loop = self.open_loop();
        loop {
            let wake = tokio::select! {
                biased;
                _ = stop.changed() => Wake::Stop,
                () = churn_wait(self.fleet, self.client), if self.kind == Kind::Beacon => Wake::Churn,
                r = read.read_message() => Wake::Message(r),
                () = &mut beacon, if open_loop => Wake::Beacon,
            };
            match wake {
                Wake::Stop => return Err(self.stop()),
                Wake::Churn => return Err(End::Churn),
                Wake::Beacon => self.beacon(write, beacon.as_mut()).await?,
                Wake::Message(m) => self.on_message(m, write).await?,
            }
        }
    }

    fn stop(&self) -> End {
        let n = self.inflight.queue.len() as u64;
        self.fleet.stats.unanswered.fetch_add(n, Ordering::Relaxed);
        End::Stop
    }

    async fn send(
        &mut self,
        write: &mut WebSocketWrite<StreamWrite>,
    ) -> Result<(), WebSocketError> {
        let id = self.inflight.next_id;
        self.inflight.next_id += 1;
        let frame = self.fleet.request(self.kind, self.client, id);
        self.inflight.queue.push_back((id, Instant::now()));
        write.write_frame(Frame::text(Payload::Owned(frame))).await
    }

    /// The open loop's timer fired: send a beacon unless too many wait.
    async fn beacon(
        &mut self,
        write: &mut WebSocketWrite<StreamWrite>,
        timer: std::pin::Pin<&mut Sleep>,
    ) -> Result<(), End> {
        let due = timer.deadline() + self.fleet.beacon_interval;
        timer.reset(due);
        if self.inflight.queue.len() >= MAX_OPEN_LOOP_BACKLOG {
            self.fleet.stats.skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        self.send(write)
            .await
            .map_err(|_| End::Lost(Failure::ClosedByServer))
    }

    async fn on_message(
        &mut self,
        message: Result<Message<'_>, ReadError>,
        write: &mut WebSocketWrite<StreamWrite>,
    ) -> Result<(), End> {
        let answer = match message {
            Ok(Message::Text(text)) => self.answer(text)?,
            // The echo baseline may answer in binary: still a reply.
            Err(ReadError::Message(MessageError::Binary))
                if self.fleet.protocol == Protocol::Echo =>
            {
                self.answer(&[])?
            }
            Err(e) => return Err(End::Lost(read_failure(&e))),
            Ok(Message::Ping(payload)) => {
                let pong = Frame::pong(Payload::Borrowed(payload));
                return write
                    .write_frame(pong)
                    .await
                    .map_err(|_| End::Lost(Failure::ClosedByServer));
            }
            Ok(Message::Pong(_)) => return Ok(()),
            Ok(Message::Close(_)) => return Err(End::Lost(Failure::ClosedByServer)),
        };
        let Some((sent, outcome)) = answer else {
            return Ok(());
        };
        self.record(sent, outcome);
        if self.open_loop() {
            return Ok(());
        }
        self.send(write)
            .await
            .map_err(|_| End::Lost(Failure::ClosedByServer))
    }

    /// The request a message answers, if any. Replies that match nothing are
    /// counted; events are skipped.
    fn answer(&mut self, text: &[u8]) -> Result<Option<Answer>, End> {
        let answer = match self.fleet.protocol {
            Protocol::Echo => self
                .inflight
                .queue
                .pop_front()
                .map(|(_, sent)| (sent, Ok(()))),
            Protocol::Rollcall => {
                let msg: Envelope =
                    serde_json::from_slice(text).map_err(|_| End::Lost(Failure::Protocol))?;
                if msg.kind != "res" {
                    // Events (tick, presence) are not replies.
                    return Ok(None);
                }
                let id = msg.id.as_deref().and_then(|s| s.parse::<u64>().ok());
                id.and_then(|id| self.inflight.take(id)).map(|sent| {
                    let outcome = if msg.is_ok() {
                        Ok(())
                    } else {
                        Err(msg.error_code().to_owned())
                    };
                    (sent, outcome)
                })
            }
        };
        if answer.is_none() {
            self.fleet.stats.unmatched.fetch_add(1, Ordering::Relaxed);
        }
        Ok(answer)
    }

    fn record(&self, sent: Instant, outcome: Result<(), String>) {
        let stats = &self.fleet.stats;
        if !stats.is_measuring() {
            return;
        }
        let method = match self.kind {
            Kind::Beacon => TimedMethod::SystemEvent,
            Kind::Reader => TimedMethod::SystemPresence,
        };
        let outcome = outcome.as_ref().map(|_| ()).map_err(String::as_str);
        stats.record_reply(self.client, method, micros(sent.elapsed()), outcome);
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
