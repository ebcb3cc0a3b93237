//! The synchronisation primitives the hand-off is built on, behind one seam.
//!
//! Normally these are `std`, `arc-swap` and `crossbeam-channel`. Under
//! `--cfg rollcall_loom` (set only by the `loom-tests/` package, so tokio
//! never sees it) they are loom's instrumented `Arc`, `Mutex`, `RwLock`,
//! `Notify` and atomics. arc-swap and crossbeam contain no loom code, so the
//! loom build replaces them with stand-ins of the same contract: a cell whose
//! `load` returns the last stored `Arc` (`RwLock<Arc<T>>`), and an MPSC queue
//! pair (bounded data, unbounded control, each a `Mutex<VecDeque>`) whose
//! receiver sees every item sent before the last sender was dropped.

#[cfg(not(rollcall_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(rollcall_loom))]
pub(crate) use std::sync::{Arc, Mutex};

#[cfg(rollcall_loom)]
pub(crate) use loom::sync::atomic::Ordering;
#[cfg(rollcall_loom)]
pub(crate) use loom::sync::{Arc, Mutex};
#[cfg(rollcall_loom)]
pub(crate) use seq_cst::{AtomicBool, AtomicU64, AtomicUsize};

/// Under loom: loom's atomics, with a `SeqCst` fence after every `SeqCst`
/// access.
///
/// loom treats a `SeqCst` access as `AcqRel` (see "Unsupported features" in
/// its README); only `fence(SeqCst)` gets the single total order. That is
/// too weak for the store-then-load pairs in `EventSender::push` and
/// `close`, which C11 makes correct with `SeqCst` accesses alone: loom
/// would let both loads read stale values and report an accepted event
/// lost at shutdown. A `SeqCst` fence after each `SeqCst` access restores
/// that order; `Relaxed`, `Acquire` and `Release` accesses are unchanged.
#[cfg(rollcall_loom)]
mod seq_cst {
    use loom::sync::atomic::{Ordering, fence};

    fn after(order: Ordering) {
        if order == Ordering::SeqCst {
            fence(Ordering::SeqCst);
        }
    }

    macro_rules! atomic {
        ($name:ident, $value:ty $(, $rmw:ident)*) => {
            pub(crate) struct $name(loom::sync::atomic::$name);

            impl $name {
                pub(crate) fn new(value: $value) -> Self {
                    $name(loom::sync::atomic::$name::new(value))
                }

                pub(crate) fn load(&self, order: Ordering) -> $value {
                    let value = self.0.load(order);
                    after(order);
                    value
                }

                pub(crate) fn store(&self, value: $value, order: Ordering) {
                    self.0.store(value, order);
                    after(order);
                }

                pub(crate) fn swap(&self, value: $value, order: Ordering) -> $value {
                    let old = self.0.swap(value, order);
                    after(order);
                    old
                }

                $(
                    pub(crate) fn $rmw(&self, value: $value, order: Ordering) -> $value {
                        let old = self.0.$rmw(value, order);
                        after(order);
                        old
                    }
                )*
            }
        };
    }

    atomic!(AtomicBool, bool);
    atomic!(AtomicU64, u64, fetch_add, fetch_sub);
    atomic!(AtomicUsize, usize, fetch_add, fetch_sub);
}

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

/// What `SnapshotCell::load` hands out: a cheap, short-lived borrow.
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

/// Under loom: the event queues as a `Mutex<VecDeque>` per queue, with the
/// same contract as the crossbeam pair above.
///
/// The receiver's wait is a loom `Notify`: [`recv_either`] registers one in
/// both queues before it waits on it, and a send or the last sender's drop
/// takes it and notifies. A notification that comes before the wait is
/// kept, so none is lost between the check and the wait. (Not
/// `thread::park`: loom drops a pending unpark when the thread blocks on a
/// loom `Mutex` in between, which would report a deadlock the real queue
/// does not have.)
///
/// loom has no clock, so a deadline cannot pass while the writer waits.
/// Instead, `recv_either` with `Some(deadline)` returns
/// [`RecvError::Timeout`] at once when both queues are empty: the model
/// explores "the deadline had already passed". A model whose machine always
/// has a deadline therefore spins; the models give theirs none, or one that
/// `expire` clears. With `None` it waits until an item arrives or every
/// sender is gone, which is what the real writer does.
#[cfg(rollcall_loom)]
pub(crate) mod channel {
    use super::{Arc, Mutex};
    use loom::sync::Notify;
    use std::collections::VecDeque;
    use std::time::Instant;

    /// Why a send was refused; the item comes back, as in crossbeam.
    pub(crate) enum TrySendError<T> {
        /// A bounded queue is at its capacity.
        Full(T),
        /// The receiver is gone.
        Disconnected(T),
    }

    /// The queue was empty (and perhaps also disconnected).
    pub(crate) struct TryRecvError;

