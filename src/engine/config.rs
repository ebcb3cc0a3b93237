//! How to run the engine: [`EngineConfig`] and its documented defaults.

use crate::presence::StoreConfig;
use std::time::Duration;

/// Default bound of the data queue: about a second of a busy gateway's
/// beacons, small enough that a full queue is noticed quickly.
pub const DEFAULT_QUEUE_CAPACITY: usize = 65_536;
/// Default most events per batch: one full queue. Under light load batches
/// are small and publishes immediate; under heavy load the writer takes all
/// that waited, so a large store pays its O(entries) publish once per
/// queue-full instead of once per few thousand events.
pub const DEFAULT_MAX_BATCH: usize = DEFAULT_QUEUE_CAPACITY;

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
