//! How the fleet link is doing, shared between the fleet task (the only
//! writer) and whoever reports it: `health`, `/healthz`, stats, metrics.
//!
//! Invariant: `connected` is true only between a completed resync and the
//! first Redis error after it; every counter only grows.

use crate::clock::{Millis, now_millis};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// The fleet link's state and counters.
#[derive(Debug)]
pub struct FleetStatus {
    node_id: String,
    connected: AtomicBool,
    /// When `connected` last changed (ms).
    since: AtomicI64,
    last_error: Mutex<Option<String>>,
    /// Other gateways whose lease is held.
    pub peers: AtomicU64,
    /// Batches of own rows written to Redis.
    pub batches: AtomicU64,
    /// Own rows written to Redis.
    pub rows_out: AtomicU64,
    /// Change messages applied from other gateways.
    pub messages_in: AtomicU64,
    /// Full resyncs (each start and reconnect).
    pub resyncs: AtomicU64,
    /// Other gateways' hashes read whole (joins, restarts, lost messages).
    pub reloads: AtomicU64,
    /// Rows read by those reloads.
    pub rows_loaded: AtomicU64,
    /// Seconds from a change message's `at` (its origin's clock, just
    /// before its transaction) until its rows were visible here (the
    /// writer acknowledged the last of them): the fleet's propagation
    /// delay, skew between the two clocks included.
    pub propagation: Histogram,
    /// Gateways whose lease lapsed.
    pub lapses: AtomicU64,
    /// Sessions that ended in an error (each one is retried).
    pub failures: AtomicU64,
    /// Full rewrites of own rows after Redis lost or changed them.
    pub repairs: AtomicU64,
    /// Rows read from Redis and refused (too large, malformed).
    pub rejected: AtomicU64,
    /// Rows read from Redis whose `ts` was ahead of the allowed skew.
    pub clamped: AtomicU64,
    /// Messages ignored: unparsable, oversized, or from a node without a
    /// live lease.
    pub unheard: AtomicU64,
    /// The allowed clock skew (ms).
    skew_bound: AtomicI64,
    /// Each live peer's clock minus ours (ms), as last measured.
    skews: Mutex<Vec<(String, Millis)>>,
}

/// Relaxed everywhere: independent values read for reports only; nothing
/// is published through them.
const ORDER: Ordering = Ordering::Relaxed;

impl FleetStatus {
    /// A link not connected yet: degraded until the first resync.
    pub fn new(node_id: &str) -> FleetStatus {
        FleetStatus {
            node_id: node_id.to_owned(),
            connected: AtomicBool::new(false),
            since: AtomicI64::new(now_millis()),
            last_error: Mutex::new(Some("not connected yet".into())),
            peers: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            rows_out: AtomicU64::new(0),
            messages_in: AtomicU64::new(0),
            resyncs: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
            rows_loaded: AtomicU64::new(0),
            // Upper bounds 1 ms to about 25 s in steps of 1.5×, so a
            // quantile read from them is within 25%.
            propagation: Histogram::new(exponential_buckets(0.001, 1.5, 26)),
            lapses: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            repairs: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            clamped: AtomicU64::new(0),
            unheard: AtomicU64::new(0),
            skew_bound: AtomicI64::new(Millis::MAX),
            skews: Mutex::new(Vec::new()),
        }
    }

    /// Sets the allowed clock skew peers are reported against.
    pub fn set_skew_bound(&self, bound: Millis) {
        self.skew_bound.store(bound, ORDER);
    }

    /// Records each live peer's clock skew; logs peers that cross the
    /// bound (either way).
    pub fn set_skews(&self, skews: Vec<(String, Millis)>, bound: Millis) {
        let Ok(mut last) = self.skews.lock() else {
            return;
        };
        let over = |list: &[(String, Millis)], node: &str| {
            list.iter()
                .any(|(n, skew)| n == node && skew.unsigned_abs() > bound.unsigned_abs())
        };
        for (node, skew) in &skews {
            if over(&skews, node) && !over(&last, node) {
                tracing::warn!(%node, skew_ms = skew, bound_ms = bound,
                    "fleet: a gateway's clock is off from ours by more than --max-clock-skew; its rows' ts are clamped");
            }
        }
        *last = skews;
    }

