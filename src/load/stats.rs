//! What a load run measures while it runs; `Stats::summarize` turns it
//! into the [`Summary`] it reports.
//!
//! Invariants:
//! - Latencies are microseconds, recorded into HDR histograms that saturate at
//!   [`LATENCY_MAX_US`] rather than dropping a sample.
//! - Request figures (`system-event`, `system-presence`) count only while
//!   [`Stats::measuring`] is set, i.e. during the steady phase after the ramp.
//!   Handshakes and `connect` replies count for the whole run.
//! - Recording takes one uncontended lock: shards are picked by client index,
//!   so a client always hits the same shard and two runtime workers rarely meet.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hdrhistogram::Histogram;

use super::summary::{Latency, MethodSummary, RampSummary, Summary, SummaryFrame, rate};

/// Largest latency kept exactly (10 min). Anything slower saturates here.
pub const LATENCY_MAX_US: u64 = 600_000_000;

/// Number of histogram shards. Two runtime workers need few; more only cost memory
/// (each shard holds one histogram per method, about 160 KiB each).
pub(super) const SHARDS: usize = 8;

/// A request method whose replies are timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimedMethod {
    /// The handshake's `connect` request (request to `hello-ok`).
    Connect,
    /// A presence beacon.
    SystemEvent,
    /// A presence read.
    SystemPresence,
}

impl TimedMethod {
    const ALL: [TimedMethod; 3] = [
        TimedMethod::Connect,
        TimedMethod::SystemEvent,
        TimedMethod::SystemPresence,
    ];

    /// The method name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            TimedMethod::Connect => "connect",
            TimedMethod::SystemEvent => "system-event",
            TimedMethod::SystemPresence => "system-presence",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a connection failed to open, or ended before the run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// TCP connect refused: nothing listens, or the accept backlog is full.
    Refused,
    /// No local port or address left (`EADDRNOTAVAIL`): use more `--source-ips`.
    AddrNotAvailable,
    /// The process ran out of file descriptors (`EMFILE`/`ENFILE`).
    TooManyOpenFiles,
    /// Another TCP-level error while connecting.
    Tcp,
    /// The TLS handshake failed (`wss://`): untrusted certificate, or a
    /// port without TLS.
    Tls,
    /// The server answered the upgrade with a status other than 101.
    UpgradeRejected,
    /// The upgrade failed for another reason (I/O, headers, early close).
    UpgradeFailed,
    /// TCP connect, upgrade, challenge and `connect` did not finish in time.
    HandshakeTimeout,
    /// The server closed the socket during the handshake.
    ClosedInHandshake,
    /// The server answered `connect` with `ok:false`.
    ConnectRejected,
    /// The server broke the protocol (bad JSON, binary frame, wrong reply).
    Protocol,
    /// An established connection was closed by the server.
    ClosedByServer,
    /// An established connection failed with an I/O error.
    Io,
}

impl Failure {
    const ALL: [Failure; 13] = [
        Failure::Refused,
        Failure::AddrNotAvailable,
        Failure::TooManyOpenFiles,
        Failure::Tcp,
        Failure::Tls,
        Failure::UpgradeRejected,
        Failure::UpgradeFailed,
        Failure::HandshakeTimeout,
        Failure::ClosedInHandshake,
        Failure::ConnectRejected,
        Failure::Protocol,
        Failure::ClosedByServer,
        Failure::Io,
    ];

    /// The key used in the summary.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Refused => "refused",
            Failure::AddrNotAvailable => "addr_not_available",
            Failure::TooManyOpenFiles => "too_many_open_files",
            Failure::Tcp => "tcp",
            Failure::Tls => "tls",
            Failure::UpgradeRejected => "upgrade_rejected",
            Failure::UpgradeFailed => "upgrade_failed",
            Failure::HandshakeTimeout => "handshake_timeout",
            Failure::ClosedInHandshake => "closed_in_handshake",
            Failure::ConnectRejected => "connect_rejected",
            Failure::Protocol => "protocol",
            Failure::ClosedByServer => "closed_by_server",
            Failure::Io => "io",
        }
    }
}

struct Shard {
    handshake: Histogram<u64>,
    latency: [Histogram<u64>; 3],
    ok: [u64; 3],
    errors: [BTreeMap<String, u64>; 3],
}

pub(super) fn histogram() -> Histogram<u64> {
    // 3 significant figures over 1 us ..= 10 min: the bounds are valid constants.
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid histogram bounds")
}

