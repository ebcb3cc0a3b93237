//! A connection's outbound queue: what its writer task sends, in order.
//!
//! Replies (and the challenge, `hello-ok`, closes) are queued in order and
//! counted against the connection's byte budget (`maxBufferedBytes`): a
//! reply that finds the budget already exceeded fails ([`SlowConsumer`]),
//! and the connection is closed. Broadcasts are never refused and never
//! pile up: each kind has one slot, and a newer event replaces an unsent one
//! (latest wins, docs/protocol.md §7). A queued marker keeps the slot's place in
//! the order; the writer takes whatever the slot holds when the marker's
//! turn comes, and numbers it then, so `seq` has no gaps. Pongs are
//! conflated the same way: at most one is pending, answering the latest
//! ping, and it counts against the budget.
//!
//! So a stuck connection holds at most its budget of replies, one pending
//! event of each broadcast kind (shared `Bytes`), and one pong.
//!
//! Replies that read presence are rendered by the writer when their turn
//! comes (see `render.rs`), after every earlier `system-event` of the
//! connection was applied: that ordering is what gives read-your-writes.

use super::list_frame::ListFrame;
use crate::protocol::{Close, SharedEvent};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{Notify, OwnedSemaphorePermit, oneshot};

/// Something for the writer to send.
pub enum Out {
    /// A complete text frame (a reply, the challenge).
    Text(Bytes),
    /// `hello-ok`, holding its share of the gateway's budget for hellos in
    /// flight until it is written.
    Hello {
        /// The frame.
        frame: ListFrame,
        /// Released when the frame is written (or dropped).
        permit: Option<OwnedSemaphorePermit>,
    },
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
    /// A broadcast event, numbered with the connection's next `seq` when
    /// written.
    Event(SharedEvent),
    /// A pong carrying the latest ping's payload.
    Pong(Vec<u8>),
    /// A keepalive ping with an empty payload (docs/protocol.md §1).
    Ping,
    /// The echo of a client's close frame; the writer stops after it.
    CloseEcho(Vec<u8>),
    /// A close frame; the writer stops after it.
    Close(Close),
}

/// The broadcast kinds that are conflated, one slot each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// `presence` or `presence.delta`.
    Presence,
    /// `tick`.
    Tick,
}

/// The reply did not fit: the connection must close as a slow consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlowConsumer;

/// An unsent presence event and the version the client held before it.
struct Pending {
    from: u64,
    event: SharedEvent,
}

enum Queued {
    Out(Out),
    /// Take the slot of this feed.
    Latest(Feed),
    /// Take the pong slot.
    Pong,
    /// Take the ping flag.
    Ping,
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<(Queued, usize)>,
    presence: Option<Pending>,
    tick: Option<SharedEvent>,
    pong: Option<Vec<u8>>,
    /// A keepalive ping is queued and not yet written.
    ping: bool,
}

struct Shared {
    /// The queue and the slots. Held only to push or pop, never across an
    /// `.await`.
    inner: Mutex<Inner>,
    /// Wakes the writer; a notification sent while it is busy is kept.
    ready: Notify,
    /// Reply bytes queued and not yet written. Relaxed is enough: it is a
    /// budget estimate, never used to order memory.
    queued: AtomicUsize,
    /// Set by the writer when it stops: later pushes are dropped.
    stopped: AtomicBool,
    /// Set by the connection when it is done: the writer drains and stops.
    ended: AtomicBool,
}

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

/// Bytes a pong is counted as: its payload plus a frame header.
const PONG_OVERHEAD: usize = 8;

impl Outbox {
    /// Queues a reply of about `size` bytes. Fails when the connection
    /// has fallen behind: its unsent bytes already exceed the limit. A
    /// `size` of 0 marks what must go out regardless (the challenge,
    /// shutdown notices).
    pub fn reply(&self, out: Out, size: usize) -> Result<(), SlowConsumer> {
        if size > 0 && self.over_budget() {
            return Err(SlowConsumer);
        }
        // Dropped only when the writer already stopped (socket gone): the
        // reader sees the close too, so there is nothing to report.
        self.push(Queued::Out(out), size);
        Ok(())
    }

