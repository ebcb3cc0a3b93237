//! What the HTTP routes may see of the gateway: the snapshot reader, the
//! SSE feed, metrics and auth. A narrow handle, so `http/` never imports
//! the gateway that serves it.

use super::doctor::Doctor;
use super::encoding::GzipCache;
use super::origin::OriginPolicy;
use super::sse::SseFeed;
use crate::auth::Grants;
use crate::clock::Clock;
use crate::engine::{Event, EventSender, SnapshotReader, WriterStats};
use crate::fleet::FleetStatus;
use crate::metrics::Metrics;
use crate::presence::HostStatsBook;
use crate::tls::CertResolver;
use std::sync::Arc;
use tokio::sync::watch;

/// The routes' view of a running gateway.
pub struct Context {
    /// The published presence snapshots.
    pub reader: SnapshotReader,
    /// The latest list for SSE streams, published by the broadcaster.
    pub sse: SseFeed,
    /// Token checks for `/v1/*` and `/metrics`.
    pub auth: Arc<Grants>,
    /// The gateway's metrics.
    pub metrics: Arc<Metrics>,
    /// The engine's queue, for its depth and rejections in `/metrics`.
    pub sender: EventSender<Event>,
    /// The writer's counters, for `/metrics`.
    pub writer_stats: Arc<WriterStats>,
    /// Flips to `true` when graceful shutdown begins: streams end.
    pub shutdown: watch::Receiver<bool>,
    /// The fleet link, in fleet mode: `/healthz` and stats report it.
    pub fleet: Option<Arc<FleetStatus>>,
    /// `/v1/presence/doctor`: its settings and its last answer.
    pub doctor: Doctor,
    /// Which browser origins and `Host` names are served (§3.6).
    pub origins: OriginPolicy,
    /// With TLS, the certificate served: stats show its fingerprint.
    pub tls: Option<Arc<CertResolver>>,
    /// The doctor's last report, gzipped.
    pub doctor_gzip: GzipCache,
    /// The last host stats of each node (`node.event`), for the dashboard
    /// and `/v1/presence/hosts`.
    pub host_stats: HostStatsBook,
    /// The gateway's clock (`ServeConfig::clock`): what rows' ages are
    /// measured against.
    pub clock: Clock,
}
