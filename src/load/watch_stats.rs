//! What the watchers record while they run: the version each one holds,
//! `seq` and delta gaps, bytes received, and two latencies (handshake, and
//! publication to arrival of each presence version). [`WatchStats::summarize`]
//! turns it into the [`WatchSummary`] of a run.
//!
//! Invariants:
//! - A watcher's slot in `versions` is 0 exactly when it holds no version
//!   (before its `hello-ok`, after its connection ended); presence versions
//!   start at 1, so 0 is never a version a watcher holds.
//! - Watcher figures cover each watcher's whole connection (ramp, steady
//!   phase and settle), not only the steady phase: a watcher's job is to
//!   keep up from the moment it connects.
//! - Latencies are microseconds in HDR histograms, sharded by watcher index
//!   like [`Stats`](super::stats::Stats).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;

use super::stats::{SHARDS, histogram};
use super::summary::{Latency, WatchSummary};

/// One shard's histograms.
struct WatchShard {
    handshake: Histogram<u64>,
    delay: Histogram<u64>,
}

impl WatchShard {
    fn new() -> Self {
        WatchShard {
            handshake: histogram(),
            delay: histogram(),
        }
    }
}

/// What one presence event showed a watcher.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The event carried a `seq` that was not the last one plus one.
    pub seq_gap: bool,
    /// The event was a `presence` or `presence.delta` event.
    pub presence: bool,
    /// A delta whose `from` was not the version the watcher held.
    pub delta_gap: bool,
    /// The newest `ts` among the event's non-gateway rows: about when the
    /// version it carries was published (the server stamps `ts` on write).
    pub newest_ts: Option<u64>,
}

/// Convergence at the end of a run: watchers holding a version, and those
/// holding at least the final one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Convergence {
    /// Watchers connected (holding some version).
    pub held: u64,
    /// Watchers holding the final version or a later one.
    pub converged: u64,
}

/// Counters and histograms shared by the watchers of one run.
pub struct WatchStats {
    shards: Box<[Mutex<WatchShard>]>,
    /// The version each watcher holds; 0 while it holds none.
    versions: Box<[AtomicU64]>,
    /// Presence events received (full lists and deltas).
    events: AtomicU64,
    /// Events whose `seq` was not the previous one plus one.
    seq_gaps: AtomicU64,
    /// Deltas whose `from` was not the version held.
    delta_gaps: AtomicU64,
    /// Bytes received by watchers whose connection has ended.
    bytes: AtomicU64,
    /// Text bytes the ended watchers read, after inflation.
    inflated: AtomicU64,
    /// Watchers whose connection has ended after a handshake (the mean's divisor).
    ended: AtomicU64,
}

