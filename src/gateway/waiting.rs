//! The pool of connections that have not sent a request yet.
//!
//! Invariant: admitting a connection into a full pool evicts the oldest
//! (its task closes it), as long as that one has waited at least
//! [`WaitingPool::MIN_WAIT`]; connections younger than that are never
//! evicted, so the pool may exceed its capacity by what arrives within it. A
//! silent or slowloris socket soon becomes the oldest and goes, while a
//! client whose request head is merely waiting for a busy server to read
//! it is not punished for the server's delay.
//!
//! Ages are read on tokio's clock, so a test can pause and advance it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// The connections that have not sent a request yet, oldest first.
#[derive(Clone)]
pub struct WaitingPool {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    capacity: usize,
    next: u64,
    /// Oldest first: (id, when it entered, the sender that evicts it).
    members: VecDeque<(u64, Instant, oneshot::Sender<()>)>,
}

/// One connection's place in the pool.
pub struct Waiting {
    id: u64,
    pool: WaitingPool,
    evicted: Mutex<Option<oneshot::Receiver<()>>>,
}

impl WaitingPool {
    /// How long a connection waits for its first request before it may be
    /// evicted to make room: far longer than a real client takes to send a
    /// request head, even to a server busy with a ramp of thousands.
    pub const MIN_WAIT: Duration = Duration::from_secs(1);

    /// A pool of at most `capacity` connections (at least one).
    pub fn new(capacity: usize) -> WaitingPool {
        WaitingPool {
            inner: Arc::new(Mutex::new(Inner {
                capacity: capacity.max(1),
                next: 0,
                members: VecDeque::new(),
            })),
        }
    }

    /// The pool of a server with `max_connections` slots: at most
    /// `max_waiting`, and never more than half the slots, so however many
    /// sockets wait without a request, half the slots stay for the rest.
    pub fn within(max_connections: usize, max_waiting: usize) -> WaitingPool {
        WaitingPool::new(max_waiting.min(max_connections / 2))
    }

    /// Admits a connection, evicting the oldest while the pool is full and
    /// the oldest has waited [`WaitingPool::MIN_WAIT`]; how many were evicted.
    pub fn enter(&self) -> (Waiting, u64) {
        self.enter_at(Instant::now())
    }

    fn enter_at(&self, now: Instant) -> (Waiting, u64) {
        let mut inner = self.lock();
        let mut evicted = 0;
        while inner.members.len() >= inner.capacity && inner.evict_oldest(now) {
            evicted += 1;
        }
        let id = inner.next;
        inner.next += 1;
        let (tx, rx) = oneshot::channel();
        inner.members.push_back((id, now, tx));
        let waiting = Waiting {
            id,
            pool: self.clone(),
            evicted: Mutex::new(Some(rx)),
        };
        (waiting, evicted)
    }

    /// Evicts the oldest connection if it has waited [`WaitingPool::MIN_WAIT`]: the
    /// server is out of connection slots. True if one was evicted.
    pub fn evict_oldest(&self) -> bool {
        self.lock().evict_oldest(Instant::now())
    }

    /// Connections in the pool.
    pub fn len(&self) -> usize {
        self.lock().members.len()
    }

    /// True when the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Push, pop and remove leave the deque consistent even if a holder
        // panicked.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    /// Evicts the oldest member if it has waited [`WaitingPool::MIN_WAIT`] by `now`.
    fn evict_oldest(&mut self, now: Instant) -> bool {
        let old_enough = self
            .members
            .front()
            .is_some_and(|(_, since, _)| now.duration_since(*since) >= WaitingPool::MIN_WAIT);
        // Sending fails only if that connection already ended: it counts
        // as evicted all the same, its place is free.
        old_enough
            && self.members.pop_front().is_some_and(|(_, _, evict)| {
                let _ = evict.send(());
                true
            })
    }
}

impl Waiting {
    /// Leaves the pool: the connection sent a request. Idempotent.
    pub fn leave(&self) {
        let mut inner = self.pool.lock();
        if let Some(at) = inner.members.iter().position(|(id, _, _)| *id == self.id) {
            // Dropping the sender unsent tells the receiver: not evicted.
            inner.members.remove(at);
        }
    }

    /// Resolves when the pool evicts this connection; never after it left.
    pub fn evicted(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let rx = self.evicted.lock().ok().and_then(|mut r| r.take());
        async move {
            let evicted = match rx {
                Some(rx) => rx.await.is_ok(),
                None => false,
            };
            if !evicted {
                // It left the pool (the sender was dropped unsent), or the
                // receiver was already taken: never evicted.
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const MIN_WAIT: Duration = WaitingPool::MIN_WAIT;
    use futures_util::FutureExt;

    #[tokio::test]
    async fn admitting_past_capacity_evicts_the_oldest_that_waited_long_enough() {
        let pool = WaitingPool::new(2);
        let start = Instant::now();
        let (a, _) = pool.enter_at(start);
        let (b, _) = pool.enter_at(start);
        let (evicted_a, evicted_b) = (a.evicted(), b.evicted());
        let (_young, evicted) = pool.enter_at(start + MIN_WAIT / 2);
        assert_eq!(evicted, 0, "nobody has waited long enough yet");
        assert_eq!(pool.len(), 3);
        let (_c, evicted) = pool.enter_at(start + MIN_WAIT);
        assert_eq!(evicted, 2, "back to capacity, oldest first");
        assert_eq!(evicted_a.now_or_never(), Some(()));
        assert_eq!(evicted_b.now_or_never(), Some(()));
        assert_eq!(pool.len(), 2);
    }

    #[tokio::test]
    async fn a_connection_that_left_is_never_evicted() {
        let pool = WaitingPool::new(1);
        let start = Instant::now();
        let (a, _) = pool.enter_at(start);
        let evicted = a.evicted();
        a.leave();
        assert!(pool.is_empty());
        let _b = pool.enter_at(start);
        let _c = pool.enter_at(start + MIN_WAIT);
        let waited = tokio::time::timeout(std::time::Duration::from_millis(20), evicted).await;
        assert!(waited.is_err(), "left before the pool filled");
    }
}