    /// Answers a ping. At most one pong is pending: a newer ping replaces
    /// the payload of an unsent one. Fails when the connection is over its
    /// budget, so a client that pings and never reads is closed.
    pub fn pong(&self, payload: Vec<u8>) -> Result<(), SlowConsumer> {
        if self.over_budget() {
            return Err(SlowConsumer);
        }
        let mut inner = self.lock();
        if inner.pong.replace(payload).is_none() {
            self.enqueue(&mut inner, Queued::Pong, 0);
        }
        Ok(())
    }

    /// Queues a keepalive ping unless one is already pending; it is never
    /// refused (it is 2 bytes) and never piles up.
    pub fn ping(&self) {
        let mut inner = self.lock();
        if !std::mem::replace(&mut inner.ping, true) {
            self.enqueue(&mut inner, Queued::Ping, 0);
        }
    }

    /// Offers the newest presence event. `make` gets the version the client
    /// held before an unsent presence event, if one is pending (it is then
    /// replaced, so a delta must start from there), and returns the event.
    /// True when an unsent event was replaced (conflated).
    pub fn offer_presence(&self, held: u64, make: impl FnOnce(u64) -> SharedEvent) -> bool {
        let mut inner = self.lock();
        let (from, conflated) = match &inner.presence {
            Some(pending) => (pending.from, true),
            None => (held, false),
        };
        let event = make(from);
        inner.presence = Some(Pending { from, event });
        if !conflated {
            self.enqueue(&mut inner, Queued::Latest(Feed::Presence), 0);
        }
        conflated
    }

    /// Offers the newest `tick`; true when an unsent one was replaced.
    pub fn offer_tick(&self, event: SharedEvent) -> bool {
        let mut inner = self.lock();
        let conflated = inner.tick.replace(event).is_some();
        if !conflated {
            self.enqueue(&mut inner, Queued::Latest(Feed::Tick), 0);
        }
        conflated
    }

    /// Queues a close frame regardless of the budget.
    pub fn close(&self, close: Close) {
        self.push(Queued::Out(Out::Close(close)), 0);
    }

    /// Tells the writer that nothing more will come: it writes what is
    /// queued and stops.
    pub fn end(&self) {
        self.shared.ended.store(true, Ordering::Release);
        self.shared.ready.notify_one();
    }

    /// Takes the next item, as the writer would (tests only).
    #[cfg(test)]
    pub fn try_take(&self) -> Option<Out> {
        self.shared.pop().map(|(out, _)| out)
    }

    fn over_budget(&self) -> bool {
        // "Exceed" is about what is already unsent (§7), not about whether
        // the new item would cross the limit: a connection with nothing
        // unsent always gets the next reply, however large.
        self.shared.queued.load(Ordering::Relaxed) > self.limit
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock()
    }

    fn push(&self, item: Queued, size: usize) {
        let mut inner = self.lock();
        self.enqueue(&mut inner, item, size);
    }

