//! Fan-out: `presence` / `presence.delta` on published changes (coalesced),
//! `tick` on a timer, and `shutdown` once.
//!
//! One task sends every broadcast, so `seq` is assigned and fanned out in
//! one order: each connection sees strictly increasing `seq`. A frame is
//! encoded once per broadcast and shared as `Bytes` by every connection.

use super::registry::{PresenceFeed, Subscriber};
use super::state::State;
use crate::clock::now_millis;
use crate::presence::{Snapshot, changes};
use crate::protocol::{Delta, write_delta, write_presence, write_shutdown, write_tick};
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::Instant;

/// The broadcaster's position: the last `seq` used and the last list sent.
struct Broadcaster {
    state: Arc<State>,
    seq: u64,
    sent: Arc<Snapshot>,
    sent_at: Instant,
}

/// Runs until shutdown: sends coalesced presence changes, ticks, and at the
/// end `shutdown` followed by a 1001 close to every connection.
pub async fn run(state: Arc<State>) {
    let coalesce = state.config.coalesce;
    let sent = state.reader.load_full();
    state.http.sse.publish(&sent);
    let mut tick = tokio::time::interval_at(
        Instant::now() + state.config.tick_interval,
        state.config.tick_interval,
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = state.shutdown.subscribe();
    let mut b = Broadcaster {
        state,
        seq: 0,
        sent,
        sent_at: Instant::now() - coalesce,
    };
    loop {
        tokio::select! {
            _ = b.state.reader.wait_for(b.sent.version() + 1) => {
                // The first change after a quiet period goes out at once;
                // later ones wait out the interval and carry the latest list.
                let due = b.sent_at + coalesce;
                if Instant::now() < due {
                    tokio::select! {
                        _ = tokio::time::sleep_until(due) => {}
                        // `wait_for`, not `changed`: it leaves the flag for the
                        // arm below, which must still send the shutdown notice.
                        _ = shutting_down(&mut shutdown) => {}
                    }
                }
                b.presence();
            }
            _ = tick.tick() => b.tick(),
            // Ready whenever the flag is set, even if an earlier wait
            // already saw it flip.
            _ = shutting_down(&mut shutdown) => {
                b.farewell();
                return;
            }
        }
    }
}

/// Resolves once graceful shutdown has begun (at once if it already has).
async fn shutting_down(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|down| *down).await;
}

impl Broadcaster {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Sends the latest list to every presence subscriber.
    fn presence(&mut self) {
        let latest = self.state.reader.load_full();
        let seq = self.next_seq();
        send_presence(&self.state, &self.sent, &latest, seq);
        self.state.http.sse.publish(&latest);
        self.sent = latest;
        self.sent_at = Instant::now();
    }

    fn tick(&mut self) {
        let seq = self.next_seq();
        let mut frame = Vec::with_capacity(64);
        write_tick(&mut frame, now_millis(), seq);
        fan_out(&self.state, Bytes::from(frame), |_| true, "tick");
    }

    fn farewell(&mut self) {
        let seq = self.next_seq();
        let mut frame = Vec::with_capacity(96);
        write_shutdown(&mut frame, Some(seq));
        self.state.registry.farewell(Bytes::from(frame));
    }
}

fn send_presence(state: &State, before: &Snapshot, after: &Snapshot, seq: u64) {
    state.registry.mark_sent(after.version());
    let (mut full, mut delta) = (false, false);
    for subscriber in state.registry.lock().values() {
        full |= subscriber.feed == PresenceFeed::Full;
        delta |= subscriber.feed == PresenceFeed::Delta;
    }
    let newer = |s: &Subscriber, feed| s.feed == feed && s.since < after.version();
    if full {
        let mut frame = Vec::with_capacity(after.list_json().len() + 128);
        write_presence(&mut frame, after.version(), seq, |out| {
            after.write_list(now_millis(), out)
        });
        let frame = Bytes::from(frame);
        fan_out(state, frame, |s| newer(s, PresenceFeed::Full), "presence");
    }
    if delta {
        let changes = changes(before, after);
        let mut frame = Vec::with_capacity(256);
        let delta = Delta {
            from: before.version(),
            to: after.version(),
            upserts: changes.upserts,
            removed: changes.removed,
        };
        write_delta(&mut frame, delta, seq);
        let frame = Bytes::from(frame);
        fan_out(
            state,
            frame,
            |s| newer(s, PresenceFeed::Delta),
            "presence.delta",
        );
    }
}

fn fan_out(state: &State, frame: Bytes, wants: impl Fn(&Subscriber) -> bool, event: &'static str) {
    let mut dropped = 0;
    for subscriber in state.registry.lock().values() {
        if wants(subscriber) && !subscriber.outbox.try_event(frame.clone()) {
            dropped += 1;
        }
    }
    if dropped > 0 {
        state
            .metrics()
            .dropped
            .get_or_create(&crate::metrics::EventLabels { event })
            .inc_by(dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::super::registry::subscriber;
    use super::*;

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
}
