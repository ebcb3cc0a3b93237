//! How the fleet link is doing, shared between the fleet task (the only
//! writer) and whoever reports it: `health`, `/healthz`, stats, metrics.
//!
//! Invariant: `connected` is true only between a completed resync and the
//! first Redis error after it; every counter only grows.

use crate::clock::{Millis, now_millis};
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
    /// Gateways whose lease lapsed.
    pub lapses: AtomicU64,
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
            lapses: AtomicU64::new(0),
        }
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
}
