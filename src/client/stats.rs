//! What a load run measures, and the [`Summary`] it reports.
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
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest latency kept exactly (10 min). Anything slower saturates here.
pub const LATENCY_MAX_US: u64 = 600_000_000;

/// Number of histogram shards. Two runtime workers need few; more only cost memory
/// (each shard holds one histogram per method, about 160 KiB each).
const SHARDS: usize = 8;

/// A request method whose replies are timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The handshake's `connect` request (request to `hello-ok`).
    Connect,
    /// A presence beacon.
    SystemEvent,
    /// A presence read.
    SystemPresence,
}

impl Method {
    const ALL: [Method; 3] = [Method::Connect, Method::SystemEvent, Method::SystemPresence];

    /// The method name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Connect => "connect",
            Method::SystemEvent => "system-event",
            Method::SystemPresence => "system-presence",
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
    const ALL: [Failure; 12] = [
        Failure::Refused,
        Failure::AddrNotAvailable,
        Failure::TooManyOpenFiles,
        Failure::Tcp,
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

fn histogram() -> Histogram<u64> {
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
        method: Method,
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
                [Method::SystemEvent, Method::SystemPresence]
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

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Samples recorded.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample.
    pub max: u64,
}

impl Latency {
    fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// One method's figures.
#[derive(Debug, Clone, Serialize)]
pub struct MethodSummary {
    /// Replies with `ok:true` (in echo mode: every reply).
    pub ok: u64,
    /// Replies with `ok:false`.
    pub errors: u64,
    /// Replies (ok and errors) per second over the window they were counted in.
    pub per_sec: f64,
    /// Round-trip latency, microseconds.
    pub latency_us: Latency,
    /// Error replies by `error.code`.
    pub errors_by_code: BTreeMap<String, u64>,
}

/// Resident memory of one process, before and after the fleet connected.
#[derive(Debug, Clone, Serialize)]
pub struct RssSummary {
    /// The process measured.
    pub pid: u32,
    /// `VmRSS` before the first connection, KiB.
    pub start_kib: u64,
    /// `VmRSS` at the end of the steady phase, before disconnecting, KiB.
    pub end_kib: u64,
    /// `(end - start) / connections held`, bytes.
    pub bytes_per_connection: Option<u64>,
}

impl RssSummary {
    /// Builds the figures for `pid` from two `VmRSS` readings.
    pub fn new(pid: u32, start_kib: u64, end_kib: u64, held: u64) -> Self {
        let bytes_per_connection =
            (held > 0).then(|| end_kib.saturating_sub(start_kib) * 1024 / held);
        RssSummary {
            pid,
            start_kib,
            end_kib,
            bytes_per_connection,
        }
    }
}

/// Reads `VmRSS` (KiB) from `/proc/PID/status`, or this process's with `None`.
pub fn read_vm_rss_kib(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The ramp: opening every client's first connection.
#[derive(Debug, Clone, Serialize)]
pub struct RampSummary {
    /// Wall time from the first connect to the last first attempt finishing.
    pub secs: f64,
    /// First attempts that completed the handshake.
    pub connected: u64,
    /// First attempts that failed.
    pub failed: u64,
    /// `connected / secs`.
    pub handshakes_per_sec: f64,
}

/// What a run was asked to do and how it ended: the configuration and
/// clock side of a [`Summary`].
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// `rollcall` (the gateway protocol) or `echo` (raw frames).
    pub protocol: &'static str,
    /// The URL the fleet connected to.
    pub url: String,
    /// The run's id; client instance ids are `load-RUN-N`.
    pub run_id: String,
    /// Beacon clients asked for.
    pub clients: u32,
    /// Reader clients asked for.
    pub readers: u32,
    /// Requests each beacon client keeps in flight (closed loop), if set.
    pub in_flight: Option<u32>,
    /// Beacon period per client in the open loop, milliseconds, if used.
    pub beacon_interval_ms: Option<u64>,
    /// Bytes of one beacon frame's JSON text.
    pub beacon_frame_bytes: usize,
    /// Loopback source addresses the sockets were spread over.
    pub source_ips: u32,
    /// Length of the steady phase actually run, seconds.
    pub duration_secs: f64,
    /// Connections open at the end of the steady phase.
    pub held_at_end: u64,
    /// The server's memory, when `--rss-pid` was given.
    pub server_rss: Option<RssSummary>,
    /// The load generator's own memory.
    pub client_rss: Option<RssSummary>,
    /// Why the steady phase ended: `duration`, `max-errors` or `interrupted`.
    pub stopped_by: &'static str,
}

/// Everything a load run reports. Serializes to the `--json` output (the
/// [`RunInfo`] fields at the top level).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The run's configuration and outcome.
    #[serde(flatten)]
    pub run: RunInfo,
    /// The ramp.
    pub ramp: RampSummary,
    /// TCP connect to ready (after `hello-ok`; after the `101` in echo mode), microseconds.
    pub handshake_latency_us: Latency,
    /// Disconnect-and-reconnect cycles completed during the steady phase.
    pub reconnects: u64,
    /// `reconnects / duration_secs`.
    pub reconnects_per_sec: f64,
    /// Figures per method. `connect` covers the whole run; the others the steady phase.
    pub methods: BTreeMap<&'static str, MethodSummary>,
    /// Error replies of every method, by `error.code`.
    pub errors_by_code: BTreeMap<String, u64>,
    /// Connection failures by cause (only causes that occurred).
    pub connection_failures: BTreeMap<&'static str, u64>,
    /// Requests sent and not yet answered when the run stopped (in a closed
    /// loop, about `clients x in-flight` by design).
    pub in_flight_at_stop: u64,
    /// Open-loop beacons skipped because the client's backlog was full.
    pub skipped_beacons: u64,
    /// Replies whose id matched no request in flight.
    pub unmatched_replies: u64,
}

/// The parts of a summary that come from the run's configuration and clock.
pub(crate) struct SummaryFrame {
    pub run: RunInfo,
    pub ramp_secs: f64,
    /// Seconds the `connect` figures were counted over (the whole run).
    pub run_secs: f64,
}

impl Stats {
    /// Builds the summary from what was recorded and the run's frame.
    pub(crate) fn summarize(&self, f: SummaryFrame) -> Summary {
        let all = self.merged();
        let mut methods = BTreeMap::new();
        let mut errors_by_code = BTreeMap::new();
        for m in Method::ALL {
            let i = m.index();
            let errors: u64 = all.errors[i].values().sum();
            let total = all.ok[i] + errors;
            if total == 0 {
                continue;
            }
            let secs = if m == Method::Connect {
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
        let connection_failures = Failure::ALL
            .iter()
            .map(|c| {
                (
                    c.as_str(),
                    self.failures[*c as usize].load(Ordering::Relaxed),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        let connected = self.first_connected.load(Ordering::Relaxed);
        let attempts = self.first_attempts.load(Ordering::Relaxed);
        let reconnects = self.reconnects.load(Ordering::Relaxed);
        let duration_secs = f.run.duration_secs;
        Summary {
            ramp: RampSummary {
                secs: f.ramp_secs,
                connected,
                failed: attempts.saturating_sub(connected),
                handshakes_per_sec: rate(connected, f.ramp_secs),
            },
            handshake_latency_us: Latency::from_histogram(&all.handshake),
            reconnects,
            reconnects_per_sec: rate(reconnects, duration_secs),
            methods,
            errors_by_code,
            connection_failures,
            in_flight_at_stop: self.unanswered.load(Ordering::Relaxed),
            skipped_beacons: self.skipped.load(Ordering::Relaxed),
            unmatched_replies: self.unmatched.load(Ordering::Relaxed),
            run: f.run,
        }
    }
}

fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

fn fmt_latency(f: &mut fmt::Formatter<'_>, name: &str, l: &Latency) -> fmt::Result {
    writeln!(
        f,
        "  {name:<16} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
        l.count,
        us(l.p50),
        us(l.p90),
        us(l.p99),
        us(l.p999),
        us(l.max)
    )
}

/// Formats microseconds with a unit that keeps three digits or so.
fn us(v: u64) -> String {
    if v < 1_000 {
        format!("{v}us")
    } else if v < 1_000_000 {
        format!("{:.2}ms", v as f64 / 1e3)
    } else {
        format!("{:.2}s", v as f64 / 1e6)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "rollcall load: {} protocol, {} (run {})",
            self.run.protocol, self.run.url, self.run.run_id
        )?;
        let load = match (self.run.in_flight, self.run.beacon_interval_ms) {
            (Some(w), _) => format!("{w} requests in flight each"),
            (None, Some(ms)) => format!("a beacon every {ms} ms each"),
            (None, None) => "no beacons".to_owned(),
        };
        writeln!(
            f,
            "  fleet: {} clients ({load}), {} readers, {}-byte beacon frames, {} source ip(s)",
            self.run.clients, self.run.readers, self.run.beacon_frame_bytes, self.run.source_ips
        )?;
        writeln!(
            f,
            "  ramp: {} connected, {} failed in {:.2}s ({:.0} handshakes/s)",
            self.ramp.connected, self.ramp.failed, self.ramp.secs, self.ramp.handshakes_per_sec
        )?;
        writeln!(
            f,
            "  steady: {:.2}s, stopped by {}, {} connections held at the end",
            self.run.duration_secs, self.run.stopped_by, self.run.held_at_end
        )?;
        if self.reconnects > 0 {
            writeln!(
                f,
                "  churn: {} reconnects ({:.0}/s)",
                self.reconnects, self.reconnects_per_sec
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "  {:<16} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12} {:>8}",
            "latency", "count", "p50", "p90", "p99", "p99.9", "max", "rate/s", "errors"
        )?;
        fmt_latency(f, "handshake", &self.handshake_latency_us)?;
        for (name, m) in &self.methods {
            let l = &m.latency_us;
            writeln!(
                f,
                "  {name:<16} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12.0} {:>8}",
                l.count,
                us(l.p50),
                us(l.p90),
                us(l.p99),
                us(l.p999),
                us(l.max),
                m.per_sec,
                m.errors
            )?;
        }
        if !self.errors_by_code.is_empty() {
            writeln!(f)?;
            writeln!(f, "  error replies by code:")?;
            for (code, n) in &self.errors_by_code {
                writeln!(f, "    {code:<24} {n}")?;
            }
        }
        if !self.connection_failures.is_empty() {
            writeln!(f)?;
            writeln!(f, "  connection failures by cause:")?;
            for (cause, n) in &self.connection_failures {
                writeln!(f, "    {cause:<24} {n}")?;
            }
            if self.connection_failures.contains_key("addr_not_available") {
                writeln!(
                    f,
                    "    (out of local ports: spread sockets with --source-ips)"
                )?;
            }
        }
        let extras = [
            ("requests in flight at stop", self.in_flight_at_stop),
            ("skipped beacons", self.skipped_beacons),
            ("unmatched replies", self.unmatched_replies),
        ];
        for (name, n) in extras {
            if n > 0 {
                writeln!(f, "  {name}: {n}")?;
            }
        }
        for (who, rss) in [
            ("server", &self.run.server_rss),
            ("client", &self.run.client_rss),
        ] {
            if let Some(r) = rss {
                let per = r
                    .bytes_per_connection
                    .map_or_else(|| "-".to_owned(), |b| format!("{b} B/connection"));
                writeln!(
                    f,
                    "  {who} rss (pid {}): {} KiB -> {} KiB, {per}",
                    r.pid, r.start_kib, r.end_kib
                )?;
            }
        }
        Ok(())
    }
}

impl Summary {
    /// Prints the human-readable table to stdout.
    pub fn print_human(&self) {
        print!("{self}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_errors_are_counted_by_code_and_still_timed() {
        let s = Stats::new();
        s.record_reply(1, Method::SystemEvent, 100, Ok(()));
        s.record_reply(9, Method::SystemEvent, 300, Err("UNAVAILABLE"));
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

    #[test]
    fn rss_per_connection_uses_the_growth() {
        let r = RssSummary::new(1, 1000, 2000, 1024);
        assert_eq!(r.bytes_per_connection, Some(1000));
        assert_eq!(RssSummary::new(1, 1, 2, 0).bytes_per_connection, None);
    }

    #[test]
    fn own_rss_is_readable() {
        assert!(read_vm_rss_kib(None).unwrap() > 0);
    }
}