    fn enqueue(&self, inner: &mut Inner, item: Queued, size: usize) {
        if self.shared.stopped.load(Ordering::Acquire) {
            return;
        }
        let size = match item {
            Queued::Pong => PONG_OVERHEAD + inner.pong.as_ref().map_or(0, Vec::len),
            _ => size,
        };
        self.shared.queued.fetch_add(size, Ordering::Relaxed);
        inner.queue.push_back((item, size));
        self.shared.ready.notify_one();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Push and pop cannot leave the queue half-updated, so a poisoned
        // lock is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next item with its slot taken, and its budget size.
    fn pop(&self) -> Option<(Out, usize)> {
        let mut inner = self.lock();
        loop {
            let (item, size) = inner.queue.pop_front()?;
            let out = match item {
                Queued::Out(out) => Some(out),
                Queued::Latest(Feed::Presence) => {
                    inner.presence.take().map(|p| Out::Event(p.event))
                }
                Queued::Latest(Feed::Tick) => inner.tick.take().map(Out::Event),
                Queued::Pong => inner.pong.take().map(Out::Pong),
                Queued::Ping => std::mem::take(&mut inner.ping).then_some(Out::Ping),
            };
            match out {
                Some(out) => return Some((out, size)),
                // A marker whose slot is empty cannot happen (a slot is
                // filled before its marker is queued and emptied only
                // here); skip it rather than stall.
                None => self.queued.fetch_sub(size, Ordering::Relaxed),
            };
        }
    }

    /// The next item, waiting for one; `None` once ended and drained.
    async fn next(&self) -> Option<(Out, usize)> {
        loop {
            if let Some(item) = self.pop() {
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
            inner: Mutex::new(Inner::default()),
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

    /// The next item if one is queued, without waiting.
    pub fn try_next(&self) -> Option<(Out, usize)> {
        self.shared.pop()
    }

    /// Releases `size` bytes of the budget: the item carrying them is written.
    pub fn written(&self, size: usize) {
        self.shared.queued.fetch_sub(size, Ordering::Relaxed);
    }
}

impl Drop for Receiver {
    /// The writer is gone: later pushes are dropped, and what is queued is
    /// freed.
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Release);
        let mut inner = self.shared.lock();
        *inner = Inner::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::SharedEvent;

    fn tick(ts: i64) -> SharedEvent {
        SharedEvent::tick(ts)
    }

    fn is_tick(out: Option<Out>, ts: i64) -> bool {
        matches!(out, Some(Out::Event(e)) if e == tick(ts))
    }

    #[test]
    fn a_newer_tick_replaces_an_unsent_one_in_place() {
        let outbox = outbox(1 << 20);
        assert!(!outbox.offer_tick(tick(1)));
        outbox
            .reply(Out::Text(Bytes::from_static(b"r")), 1)
            .unwrap();
        assert!(outbox.offer_tick(tick(2)), "the unsent tick is conflated");
        assert!(
            is_tick(outbox.try_take(), 2),
            "the latest, at the first one's place"
        );
        assert!(matches!(outbox.try_take(), Some(Out::Text(_))));
        assert!(outbox.try_take().is_none());
    }

    #[test]
    fn a_pending_presence_event_keeps_the_version_it_started_from() {
        let outbox = outbox(1 << 20);
        let mut froms = Vec::new();
        outbox.offer_presence(3, |from| {
            froms.push(from);
            tick(1)
        });
        outbox.offer_presence(5, |from| {
            froms.push(from);
            tick(2)
        });
        assert_eq!(
            froms,
            [3, 3],
            "the merged event must start where the client is"
        );
        assert!(is_tick(outbox.try_take(), 2));
        assert!(outbox.try_take().is_none(), "one event, not two");
    }

    #[test]
    fn ping_flood_holds_one_pong_and_closes_past_the_budget() {
        let outbox = outbox(64);
        for i in 0..10_000u32 {
            outbox.pong(i.to_be_bytes().to_vec()).unwrap();
        }
        assert!(matches!(outbox.try_take(), Some(Out::Pong(p)) if p == 9_999u32.to_be_bytes()));
        assert!(outbox.try_take().is_none(), "one pong for the whole flood");
        outbox
            .reply(Out::Text(Bytes::from_static(b"x")), 100)
            .unwrap();
        assert_eq!(
            outbox.pong(vec![]),
            Err(SlowConsumer),
            "pings count against the budget"
        );
    }

    #[test]
    fn replies_past_the_budget_fail_but_must_go_items_do_not() {
        let outbox = outbox(10);
        outbox
            .reply(Out::Text(Bytes::from_static(b"big")), 11)
            .unwrap();
        assert_eq!(
            outbox.reply(Out::Text(Bytes::from_static(b"r")), 1),
            Err(SlowConsumer)
        );
        outbox
            .reply(Out::Text(Bytes::from_static(b"challenge")), 0)
            .unwrap();
        assert!(!outbox.offer_tick(tick(1)), "broadcasts are never refused");
    }
}
