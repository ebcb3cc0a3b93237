//! Connections that completed the handshake and receive broadcasts.
//!
//! Invariants: a connection joins with its `hello-ok` queued first, and
//! gets every presence broadcast newer than its hello's snapshot and none
//! older ([`Registry::join`]); once the `shutdown` notice went out, a
//! connection that joins late gets it too, then a close.

use super::outbox::{Out, Outbox};
use crate::protocol::Close;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Which presence broadcasts a connection gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceFeed {
    /// None: role `node`, or no read scope.
    None,
    /// The full list on every change.
    Full,
    /// `presence.delta` events (the client listed the cap).
    Delta,
}

/// One connection that receives broadcasts.
pub struct Subscriber {
    /// Its outbound queue.
    pub outbox: Outbox,
    /// What presence broadcasts it wants.
    pub feed: PresenceFeed,
    /// The presence version of its `hello-ok` snapshot, set by
    /// [`Registry::join`]. Presence broadcasts up to this version would
    /// repeat or, worse, roll back what the hello showed: they are skipped.
    pub since: u64,
}

/// Connections that completed the handshake.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<HashMap<u64, Subscriber>>,
    /// The newest presence version broadcast so far.
    sent_version: AtomicU64,
    /// The `shutdown` frame, once it was broadcast. Set and read only
    /// under `inner`'s lock, so a connection that joins after the
    /// broadcast finds it and is notified like everyone else.
    farewell: OnceLock<Bytes>,
}

/// How often a join renders its hello again because a newer broadcast went
/// out meanwhile, before it settles for the one it has.
const JOIN_ATTEMPTS: usize = 3;

impl Registry {
    /// Queues a connection's `hello-ok` and registers it, so that it gets
    /// every broadcast newer than the hello's snapshot and none before the
    /// hello. `render` returns (snapshot version, hello frame); it runs
    /// outside the lock and again if a broadcast of a newer version went
    /// out meanwhile.
    pub fn join(&self, id: u64, mut subscriber: Subscriber, render: impl Fn() -> (u64, Bytes)) {
        let mut attempts = 0;
        loop {
            let (version, hello) = render();
            let mut map = self.lock();
            let newer_sent = self.sent_version.load(Ordering::Acquire) > version;
            let settled = attempts >= JOIN_ATTEMPTS || subscriber.feed == PresenceFeed::None;
            if newer_sent && !settled {
                attempts += 1;
                continue;
            }
            let size = hello.len();
            // The hello is the reply to `connect`: it is sent whatever
            // the budget, like any first reply.
            let _ = subscriber.outbox.reply(Out::Text(hello), size);
            if let Some(farewell) = self.farewell.get() {
                // Shutdown was broadcast while this connection was
                // completing its handshake: it would never hear it.
                let _ = subscriber.outbox.reply(Out::Text(farewell.clone()), 0);
                subscriber.outbox.close(Close::SHUTDOWN);
                return;
            }
            subscriber.since = version;
            map.insert(id, subscriber);
            return;
        }
    }

    /// Records the version a presence broadcast is about to carry. Called
    /// before its fan-out: a connection joining meanwhile either sees it
    /// and renders a newer hello, or is registered in time to get it.
    pub fn mark_sent(&self, version: u64) {
        self.sent_version.fetch_max(version, Ordering::AcqRel);
    }

    /// Sends the `shutdown` notice and a 1001 close to every connection,
    /// and to any that joins later.
    pub fn farewell(&self, frame: Bytes) {
        let map = self.lock();
        let _ = self.farewell.set(frame.clone());
        for subscriber in map.values() {
            // Sent even past the byte budget: it is the last thing this
            // connection will get.
            let _ = subscriber.outbox.reply(Out::Text(frame.clone()), 0);
            subscriber.outbox.close(Close::SHUTDOWN);
        }
    }

    /// Removes a connection.
    pub fn unregister(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Connections registered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nobody is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The subscribers, locked for a fan-out. Hold it only to queue.
    pub fn lock(&self) -> MutexGuard<'_, HashMap<u64, Subscriber>> {
        // A panic while holding this lock cannot leave the map half-updated
        // (single insert/remove), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A subscriber with a roomy outbox, and that outbox to read it (tests).
#[cfg(test)]
pub(super) fn subscriber(feed: PresenceFeed) -> (Subscriber, Outbox) {
    let outbox = super::outbox::outbox(1 << 20);
    let subscriber = Subscriber {
        outbox: outbox.clone(),
        feed,
        since: 0,
    };
    (subscriber, outbox)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(out: Out) -> Bytes {
        match out {
            Out::Text(bytes) => bytes,
            _ => panic!("expected a text frame"),
        }
    }

    #[test]
    fn join_records_the_hello_version() {
        let registry = Registry::default();
        let (sub, rx) = subscriber(PresenceFeed::Full);
        registry.join(7, sub, || (5, Bytes::from_static(b"hello")));
        assert_eq!(&text(rx.try_take().unwrap().0)[..], b"hello");
        assert_eq!(registry.lock()[&7].since, 5);
    }

    #[test]
    fn join_after_the_shutdown_broadcast_gets_the_notice_and_a_close() {
        let registry = Registry::default();
        registry.farewell(Bytes::from_static(b"farewell"));
        let (sub, rx) = subscriber(PresenceFeed::Full);
        registry.join(7, sub, || (1, Bytes::from_static(b"hello")));
        assert_eq!(&text(rx.try_take().unwrap().0)[..], b"hello");
        assert_eq!(&text(rx.try_take().unwrap().0)[..], b"farewell");
        assert!(matches!(
            rx.try_take().unwrap().0,
            Out::Close(Close::SHUTDOWN)
        ));
        assert!(registry.is_empty(), "nobody is left to wait for");
    }
}
