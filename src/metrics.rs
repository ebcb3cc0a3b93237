//! Prometheus metrics (`GET /metrics`), via prometheus-client.
//!
//! Counters that the hot paths bump live here as atomics inside
//! prometheus-client types; values the engine already counts (queue depth,
//! version, expirations) are copied in at scrape time.

use crate::engine::{BatchReport, Event, EventSender, SnapshotReader, WriterStats};
use crate::fleet::FleetStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

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

/// Label set of watcher gauges.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeedLabels {
    /// `full` or `delta`.
    pub feed: &'static str,
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
    /// Broadcast events replaced by a newer one before they were written.
    pub conflated_events: Family<EventLabels, Counter>,
    /// Bytes of broadcast events offered to connections.
    pub fanout_bytes: Counter,
    /// The paced interval between full-list fan-outs, in seconds.
    pub fanout_interval: Gauge<f64, AtomicU64>,
    /// Presence subscribers by feed.
    pub watchers: Family<FeedLabels, Gauge>,
    /// Connections closed as slow consumers.
    pub slow_consumers: Counter,
    /// Connections closed before their first request to make room.
    pub waiting_evicted: Counter,
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
    /// The fleet link and its series, in fleet mode only.
    fleet: Option<(Arc<FleetStatus>, FleetMetrics)>,
}

#[derive(Default)]
struct Seen {
    rejections: u64,
    expired: u64,
    evicted: u64,
    /// Fleet totals, in [`FleetMetrics::totals`] order.
    fleet: [u64; FLEET_TOTALS.len()],
}

/// The fleet link's series; values are copied from [`FleetStatus`] at
/// scrape time.
#[derive(Default)]
struct FleetMetrics {
    degraded: Gauge,
    peers: Gauge,
    /// Each live peer's clock minus ours, by node id.
    skew: Family<NodeLabels, Gauge>,
    /// In [`FLEET_TOTALS`] order.
    totals: [Counter; FLEET_TOTALS.len()],
}

/// Label set of per-peer fleet gauges.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    /// The peer's node id.
    pub node: String,
}

