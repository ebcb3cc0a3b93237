//! The running client tasks of one run: when each starts during the ramp
//! ([`Schedule`]) and how they stop ([`Crew`]).
//!
//! Invariants:
//! - Beacon clients and readers stop before the watchers, so the watchers
//!   can settle on the version the others left behind.
//! - Stopping is bounded: tasks still running [`STOP_GRACE`] after being
//!   told are aborted.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long stopped clients get to finish before they are aborted.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// The running clients, in two sets stopped one after the other: beacon
/// clients and readers first, watchers last.
pub(super) struct Crew {
    /// Beacon clients and readers.
    pub clients: JoinSet<()>,
    /// Watchers.
    pub watchers: JoinSet<()>,
    /// Tells the beacon clients and readers to stop.
    pub stop_clients: watch::Sender<bool>,
    /// Tells the watchers to stop.
    pub stop_watchers: watch::Sender<bool>,
}

impl Crew {
    pub fn new() -> Self {
        Crew {
            clients: JoinSet::new(),
            watchers: JoinSet::new(),
            stop_clients: watch::channel(false).0,
            stop_watchers: watch::channel(false).0,
        }
    }

    /// Stops the beacon clients and readers.
    pub async fn stop_clients(&mut self) {
        stop(&mut self.clients, &self.stop_clients).await;
    }

    /// Stops whatever still runs.
    pub async fn stop(&mut self) {
        self.stop_clients().await;
        stop(&mut self.watchers, &self.stop_watchers).await;
    }
}

/// Tells every task of `tasks` to stop, and aborts those still running
/// after [`STOP_GRACE`]. Stopping an empty set returns at once.
async fn stop(tasks: &mut JoinSet<()>, stop_tx: &watch::Sender<bool>) {
    // Nobody may be subscribed (no tasks, or all ended); that is fine.
    stop_tx.send_replace(true);
    let grace = tokio::time::sleep(STOP_GRACE);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            joined = tasks.join_next() => if joined.is_none() { break },
            _ = &mut grace => { tasks.shutdown().await; break; }
        }
    }
}

/// One kind of connection's ramp: `total` started at `rate` per second.
pub(super) struct Schedule {
    /// Connections to start.
    pub total: u64,
    rate: f64,
    spawned: u64,
}

impl Schedule {
    pub fn new(total: u64, rate: u32) -> Self {
        Schedule {
            total,
            rate: f64::from(rate),
            spawned: 0,
        }
    }

    /// How long starting them all takes.
    pub fn span(&self) -> Duration {
        Duration::from_secs_f64(self.total as f64 / self.rate)
    }

    /// The indices due to start `elapsed` into the ramp and not started yet;
    /// they count as started.
    pub fn due(&mut self, elapsed: Duration) -> std::ops::Range<u64> {
        let due = ((elapsed.as_secs_f64() * self.rate) as u64 + 1).min(self.total);
        let from = self.spawned;
        self.spawned = due.max(from);
        from..self.spawned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_starts_each_index_once_at_its_rate() {
        let mut s = Schedule::new(10, 100);
        assert_eq!(s.span(), Duration::from_millis(100));
        assert_eq!(s.due(Duration::ZERO), 0..1);
        assert_eq!(s.due(Duration::from_millis(45)), 1..5);
        assert_eq!(s.due(Duration::from_millis(45)), 5..5);
        assert_eq!(s.due(Duration::from_secs(9)), 5..10);
    }

    #[tokio::test]
    async fn stopping_an_empty_crew_returns_at_once() {
        tokio::time::pause();
        let mut crew = Crew::new();
        crew.watchers.spawn(std::future::pending::<()>());
        crew.stop_clients().await;
        assert_eq!(crew.watchers.len(), 1, "watchers outlive the clients' stop");
        crew.stop().await;
        assert!(crew.watchers.is_empty());
    }
}
