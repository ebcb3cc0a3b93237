//! Prometheus metrics (`GET /metrics`), via prometheus-client.
//!
//! Counters that the hot paths bump live here as atomics inside
//! prometheus-client types; values the engine already counts (queue depth,
//! version, expirations) are copied in at scrape time.

use crate::engine::{BatchReport, Event, EventSender, SnapshotReader, WriterStats};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

/// Label set of connection gauges.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabels {
    /// Client mode.
    pub mode: &'static str,
}

/// Label set of handshake outcomes.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabels {
    /// `ok` or `failed`.
    pub outcome: &'static str,
    /// Why it failed (`ok` when it did not).
    pub reason: &'static str,
}

/// Label set of request counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Method name, or `invalid` for frames that were not requests.
    pub method: &'static str,
    /// `ok` or the error code.
    pub outcome: &'static str,
}

/// Label set of dropped events.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// Event name.
    pub event: &'static str,
}

/// Every metric rollcall exports.
pub struct Metrics {
    registry: Registry,
    /// Open WebSocket connections after the handshake, by mode.
    pub connections: Family<ModeLabels, Gauge>,
    /// Handshakes by outcome.
    pub handshakes: Family<HandshakeLabels, Counter>,
    /// Requests by method and outcome.
    pub requests: Family<RequestLabels, Counter>,
    /// Events not sent to slow consumers.
    pub dropped: Family<EventLabels, Counter>,
    /// Connections closed as slow consumers.
    pub slow_consumers: Counter,
    writer_batch: Histogram,
    writer_apply: Histogram,
    queue_depth: Gauge,
    queue_rejections: Counter,
    version: Gauge,
    entries: Gauge,
    expired: Counter,
    evicted: Counter,
    /// Last totals copied into the counters above, to add only the growth.
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    rejections: u64,
    expired: u64,
    evicted: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric under the `rollcall` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("rollcall");
        let connections = Family::<ModeLabels, Gauge>::default();
        registry.register(
            "connections",
            "Open WebSocket connections by client mode",
            connections.clone(),
        );
        let handshakes = Family::<HandshakeLabels, Counter>::default();
        registry.register(
            "handshakes",
            "Handshakes by outcome and reason",
            handshakes.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests by method and outcome",
            requests.clone(),
        );
        let dropped = Family::<EventLabels, Counter>::default();
        // Created at zero: a family without samples is left out of the
        // exposition, and an absent series cannot be graphed or alerted
        // on (`rate()` of nothing is nothing, not 0).
        for event in ["presence", "presence.delta", "tick"] {
            let _ = dropped.get_or_create(&EventLabels { event });
        }
        registry.register(
            "events_dropped",
            "Events not sent to slow consumers",
            dropped.clone(),
        );
        let slow_consumers = Counter::default();
        registry.register(
            "slow_consumer_closes",
            "Connections closed for falling behind on replies",
            slow_consumers.clone(),
        );
        let writer_batch = Histogram::new(exponential_buckets(1.0, 4.0, 9));
        registry.register(
            "writer_batch_events",
            "Events applied per writer batch",
            writer_batch.clone(),
        );
        let writer_apply = Histogram::new(exponential_buckets(1e-6, 4.0, 12));
        registry.register_with_unit(
            "writer_apply",
            "Time the writer spends applying and publishing one batch",
            prometheus_client::registry::Unit::Seconds,
            writer_apply.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Events waiting for the writer",
            queue_depth.clone(),
        );
        let queue_rejections = Counter::default();
        registry.register(
            "queue_rejections",
            "Events refused because the queue was full",
            queue_rejections.clone(),
        );
        let version = Gauge::default();
        registry.register(
            "presence_version",
            "Current stateVersion.presence",
            version.clone(),
        );
        let entries = Gauge::default();
        registry.register(
            "presence_entries",
            "Presence entries, the gateway's own included",
            entries.clone(),
        );
        let expired = Counter::default();
        registry.register(
            "presence_expired",
            "Entries removed by the TTL",
            expired.clone(),
        );
        let evicted = Counter::default();
        registry.register(
            "presence_evicted",
            "Entries removed by the cap",
            evicted.clone(),
        );
        Metrics {
            registry,
            connections,
            handshakes,
            requests,
            dropped,
            slow_consumers,
            writer_batch,
            writer_apply,
            queue_depth,
            queue_rejections,
            version,
            entries,
            expired,
            evicted,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Records one writer batch (called on the writer thread).
    pub fn observe_batch(&self, report: &BatchReport) {
        self.writer_batch.observe(report.events as f64);
        self.writer_apply.observe(report.elapsed.as_secs_f64());
    }

    /// Counts one handshake.
    pub fn handshake(&self, reason: Option<&'static str>) {
        let labels = match reason {
            None => HandshakeLabels {
                outcome: "ok",
                reason: "ok",
            },
            Some(reason) => HandshakeLabels {
                outcome: "failed",
                reason,
            },
        };
        self.handshakes.get_or_create(&labels).inc();
    }

    /// Counts one request.
    pub fn request(&self, method: &'static str, outcome: &'static str) {
        self.requests
            .get_or_create(&RequestLabels { method, outcome })
            .inc();
    }

    /// Renders the text exposition, refreshing the engine-derived values.
    pub fn render(
        &self,
        sender: &EventSender<Event>,
        reader: &SnapshotReader,
        writer: &WriterStats,
    ) -> String {
        let load = |v: &AtomicU64| v.load(std::sync::atomic::Ordering::Relaxed);
        self.queue_depth.set(sender.queue_depth() as i64);
        let snapshot = reader.load();
        self.version.set(snapshot.version() as i64);
        self.entries.set(snapshot.len() as i64);
        if let Ok(mut seen) = self.seen.lock() {
            let rejections = sender.rejected();
            self.queue_rejections
                .inc_by(rejections.saturating_sub(seen.rejections));
            seen.rejections = rejections;
            let expired = load(&writer.expired);
            self.expired.inc_by(expired.saturating_sub(seen.expired));
            seen.expired = expired;
            let evicted = load(&writer.evicted);
            self.evicted.inc_by(evicted.saturating_sub(seen.evicted));
            seen.evicted = evicted;
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