/// Locks a shard; poisoning only means half-updated counts, which is tolerable.
fn lock(m: &Mutex<WatchShard>) -> std::sync::MutexGuard<'_, WatchShard> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl WatchStats {
    /// Room for `watchers` watchers; no histograms at all for none.
    pub fn new(watchers: u32) -> Self {
        let shards = if watchers == 0 { 0 } else { SHARDS };
        WatchStats {
            shards: (0..shards).map(|_| Mutex::new(WatchShard::new())).collect(),
            versions: (0..watchers).map(|_| AtomicU64::new(0)).collect(),
            events: AtomicU64::new(0),
            seq_gaps: AtomicU64::new(0),
            delta_gaps: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            inflated: AtomicU64::new(0),
            ended: AtomicU64::new(0),
        }
    }

    /// Watchers the run was asked for.
    pub fn len(&self) -> usize {
        self.versions.len()
    }

    /// True when the run has no watchers.
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }

    fn shard(&self, watcher: u32) -> &Mutex<WatchShard> {
        &self.shards[watcher as usize % self.shards.len()]
    }

    /// Records watcher `watcher`'s handshake (socket open to `hello-ok`),
    /// and the version its `hello-ok` holds.
    pub fn connected(&self, watcher: u32, micros: u64, version: u64) {
        lock(self.shard(watcher))
            .handshake
            .saturating_record(micros.max(1));
        self.hold(watcher, version);
    }

    /// Watcher `watcher` now holds `version`.
    fn hold(&self, watcher: u32, version: u64) {
        // Relaxed: the settle loop only compares numbers; a version seen one
        // poll late is seen on the next.
        self.versions[watcher as usize].store(version, Ordering::Relaxed);
    }

    /// Records one event, `now_ms` being when it arrived (wall clock, the
    /// server's clock on loopback), and the version held after it.
    pub fn record(&self, watcher: u32, seen: Seen, version: u64, now_ms: u64) {
        // Relaxed counters: read for the summary after every watcher ended.
        if seen.seq_gap {
            self.seq_gaps.fetch_add(1, Ordering::Relaxed);
        }
        if !seen.presence {
            return;
        }
        self.events.fetch_add(1, Ordering::Relaxed);
        if seen.delta_gap {
            self.delta_gaps.fetch_add(1, Ordering::Relaxed);
        }
        self.hold(watcher, version);
        if let Some(ts) = seen.newest_ts {
            let delay_us = now_ms.saturating_sub(ts).saturating_mul(1000);
            lock(self.shard(watcher))
                .delay
                .saturating_record(delay_us.max(1));
        }
    }

    /// Watcher `watcher`'s connection ended after `bytes` received.
    pub fn ended(&self, watcher: u32, bytes: u64, inflated: u64) {
        self.hold(watcher, 0);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.inflated.fetch_add(inflated, Ordering::Relaxed);
        self.ended.fetch_add(1, Ordering::Relaxed);
    }

    /// The highest version any connected watcher holds.
    pub fn highest(&self) -> u64 {
        self.held_versions().max().unwrap_or(0)
    }

    /// How many watchers hold a version, and how many hold `target` or later.
    pub fn convergence(&self, target: u64) -> Convergence {
        let (mut held, mut converged) = (0, 0);
        for v in self.held_versions() {
            held += 1;
            converged += u64::from(v >= target);
        }
        Convergence { held, converged }
    }

    fn held_versions(&self) -> impl Iterator<Item = u64> + '_ {
        self.versions
            .iter()
            .map(|v| v.load(Ordering::Relaxed))
            .filter(|&v| v > 0)
    }

    /// The summary's watcher figures, from what was recorded and the end
    /// of the run (`end`: measured before the watchers were stopped).
    pub(crate) fn summarize(&self, frame: WatchFrame) -> WatchSummary {
        let (mut handshake, mut delay) = (histogram(), histogram());
        for s in self.shards.iter() {
            let s = lock(s);
            // Same bounds on both sides, so adding cannot fail.
            handshake.add(&s.handshake).expect("same histogram bounds");
            delay.add(&s.delay).expect("same histogram bounds");
        }
        let ended = self.ended.load(Ordering::Relaxed);
        let bytes = self.bytes.load(Ordering::Relaxed);
        let inflated = self.inflated.load(Ordering::Relaxed);
        let per = |total: u64| match ended {
            0 => 0.0,
            n => total as f64 / n as f64,
        };
        WatchSummary {
            watchers: self.len() as u64,
            feed: frame.feed,
            mode: frame.mode,
            held: frame.end.held,
            converged: frame.end.converged,
            final_version: frame.final_version,
            final_version_from: frame.final_version_from,
            settle_secs: frame.settle_secs,
            handshake_latency_us: Latency::from_histogram(&handshake),
            bytes_per_watcher: per(bytes),
            bytes_total: bytes,
            inflated_bytes_per_watcher: per(inflated),
            presence_events: self.events.load(Ordering::Relaxed),
            delay_us: Latency::from_histogram(&delay),
            seq_gaps: self.seq_gaps.load(Ordering::Relaxed),
            delta_gaps: self.delta_gaps.load(Ordering::Relaxed),
        }
    }
}

/// How a watcher run ended: the parts of a [`WatchSummary`] that are not
/// recorded per event.
pub(crate) struct WatchFrame {
    /// `full` or `delta`.
    pub feed: &'static str,
    /// The watchers' `client.mode`.
    pub mode: String,
    /// Convergence at the end of settle.
    pub end: Convergence,
    /// The version the watchers were compared with.
    pub final_version: u64,
    /// Where it came from: `health` (the gateway) or `watchers`.
    pub final_version_from: &'static str,
    /// How long the settle took.
    pub settle_secs: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn convergence_counts_only_connected_watchers() {
        let s = WatchStats::new(3);
        s.connected(0, 10, 4);
        s.connected(1, 10, 4);
        let later = Seen {
            presence: true,
            ..Seen::default()
        };
        s.record(1, later, 6, 0);
        assert_eq!(s.highest(), 6);
        assert_eq!(
            s.convergence(6),
            Convergence {
                held: 2,
                converged: 1
            }
        );
        s.ended(1, 100, 100);
        assert_eq!(s.convergence(4).held, 1);
    }

    #[test]
    fn gaps_and_delays_reach_the_summary() {
        let s = WatchStats::new(1);
        s.connected(0, 2_000, 1);
        let seen = Seen {
            seq_gap: true,
            presence: true,
            delta_gap: true,
            newest_ts: Some(1_000),
        };
        s.record(0, seen, 2, 1_250);
        s.ended(0, 4096, 4096);
        let sum = s.summarize(WatchFrame {
            feed: "delta",
            mode: "ui".into(),
            end: s.convergence(2),
            final_version: 2,
            final_version_from: "health",
            settle_secs: 0.5,
        });
        assert_eq!(
            (sum.seq_gaps, sum.delta_gaps, sum.presence_events),
            (1, 1, 1)
        );
        assert_eq!(sum.delay_us.count, 1);
        assert!((249_000..=251_000).contains(&sum.delay_us.p50), "{sum:?}");
        assert_eq!(sum.bytes_per_watcher, 4096.0);
        assert_eq!(sum.handshake_latency_us.count, 1);
    }
}
