//! What a load run reports: the [`Summary`] (serialized for `--json`) and
//! its human-readable table ([`fmt::Display`]), which the binary prints.
//!
//! Invariants: latencies are microseconds; rates are per second of the
//! window their figures were counted in (the steady phase, or the whole run
//! for `connect`).

use std::collections::BTreeMap;
use std::fmt;

use hdrhistogram::Histogram;
use serde::Serialize;

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
    /// The percentiles of `h`; all zero when it is empty.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
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

/// The watchers' figures: how many held on and converged, what it cost
/// them, and how late presence versions reached them.
#[derive(Debug, Clone, Serialize)]
pub struct WatchSummary {
    /// Watchers asked for.
    pub watchers: u64,
    /// The feed they asked for: `full` (`presence`) or `delta` (`presence.delta`).
    pub feed: &'static str,
    /// Their `client.mode` (`ui` is tracked: each watcher has a presence entry).
    pub mode: String,
    /// Watchers connected at the end of settle.
    pub held: u64,
    /// Watchers holding the final version (or a later one) at the end of settle.
    pub converged: u64,
    /// The version they were compared with.
    pub final_version: u64,
    /// Where it came from: `health` (the gateway, asked at the end of
    /// settle), or `watchers` (the highest any held, when the gateway did not answer).
    pub final_version_from: &'static str,
    /// Seconds from the other clients' stop to the comparison.
    pub settle_secs: f64,
    /// Socket open to `hello-ok`, microseconds.
    pub handshake_latency_us: Latency,
    /// Mean bytes received per watcher (every frame after the `101`).
    pub bytes_per_watcher: f64,
    /// Bytes received by all watchers.
    pub bytes_total: u64,
    /// Mean bytes of text messages per watcher after inflation (equal to
    /// the message bytes when `--deflate` is off or declined).
    pub inflated_bytes_per_watcher: f64,
    /// `presence` and `presence.delta` events received.
    pub presence_events: u64,
    /// Publication (the newest non-gateway `ts` in the event) to arrival,
    /// microseconds; whole-millisecond resolution, as `ts` has.
    pub delay_us: Latency,
    /// Events whose `seq` was not the previous one plus one (should be 0).
    pub seq_gaps: u64,
    /// Deltas whose `from` was not the version held.
    pub delta_gaps: u64,
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
    /// The watchers' figures, when the run had watchers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watchers: Option<WatchSummary>,
}

/// The parts of a summary that come from the run's configuration and clock.
pub(crate) struct SummaryFrame {
    /// The run's configuration and outcome.
    pub run: RunInfo,
    /// Seconds the ramp took.
    pub ramp_secs: f64,
    /// Seconds the `connect` figures were counted over (the whole run).
    pub run_secs: f64,
}

/// `n / secs`, 0 over an empty window.
pub(crate) fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

/// One latency row: count and percentiles, without the rate columns.
fn fmt_latency(f: &mut fmt::Formatter<'_>, name: &str, l: &Latency) -> fmt::Result {
    write!(
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

impl Summary {
    /// The run, the fleet, the ramp, the steady phase and churn.
    fn fmt_overview(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let run = &self.run;
        writeln!(
            f,
            "rollcall load: {} protocol, {} (run {})",
            run.protocol, run.url, run.run_id
        )?;
        let load = match (run.in_flight, run.beacon_interval_ms) {
            (Some(w), _) => format!("{w} requests in flight each"),
            (None, Some(ms)) => format!("a beacon every {ms} ms each"),
            (None, None) => "no beacons".to_owned(),
        };
        writeln!(
            f,
            "  fleet: {} clients ({load}), {} readers, {}-byte beacon frames, {} source ip(s)",
            run.clients, run.readers, run.beacon_frame_bytes, run.source_ips
        )?;
        writeln!(
            f,
            "  ramp: {} connected, {} failed in {:.2}s ({:.0} handshakes/s)",
            self.ramp.connected, self.ramp.failed, self.ramp.secs, self.ramp.handshakes_per_sec
        )?;
        writeln!(
            f,
            "  steady: {:.2}s, stopped by {}, {} connections held at the end",
            run.duration_secs, run.stopped_by, run.held_at_end
        )?;
        if self.reconnects > 0 {
            writeln!(
                f,
                "  churn: {} reconnects ({:.0}/s)",
                self.reconnects, self.reconnects_per_sec
            )?;
        }
        Ok(())
    }

    /// The latency table: the handshake, then one row per method.
    fn fmt_latencies(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f)?;
        writeln!(
            f,
            "  {:<16} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12} {:>8}",
            "latency", "count", "p50", "p90", "p99", "p99.9", "max", "rate/s", "errors"
        )?;
        fmt_latency(f, "handshake", &self.handshake_latency_us)?;
        writeln!(f)?;
        for (name, m) in &self.methods {
            fmt_latency(f, name, &m.latency_us)?;
            writeln!(f, " {:>12.0} {:>8}", m.per_sec, m.errors)?;
        }
        if let Some(w) = &self.watchers {
            fmt_latency(f, "watch handshake", &w.handshake_latency_us)?;
            writeln!(f)?;
            fmt_latency(f, "watch delay", &w.delay_us)?;
            writeln!(f)?;
        }
        Ok(())
    }

    /// Error replies by code and connection failures by cause.
    fn fmt_errors(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
        Ok(())
    }

    /// Counters shown only when not zero, and memory.
    fn fmt_extras(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

impl fmt::Display for WatchSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  watchers: {} asked ({} feed, mode {}), {} held, {} converged on version {} \
             (from {}) after {:.2}s of settle",
            self.watchers,
            self.feed,
            self.mode,
            self.held,
            self.converged,
            self.final_version,
            self.final_version_from,
            self.settle_secs
        )?;
        writeln!(
            f,
            "    {} presence events, {:.0} bytes per watcher on the wire ({:.0} inflated), {} seq gaps, {} delta gaps",
            self.presence_events,
            self.bytes_per_watcher,
            self.inflated_bytes_per_watcher,
            self.seq_gaps,
            self.delta_gaps
        )
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_overview(f)?;
        if let Some(w) = &self.watchers {
            w.fmt(f)?;
        }
        self.fmt_latencies(f)?;
        self.fmt_errors(f)?;
        self.fmt_extras(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn latency_rows_keep_their_columns() {
        let l = Latency {
            count: 3,
            p50: 999,
            p90: 1_500,
            p99: 2_000_000,
            ..Latency::default()
        };
        struct Row<'a>(&'a Latency);
        impl fmt::Display for Row<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt_latency(f, "x", self.0)
            }
        }
        assert_eq!(
            Row(&l).to_string(),
            "  x                         3     999us    1.50ms     2.00s       0us       0us"
        );
    }
}