/// Names and help of [`FleetMetrics::totals`].
const FLEET_TOTALS: [(&str, &str); 12] = [
    ("fleet_batches", "Batches of own rows written to Redis"),
    (
        "fleet_rows_written",
        "Own rows written to or removed from Redis",
    ),
    (
        "fleet_messages",
        "Change messages applied from other gateways",
    ),
    (
        "fleet_resyncs",
        "Full resyncs with Redis (start and each reconnect)",
    ),
    (
        "fleet_reloads",
        "Other gateways' hashes read whole from Redis (joins, restarts, lost messages)",
    ),
    ("fleet_rows_loaded", "Rows read by those reloads"),
    ("fleet_lapses", "Gateways whose lease lapsed"),
    (
        "fleet_failures",
        "Fleet sessions that ended in an error (each is retried with backoff)",
    ),
    (
        "fleet_repairs",
        "Full rewrites of own rows after Redis lost or changed them",
    ),
    (
        "fleet_rows_refused",
        "Rows read from Redis and refused (too large or malformed)",
    ),
    (
        "fleet_ts_clamped",
        "Rows read from Redis whose ts was past our clock plus --max-clock-skew",
    ),
    (
        "fleet_messages_unheard",
        "Change messages ignored (unparsable, oversized, or from a node without a live lease)",
    ),
];

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric under the `rollcall` prefix.
    pub fn new() -> Metrics {
        Metrics::with_fleet(None)
    }

    /// Like [`Metrics::new`], plus the fleet link's series when there is one.
    pub fn with_fleet(fleet: Option<Arc<FleetStatus>>) -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("rollcall"),
            connections: Family::default(),
            handshakes: Family::default(),
            requests: Family::default(),
            conflated_events: Family::default(),
            fanout_bytes: Counter::default(),
            fanout_interval: Gauge::default(),
            watchers: Family::default(),
            slow_consumers: Counter::default(),
            waiting_evicted: Counter::default(),
            writer_batch: Histogram::new(exponential_buckets(1.0, 4.0, 9)),
            writer_apply: Histogram::new(exponential_buckets(1e-6, 4.0, 12)),
            queue_depth: Gauge::default(),
            queue_rejections: Counter::default(),
            version: Gauge::default(),
            entries: Gauge::default(),
            expired: Counter::default(),
            evicted: Counter::default(),
            seen: Mutex::new(Seen::default()),
            fleet: fleet.map(|status| (status, FleetMetrics::default())),
        };
        // The exposition lists metrics in the order they are registered.
        metrics.register_connections();
        metrics.register_fanout();
        metrics.register_writer();
        metrics.register_presence();
        metrics.register_fleet();
        metrics
    }

    /// Registers the fleet link's series, in fleet mode.
    fn register_fleet(&mut self) {
        let Some((status, fleet)) = &self.fleet else {
            return;
        };
        let registry = &mut self.registry;
        registry.register(
            "fleet_degraded",
            "1 while the fleet link to Redis is down and only local presence is served",
            fleet.degraded.clone(),
        );
        registry.register(
            "fleet_peers",
            "Other gateways whose lease is held",
            fleet.peers.clone(),
        );
        registry.register(
            "fleet_peer_clock_skew_ms",
            "Each live peer's clock minus ours, measured from its messages (ms)",
            fleet.skew.clone(),
        );
        for ((name, help), counter) in FLEET_TOTALS.iter().zip(&fleet.totals) {
            registry.register(*name, *help, counter.clone());
        }
        registry.register(
            "fleet_propagation_seconds",
            "From a peer's change message (its clock) until its rows are visible here",
            status.propagation.clone(),
        );
    }

    /// Copies the fleet link's values into its series.
    fn refresh_fleet(&self, seen: &mut Seen) {
        let Some((status, fleet)) = &self.fleet else {
            return;
        };
        let load = |v: &AtomicU64| v.load(std::sync::atomic::Ordering::Relaxed);
        fleet.degraded.set(i64::from(!status.is_connected()));
        fleet.peers.set(load(&status.peers) as i64);
        fleet.skew.clear();
        for (node, skew) in status.skews() {
            fleet.skew.get_or_create(&NodeLabels { node }).set(skew);
        }
        let totals = [
            &status.batches,
            &status.rows_out,
            &status.messages_in,
            &status.resyncs,
            &status.reloads,
            &status.rows_loaded,
            &status.lapses,
            &status.failures,
            &status.repairs,
            &status.rejected,
            &status.clamped,
            &status.unheard,
        ];
        for ((total, counter), last) in totals.iter().zip(&fleet.totals).zip(&mut seen.fleet) {
            let now = load(total);
            counter.inc_by(now.saturating_sub(*last));
            *last = now;
        }
    }

    /// Registers what the connection tasks count.
    fn register_connections(&mut self) {
        let registry = &mut self.registry;
        registry.register(
            "connections",
            "Open WebSocket connections by client mode",
            self.connections.clone(),
        );
        registry.register(
            "handshakes",
            "Handshakes by outcome and reason",
            self.handshakes.clone(),
        );
        registry.register(
            "requests",
            "Requests by method and outcome",
            self.requests.clone(),
        );
        // Created at zero: a family without samples is left out of the
        // exposition, and an absent series cannot be graphed or alerted
        // on (`rate()` of nothing is nothing, not 0).
        for event in ["presence", "presence.delta", "tick"] {
            let _ = self.conflated_events.get_or_create(&EventLabels { event });
        }
        registry.register(
            "events_conflated",
            "Broadcast events replaced by a newer one before they were written",
            self.conflated_events.clone(),
        );
        registry.register(
            "slow_consumer_closes",
            "Connections closed for falling behind on replies",
            self.slow_consumers.clone(),
        );
        registry.register(
            "waiting_evictions",
            "Connections closed before their first request to make room for new ones",
            self.waiting_evicted.clone(),
        );
    }

    /// Registers the fan-out's pacing figures.
    fn register_fanout(&mut self) {
        let registry = &mut self.registry;
        registry.register_with_unit(
            "fanout",
            "Bytes of broadcast events offered to connections",
            prometheus_client::registry::Unit::Bytes,
            self.fanout_bytes.clone(),
        );
        registry.register_with_unit(
            "fanout_full_interval",
            "Paced interval between full-list presence fan-outs",
            prometheus_client::registry::Unit::Seconds,
            self.fanout_interval.clone(),
        );
        for feed in ["full", "delta"] {
            let _ = self.watchers.get_or_create(&FeedLabels { feed });
        }
        registry.register(
            "watchers",
            "Connections that receive presence events, by feed",
            self.watchers.clone(),
        );
    }

    /// Counts broadcast events replaced before they were written.
    pub fn conflated(&self, event: &'static str, count: u64) {
        if count > 0 {
            self.conflated_events
                .get_or_create(&EventLabels { event })
                .inc_by(count);
        }
    }

    /// The fan-out's last pacing decision, as `health` reports it.
    pub fn fanout(&self) -> crate::protocol::FanoutHealth {
        let watchers = |feed| self.watchers.get_or_create(&FeedLabels { feed }).get();
        crate::protocol::FanoutHealth {
            interval_ms: (self.fanout_interval.get() * 1000.0).round() as u64,
            full: u64::try_from(watchers("full")).unwrap_or(0),
            delta: u64::try_from(watchers("delta")).unwrap_or(0),
        }
    }

    /// Records the fan-out's pacing decision.
    pub fn paced(&self, interval: std::time::Duration, full: usize, delta: usize) {
        self.fanout_interval.set(interval.as_secs_f64());
        self.watchers
            .get_or_create(&FeedLabels { feed: "full" })
            .set(full as i64);
        self.watchers
            .get_or_create(&FeedLabels { feed: "delta" })
            .set(delta as i64);
    }

    /// Registers the writer's batch histograms and its queue's values.
    fn register_writer(&mut self) {
        let registry = &mut self.registry;
        registry.register(
            "writer_batch_events",
            "Events applied per writer batch",
            self.writer_batch.clone(),
        );
        registry.register_with_unit(
            "writer_apply",
            "Time the writer spends applying and publishing one batch",
            prometheus_client::registry::Unit::Seconds,
            self.writer_apply.clone(),
        );
        registry.register(
            "queue_depth",
            "Events waiting for the writer",
            self.queue_depth.clone(),
        );
        registry.register(
            "queue_rejections",
            "Events refused because the queue was full",
            self.queue_rejections.clone(),
        );
    }

    /// Registers the values copied from the published snapshot and the
    /// store's removal totals.
    fn register_presence(&mut self) {
        let registry = &mut self.registry;
        registry.register(
            "presence_version",
            "Current stateVersion.presence",
            self.version.clone(),
        );
        registry.register(
            "presence_entries",
            "Presence entries, the gateway's own included",
            self.entries.clone(),
        );
        registry.register(
            "presence_expired",
            "Entries removed by the TTL",
            self.expired.clone(),
        );
        registry.register(
            "presence_evicted",
            "Entries removed by the cap",
            self.evicted.clone(),
        );
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
            self.refresh_fleet(&mut seen);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
