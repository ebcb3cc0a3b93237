//! Connections that completed the handshake and receive broadcasts, and the
//! log of recent presence changes that delta clients resume from.
//!
//! Invariants (all under one lock, which the broadcaster also holds for a
//! fan-out, so joins and fan-outs are ordered):
//! - a connection joins with its `hello-ok` queued first, and afterwards
//!   gets every presence version newer than the one its hello showed, and
//!   none older ([`Registry::join`]);
//! - `held` is the presence version a subscriber will hold once everything
//!   queued for it is written;
//! - once the `shutdown` notice went out, a connection that joins late gets
//!   it too, then a close.

use super::list_frame::ListFrame;
use super::outbox::{Out, Outbox};
use crate::presence::{ChangeLog, Merged, Snapshot};
use crate::protocol::{Close, Delta, SharedEvent};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::OwnedSemaphorePermit;

/// Which presence broadcasts a connection gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// The presence version it holds once its queue is written.
    pub held: u64,
    /// It negotiated permessage-deflate: its events cost their compressed
    /// size on the wire.
    pub deflate: bool,
}

/// What a joining connection's hello is rendered from.
pub enum HelloList {
    /// The current snapshot, whole.
    Full,
    /// No list: the client resumes at this version (`presenceSince`), and
    /// its first event brings it to the log's newest.
    Resumed(u64),
}

/// What one fan-out did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Offered {
    /// Subscribers offered the event.
    pub subscribers: u64,
    /// Of those, how many had an unsent one that it replaced.
    pub conflated: u64,
    /// Of those, how many negotiated permessage-deflate.
    pub deflated: u64,
}

impl Offered {
    fn count(&mut self, conflated: bool) {
        self.subscribers += 1;
        self.conflated += u64::from(conflated);
    }
}

/// The broadcaster's record of what it last sent, per feed, and the log.
struct Inner {
    subscribers: HashMap<u64, Subscriber>,
    /// The newest version fanned out to full-list subscribers.
    full_sent: u64,
    /// The log of delta steps; its newest is the newest delta fan-out.
    log: ChangeLog,
    /// The snapshot at `log.newest()`.
    log_snapshot: Arc<Snapshot>,
    /// The `shutdown` event, once it was broadcast.
    farewell: Option<SharedEvent>,
}

/// Connections that completed the handshake.
pub struct Registry {
    inner: Mutex<Inner>,
}

/// How often a join renders its hello again because a newer broadcast went
/// out meanwhile, before it settles for the one it has.
const JOIN_ATTEMPTS: usize = 3;

impl Registry {
    /// An empty registry whose log starts at `initial`.
    pub fn new(initial: Arc<Snapshot>, log_keys: usize) -> Registry {
        Registry {
            inner: Mutex::new(Inner {
                subscribers: HashMap::new(),
                full_sent: initial.version(),
                log: ChangeLog::new(initial.version(), log_keys),
                log_snapshot: initial,
                farewell: None,
            }),
        }
    }

    /// Queues a connection's `hello-ok` and registers it, so that it gets
    /// every broadcast newer than the hello and none before it.
    /// `resume_from` is the client's `presenceSince`: when the log covers
    /// it, the hello carries no list and the first event is one merged
    /// delta. `render` returns (version, hello frame) for a list kind; it
    /// runs outside the lock for a full list, and again if a broadcast of a
    /// newer version went out meanwhile.
    pub fn join(
        &self,
        id: u64,
        mut subscriber: Subscriber,
        resume_from: Option<u64>,
        permit: Option<OwnedSemaphorePermit>,
        render: impl Fn(HelloList) -> (u64, ListFrame),
    ) {
        if let Some(from) = resume_from.filter(|_| subscriber.feed == PresenceFeed::Delta) {
            let inner = self.lock();
            if let Some(merged) = inner.0.log.since(from, &inner.0.log_snapshot) {
                let event = delta_event(&merged);
                let (version, frame) = render(HelloList::Resumed(merged.to));
                let size = frame.len();
                let _ = subscriber.outbox.reply(Out::Hello { frame, permit }, size);
                subscriber.outbox.offer_presence(from, |_| event);
                subscriber.held = version;
                return inner.admit(id, subscriber);
            }
        }
        let mut attempts = 0;
        loop {
            let (version, frame) = render(HelloList::Full);
            let inner = self.lock();
            let settled = attempts >= JOIN_ATTEMPTS || subscriber.feed == PresenceFeed::None;
            if inner.sent_for(subscriber.feed) > version && !settled {
                attempts += 1;
                continue;
            }
            // The hello is the reply to `connect`: it is sent whatever the
            // budget, like any first reply.
            let size = frame.len();
            let _ = subscriber.outbox.reply(Out::Hello { frame, permit }, size);
            subscriber.held = version;
            return inner.admit(id, subscriber);
        }
    }

