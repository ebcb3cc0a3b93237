//! The writer's counters: [`WriterStats`], and the [`Machine`] wrapper that
//! keeps them current.
//!
//! Every counter is monotonic and written only by the writer thread; other
//! threads read them (Relaxed) for metrics.

use super::machine::{Event, PresenceMachine};
use super::writer::{BatchReport, Machine};
use crate::clock::Millis;
use crate::presence::{Snapshot, StoreStats};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters the writer keeps, readable from any thread.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Events applied.
    pub events: AtomicU64,
    /// Snapshots published.
    pub publishes: AtomicU64,
    /// Entries removed by the TTL.
    pub expired: AtomicU64,
    /// Entries removed by the cap.
    pub evicted: AtomicU64,
}

impl WriterStats {
    /// Counts one writer batch.
    pub(crate) fn record(&self, report: &BatchReport) {
        // Relaxed: independent counters, read for metrics only.
        self.events
            .fetch_add(report.events as u64, Ordering::Relaxed);
        if report.published {
            self.publishes.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Copies the store's removal totals into [`WriterStats`] after each turn.
pub(crate) struct StatsMachine {
    inner: PresenceMachine,
    stats: Arc<WriterStats>,
}

impl StatsMachine {
    /// Wraps `inner`, reporting into `stats`.
    pub(crate) fn new(inner: PresenceMachine, stats: Arc<WriterStats>) -> Self {
        StatsMachine { inner, stats }
    }

    fn sync_stats(&self) {
        let StoreStats { expired, evicted } = self.inner.stats();
        // Relaxed: monotonic counters read for metrics only.
        self.stats.expired.store(expired, Ordering::Relaxed);
        self.stats.evicted.store(evicted, Ordering::Relaxed);
    }
}

impl Machine for StatsMachine {
    type Event = Event;
    type Snapshot = Snapshot;

    fn apply(&mut self, event: Event, now: Millis) {
        self.inner.apply(event, now);
    }

    fn expire(&mut self, now: Millis) {
        self.inner.expire(now);
        self.sync_stats();
    }

    fn has_changes(&self) -> bool {
        self.inner.has_changes()
    }

    fn publish(&mut self, now: Millis) -> (u64, Snapshot) {
        self.inner.publish(now)
    }

    fn next_deadline(&self) -> Option<Millis> {
        self.inner.next_deadline()
    }
}
