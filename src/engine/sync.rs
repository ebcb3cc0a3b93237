//! The synchronisation primitives the hand-off is built on, behind one seam.
//!
//! Normally these are `std`, `arc-swap` and `crossbeam-channel`. Under
//! `--cfg rollcall_loom` (set only by the `loom-tests/` package, so tokio
//! never sees it) they are loom's instrumented `Mutex`, `Condvar`, atomics and
//! `RwLock<Arc<T>>`. arc-swap and crossbeam contain no loom code, so the
//! loom build replaces them with stand-ins of the same contract: a cell whose
//! `load` returns the last stored `Arc`, and an MPSC queue pair (bounded data,
//! unbounded control) whose receiver sees every item sent before the last
//! sender was dropped.

#[cfg(not(rollcall_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(rollcall_loom))]
pub(crate) use std::sync::{Arc, Mutex};

#[cfg(rollcall_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(rollcall_loom)]
pub(crate) use loom::sync::{Arc, Mutex};

/// Lets a spinning thread give way; loom needs to be told.
pub(crate) fn spin_yield() {
    #[cfg(not(rollcall_loom))]
    std::thread::yield_now();
    #[cfg(rollcall_loom)]
    loom::thread::yield_now();
}

/// A cell holding an `Arc<T>` that readers load without waiting.
#[cfg(not(rollcall_loom))]
pub(crate) struct ArcCell<T>(arc_swap::ArcSwap<T>);

/// What [`ArcCell::load`] hands out: a cheap, short-lived borrow.
#[cfg(not(rollcall_loom))]
pub type Guard<T> = arc_swap::Guard<Arc<T>>;

#[cfg(not(rollcall_loom))]
impl<T> ArcCell<T> {
    pub(crate) fn new(value: Arc<T>) -> Self {
        ArcCell(arc_swap::ArcSwap::new(value))
    }

    /// Wait-free (arc-swap's debt slots): no lock, no allocation.
    pub(crate) fn load(&self) -> Guard<T> {
        self.0.load()
    }

    pub(crate) fn load_full(&self) -> Arc<T> {
        self.0.load_full()
    }

    pub(crate) fn store(&self, value: Arc<T>) {
        self.0.store(value)
    }
}

/// Under loom: a `RwLock<Arc<T>>` with the same contract as `ArcSwap`.
#[cfg(rollcall_loom)]
pub(crate) struct ArcCell<T>(loom::sync::RwLock<Arc<T>>);

/// Under loom a load hands out an owned `Arc`.
#[cfg(rollcall_loom)]
pub type Guard<T> = Arc<T>;

#[cfg(rollcall_loom)]
impl<T> ArcCell<T> {
    pub(crate) fn new(value: Arc<T>) -> Self {
        ArcCell(loom::sync::RwLock::new(value))
    }

    pub(crate) fn load(&self) -> Guard<T> {
        Arc::clone(&self.0.read().expect("no writer panics while holding it"))
    }

    pub(crate) fn load_full(&self) -> Arc<T> {
        self.load()
    }

    pub(crate) fn store(&self, value: Arc<T>) {
        *self.0.write().expect("no reader panics while holding it") = value;
    }
}

/// The event queues: a bounded data queue and an unbounded control queue.
#[cfg(not(rollcall_loom))]
pub(crate) mod channel {
    use std::time::Instant;

    pub(crate) use crossbeam_channel::{Receiver, Sender, TrySendError};

    /// Why a receive returned no item.
    pub(crate) enum RecvError {
        /// The deadline passed first.
        Timeout,
        /// Every sender is gone and both queues are empty.
        Closed,
    }

    pub(crate) fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
        crossbeam_channel::bounded(cap)
    }

    pub(crate) fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
        crossbeam_channel::unbounded()
    }

    /// Takes one item, control queue first, waiting until `deadline`.
    pub(crate) fn recv_either<T>(
        control: &Receiver<T>,
        data: &Receiver<T>,
        deadline: Option<Instant>,
    ) -> Result<T, RecvError> {
        if let Ok(item) = control.try_recv() {
            return Ok(item);
        }
        let mut control_open = true;
        let mut data_open = true;
        loop {
            let mut select = crossbeam_channel::Select::new();
            let c = control_open.then(|| select.recv(control));
            let d = data_open.then(|| select.recv(data));
            if c.is_none() && d.is_none() {
                return Err(RecvError::Closed);
            }
            let op = match deadline {
                Some(at) => select.select_deadline(at).map_err(|_| RecvError::Timeout)?,
                None => select.select(),
            };
            let index = op.index();
            let from_control = Some(index) == c;
            let result = if from_control {
                op.recv(control)
            } else {
                op.recv(data)
            };
            match result {
                Ok(item) => return Ok(item),
                Err(_) if from_control => control_open = false,
                Err(_) => data_open = false,
            }
        }
    }
}