    /// Removes a connection.
    pub fn unregister(&self, id: u64) {
        self.lock().0.subscribers.remove(&id);
    }

    /// Connections registered.
    pub fn len(&self) -> usize {
        self.lock().0.subscribers.len()
    }

    /// True when nobody is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The registry, locked for a fan-out. Hold it only to queue.
    pub fn lock(&self) -> Locked<'_> {
        // A panic while holding this lock cannot leave the map half-updated
        // (single insert/remove), so a poisoned lock is still usable.
        Locked(self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The registry under its lock.
pub struct Locked<'a>(MutexGuard<'a, Inner>);

impl Locked<'_> {
    /// Subscribers by feed: (full, delta).
    pub fn watchers(&self) -> (usize, usize) {
        let count = |feed| {
            self.0
                .subscribers
                .values()
                .filter(|s| s.feed == feed)
                .count()
        };
        (count(PresenceFeed::Full), count(PresenceFeed::Delta))
    }

    /// Full-list subscribers that negotiated permessage-deflate.
    pub fn full_deflate(&self) -> usize {
        let subscribers = self.0.subscribers.values();
        subscribers
            .filter(|s| s.feed == PresenceFeed::Full && s.deflate)
            .count()
    }

    /// Records `step`, which ends at `after`, in the log.
    pub fn log_step(&mut self, step: &Merged<'_>, after: Arc<Snapshot>) {
        self.0.log.record(step);
        self.0.log_snapshot = after;
    }

    /// When no subscriber takes full lists, records `version` as sent to
    /// them and returns true: the caller need not render it.
    pub fn skip_full(&mut self, version: u64) -> bool {
        let watched = self
            .0
            .subscribers
            .values()
            .any(|s| s.feed == PresenceFeed::Full);
        if !watched {
            self.0.full_sent = self.0.full_sent.max(version);
        }
        !watched
    }

    /// Offers the full list `event` at `version` to every full-list
    /// subscriber that holds an older one.
    pub fn offer_full(&mut self, version: u64, event: &SharedEvent) -> Offered {
        self.0.full_sent = self.0.full_sent.max(version);
        let mut offered = Offered::default();
        for sub in self.0.subscribers.values_mut() {
            if sub.feed == PresenceFeed::Full && sub.held < version {
                offered.deflated += u64::from(sub.deflate);
                offered.count(sub.outbox.offer_presence(sub.held, |_| event.clone()));
                sub.held = version;
            }
        }
        offered
    }

    /// Offers every delta subscriber the change from what it holds (or
    /// from where its unsent delta started) to the log's newest. `step` is
    /// the delta of the last step, which most subscribers need; others get
    /// a merged delta, rendered once per starting version. A start the log
    /// no longer covers gets the delta from the log's oldest version: its
    /// `from` then shows the client the gap.
    pub fn offer_delta(&mut self, step: &SharedEvent, step_from: u64) -> Offered {
        let Inner {
            subscribers,
            log,
            log_snapshot,
            ..
        } = &mut *self.0;
        let to = log.newest();
        let mut merged: HashMap<u64, SharedEvent> = HashMap::new();
        let mut offered = Offered::default();
        for sub in subscribers.values_mut() {
            if sub.feed != PresenceFeed::Delta || sub.held >= to {
                continue;
            }
            let conflated = sub.outbox.offer_presence(sub.held, |from| {
                if from == step_from {
                    return step.clone();
                }
                let start = from.max(log.oldest());
                merged
                    .entry(start)
                    .or_insert_with(|| {
                        let since = log.since(start, log_snapshot);
                        since.map_or_else(|| step.clone(), |m| delta_event(&m))
                    })
                    .clone()
            });
            offered.deflated += u64::from(sub.deflate);
            offered.count(conflated);
            sub.held = to;
        }
        offered
    }

