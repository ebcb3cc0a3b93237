//! The single writer: drains the queues in batches, applies each batch to
//! the state it alone owns, publishes one snapshot per batch that changed
//! something, then acknowledges the batch's events.
//!
//! What is true at each step of one turn of the loop:
//! 1. waiting: nothing is applied that has not been published;
//! 2. after the drain: `batch` holds at most `max_batch` events, control
//!    events (disconnects) ahead of data events that were queued after them;
//! 3. after apply + expire: the state reflects every event in the batch;
//! 4. after publish: readers can see all of it, and only then are the
//!    acknowledgements sent, so an acknowledged event is always visible
//!    (read-your-writes).

use super::cell::SnapshotCell;
use super::queue::{Ack, Msg, Receivers};
use super::sync::Arc;
use super::sync::channel::RecvError;
use std::time::{Duration, Instant};

pub use crate::clock::Millis;

/// The state the writer owns. Deterministic given the events and `now`.
pub trait Machine: Send + 'static {
    /// What producers send.
    type Event: Send + 'static;
    /// What readers load.
    type Snapshot: Send + Sync + 'static;

    /// Applies one event at time `now`.
    fn apply(&mut self, event: Self::Event, now: Millis);
    /// Removes what is too old at `now`.
    fn expire(&mut self, now: Millis);
    /// True if a publish would make a new version.
    fn has_changes(&self) -> bool;
    /// Builds the snapshot of the current state and its version.
    fn publish(&mut self, now: Millis) -> (u64, Self::Snapshot);
    /// When `expire` next has work to do, if ever.
    fn next_deadline(&self) -> Option<Millis>;
}

/// What one turn of the writer did, for metrics.
#[derive(Debug, Clone, Copy)]
pub struct BatchReport {
    /// Events applied in this batch.
    pub events: usize,
    /// Time spent applying, expiring and publishing.
    pub elapsed: Duration,
    /// The version after this batch.
    pub version: u64,
    /// Whether a new snapshot was published.
    pub published: bool,
}

/// Tunables of the writer loop.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Most events applied between two publishes.
    pub max_batch: usize,
}

/// Runs the writer until it is told to stop or every sender is gone. Every
/// event that was queued before then is applied and published first.
pub(crate) fn run<M: Machine>(
    mut machine: M,
    queues: Receivers<M::Event>,
    cell: Arc<SnapshotCell<M::Snapshot>>,
    config: WriterConfig,
    clock: impl Fn() -> Millis,
    mut observe: impl FnMut(BatchReport),
) {
    let mut batch: Vec<M::Event> = Vec::with_capacity(config.max_batch);
    let mut acks: Vec<Ack> = Vec::new();
    // The writer's time never runs backwards nor freezes, whatever the
    // wall clock does (a backwards step is slewed: clock.rs).
    let mut clock = crate::clock::WriterClock::new(clock);
    let mut now = || clock.now();
    let mut stopping = false;
    while !stopping {
        let started = now();
        let deadline = machine.next_deadline().map(|at| {
            let wait = u64::try_from(at.saturating_sub(started)).unwrap_or(0);
            Instant::now() + Duration::from_millis(wait)
        });
        match super::sync::channel::recv_either(&queues.control, &queues.data, deadline) {
            Ok(Msg::Event(event, ack)) => {
                batch.push(event);
                acks.extend(ack);
            }
            Ok(Msg::Stop) | Err(RecvError::Closed) => stopping = true,
            Ok(Msg::Nudge) | Err(RecvError::Timeout) => {}
        }
        // Drain without waiting. Once stopping, take everything: no push can
        // succeed any more, so this empties the queues for good.
        while stopping || batch.len() < config.max_batch {
            let msg = match queues.control.try_recv() {
                Ok(msg) => msg,
                Err(_) => match queues.data.try_recv() {
                    Ok(msg) => msg,
                    Err(_) => break,
                },
            };
            match msg {
                Msg::Event(event, ack) => {
                    batch.push(event);
                    acks.extend(ack);
                }
                Msg::Stop => stopping = true,
                Msg::Nudge => {}
            }
        }
        let at = now();
        let timer = Instant::now();
        let events = batch.len();
        for event in batch.drain(..) {
            machine.apply(event, at);
        }
        machine.expire(at);
        let published = machine.has_changes();
        if published {
            let (version, snapshot) = machine.publish(at);
            cell.publish(Arc::new(snapshot), version);
        }
        let version = cell.version();
        for ack in acks.drain(..) {
            // The receiver may have gone (its connection closed): fine.
            let _ = ack.send(version);
        }
        if events > 0 || published {
            observe(BatchReport {
                events,
                elapsed: timer.elapsed(),
                version,
                published,
            });
        }
    }
}
