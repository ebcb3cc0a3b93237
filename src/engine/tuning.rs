//! How to run the engine: [`EngineConfig`] and its documented defaults.

use crate::presence::StoreConfig;
use std::time::Duration;

/// Default bound of the data queue: about a second of a busy gateway's
/// beacons, small enough that a full queue is noticed quickly.
pub const DEFAULT_QUEUE_CAPACITY: usize = 65_536;
/// Default most events per batch. A publish costs the rows the batch
/// changed (plus a visit of every 4,096th row's part), not the rows held,
/// so batches need not be large to amortise it: at most 8,192 events
/// between two publishes keeps publishes (and the acknowledgements that
/// wait for them) frequent at any size under maximal load, while light
/// load still publishes after every few events.
pub const DEFAULT_MAX_BATCH: usize = 8_192;

/// How to run the engine.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// TTL and cap.
    pub store: StoreConfig,
    /// Bound of the data queue.
    pub queue_capacity: usize,
    /// Most events applied between two publishes.
    pub max_batch: usize,
    /// How often rows with a live connection get `ts = now` (half the
    /// keepalive interval when serving); zero: only when the TTL reaches
    /// them.
    pub renew_every: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            store: StoreConfig::default(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_batch: DEFAULT_MAX_BATCH,
            renew_every: Duration::ZERO,
        }
    }
}