impl Shard {
    fn new() -> Self {
        Shard {
            handshake: histogram(),
            latency: [histogram(), histogram(), histogram()],
            ok: [0; 3],
            errors: Default::default(),
        }
    }
}

/// Counters and histograms shared by every simulated client of one run.
pub struct Stats {
    shards: Box<[Mutex<Shard>]>,
    failures: [AtomicU64; Failure::ALL.len()],
    /// Set during the steady phase. Only a boundary for request figures: Relaxed
    /// everywhere, since a sample landing a microsecond either side is harmless.
    pub measuring: AtomicBool,
    /// Connections that completed the handshake and are still open.
    pub held: AtomicU64,
    /// Clients whose first connection attempt finished, either way.
    pub first_attempts: AtomicU64,
    /// Clients whose first connection attempt succeeded.
    pub first_connected: AtomicU64,
    /// Handshakes completed by churn (disconnect and reconnect) while measuring.
    pub reconnects: AtomicU64,
    /// Requests still waiting for a reply when their connection stopped.
    pub unanswered: AtomicU64,
    /// Beacons not sent because too many were already waiting for a reply.
    pub skipped: AtomicU64,
    /// Replies whose id matched no request in flight.
    pub unmatched: AtomicU64,
}

/// Locks a shard. A panic while holding the lock can only leave counts half
/// updated, which a statistics table tolerates, so poisoning is ignored.
fn lock(m: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Empty statistics.
    pub fn new() -> Self {
        Stats {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::new())).collect(),
            failures: Default::default(),
            measuring: AtomicBool::new(false),
            held: AtomicU64::new(0),
            first_attempts: AtomicU64::new(0),
            first_connected: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            unanswered: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            unmatched: AtomicU64::new(0),
        }
    }

    fn shard(&self, client: u32) -> &Mutex<Shard> {
        &self.shards[client as usize % SHARDS]
    }

    /// Whether request figures are being recorded (the steady phase).
    pub fn is_measuring(&self) -> bool {
        self.measuring.load(Ordering::Relaxed)
    }

    /// Records a completed handshake (TCP connect to ready) for `client`.
    pub fn record_handshake(&self, client: u32, micros: u64) {
        lock(self.shard(client))
            .handshake
            .saturating_record(micros.max(1));
    }

    /// Records one reply: `Ok(())` for `ok:true`, `Err(code)` otherwise.
    /// Latency is recorded for both: an error is still a round trip.
    pub fn record_reply(
        &self,
        client: u32,
        method: TimedMethod,
        micros: u64,
        outcome: Result<(), &str>,
    ) {
        let mut shard = lock(self.shard(client));
        let i = method.index();
        shard.latency[i].saturating_record(micros.max(1));
        match outcome {
            Ok(()) => shard.ok[i] += 1,
            Err(code) => {
                if let Some(n) = shard.errors[i].get_mut(code) {
                    *n += 1;
                } else {
                    shard.errors[i].insert(code.to_owned(), 1);
                }
            }
        }
    }

    /// Counts a connection failure.
    pub fn fail(&self, cause: Failure) {
        // Relaxed: a plain counter, read only for reporting.
        self.failures[cause as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Replies recorded so far (ok and errors) for the request methods.
    pub fn replies(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| {
                let s = lock(s);
                [TimedMethod::SystemEvent, TimedMethod::SystemPresence]
                    .iter()
                    .map(|m| s.ok[m.index()] + s.errors[m.index()].values().sum::<u64>())
                    .sum::<u64>()
            })
            .sum()
    }

    /// Errors so far: error replies of every method plus connection failures.
    pub fn errors(&self) -> u64 {
        let replies: u64 = self
            .shards
            .iter()
            .map(|s| lock(s).errors.iter().flat_map(|m| m.values()).sum::<u64>())
            .sum();
        replies + self.failure_count()
    }

    /// Connection failures so far, all causes.
    pub fn failure_count(&self) -> u64 {
        self.failures
            .iter()
            .map(|f| f.load(Ordering::Relaxed))
            .sum()
    }

    fn merged(&self) -> Shard {
        let mut all = Shard::new();
        for s in self.shards.iter() {
            let s = lock(s);
            // Same bounds on both sides, so adding cannot fail.
            all.handshake
                .add(&s.handshake)
                .expect("same histogram bounds");
            for i in 0..3 {
                all.latency[i]
                    .add(&s.latency[i])
                    .expect("same histogram bounds");
                all.ok[i] += s.ok[i];
                for (code, n) in &s.errors[i] {
                    *all.errors[i].entry(code.clone()).or_default() += n;
                }
            }
        }
        all
    }
}

