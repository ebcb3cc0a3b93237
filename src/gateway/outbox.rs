//! A connection's outbound queue and the task that writes it to the socket.
//!
//! Everything a connection sends goes through its [`Outbox`], in order. The
//! outbox counts the bytes it holds. Once they exceed `maxBufferedBytes`,
//! broadcast events for this connection are dropped ([`Outbox::try_event`]
//! says so), and a further reply closes the connection as a slow consumer
//! ([`Outbox::reply`] fails). A connection with nothing unsent always gets
//! the next frame, however large: a list bigger than the limit must still
//! reach clients that keep up. One stuck client therefore never holds
//! memory beyond its limit plus one frame, nor slows the broadcaster.
//!
//! Replies that read presence are rendered by the writer task when their
//! turn comes (see `render.rs`), after every earlier `system-event` of the
//! connection was applied: that ordering is what gives read-your-writes.
//! The writer takes items through the [`Receiver`] half.

use crate::protocol::Close;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::{Notify, oneshot};

/// Something to send.
pub enum Out {
    /// A complete text frame.
    Text(Bytes),
    /// The `{"ok":true}` reply to `id`, sent once the event was applied.
    Applied {
        /// Request id.
        id: String,
        /// Completes with the version the event was applied at.
        applied: oneshot::Receiver<u64>,
    },
    /// A `system-presence` reply, rendered from the snapshot when sent.
    Presence {
        /// Request id.
        id: String,
    },
    /// A `health` reply, rendered when sent.
    Health {
        /// Request id.
        id: String,
    },
    /// A pong for a ping.
    Pong(Vec<u8>),
    /// The echo of a client's close frame; the writer stops after it.
    CloseEcho(Vec<u8>),
    /// A close frame; the writer stops after it.
    Close(Close),
}

/// The reply did not fit: the connection must close as a slow consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlowConsumer;

/// Producer side of one connection's queue.
///
/// A `Mutex<VecDeque>` plus a `Notify` rather than a channel: an idle
/// connection's queue then costs no allocation at all (a channel allocates
/// its first block of slots up front), which matters at 100k connections.
#[derive(Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
    limit: usize,
}

struct Shared {
    /// Items not yet taken by the writer. The lock is held only to push or
    /// pop, never across an `.await`.
    queue: Mutex<VecDeque<(Out, usize)>>,
    /// Wakes the writer; a notification sent while it is busy is kept.
    ready: Notify,
    /// Bytes queued and not yet written. Relaxed is enough: it is a budget
    /// estimate, never used to order memory.
    queued: AtomicUsize,
    /// Set by the writer when it stops: later pushes are refused.
    stopped: AtomicBool,
    /// Set by the connection when it is done: the writer drains and stops.
    ended: AtomicBool,
}

impl Outbox {
    /// Queues a broadcast event; `false` if it was dropped for this
    /// connection (over the limit, or the connection is closing).
    pub fn try_event(&self, frame: Bytes) -> bool {
        // "Exceed" is about what is already unsent (§7), not about whether
        // this frame would cross the limit.
        if self.shared.queued.load(Ordering::Relaxed) > self.limit {
            return false;
        }
        let size = frame.len();
        self.push(Out::Text(frame), size)
    }

    /// Queues a reply of about `size` bytes. Fails when the connection
    /// has fallen behind: its unsent bytes already exceed the limit. A
    /// `size` of 0 marks what must go out regardless (control frames, the
    /// challenge, shutdown notices).
    pub fn reply(&self, out: Out, size: usize) -> Result<(), SlowConsumer> {
        if size > 0 && self.shared.queued.load(Ordering::Relaxed) > self.limit {
            return Err(SlowConsumer);
        }
        // Refused only when the writer already stopped (socket gone): the
        // reader sees the close too, so there is nothing to report.
        self.push(out, size);
        Ok(())
    }

    /// Queues a close frame regardless of the budget.
    pub fn close(&self, close: Close) {
        self.push(Out::Close(close), 0);
    }

    /// Tells the writer that nothing more will come: it writes what is
    /// queued and stops.
    pub fn end(&self) {
        self.shared.ended.store(true, Ordering::Release);
        self.shared.ready.notify_one();
    }

    /// Takes the next queued item, as the writer would (tests only).
    #[cfg(test)]
    pub fn try_take(&self) -> Option<(Out, usize)> {
        self.shared.lock().pop_front()
    }

    fn push(&self, out: Out, size: usize) -> bool {
        if self.shared.stopped.load(Ordering::Acquire) {
            return false;
        }
        self.shared.queued.fetch_add(size, Ordering::Relaxed);
        self.shared.lock().push_back((out, size));
        self.shared.ready.notify_one();
        true
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(Out, usize)>> {
        // Push and pop cannot leave the deque half-updated, so a poisoned
        // lock is still consistent.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next item, waiting for one; `None` once ended and drained.
    async fn next(&self) -> Option<(Out, usize)> {
        loop {
            if let Some(item) = self.lock().pop_front() {
                return Some(item);
            }
            // Acquire: pairs with the Release in `end`; anything pushed
            // before `end` was popped above.
            if self.ended.load(Ordering::Acquire) {
                return None;
            }
            self.ready.notified().await;
        }
    }
}

/// Creates a connection's outbox; its writer reads it through a [`Receiver`].
pub fn outbox(limit: usize) -> Outbox {
    Outbox {
        shared: Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            queued: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
            ended: AtomicBool::new(false),
        }),
        limit,
    }
}

/// The writer's half of an outbox.
pub struct Receiver {
    shared: Arc<Shared>,
}

impl Receiver {
    /// The writer's half of `outbox`.
    pub fn new(outbox: &Outbox) -> Receiver {
        Receiver {
            shared: Arc::clone(&outbox.shared),
        }
    }

    /// The next item, waiting for one; `None` once ended and drained.
    pub async fn next(&self) -> Option<(Out, usize)> {
        self.shared.next().await
    }

    /// Releases `size` bytes of the budget: the item carrying them is written.
    pub fn written(&self, size: usize) {
        self.shared.queued.fetch_sub(size, Ordering::Relaxed);
    }
}

impl Drop for Receiver {
    /// The writer is gone: later `try_event`/`reply` calls fail fast, and
    /// what is queued is freed.
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Release);
        self.shared.lock().clear();
    }
}
