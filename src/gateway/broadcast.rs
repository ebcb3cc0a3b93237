//! Fan-out: `presence.delta` on published changes (coalesced), full
//! `presence` lists paced to the fan-out budget, `tick` on a timer, and
//! `shutdown` once.
//!
//! One task decides every broadcast. Each is encoded once and offered to
//! every subscriber's outbox, where a newer event of the same kind replaces
//! an unsent one (`outbox.rs`); the writer numbers it when written. Deltas
//! go out at the coalescing interval; full lists at the paced interval
//! (`pacing.rs`), so their egress stays within the budget while handshakes
//! and replies, which never wait for fan-out, keep the CPU they need.

use super::pacing::{full_interval, round_bytes};
use super::registry::{Offered, delta_event};
use super::state::State;
use crate::presence::{Merged, Snapshot};
use crate::protocol::SharedEvent;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::Instant;

/// The broadcaster's position in each feed.
struct Broadcaster {
    state: Arc<State>,
    /// The snapshot of the last delta step, and when the next may go: a
    /// coalescing interval after it.
    delta_sent: Arc<Snapshot>,
    delta_due: Instant,
    /// The snapshot of the last full-list fan-out, and when the next may
    /// go: the paced interval after it.
    full_sent: Arc<Snapshot>,
    full_due: Instant,
}

