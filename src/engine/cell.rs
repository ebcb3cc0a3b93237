//! The publication cell: the one place readers get the current snapshot,
//! and where they wait for a version to be published.
//!
//! Invariants:
//! - `version` never decreases, and is stored only after the snapshot it
//!   names is in `current` (Release), so a reader that sees version V and
//!   then loads (Acquire) gets V or newer;
//! - every waiter registered for V is woken by the first publish of a
//!   version >= V: `publish` stores the version *before* it takes the
//!   waiter lock, and a waiter re-checks the version *under* that lock.

use super::sync::{ArcCell, AtomicU64, Guard, Mutex, Ordering};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc as StdArc;
use std::task::{Context, Poll, Waker};

/// Holds the latest published `T` and wakes those waiting for a version.
pub struct SnapshotCell<T> {
    current: ArcCell<T>,
    /// The version of `current`. Written only by the single writer.
    version: AtomicU64,
    waiters: Mutex<Waiters>,
}

#[derive(Default)]
struct Waiters {
    next_id: u64,
    /// (waiter id, version it waits for, its waker).
    list: Vec<(u64, u64, Waker)>,
}

impl<T> SnapshotCell<T> {
    /// A cell holding `initial` at `version`.
    pub fn new(initial: super::sync::Arc<T>, version: u64) -> Self {
        SnapshotCell {
            current: ArcCell::new(initial),
            version: AtomicU64::new(version),
            waiters: Mutex::new(Waiters::default()),
        }
    }

    /// The current snapshot. Wait-free; don't hold the guard across an
    /// `.await` (use [`SnapshotCell::load_full`] there).
    pub fn load(&self) -> Guard<T> {
        self.current.load()
    }

    /// The current snapshot as an owned `Arc`, to keep across `.await`s.
    pub fn load_full(&self) -> super::sync::Arc<T> {
        self.current.load_full()
    }

    /// The version of the current snapshot.
    pub fn version(&self) -> u64 {
        // Acquire: pairs with the Release store in `publish`, so the
        // snapshot of this version is visible to a later `load`.
        self.version.load(Ordering::Acquire)
    }

    /// Makes `snapshot` current at `version` and wakes every waiter for a
    /// version up to it. Called by the single writer only.
    pub(crate) fn publish(&self, snapshot: super::sync::Arc<T>, version: u64) {
        self.current.store(snapshot);
        // Release: pairs with the Acquire loads in `version` and `WaitFor`.
        self.version.store(version, Ordering::Release);
        let mut ready = Vec::new();
        {
            let mut waiters = self.waiters.lock().expect("waiter lock is never poisoned");
            waiters.list.retain(|(_, target, waker)| {
                if *target <= version {
                    ready.push(waker.clone());
                    false
                } else {
                    true
                }
            });
        }
        // Wake outside the lock so woken tasks don't contend on it.
        for waker in ready {
            waker.wake();
        }
    }

    /// Resolves once a version >= `version` is published.
    pub fn wait_for(&self, version: u64) -> WaitFor<'_, T> {
        WaitFor {
            cell: self,
            target: version,
            id: None,
        }
    }

    /// Blocks the calling thread until a version >= `version` is published.
    /// For threads outside an async runtime (tests, tools).
    pub fn wait_for_blocking(&self, version: u64) {
        struct Unpark(std::thread::Thread);
        impl std::task::Wake for Unpark {
            fn wake(self: StdArc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(StdArc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut wait = std::pin::pin!(self.wait_for(version));
        while wait.as_mut().poll(&mut cx).is_pending() {
            std::thread::park();
        }
    }
}

/// Future returned by [`SnapshotCell::wait_for`].
pub struct WaitFor<'a, T> {
    cell: &'a SnapshotCell<T>,
    target: u64,
    /// Our slot in the waiter list, once registered.
    id: Option<u64>,
}

impl<T> Future for WaitFor<'_, T> {
    type Output = u64;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u64> {
        let seen = self.cell.version();
        if seen >= self.target {
            return Poll::Ready(seen);
        }
        let cell = self.cell;
        let mut waiters = cell.waiters.lock().expect("waiter lock is never poisoned");
        // Re-check under the lock: `publish` stores the version before
        // taking it, so either we see the new version here or it sees us.
        let seen = cell.version();
        if seen >= self.target {
            return Poll::Ready(seen);
        }
        match self.id {
            Some(id) => {
                if let Some(slot) = waiters.list.iter_mut().find(|(i, _, _)| *i == id) {
                    slot.2.clone_from(cx.waker());
                } else {
                    waiters.list.push((id, self.target, cx.waker().clone()));
                }
            }
            None => {
                let id = waiters.next_id;
                waiters.next_id += 1;
                waiters.list.push((id, self.target, cx.waker().clone()));
                drop(waiters);
                self.id = Some(id);
            }
        }
        Poll::Pending
    }
}

impl<T> Drop for WaitFor<'_, T> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            if let Ok(mut waiters) = self.cell.waiters.lock() {
                waiters.list.retain(|(i, _, _)| *i != id);
            }
        }
    }
}