impl Stats {
    /// Builds the summary from what was recorded and the run's frame.
    pub(crate) fn summarize(&self, f: SummaryFrame) -> Summary {
        let all = self.merged();
        let (methods, errors_by_code) = method_summaries(&all, &f);
        let connected = self.first_connected.load(Ordering::Relaxed);
        let attempts = self.first_attempts.load(Ordering::Relaxed);
        let reconnects = self.reconnects.load(Ordering::Relaxed);
        Summary {
            ramp: RampSummary {
                secs: f.ramp_secs,
                connected,
                failed: attempts.saturating_sub(connected),
                handshakes_per_sec: rate(connected, f.ramp_secs),
            },
            handshake_latency_us: Latency::from_histogram(&all.handshake),
            reconnects,
            reconnects_per_sec: rate(reconnects, f.run.duration_secs),
            methods,
            errors_by_code,
            connection_failures: self.failures_by_cause(),
            in_flight_at_stop: self.unanswered.load(Ordering::Relaxed),
            skipped_beacons: self.skipped.load(Ordering::Relaxed),
            unmatched_replies: self.unmatched.load(Ordering::Relaxed),
            watchers: None,
            run: f.run,
        }
    }

    /// Connection failures by cause, only causes that occurred.
    fn failures_by_cause(&self) -> BTreeMap<&'static str, u64> {
        Failure::ALL
            .iter()
            .map(|c| {
                (
                    c.as_str(),
                    self.failures[*c as usize].load(Ordering::Relaxed),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// Per-method figures of the methods that got replies, and every method's
/// error replies by code.
type MethodFigures = (BTreeMap<&'static str, MethodSummary>, BTreeMap<String, u64>);

fn method_summaries(all: &Shard, f: &SummaryFrame) -> MethodFigures {
    let mut methods = BTreeMap::new();
    let mut errors_by_code = BTreeMap::new();
    for m in TimedMethod::ALL {
        let i = m.index();
        let errors: u64 = all.errors[i].values().sum();
        let total = all.ok[i] + errors;
        if total == 0 {
            continue;
        }
        let secs = if m == TimedMethod::Connect {
            f.run_secs
        } else {
            f.run.duration_secs
        };
        for (code, n) in &all.errors[i] {
            *errors_by_code.entry(code.clone()).or_default() += n;
        }
        methods.insert(
            m.as_str(),
            MethodSummary {
                ok: all.ok[i],
                errors,
                per_sec: rate(total, secs),
                latency_us: Latency::from_histogram(&all.latency[i]),
                errors_by_code: all.errors[i].clone(),
            },
        );
    }
    (methods, errors_by_code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::summary::RunInfo;

    #[test]
    fn reply_errors_are_counted_by_code_and_still_timed() {
        let s = Stats::new();
        s.record_reply(1, TimedMethod::SystemEvent, 100, Ok(()));
        s.record_reply(9, TimedMethod::SystemEvent, 300, Err("UNAVAILABLE"));
        s.fail(Failure::Refused);
        assert_eq!(s.replies(), 2);
        assert_eq!(s.errors(), 2);
        let sum = s.summarize(SummaryFrame {
            run: RunInfo {
                protocol: "rollcall",
                url: "ws://127.0.0.1:1/".into(),
                run_id: "r".into(),
                clients: 2,
                readers: 0,
                in_flight: Some(1),
                beacon_interval_ms: None,
                beacon_frame_bytes: 10,
                source_ips: 1,
                duration_secs: 2.0,
                held_at_end: 2,
                server_rss: None,
                client_rss: None,
                stopped_by: "duration",
            },
            ramp_secs: 1.0,
            run_secs: 3.0,
        });
        let m = &sum.methods["system-event"];
        assert_eq!((m.ok, m.errors, m.latency_us.count), (1, 1, 2));
        assert_eq!(m.per_sec, 1.0);
        assert_eq!(sum.errors_by_code["UNAVAILABLE"], 1);
        assert_eq!(sum.connection_failures["refused"], 1);
        assert!(sum.to_string().contains("system-event"));
    }
}
