//! The hand-off: event queues -> one writer thread -> snapshot cell.
//!
//! Producers push [`Event`]s through a cloneable [`EventSender`]; exactly one
//! writer thread owns the [`crate::presence::Store`], applies events in
//! batches and publishes an immutable [`Snapshot`] per batch into a
//! [`SnapshotCell`], from which readers load wait-free.

mod cell;
mod machine;
mod queue;
mod sync;
mod writer;

pub use cell::{SnapshotCell, WaitFor};
pub use machine::{Event, PresenceMachine};
pub use queue::{Ack, EventSender, PushError};
pub use sync::Guard;
pub use writer::{BatchReport, Machine, WriterConfig};

use crate::clock::Millis;
use crate::clock::now_millis;
use crate::presence::{Entry, Snapshot, Store, StoreConfig, StoreStats};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

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
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            store: StoreConfig::default(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_batch: DEFAULT_MAX_BATCH,
        }
    }
}

/// Counters the writer keeps, readable from any thread.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Events applied.
    pub events: AtomicU64,
    /// Batches applied.
    pub batches: AtomicU64,
    /// Snapshots published.
    pub publishes: AtomicU64,
    /// Entries removed by the TTL.
    pub expired: AtomicU64,
    /// Entries removed by the cap.
    pub evicted: AtomicU64,
}

/// Readers' handle on the published snapshots.
pub type SnapshotReader = Arc<SnapshotCell<Snapshot>>;

/// A running engine: its sender, its reader and its writer thread.
pub struct Engine {
    sender: EventSender<Event>,
    reader: SnapshotReader,
    stats: Arc<WriterStats>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Engine {
    /// Starts the writer thread with a store holding only `self_entry`.
    pub fn start(config: EngineConfig, self_entry: Entry) -> Engine {
        Engine::start_with(config, self_entry, now_millis, |_| {})
    }

    /// Like [`Engine::start`], with a clock and a per-batch observer (for
    /// metrics and tests).
    pub fn start_with(
        config: EngineConfig,
        self_entry: Entry,
        clock: impl Fn() -> Millis + Send + 'static,
        mut observe: impl FnMut(BatchReport) + Send + 'static,
    ) -> Engine {
        let mut store = Store::new(config.store, self_entry);
        let initial = store.publish(clock());
        let reader = Arc::new(SnapshotCell::new(Arc::new(initial), store.version()));
        let (sender, queues) = queue::queues(config.queue_capacity.max(1));
        let stats = Arc::new(WriterStats::default());
        let machine = PresenceMachine::new(store);
        let cell = Arc::clone(&reader);
        let writer_stats = Arc::clone(&stats);
        let writer_config = WriterConfig {
            max_batch: config.max_batch.max(1),
        };
        let handle = std::thread::Builder::new()
            .name("rollcall-writer".into())
            .spawn(move || {
                writer::run(
                    StatsMachine {
                        inner: machine,
                        stats: writer_stats.clone(),
                    },
                    queues,
                    cell,
                    writer_config,
                    clock,
                    |report| {
                        // Relaxed: independent counters, read for metrics only.
                        writer_stats.batches.fetch_add(1, Ordering::Relaxed);
                        writer_stats
                            .events
                            .fetch_add(report.events as u64, Ordering::Relaxed);
                        if report.published {
                            writer_stats.publishes.fetch_add(1, Ordering::Relaxed);
                        }
                        observe(report);
                    },
                )
            })
            .expect("spawning the writer thread");
        Engine {
            sender,
            reader,
            stats,
            writer: Mutex::new(Some(handle)),
        }
    }

    /// A producer handle.
    pub fn sender(&self) -> EventSender<Event> {
        self.sender.clone()
    }

    /// The readers' handle.
    pub fn reader(&self) -> SnapshotReader {
        Arc::clone(&self.reader)
    }

    /// The writer's counters.
    pub fn stats(&self) -> Arc<WriterStats> {
        Arc::clone(&self.stats)
    }

    /// Stops accepting events, applies and publishes everything accepted,
    /// and joins the writer. Blocks; idempotent.
    pub fn shutdown(&self) {
        self.sender.close();
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(handle) = handle {
            if handle.join().is_err() {
                tracing::error!("presence writer thread panicked");
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Copies the store's removal totals into [`WriterStats`] after each turn.
struct StatsMachine {
    inner: PresenceMachine,
    stats: Arc<WriterStats>,
}

impl StatsMachine {
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
