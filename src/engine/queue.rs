//! The producer side of the hand-off: a cloneable [`EventSender`] that puts
//! events on the writer's queues without ever blocking.
//!
//! Two queues feed the writer. The bounded data queue carries what clients
//! ask for (connects, beacons); when it is full the event is handed back and
//! the caller answers `UNAVAILABLE`. What the server must not lose
//! (disconnects) also goes there while it has room, keeping each
//! connection's events in order, and spills to the unbounded control queue
//! when it is full; that queue's length is bounded by the number of live
//! connections, since each closes once.
//!
//! Shutdown invariant: once `closing` is set and `in_flight` has been seen
//! at zero, no push can still succeed, so everything ever accepted is
//! already in a queue and the writer's final drain sees it.

use super::sync::channel::{self, Receiver, Sender, TrySendError};
use super::sync::{Arc, AtomicBool, AtomicU64, AtomicUsize, Ordering, spin_yield};
use std::fmt;
use thiserror::Error;

/// Completes with the version at which an event was applied.
pub type Ack = tokio::sync::oneshot::Sender<u64>;

/// What travels on the queues.
pub(crate) enum Msg<E> {
    /// An event, with whoever wants to know when it was applied.
    Event(E, Option<Ack>),
    /// Sent once by [`EventSender::close`]: drain and stop.
    Stop,
    /// Wakes the writer to expire at the clock's time now (after a test
    /// moved its clock); carries nothing.
    Nudge,
}

/// Why a push was refused. Either way the event is handed back.
#[derive(Error)]
pub enum PushError<E> {
    /// The data queue is full: back off and retry.
    #[error("event queue is full")]
    Full(E),
    /// The engine is shutting down or gone.
    #[error("engine is shut down")]
    Closed(E),
}

impl<E> PushError<E> {
    /// The event that was not accepted.
    pub fn into_inner(self) -> E {
        match self {
            PushError::Full(e) | PushError::Closed(e) => e,
        }
    }
}

impl<E> fmt::Debug for PushError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Full(_) => f.write_str("Full(..)"),
            PushError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

pub(crate) struct Shared {
    /// Set once by `close`; no push starts successfully after it.
    closing: AtomicBool,
    /// Pushes between their `closing` check and their enqueue.
    in_flight: AtomicUsize,
    /// Pushes refused because the data queue was full.
    pub(crate) rejected: AtomicU64,
}

/// The producer handle. Cheap to clone; never blocks.
pub struct EventSender<E> {
    data: Sender<Msg<E>>,
    control: Sender<Msg<E>>,
    shared: Arc<Shared>,
}

impl<E> Clone for EventSender<E> {
    fn clone(&self) -> Self {
        EventSender {
            data: self.data.clone(),
            control: self.control.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Which queue a push uses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// The bounded queue; a full queue counts as a rejection.
    Data,
    /// The bounded queue, with a fallback: a full queue is not a rejection.
    DataQuiet,
    /// The unbounded queue.
    Control,
}

/// The writer's ends of the queues.
pub(crate) struct Receivers<E> {
    pub(crate) control: Receiver<Msg<E>>,
    pub(crate) data: Receiver<Msg<E>>,
}

/// Creates the queues; `capacity` bounds the data queue.
pub(crate) fn queues<E>(capacity: usize) -> (EventSender<E>, Receivers<E>) {
    let (data, data_rx) = channel::bounded(capacity);
    let (control, control_rx) = channel::unbounded();
    let shared = Arc::new(Shared {
        closing: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
        rejected: AtomicU64::new(0),
    });
    (
        EventSender {
            data,
            control,
            shared,
        },
        Receivers {
            control: control_rx,
            data: data_rx,
        },
    )
}

impl<E> EventSender<E> {
    /// Queues a client event on the bounded queue.
    pub fn try_push(&self, event: E) -> Result<(), PushError<E>> {
        self.push(event, None, Lane::Data)
    }

    /// Queues a client event and returns a receiver that completes with the
    /// presence version at which it was applied (read-your-writes).
    pub fn try_push_acked(
        &self,
        event: E,
    ) -> Result<tokio::sync::oneshot::Receiver<u64>, PushError<E>> {
        let (ack, applied) = tokio::sync::oneshot::channel();
        self.push(event, Some(ack), Lane::Data)?;
        Ok(applied)
    }

    /// Queues an event the server must not drop (a disconnect). It goes on
    /// the data queue when that has room, so it stays behind the same
    /// producer's earlier events; only a full data queue sends it to the
    /// unbounded control queue, where it may overtake them. Fails only when
    /// the engine is shut down.
    pub fn push_control(&self, event: E) -> Result<(), PushError<E>> {
        match self.push(event, None, Lane::DataQuiet) {
            Err(PushError::Full(event)) => self.push(event, None, Lane::Control),
            other => other,
        }
    }

    /// Events waiting on the data queue.
    pub fn queue_depth(&self) -> usize {
        self.data.len()
    }

    /// Pushes refused so far because the data queue was full.
    pub fn rejected(&self) -> u64 {
        self.shared.rejected.load(Ordering::Relaxed)
    }

    fn push(&self, event: E, ack: Option<Ack>, lane: Lane) -> Result<(), PushError<E>> {
        // SeqCst on `in_flight` and `closing`, here and in `close`: either
        // this push sees `closing`, or `close` sees it in flight and waits
        // for it to land in a queue (a store-load pair needs SeqCst).
        self.shared.in_flight.fetch_add(1, Ordering::SeqCst);
        let result = if self.shared.closing.load(Ordering::SeqCst) {
            Err(PushError::Closed(event))
        } else {
            let queue = if lane == Lane::Control {
                &self.control
            } else {
                &self.data
            };
            match queue.try_send(Msg::Event(event, ack)) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(Msg::Event(e, _))) => {
                    if lane == Lane::Data {
                        self.shared.rejected.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(PushError::Full(e))
                }
                Err(TrySendError::Disconnected(Msg::Event(e, _))) => Err(PushError::Closed(e)),
                Err(_) => unreachable!("only Msg::Event is pushed here"),
            }
        };
        self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }

    /// Wakes the writer so it expires rows at its clock's time now rather
    /// than at the deadline it is waiting for (after a test advanced the
    /// clock). Never blocks; does nothing once closing.
    pub fn nudge(&self) {
        if !self.shared.closing.load(Ordering::SeqCst) {
            let _ = self.control.try_send(Msg::Nudge);
        }
    }

    /// Stops accepting events and tells the writer to drain and stop.
    /// Returns once every push that succeeded is in a queue.
    pub(crate) fn close(&self) {
        if self.shared.closing.swap(true, Ordering::SeqCst) {
            return;
        }
        while self.shared.in_flight.load(Ordering::SeqCst) != 0 {
            spin_yield();
        }
        // The writer may already be gone (it panicked); nothing to tell then.
        let _ = self.control.try_send(Msg::Stop);
    }
}
