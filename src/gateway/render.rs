//! Replies rendered when their turn in a connection's outbox comes, not
//! when they are queued: `system-presence` then shows every beacon the
//! connection sent before it (read-your-writes), and `health` is current.

use super::list_frame::ListFrame;
use crate::clock::{Clock, Millis};
use crate::engine::SnapshotReader;
use crate::fleet::FleetStatus;
use crate::metrics::Metrics;
use crate::protocol::{
    ErrorShape, Health, OK_PAYLOAD, write_health, write_response_err, write_response_ok,
    write_response_ok_with,
};
use crate::tls::CertResolver;
use std::sync::Arc;
use std::time::Instant;

/// Renders the late-bound replies from the published snapshot.
pub struct Renderer {
    reader: SnapshotReader,
    metrics: Arc<Metrics>,
    started: Instant,
    fleet: Option<Arc<FleetStatus>>,
    tls: Option<Arc<CertResolver>>,
    /// The gateway's clock: a list's self entry is stamped on it.
    clock: Clock,
}

impl Renderer {
    /// A renderer reading `reader` and the fan-out figures in `metrics`;
    /// uptime counts from now.
    pub fn new(reader: SnapshotReader, metrics: Arc<Metrics>) -> Renderer {
        Renderer {
            reader,
            metrics,
            started: Instant::now(),
            fleet: None,
            tls: None,
            clock: Clock::system(),
        }
    }

    /// Stamps lists' self entries on `clock` (the gateway's).
    pub fn with_clock(mut self, clock: Clock) -> Renderer {
        self.clock = clock;
        self
    }

    /// Now, on the gateway's clock.
    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    /// Adds the fleet link's state to `health` (fleet mode only).
    pub fn with_fleet(mut self, fleet: Option<Arc<FleetStatus>>) -> Renderer {
        self.fleet = fleet;
        self
    }

    /// Adds the served certificate's fingerprint to `health` (TLS only).
    pub fn with_tls(mut self, tls: Option<Arc<CertResolver>>) -> Renderer {
        self.tls = tls;
        self
    }

    /// Milliseconds since the gateway started.
    pub fn uptime_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The `system-presence` reply to `id`.
    pub fn presence(&self, id: &str) -> ListFrame {
        let snapshot = self.reader.load_full();
        ListFrame::render(&snapshot, self.now(), |out, list| {
            write_response_ok_with(out, id, |out| list(out));
        })
    }

    /// The `health` reply to `id`.
    pub fn health(&self, id: &str, out: &mut Vec<u8>) {
        let snapshot = self.reader.load();
        let fleet = self.fleet.as_ref().map(|f| f.to_json().to_string());
        let tls = self.tls.as_ref().map(|t| t.fingerprint().to_string());
        let health = Health {
            uptime_ms: self.uptime_ms(),
            entries: snapshot.len(),
            version: snapshot.version(),
            fanout: self.metrics.fanout(),
            fleet: fleet.as_deref(),
            tls_fingerprint: tls.as_deref(),
        };
        let mut payload = Vec::with_capacity(160);
        write_health(&mut payload, &health);
        write_response_ok(out, id, &payload);
    }

    /// The `system-event` reply to `id`: `{"ok":true}` once applied, or
    /// `UNAVAILABLE` if the engine stopped first.
    pub fn applied(&self, id: &str, applied: bool, out: &mut Vec<u8>) {
        if applied {
            write_response_ok(out, id, OK_PAYLOAD);
        } else {
            let error = ErrorShape::unavailable("presence engine is shutting down", 1000);
            write_response_err(out, id, &error);
        }
    }
}
