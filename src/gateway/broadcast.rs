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
use crate::clock::now_millis;
use crate::presence::{Merged, Snapshot};
use crate::protocol::SharedEvent;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The broadcaster's position in each feed.
struct Broadcaster {
    state: Arc<State>,
    /// The snapshot of the last delta step, and when it went out.
    delta_sent: Arc<Snapshot>,
    delta_at: Instant,
    /// The snapshot of the last full-list fan-out, and when it went out.
    full_sent: Arc<Snapshot>,
    full_at: Instant,
    /// The paced interval after the last full-list fan-out.
    full_interval: Duration,
}

/// Runs until shutdown: sends presence changes, ticks, and at the end
/// `shutdown` followed by a 1001 close to every connection.
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
    let long_ago = Instant::now() - coalesce;
    let mut b = Broadcaster {
        state,
        delta_sent: Arc::clone(&sent),
        delta_at: long_ago,
        full_sent: sent,
        full_at: long_ago,
        full_interval: coalesce,
    };
    loop {
        tokio::select! {
            _ = b.next_change() => b.send_due(),
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
    /// Waits until a feed has a change that is due: the first change after
    /// a quiet period at once, later ones when their interval is over.
    /// Renewals alone (docs/protocol.md §5.4: only live rows' `ts` moved) wake
    /// no watcher; the next change carries them. Dashboards' SSE streams,
    /// few and cheap, get them as they come.
    async fn next_change(&self) {
        let published = self.state.reader.load().change_version();
        let due = [
            (
                self.delta_sent.version(),
                self.delta_at + self.state.config.coalesce,
            ),
            (self.full_sent.version(), self.full_at + self.full_interval),
        ]
        .into_iter()
        .filter(|&(sent, _)| published > sent)
        .map(|(_, due)| due)
        .min();
        match due {
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

    /// Sends each feed whose change is due.
    fn send_due(&mut self) {
        let latest = self.state.reader.load_full();
        let now = Instant::now();
        if latest.change_version() > self.delta_sent.version()
            && now >= self.delta_at + self.state.config.coalesce
        {
            self.delta_step(&latest, now);
        }
        if latest.change_version() > self.full_sent.version()
            && now >= self.full_at + self.full_interval
        {
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
        self.delta_at = now;
    }

    /// Offers the full list to full-list subscribers, and paces the next.
    fn full_list(&mut self, latest: &Arc<Snapshot>, now: Instant) {
        let round = self.offer_full_list(latest);
        let (full, delta) = self.state.registry.lock().watchers();
        self.state.http.sse.publish(latest);
        let config = &self.state.config;
        self.full_interval = full_interval(config.coalesce, round, config.fanout_budget);
        self.state.metrics().paced(self.full_interval, full, delta);
        self.full_sent = Arc::clone(latest);
        self.full_at = now;
    }

    /// Renders `latest` as a `presence` event and offers it; the bytes one
    /// round of it puts on the wire. The list is rendered (O(list)) only
    /// when someone watches it whole.
    fn offer_full_list(&mut self, latest: &Arc<Snapshot>) -> u64 {
        if self.state.registry.lock().skip_full(latest.version()) {
            return 0;
        }
        let event = SharedEvent::presence(latest.version(), latest.list_len(), |out| {
            latest.write_list(now_millis(), out)
        });
        // Compressed here, once, before any writer asks: its size paces.
        let compressing = self.state.registry.lock().full_deflate();
        let deflated = match compressing {
            0 => event.head().len(),
            _ => event
                .deflated()
                .map_or(event.head().len(), |d| d.bytes.len()),
        };
        let mut registry = self.state.registry.lock();
        let offered = registry.offer_full(latest.version(), &event);
        let (full, _) = registry.watchers();
        let compressing = registry.full_deflate();
        drop(registry);
        self.count("presence", offered, &event);
        round_bytes(event.head().len(), deflated, full, compressing)
    }

    fn tick(&mut self) {
        let replaced = self
            .state
            .registry
            .lock()
            .offer_tick(&SharedEvent::tick(now_millis()));
        self.state.metrics().conflated("tick", replaced);
    }

    /// Counts a fan-out: what was conflated, and the bytes it puts on the
    /// wire (compressed for subscribers that negotiated permessage-deflate).
    fn count(&self, name: &'static str, offered: Offered, event: &SharedEvent) {
        let metrics = self.state.metrics();
        metrics.conflated(name, offered.conflated);
        let plain = event.head().len();
        let deflated = match offered.deflated {
            0 => plain,
            _ => event.deflated().map_or(plain, |d| d.bytes.len()),
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