    /// Why a receive returned no item.
    pub(crate) enum RecvError {
        /// A deadline was given and both queues were empty (see the module
        /// docs: under loom the deadline is always taken to have passed).
        Timeout,
        /// Every sender is gone and both queues are empty.
        Closed,
    }

    struct State<T> {
        /// Sent and not yet received, oldest first.
        items: VecDeque<T>,
        /// `None` for the unbounded queue; otherwise `items.len() <= cap`.
        cap: Option<usize>,
        /// Live `Sender`s; 0 means disconnected once `items` is empty.
        senders: usize,
        /// False once the `Receiver` is dropped; sends fail from then on.
        receiver_alive: bool,
        /// Set while the receiver waits in `recv_either` with this queue
        /// empty; whoever changes that takes it and notifies.
        waiting: Option<Arc<Notify>>,
    }

    impl<T> State<T> {
        fn wake(&mut self) {
            if let Some(receiver) = self.waiting.take() {
                receiver.notify();
            }
        }
    }

    type Shared<T> = Arc<Mutex<State<T>>>;

    /// The sending end; counted, so the last drop disconnects.
    pub(crate) struct Sender<T>(Shared<T>);

    /// The single receiving end.
    pub(crate) struct Receiver<T>(Shared<T>);

    fn channel<T>(cap: Option<usize>) -> (Sender<T>, Receiver<T>) {
        let shared = Arc::new(Mutex::new(State {
            items: VecDeque::new(),
            cap,
            senders: 1,
            receiver_alive: true,
            waiting: None,
        }));
        (Sender(Arc::clone(&shared)), Receiver(shared))
    }

    pub(crate) fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
        channel(Some(cap))
    }

    pub(crate) fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
        channel(None)
    }

    fn lock<T>(shared: &Shared<T>) -> loom::sync::MutexGuard<'_, State<T>> {
        shared
            .lock()
            .expect("no thread panics while holding a queue lock")
    }

    impl<T> Sender<T> {
        pub(crate) fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
            let mut state = lock(&self.0);
            if !state.receiver_alive {
                return Err(TrySendError::Disconnected(item));
            }
            if state.cap.is_some_and(|cap| state.items.len() >= cap) {
                return Err(TrySendError::Full(item));
            }
            state.items.push_back(item);
            state.wake();
            Ok(())
        }

        pub(crate) fn len(&self) -> usize {
            lock(&self.0).items.len()
        }
    }

    impl<T> Clone for Sender<T> {
        fn clone(&self) -> Self {
            lock(&self.0).senders += 1;
            Sender(Arc::clone(&self.0))
        }
    }

    impl<T> Drop for Sender<T> {
        fn drop(&mut self) {
            let mut state = lock(&self.0);
            state.senders -= 1;
            if state.senders == 0 {
                state.wake();
            }
        }
    }

    impl<T> Receiver<T> {
        pub(crate) fn try_recv(&self) -> Result<T, TryRecvError> {
            lock(&self.0).items.pop_front().ok_or(TryRecvError)
        }

        /// Takes the oldest item; if there is none, registers `waiting` and
        /// tells whether the queue is closed for good.
        fn take_or_wait(&self, waiting: &Arc<Notify>) -> Result<T, bool> {
            let mut state = lock(&self.0);
            match state.items.pop_front() {
                Some(item) => {
                    state.waiting = None;
                    Ok(item)
                }
                None => {
                    state.waiting = Some(Arc::clone(waiting));
                    Err(state.senders == 0)
                }
            }
        }
    }

    impl<T> Drop for Receiver<T> {
        fn drop(&mut self) {
            lock(&self.0).receiver_alive = false;
        }
    }

    /// Takes one item, control queue first; see the module docs for what
    /// `deadline` means under loom.
    pub(crate) fn recv_either<T>(
        control: &Receiver<T>,
        data: &Receiver<T>,
        deadline: Option<Instant>,
    ) -> Result<T, RecvError> {
        // A fresh `Notify` per call: a registration left behind in the
        // other queue then notifies one that nobody waits on, and cannot
        // teach loom a happens-before edge the real queue does not have.
        let waiting = Arc::new(Notify::new());
        loop {
            let control_closed = match control.take_or_wait(&waiting) {
                Ok(item) => return Ok(item),
                Err(closed) => closed,
            };
            let data_closed = match data.take_or_wait(&waiting) {
                Ok(item) => return Ok(item),
                Err(closed) => closed,
            };
            if control_closed && data_closed {
                return Err(RecvError::Closed);
            }
            if deadline.is_some() {
                return Err(RecvError::Timeout);
            }
            // Registered in both queues while both were empty: any send or
            // last drop from here on notifies (or leaves the notification
            // for this wait to consume). The wait may also wake spuriously;
            // the loop checks again either way.
            waiting.wait();
        }
    }
}
