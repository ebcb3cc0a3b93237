//! Broadcasts: `presence` / `presence.delta` on published changes
//! (coalesced), `tick` on a timer, and `shutdown` once.
//!
//! One task sends every broadcast, so `seq` is assigned and fanned out in
//! one order: each connection sees strictly increasing `seq`. A frame is
//! encoded once per broadcast and shared as `Bytes` by every connection.

use super::outbox::Outbox;
use super::state::State;
use crate::clock::now_millis;
use crate::presence::Snapshot;
use crate::protocol::{StateVersion, write_event, write_event_with};
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::time::Instant;

/// The `health` half of `stateVersion`; rollcall publishes no health changes.
pub const HEALTH_VERSION: u64 = 1;

/// The `shutdown` event's payload.
pub(super) const SHUTDOWN_PAYLOAD: &[u8] = br#"{"reason":"gateway shutting down"}"#;

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
            if !newer_sent || attempts >= 3 || subscriber.feed == PresenceFeed::None {
                let size = hello.len();
                // The hello is the reply to `connect`: it is sent whatever
                // the budget, like any first reply.
                let _ = subscriber
                    .outbox
                    .reply(super::outbox::Out::Text(hello), size);
                if let Some(farewell) = self.farewell.get() {
                    // Shutdown was broadcast while this connection was
                    // completing its handshake: it would never hear it.
                    let _ = subscriber
                        .outbox
                        .reply(super::outbox::Out::Text(farewell.clone()), 0);
                    subscriber.outbox.close(1001, "gateway shutting down");
                    return;
                }
                subscriber.since = version;
                map.insert(id, subscriber);
                return;
            }
            attempts += 1;
        }
    }

    /// Records the version a presence broadcast is about to carry. Called
    /// before its fan-out: a connection joining meanwhile either sees it
    /// and renders a newer hello, or is registered in time to get it.
    fn mark_sent(&self, version: u64) {
        self.sent_version.fetch_max(version, Ordering::AcqRel);
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Subscriber>> {
        // A panic while holding this lock cannot leave the map half-updated
        // (single insert/remove), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs until shutdown: sends coalesced presence changes, ticks, and at the
/// end `shutdown` followed by a 1001 close to every connection.
pub async fn run(state: Arc<State>) {
    let coalesce = state.config.coalesce;
    let mut seq: u64 = 0;
    let mut sent: Arc<Snapshot> = state.reader.load_full();
    publish_sse(&state, &sent);
    let mut sent_at = Instant::now() - coalesce;
    let mut tick = tokio::time::interval_at(
        Instant::now() + state.config.tick_interval,
        state.config.tick_interval,
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = state.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = state.reader.wait_for(sent.version() + 1) => {
                // The first change after a quiet period goes out at once;
                // later ones wait out the interval and carry the latest list.
                let due = sent_at + coalesce;
                if Instant::now() < due {
                    tokio::select! {
                        _ = tokio::time::sleep_until(due) => {}
                        // `wait_for`, not `changed`: it leaves the flag for the
                        // arm below, which must still send the shutdown notice.
                        _ = async { shutdown.wait_for(|down| *down).await.is_ok() } => {}
                    }
                }
                let latest = state.reader.load_full();
                seq += 1;
                send_presence(&state, &sent, &latest, seq);
                publish_sse(&state, &latest);
                sent = latest;
                sent_at = Instant::now();
            }
            _ = tick.tick() => {
                seq += 1;
                let mut frame = Vec::with_capacity(64);
                let payload = format!(r#"{{"ts":{}}}"#, now_millis());
                write_event(&mut frame, "tick", payload.as_bytes(), Some(seq), None);
                fan_out(&state, Bytes::from(frame), |_| true, "tick");
            }
            // Ready whenever the flag is set, even if an earlier wait
            // already saw it flip.
            _ = async { shutdown.wait_for(|down| *down).await.is_ok() } => {
                seq += 1;
                let mut frame = Vec::with_capacity(96);
                write_event(&mut frame, "shutdown", SHUTDOWN_PAYLOAD, Some(seq), None);
                let frame = Bytes::from(frame);
                let registry = state.registry.lock();
                let _ = state.registry.farewell.set(frame.clone());
                for subscriber in registry.values() {
                    // The shutdown notice is sent even past the byte budget:
                    // it is the last thing this connection will get.
                    let _ = subscriber.outbox.reply(super::outbox::Out::Text(frame.clone()), 0);
                    subscriber.outbox.close(1001, "gateway shutting down");
                }
                return;
            }
        }
    }
}

fn send_presence(state: &State, before: &Snapshot, after: &Snapshot, seq: u64) {
    state.registry.mark_sent(after.version());
    let version = Some(StateVersion {
        presence: after.version(),
        health: HEALTH_VERSION,
    });
    let (mut full, mut delta) = (false, false);
    for subscriber in state.registry.lock().values() {
        full |= subscriber.feed == PresenceFeed::Full;
        delta |= subscriber.feed == PresenceFeed::Delta;
    }
    if full {
        let mut frame = Vec::with_capacity(after.list_json().len() + 128);
        write_event_with(
            &mut frame,
            "presence",
            |out| {
                out.extend_from_slice(br#"{"presence":"#);
                after.write_list(now_millis(), out);
                out.push(b'}');
            },
            Some(seq),
            version,
        );
        fan_out(
            state,
            Bytes::from(frame),
            |s| s.feed == PresenceFeed::Full && s.since < after.version(),
            "presence",
        );
    }
    if delta {
        let payload = delta_json(before, after);
        let mut frame = Vec::with_capacity(payload.len() + 96);
        write_event(&mut frame, "presence.delta", &payload, Some(seq), version);
        fan_out(
            state,
            Bytes::from(frame),
            |s| s.feed == PresenceFeed::Delta && s.since < after.version(),
            "presence.delta",
        );
    }
}

fn fan_out(state: &State, frame: Bytes, wants: impl Fn(&Subscriber) -> bool, event: &'static str) {
    let mut dropped = 0;
    let registry = state.registry.lock();
    for subscriber in registry.values() {
        if wants(subscriber) && !subscriber.outbox.try_event(frame.clone()) {
            dropped += 1;
        }
    }
    if dropped > 0 {
        state
            .metrics
            .dropped
            .get_or_create(&crate::metrics::EventLabels { event })
            .inc_by(dropped);
    }
}

/// `{"from":V1,"to":V2,"upserts":[…],"removed":[…]}`: rows whose allocation
/// changed between the two snapshots, and keys that disappeared.
pub fn delta_json(before: &Snapshot, after: &Snapshot) -> Vec<u8> {
    let old: HashMap<&str, &Arc<crate::presence::Entry>> = before
        .entries()
        .iter()
        .map(|row| (row.key.as_str(), &row.entry))
        .collect();
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(
        format!(
            r#"{{"from":{},"to":{},"upserts":["#,
            before.version(),
            after.version()
        )
        .as_bytes(),
    );
    let mut first = true;
    for row in after.entries() {
        let unchanged = old
            .get(row.key.as_str())
            .is_some_and(|e| Arc::ptr_eq(e, &row.entry));
        if !unchanged {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(&row.json);
        }
    }
    out.extend_from_slice(br#"],"removed":["#);
    let now: HashSet<&str> = after.entries().iter().map(|row| row.key.as_str()).collect();
    let mut first = true;
    for row in before.entries() {
        if !now.contains(row.key.as_str()) {
            if !first {
                out.push(b',');
            }
            first = false;
            serde_json::to_writer(&mut out, row.key.as_str()).expect("a key always encodes");
        }
    }
    out.extend_from_slice(b"]}");
    out
}

/// Makes the latest list available to SSE readers.
fn publish_sse(state: &State, snapshot: &Snapshot) {
    let mut data = Vec::with_capacity(snapshot.list_json().len() + 64);
    let now = now_millis();
    data.extend_from_slice(
        format!(
            r#"{{"version":{},"serverTime":{now},"presence":"#,
            snapshot.version()
        )
        .as_bytes(),
    );
    snapshot.write_list(now, &mut data);
    data.push(b'}');
    state
        .sse
        .send_replace(Some((snapshot.version(), Bytes::from(data))));
}

#[cfg(test)]
mod tests {
    use super::super::outbox::{Out, outbox};
    use super::*;

    fn subscriber(feed: PresenceFeed) -> (Subscriber, Outbox) {
        let outbox = outbox(1 << 20);
        let subscriber = Subscriber {
            outbox: outbox.clone(),
            feed,
            since: 0,
        };
        (subscriber, outbox)
    }

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
    fn presence_broadcast_skips_connections_whose_hello_is_as_new() {
        let state = State::new(crate::config::ServeConfig::defaults());
        let snapshot = state.reader.load_full();
        let version = snapshot.version();
        let (current, current_rx) = subscriber(PresenceFeed::Full);
        let (behind, behind_rx) = subscriber(PresenceFeed::Delta);
        state.registry.join(1, current, || (version, Bytes::new()));
        state
            .registry
            .join(2, behind, || (version - 1, Bytes::new()));
        let _ = current_rx.try_take();
        let _ = behind_rx.try_take();
        send_presence(&state, &snapshot, &snapshot, 1);
        assert!(
            current_rx.try_take().is_none(),
            "nothing newer than its hello"
        );
        assert!(behind_rx.try_take().is_some(), "its hello was older");
        state.stop_engine();
    }

    #[test]
    fn join_after_the_shutdown_broadcast_gets_the_notice_and_a_close() {
        let registry = Registry::default();
        registry
            .farewell
            .set(Bytes::from_static(b"farewell"))
            .unwrap();
        let (sub, rx) = subscriber(PresenceFeed::Full);
        registry.join(7, sub, || (1, Bytes::from_static(b"hello")));
        assert_eq!(&text(rx.try_take().unwrap().0)[..], b"hello");
        assert_eq!(&text(rx.try_take().unwrap().0)[..], b"farewell");
        assert!(matches!(rx.try_take().unwrap().0, Out::Close(1001, _)));
        assert!(registry.is_empty(), "nobody is left to wait for");
    }
}
