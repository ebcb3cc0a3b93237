//! The pool of connections that have not sent a request yet.
//!
//! Invariant: at most `capacity` connections are in the pool; admitting one
//! more evicts the oldest (its task closes it). A client that completes its
//! request head within milliseconds is almost never the oldest, while a
//! silent or slowloris socket is, so a flood of them cannot lock others out.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// The pool.
#[derive(Clone)]
pub struct WaitingPool {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    capacity: usize,
    next: u64,
    /// Oldest first: (id, the sender that evicts it by sending).
    members: VecDeque<(u64, oneshot::Sender<()>)>,
}

/// One connection's place in the pool.
pub struct Waiting {
    id: u64,
    pool: WaitingPool,
    evicted: Mutex<Option<oneshot::Receiver<()>>>,
}

impl WaitingPool {
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

    /// True when admitting one more evicts the oldest.
    pub fn is_full(&self) -> bool {
        let inner = self.lock();
        inner.members.len() >= inner.capacity
    }

    /// Admits a connection, evicting the oldest if the pool is full.
    pub fn enter(&self) -> Waiting {
        let mut inner = self.lock();
        while inner.members.len() >= inner.capacity {
            if let Some((_, evict)) = inner.members.pop_front() {
                // The receiver is gone only if that connection already ended.
                let _ = evict.send(());
            }
        }
        let id = inner.next;
        inner.next += 1;
        let (tx, rx) = oneshot::channel();
        inner.members.push_back((id, tx));
        Waiting {
            id,
            pool: self.clone(),
            evicted: Mutex::new(Some(rx)),
        }
    }

    /// Connections in the pool.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().members.len()
    }

    /// True when the pool is empty.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Push, pop and remove leave the deque consistent even if a holder
        // panicked.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Waiting {
    /// Leaves the pool: the connection sent a request. Idempotent.
    pub fn leave(&self) {
        let mut inner = self.pool.lock();
        if let Some(at) = inner.members.iter().position(|(id, _)| *id == self.id) {
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
    use futures_util::FutureExt;

    #[tokio::test]
    async fn admitting_past_capacity_evicts_the_oldest() {
        let pool = WaitingPool::new(2);
        let (a, b) = (pool.enter(), pool.enter());
        let (evicted_a, evicted_b) = (a.evicted(), b.evicted());
        assert!(pool.is_full());
        let _c = pool.enter();
        assert_eq!(evicted_a.now_or_never(), Some(()), "the oldest goes");
        assert_eq!(evicted_b.now_or_never(), None);
        assert_eq!(pool.len(), 2);
    }

    #[tokio::test]
    async fn a_connection_that_left_is_never_evicted() {
        let pool = WaitingPool::new(1);
        let a = pool.enter();
        let evicted = a.evicted();
        a.leave();
        assert!(pool.is_empty());
        let _b = pool.enter();
        let _c = pool.enter();
        let waited = tokio::time::timeout(std::time::Duration::from_millis(20), evicted).await;
        assert!(waited.is_err(), "left before the pool filled");
    }
}