/// Runs until shutdown: sends presence changes, ticks, and at the end
/// `shutdown` followed by a 1001 close to every connection.
pub async fn run(state: Arc<State>) {
    let mut tick = tokio::time::interval_at(
        Instant::now() + state.config.tick_interval,
        state.config.tick_interval,
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = state.shutdown.subscribe();
    let mut b = Broadcaster::new(state, Instant::now());
    b.state.http.sse.publish(&b.full_sent);
    loop {
        tokio::select! {
            _ = b.next_change() => b.send_due(Instant::now()),
            _ = tick.tick() => b.tick(),
            // Ready whenever the flag is set, even if an earlier wait
            // already saw it flip.
            _ = shutting_down(&mut shutdown) => {
                b.state.registry.lock().farewell(SharedEvent::shutdown());
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
    /// Starts at the published snapshot, with both feeds due from `now`:
    /// the first change goes out at once.
    fn new(state: Arc<State>, now: Instant) -> Broadcaster {
        let sent = state.reader.load_full();
        Broadcaster {
            state,
            delta_sent: Arc::clone(&sent),
            delta_due: now,
            full_sent: sent,
            full_due: now,
        }
    }

    /// When the next feed is due, if the published snapshot changed since
    /// a feed last went out: the first change after a quiet period at
    /// once, later ones when their interval is over.
    fn due(&self) -> Option<Instant> {
        let published = self.state.reader.load().change_version();
        [
            (self.delta_sent.version(), self.delta_due),
            (self.full_sent.version(), self.full_due),
        ]
        .into_iter()
        .filter(|&(sent, _)| published > sent)
        .map(|(_, due)| due)
        .min()
    }

    /// Waits until a feed has a change that is due ([`Broadcaster::due`]).
    /// Renewals alone (docs/protocol.md §5.4: only live rows' `ts` moved) wake
    /// no watcher; the next change carries them. Dashboards' SSE streams,
    /// few and cheap, get them as they come.
    async fn next_change(&self) {
        match self.due() {
            Some(due) => tokio::time::sleep_until(due).await,
            None => {
                let newest = self.delta_sent.version().max(self.full_sent.version());
                let mut seen = self.state.reader.version().max(newest);
                loop {
                    self.state.reader.wait_for(seen + 1).await;
                    let latest = self.state.reader.load_full();
                    if latest.change_version() > newest {
                        return;
                    }
                    seen = latest.version();
                    self.state.http.sse.publish(&latest);
                }
            }
        }
    }

    /// Sends each feed whose change is due at `now`.
    fn send_due(&mut self, now: Instant) {
        let latest = self.state.reader.load_full();
        if latest.change_version() > self.delta_sent.version() && now >= self.delta_due {
            self.delta_step(&latest, now);
        }
        if latest.change_version() > self.full_sent.version() && now >= self.full_due {
            self.full_list(&latest, now);
        }
    }

    /// Logs the step to `latest` and offers it to delta subscribers.
    fn delta_step(&mut self, latest: &Arc<Snapshot>, now: Instant) {
        // One diff per step: it is logged and sent.
        let merged = Merged::between(&self.delta_sent, latest);
        let step = delta_event(&merged);
        let mut registry = self.state.registry.lock();
        registry.log_step(&merged, Arc::clone(latest));
        let offered = registry.offer_delta(&step, merged.from);
        drop(registry);
        self.count("presence.delta", offered, &step);
        self.delta_sent = Arc::clone(latest);
        self.delta_due = now + self.state.config.coalesce;
    }

    /// Offers the full list to full-list subscribers, and paces the next.
    fn full_list(&mut self, latest: &Arc<Snapshot>, now: Instant) {
        let round = self.offer_full_list(latest);
        let (full, delta) = self.state.registry.lock().watchers();
        self.state.http.sse.publish(latest);
        let config = &self.state.config;
        let interval = full_interval(config.coalesce, round, config.fanout_budget);
        self.state.metrics().paced(interval, full, delta);
        self.full_sent = Arc::clone(latest);
        self.full_due = now + interval;
    }

    /// Makes `latest` a `presence` event (its chunks of rows, shared, not
    /// copied) and offers it; the bytes one round of it puts on the wire.
    fn offer_full_list(&mut self, latest: &Arc<Snapshot>) -> u64 {
        if self.state.registry.lock().skip_full(latest.version()) {
            return 0;
        }
        let event = SharedEvent::presence_of(latest, self.state.http.clock.now());
        // Compressed here, once, before any writer asks (only the chunks
        // this version changed): its size paces.
        let compressing = self.state.registry.lock().full_deflate();
        let deflated = match compressing {
            0 => event.len(),
            _ => event.deflated_len(),
        };
        let mut registry = self.state.registry.lock();
        let offered = registry.offer_full(latest.version(), &event);
        let (full, _) = registry.watchers();
        let compressing = registry.full_deflate();
        drop(registry);
        self.count("presence", offered, &event);
        round_bytes(event.len(), deflated, full, compressing)
    }

    fn tick(&mut self) {
        let replaced = self
            .state
            .registry
            .lock()
            .offer_tick(&SharedEvent::tick(self.state.http.clock.now()));
        self.state.metrics().conflated("tick", replaced);
    }

    /// Counts a fan-out: what was conflated, and the bytes it puts on the
    /// wire (compressed for subscribers that negotiated permessage-deflate).
    fn count(&self, name: &'static str, offered: Offered, event: &SharedEvent) {
        let metrics = self.state.metrics();
        metrics.conflated(name, offered.conflated);
        let plain = event.len();
        let deflated = match offered.deflated {
            0 => plain,
            _ => event.deflated_len(),
        };
        let bytes = round_bytes(
            plain,
            deflated,
            offered.subscribers as usize,
            offered.deflated as usize,
        );
        metrics.fanout_bytes.inc_by(bytes);
    }
}

/// The broadcaster on an injected clock: each test plays the run loop,
/// sending what is due at every virtual millisecond, and reads what the
/// subscribers' outboxes received at that millisecond (draining them as
/// their writers would). Changes are published, and acknowledged by the
/// writer thread, between two virtual milliseconds, so the writer's real
/// time never moves the virtual clock and no assertion depends on how fast
/// this machine is.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServeConfig;
    use crate::engine::Event;
    use crate::gateway::list_frame::ListFrame;
    use crate::gateway::outbox::{Out, Outbox};
    use crate::gateway::registry::{PresenceFeed, subscriber};
    use crate::presence::{Key, Patch};
    use serde_json::Value;
    use std::time::Duration;

    fn state(configure: impl FnOnce(&mut ServeConfig)) -> Arc<State> {
        let mut config = ServeConfig::defaults();
        configure(&mut config);
        State::new(config, None, crate::clock::Clock::system()).expect("no fleet")
    }

    /// A beacon for instance `id`, published before this returns; its
    /// presence version.
    fn beacon(state: &State, id: &str, text: &str) -> u64 {
        let event = Event::Beacon {
            key: Key::parse(id).expect("a test key is not blank"),
            patch: Patch {
                instance_id: Some(id.into()),
                text: Some(text.into()),
                ..Patch::default()
            },
        };
        let applied = state.sender.try_push_acked(event).expect("room");
        applied.blocking_recv().expect("the writer applies it")
    }

    /// A subscriber of `feed` that holds the current version; its outbox.
    fn watcher(state: &State, id: u64, feed: PresenceFeed) -> Outbox {
        let (joining, outbox) = subscriber(feed);
        let version = state.reader.version();
        state.registry.join(id, joining, None, None, |_| {
            (version, ListFrame::plain(b"hello".to_vec()))
        });
        assert!(matches!(outbox.try_take(), Some(Out::Hello { .. })));
        outbox
    }

    /// One broadcast as a subscriber received it: the virtual millisecond,
    /// its bytes, and the frame.
    struct Received {
        at: u64,
        bytes: usize,
        frame: Value,
    }

    impl Received {
        fn version(&self) -> u64 {
            self.frame["stateVersion"]["presence"].as_u64().unwrap()
        }
    }

    /// Everything waiting in `outbox`, received at `at`.
    fn drain(outbox: &Outbox, at: u64, into: &mut Vec<Received>) {
        while let Some(out) = outbox.try_take() {
            let Out::Event(event) = out else { continue };
            if event == SharedEvent::tick(0) {
                continue;
            }
            into.push(Received {
                at,
                bytes: event.len(),
                frame: serde_json::from_slice(&event.to_frame(None)).unwrap(),
            });
        }
    }

    /// The run loop for `until_ms` virtual milliseconds: `change(ms)` runs
    /// first at each, then what is due goes out and the outboxes are read.
    fn play(
        state: &Arc<State>,
        outboxes: &[&Outbox],
        until_ms: u64,
        mut change: impl FnMut(u64),
    ) -> Vec<Vec<Received>> {
        let start = Instant::now();
        let mut b = Broadcaster::new(Arc::clone(state), start);
        let mut received: Vec<Vec<Received>> = outboxes.iter().map(|_| Vec::new()).collect();
        for ms in 0..=until_ms {
            change(ms);
            let now = start + Duration::from_millis(ms);
            if b.due().is_some_and(|due| due <= now) {
                b.send_due(now);
            }
            for (outbox, into) in outboxes.iter().zip(&mut received) {
                drain(outbox, ms, into);
            }
        }
        received
    }

    fn at(received: &[Received]) -> Vec<u64> {
        received.iter().map(|r| r.at).collect()
    }

    #[test]
    fn a_burst_goes_out_at_once_then_once_per_interval_ending_on_its_last_version() {
        let state = state(|c| c.coalesce = Duration::from_millis(100));
        let (full, delta) = (
            watcher(&state, 1, PresenceFeed::Full),
            watcher(&state, 2, PresenceFeed::Delta),
        );
        // Twenty changes in the first 20 ms, one more at 150 ms.
        let mut versions = Vec::new();
        let received = play(&state, &[&full, &delta], 300, |ms| {
            if ms < 20 || ms == 150 {
                versions.push(beacon(&state, &format!("b{ms}"), "burst"));
            }
        });
        let (lists, deltas) = (&received[0], &received[1]);
        // The first change at once, the other nineteen of the burst as one
        // event when the interval is over, the late one an interval after.
        assert_eq!(at(lists), [0, 100, 200]);
        assert_eq!(at(deltas), [0, 100, 200]);
        let expected = [versions[0], versions[19], versions[20]];
        for feed in [lists, deltas] {
            let got: Vec<u64> = feed.iter().map(Received::version).collect();
            assert_eq!(got, expected);
        }
        // One step carries the nineteen (and the gateway's own row, whose
        // `ts` the writer's real clock moves).
        let mut coalesced: Vec<&str> = deltas[1].frame["payload"]["upserts"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|row| row["instanceId"].as_str())
            // `b` and digits: the gateway's own id is a UUID that may
            // start with a `b` too.
            .filter(|id| {
                id.strip_prefix('b')
                    .is_some_and(|n| n.parse::<u32>().is_ok())
            })
            .collect();
        coalesced.sort_by_key(|id| id[1..].parse::<u32>().unwrap());
        let burst: Vec<String> = (1..20).map(|ms| format!("b{ms}")).collect();
        assert_eq!(coalesced, burst, "{}", deltas[1].frame);
        assert_eq!(deltas[1].frame["payload"]["from"], versions[0]);
        let last = lists[2].frame["payload"]["presence"].as_array().unwrap();
        for ms in (0..20).chain([150]) {
            let id = format!("b{ms}");
            assert!(
                last.iter().any(|row| row["instanceId"] == id),
                "the last list holds {id}"
            );
        }
    }

    #[test]
    fn full_lists_are_paced_to_the_budget_and_deltas_are_not() {
        // Four watchers of a list of about 2 KB at 16 KB/s: about 0.5 s
        // between two full lists, while a change comes every 20 ms.
        const BUDGET: u64 = 16_000;
        let state = state(|c| {
            c.coalesce = Duration::from_millis(10);
            c.fanout_budget = BUDGET;
        });
        for i in 0..8 {
            beacon(&state, &format!("pad-{i}"), &"x".repeat(200));
        }
        let lists: Vec<Outbox> = (0..4)
            .map(|id| watcher(&state, id, PresenceFeed::Full))
            .collect();
        let delta = watcher(&state, 9, PresenceFeed::Delta);
        let mut changes = 0;
        let received = play(&state, &[&lists[0], &delta], 3_000, |ms| {
            if ms % 20 == 0 {
                changes += 1;
                beacon(&state, "busy", &format!("tick {ms}"));
            }
        });
        let (full, deltas) = (&received[0], &received[1]);
        assert_eq!(deltas.len(), changes, "every change is its own delta");
        assert!(full.len() >= 4, "lists keep going out: {:?}", at(full));
        for pair in full.windows(2) {
            let paced = Duration::from_secs_f64(pair[0].bytes as f64 * 4.0 / BUDGET as f64);
            let gap = Duration::from_millis(pair[1].at - pair[0].at);
            // Due once the paced interval is over, sent at the first change
            // or millisecond after it.
            assert!(
                gap >= paced && gap <= paced + Duration::from_millis(21),
                "{gap:?} between lists of {} bytes, paced at {paced:?}",
                pair[0].bytes
            );
        }
        assert!(full.windows(2).all(|p| p[0].version() < p[1].version()));
    }
}