    /// Offers `tick` to every subscriber; how many unsent ticks it replaced.
    pub fn offer_tick(&mut self, event: &SharedEvent) -> u64 {
        let replaced = self
            .0
            .subscribers
            .values()
            .filter(|s| s.outbox.offer_tick(event.clone()));
        replaced.count() as u64
    }

    /// Sends the `shutdown` notice and a 1001 close to every connection,
    /// and to any that joins later.
    pub fn farewell(&mut self, event: SharedEvent) {
        for subscriber in self.0.subscribers.values() {
            notify_shutdown(&subscriber.outbox, &event);
        }
        self.0.farewell = Some(event);
    }

    fn admit(mut self, id: u64, subscriber: Subscriber) {
        if let Some(farewell) = &self.0.farewell {
            // Shutdown was broadcast while this connection was completing
            // its handshake: it would never hear it.
            return notify_shutdown(&subscriber.outbox, farewell);
        }
        self.0.subscribers.insert(id, subscriber);
    }

    fn sent_for(&self, feed: PresenceFeed) -> u64 {
        match feed {
            PresenceFeed::Full => self.0.full_sent,
            PresenceFeed::Delta => self.0.log.newest(),
            PresenceFeed::None => 0,
        }
    }
}

/// Queues the shutdown notice, even past the byte budget (it is the last
/// thing the connection gets), and the 1001 close.
fn notify_shutdown(outbox: &Outbox, event: &SharedEvent) {
    let _ = outbox.reply(Out::Event(event.clone()), 0);
    outbox.close(Close::SHUTDOWN);
}

/// The `presence.delta` event of a merged change.
pub fn delta_event(merged: &Merged<'_>) -> SharedEvent {
    SharedEvent::delta(Delta {
        from: merged.from,
        to: merged.to,
        upserts: merged.upserts.iter().map(|row| &row.json[..]),
        removed: merged.removed.iter().map(|key| key.as_str()),
    })
}

/// A subscriber with a roomy outbox, and that outbox to read it (tests).
#[cfg(test)]
pub(super) fn subscriber(feed: PresenceFeed) -> (Subscriber, Outbox) {
    let outbox = super::outbox::outbox(1 << 20);
    let subscriber = Subscriber {
        outbox: outbox.clone(),
        feed,
        held: 0,
        deflate: false,
    };
    (subscriber, outbox)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::{Entry, Store, StoreConfig};
    use bytes::Bytes;

    fn registry() -> Registry {
        let me = Entry {
            host: Some("gw".into()),
            instance_id: Some("self".into()),
            ..Entry::default()
        };
        let snapshot = Store::new(StoreConfig::default(), me).publish(1);
        Registry::new(Arc::new(snapshot), 1024)
    }

    fn text(out: Option<Out>) -> Bytes {
        match out {
            Some(Out::Hello { frame, .. }) => frame.to_bytes(),
            _ => panic!("expected a text frame"),
        }
    }

    #[test]
    fn join_records_the_hello_version() {
        let registry = registry();
        let (sub, rx) = subscriber(PresenceFeed::Full);
        registry.join(7, sub, None, None, |_| {
            (5, ListFrame::plain(b"hello".to_vec()))
        });
        assert_eq!(&text(rx.try_take())[..], b"hello");
        assert_eq!(registry.lock().0.subscribers[&7].held, 5);
    }

    #[test]
    fn join_after_the_shutdown_broadcast_gets_the_notice_and_a_close() {
        let registry = registry();
        registry.lock().farewell(SharedEvent::shutdown());
        let (sub, rx) = subscriber(PresenceFeed::Full);
        registry.join(7, sub, None, None, |_| {
            (1, ListFrame::plain(b"hello".to_vec()))
        });
        assert_eq!(&text(rx.try_take())[..], b"hello");
        assert!(matches!(rx.try_take(), Some(Out::Event(e)) if e == SharedEvent::shutdown()));
        assert!(matches!(rx.try_take(), Some(Out::Close(Close::SHUTDOWN))));
        assert!(registry.is_empty(), "nobody is left to wait for");
    }
}