    /// Each live peer's clock skew (ms, positive: ahead of ours).
    pub fn skews(&self) -> Vec<(String, Millis)> {
        self.skews.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Peers whose clock is off by more than the bound, as one line.
    pub fn clock_warning(&self) -> Option<String> {
        let bound = self.skew_bound.load(ORDER);
        let over: Vec<String> = self
            .skews()
            .into_iter()
            .filter(|(_, skew)| skew.unsigned_abs() > bound.unsigned_abs())
            .map(|(node, skew)| format!("{node} {skew:+} ms"))
            .collect();
        (!over.is_empty()).then(|| {
            format!(
                "clock skew over {bound} ms: {} (their rows' ts are clamped)",
                over.join(", ")
            )
        })
    }

    /// This gateway's node id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// True while Redis is reachable and in sync.
    pub fn is_connected(&self) -> bool {
        self.connected.load(ORDER)
    }

    /// The last error, while degraded.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Since when the current state holds.
    pub fn since(&self) -> Millis {
        self.since.load(ORDER)
    }

    /// A resync completed.
    pub fn set_connected(&self) {
        if let Ok(mut error) = self.last_error.lock() {
            *error = None;
        }
        if !self.connected.swap(true, ORDER) {
            self.since.store(now_millis(), ORDER);
        }
        self.resyncs.fetch_add(1, ORDER);
    }

    /// Redis failed: local presence is served alone until it is back.
    pub fn set_degraded(&self, error: String) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error);
        }
        if self.connected.swap(false, ORDER) {
            self.since.store(now_millis(), ORDER);
        }
    }

    /// `ok` or `degraded`.
    pub fn state(&self) -> &'static str {
        if self.is_connected() {
            "ok"
        } else {
            "degraded"
        }
    }

    /// The JSON object `health` and stats carry as `"fleet"`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = serde_json::json!({
            "state": self.state(),
            "nodeId": self.node_id,
            "peers": self.peers.load(ORDER),
            "since": self.since(),
        });
        if let Some(error) = self.last_error().filter(|_| !self.is_connected()) {
            value["error"] = error.into();
        }
        let skews: serde_json::Map<String, serde_json::Value> = self
            .skews()
            .into_iter()
            .map(|(node, skew)| (node, skew.into()))
            .collect();
        if !skews.is_empty() {
            value["clockSkewMs"] = skews.into();
        }
        if let Some(warning) = self.clock_warning() {
            value["warning"] = warning.into();
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_degraded_and_reports_the_error_only_while_degraded() {
        let status = FleetStatus::new("gw");
        assert_eq!(status.to_json()["state"], "degraded");
        status.set_connected();
        let json = status.to_json();
        assert_eq!(
            (json["state"].as_str(), json.get("error")),
            (Some("ok"), None)
        );
        status.set_degraded("connection refused".into());
        let json = status.to_json();
        assert_eq!(json["state"], "degraded");
        assert_eq!(json["error"], "connection refused");
        assert_eq!(json["nodeId"], "gw");
    }

    #[test]
    fn a_peer_clock_over_the_bound_is_reported() {
        let status = FleetStatus::new("gw");
        status.set_skew_bound(5_000);
        status.set_skews(vec![("b".into(), 200), ("c".into(), 600_000)], 5_000);
        let json = status.to_json();
        assert_eq!(json["clockSkewMs"]["c"], 600_000);
        let warning = status.clock_warning().unwrap();
        assert!(warning.contains("c +600000 ms"), "{warning}");
        assert!(!warning.contains("b "), "{warning}");
        status.set_skews(vec![("c".into(), 10)], 5_000);
        assert_eq!(status.clock_warning(), None);
    }
}
