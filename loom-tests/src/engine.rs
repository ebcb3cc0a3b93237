//! The real hand-off files of `../src/engine/`, compiled against loom.
//!
//! The module tree mirrors `rollcall::engine` for the four files the
//! hand-off is made of, so their `super::sync`, `super::cell` and
//! `super::queue` paths resolve unchanged. `machine.rs`, `writer_stats.rs`, `tuning.rs` and `handle.rs` tie
//! the engine to the presence store and a std thread; the models supply a
//! toy [`Machine`] and their own threads instead.

// Not every engine item is used by the models (the server's metrics
// accessors, `wait_for_blocking`): that is expected here.
#![allow(dead_code)]

#[path = "../../src/engine/cell.rs"]
pub(crate) mod cell;
#[path = "../../src/engine/queue.rs"]
pub(crate) mod queue;
#[path = "../../src/engine/sync.rs"]
pub(crate) mod sync;
#[path = "../../src/engine/writer.rs"]
pub(crate) mod writer;

pub use cell::{SnapshotCell, WaitFor};
pub use queue::{Ack, EventSender, PushError};
pub use sync::Guard;
pub use writer::{BatchReport, Machine, Millis, WriterConfig};
