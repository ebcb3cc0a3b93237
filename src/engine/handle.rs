//! The running engine: [`Engine`] starts the writer thread, hands out
//! senders and readers, and shuts it down.
//!
//! Invariant: once [`Engine::shutdown`] returns, every event a sender had
//! pushed successfully is applied and published, and the writer thread has
//! been joined.

use super::cell::SnapshotCell;
use super::machine::{Event, PresenceMachine};
use super::queue::{self, EventSender};
use super::tuning::EngineConfig;
use super::writer::{self, BatchReport, WriterConfig};
use super::writer_stats::{StatsMachine, WriterStats};
use crate::clock::{Millis, now_millis};
use crate::presence::{Entry, RemoteOp, Snapshot, Store};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

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
        observe: impl FnMut(BatchReport) + Send + 'static,
    ) -> Engine {
        Engine::start_from(config, self_entry, Vec::new(), clock, observe)
    }

    /// Like [`Engine::start_with`], with rows of a previous run or of other
    /// fleet gateways applied before the first snapshot is published, so
    /// the very first read already shows them (warm restart).
    pub fn start_from(
        config: EngineConfig,
        self_entry: Entry,
        preload: Vec<RemoteOp>,
        clock: impl Fn() -> Millis + Send + 'static,
        mut observe: impl FnMut(BatchReport) + Send + 'static,
    ) -> Engine {
        let mut store = Store::new(config.store, self_entry);
        for op in preload {
            store.apply_remote(op);
        }
        let now = clock();
        store.expire(now);
        let initial = store.publish(now);
        let reader = Arc::new(SnapshotCell::new(Arc::new(initial), store.version()));
        let (sender, queues) = queue::queues(config.queue_capacity.max(1));
        let stats = Arc::new(WriterStats::default());
        let machine = StatsMachine::new(
            PresenceMachine::new(store).renewing(config.renew_every),
            Arc::clone(&stats),
        );
        let cell = Arc::clone(&reader);
        let writer_stats = Arc::clone(&stats);
        let writer_config = WriterConfig {
            max_batch: config.max_batch.max(1),
        };
        let handle = std::thread::Builder::new()
            .name("rollcall-writer".into())
            .spawn(move || {
                writer::run(machine, queues, cell, writer_config, clock, |report| {
                    writer_stats.record(&report);
                    observe(report);
                })
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
