//! The hand-off: event queues -> one writer thread -> snapshot cell.
//!
//! Producers push [`Event`]s through a cloneable [`EventSender`]; exactly one
//! writer thread owns the [`crate::presence::Store`], applies events in
//! batches and publishes an immutable [`crate::presence::Snapshot`] per
//! batch into a [`SnapshotCell`], from which readers load wait-free.
//!
//! `queue.rs` (producers), `writer.rs` (the loop), `cell.rs` (publication)
//! and `sync.rs` (the seam loom replaces) are the hand-off that
//! `loom-tests/` model-checks; `machine.rs`, `writer_stats.rs`, `tuning.rs` and
//! `handle.rs` tie it to the presence store and a std thread.

mod cell;
mod handle;
mod machine;
mod queue;
mod sync;
mod tuning;
mod writer;
mod writer_stats;

pub use cell::{SnapshotCell, WaitFor};
pub use handle::{Engine, SnapshotReader};
pub use machine::{Event, PresenceMachine, RENEWALS_PER_TURN};
pub use queue::{Ack, EventSender, PushError};
pub use sync::Guard;
pub use tuning::{DEFAULT_MAX_BATCH, DEFAULT_QUEUE_CAPACITY, EngineConfig};
pub use writer::{BatchReport, Machine, WriterConfig};
pub use writer_stats::WriterStats;
