//! The fleet task: keeps this gateway's rows in Redis and the other
//! gateways' rows in the local store, and survives whatever Redis does.
//!
//! One session per Redis connection: subscribe, claim the node id's lease,
//! restore own rows once (warm restart), resync (rewrite everything,
//! reload every peer), then loop over new snapshots (diff own rows, one
//! transaction per batch), change messages (`inbound.rs`) and the
//! heartbeat tick (lease, anti-entropy, peer leases, pruning). Any Redis
//! error ends the session: the gateway reports degraded, keeps serving
//! what it has, and retries with backoff, forever; the next session's
//! resync makes up for what was missed.
//!
//! Invariants: `synced` is the last snapshot whose own rows Redis holds
//! (it only advances after a successful write, or while the lease is held
//! by another boot, when nothing is written); `own_rows` is how many rows
//! our hash holds after our last write, and the stamp beside it says so:
//! a heartbeat that finds otherwise (FLUSHALL, a deleted field, a lost
//! write) rewrites the whole hash. Nothing here runs on a connection's
//! path: connections only ever push to the engine's queue.

use super::link::{Beat, Link};
use super::link_status::FleetStatus;
use super::outbound::{self, Outbound};
use super::peers::Peers;
use super::validate::Screen;
use super::wire::Keys;
use super::{FleetConfig, FleetError};
use crate::clock::{Millis, now_millis};
use crate::engine::{Event, EventSender, PushError, SnapshotReader};
use crate::presence::{RemoteOp, RemoteRow, Snapshot, mark_disconnected};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The longest a connect or a command may take before the link counts
/// as lost.
pub(super) const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest pause between two reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the fleet task owns.
pub(super) struct Task {
    pub(super) config: FleetConfig,
    pub(super) endpoint: super::Endpoint,
    pub(super) keys: Keys,
    pub(super) sender: EventSender<Event>,
    pub(super) reader: SnapshotReader,
    pub(super) status: Arc<FleetStatus>,
    pub(super) stop: watch::Receiver<bool>,
    /// Own rows of a previous run are in the store already.
    pub(super) restored: bool,
    pub(super) peers: Peers,
    pub(super) synced: Option<Arc<Snapshot>>,
    /// When the self entry was last written.
    pub(super) self_sent: Millis,
    /// The bounds rows from Redis are checked against.
    pub(super) screen: Screen,
    /// Rows our hash holds after our last write.
    pub(super) own_rows: u64,
    /// Our lease is ours as of the last heartbeat (else another boot
    /// holds this node id, and nothing of ours is written).
    pub(super) claimed: bool,
    /// A message came from a node not known alive: poll leases soon.
    pub(super) poll_soon: bool,
    /// The `at` of our last heartbeat message and the poll it follows:
    /// when it comes back through our subscription, every message
    /// published before that poll has been read.
    pub(super) marker: Option<(Millis, u64)>,
    /// When our lease was last renewed: a reload renews it again when a
    /// third of the lease has passed (`inbound.rs`).
    pub(super) last_renewed: std::time::Instant,
}

/// Converts milliseconds of a `Duration`.
pub(super) fn millis(duration: Duration) -> Millis {
    Millis::try_from(duration.as_millis()).unwrap_or(Millis::MAX)
}

impl Task {
    /// Runs sessions until told to stop or the engine stops; every other
    /// failure is retried with backoff.
    pub(super) async fn run(mut self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let error = match self.session().await {
                Ok(()) | Err(FleetError::EngineStopped) => return,
                Err(error) => error,
            };
            self.status.failures.fetch_add(1, RELAXED);
            if self.status.is_connected() || self.status.resyncs.load(RELAXED) == 0 {
                tracing::warn!(%error, "fleet link down; serving local presence alone");
                backoff = Duration::from_millis(100);
            }
            if self.claimed || self.status.is_connected() {
                self.status.set_degraded(error.to_string());
            }
            self.synced = None;
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stopped(&mut self.stop) => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF).min(self.config.lease);
        }
    }

    async fn session(&mut self) -> Result<(), FleetError> {
        let client = timed(self.endpoint.client()).await?;
        let identity = (
            &self.keys,
            self.config.node_id.as_str(),
            self.config.boot.as_str(),
        );
        let ttl = millis(self.config.ttl);
        let connect = Link::connect(&client, identity, self.config.lease, ttl, IO_TIMEOUT);
        let mut link = timed(connect).await?;
        let mut pubsub = timed(client.get_async_pubsub()).await?;
        timed(pubsub.subscribe(self.keys.channel())).await?;
        let mut messages = pubsub.into_on_message();
        self.claimed = false;
        self.marker = None;
        let beat = timed(link.heartbeat(false)).await?;
        self.last_renewed = std::time::Instant::now();
        if !self.restored {
            self.restore_own(&mut link).await?;
        }
        self.peers.clear();
        self.on_beat(&mut link, beat).await?;
        let (started, rows) = (
            std::time::Instant::now(),
            self.status.rows_loaded.load(RELAXED),
        );
        self.poll_peers(&mut link).await?;
        tracing::info!(
            peers = self.peers.alive(),
            rows = self.status.rows_loaded.load(RELAXED) - rows,
            ms = started.elapsed().as_millis() as u64,
            "fleet: read the other gateways' rows"
        );
        let mut tick = tokio::time::interval(self.config.lease / 3);
        let (mut stop, reader) = (self.stop.clone(), Arc::clone(&self.reader));
        loop {
            let next = self.synced.as_ref().map_or(0, |s| s.version()) + 1;
            let soon = self.poll_soon;
            tokio::select! {
                _ = stopped(&mut stop) => {
                    self.finish(&mut link).await;
                    return Ok(());
                }
                _ = reader.wait_for(next) => timed(self.sync(&mut link, false)).await?,
                // Not bounded as a whole: applying waits for room in the
                // writer's queue, which is no Redis failure. Each Redis
                // step inside is bounded by `timed`.
                message = messages.next() => match message {
                    Some(message) => self.on_message(&mut link, &message).await?,
                    None => return Err(FleetError::SubscriptionLost),
                },
                _ = tick.tick() => self.on_tick(&mut link).await?,
                _ = tokio::time::sleep(self.config.lease / 10), if soon => {
                    self.poll_soon = false;
                    self.poll_peers(&mut link).await?;
                }
            }
        }
    }

    /// Loads the rows a previous run of this gateway left in Redis, once.
    async fn restore_own(&mut self, link: &mut Link) -> Result<(), FleetError> {
        let loaded = link
            .load(&self.config.node_id, self.config.max_rows)
            .await?;
        let rows = self.screen_rows(&self.config.node_id.clone(), loaded.raw, now_millis());
        let applied = self.push_acked(RemoteOp::Restore { rows }).await?;
        applied.await.map_err(|_| FleetError::EngineStopped)?;
        self.restored = true;
        Ok(())
    }

    /// Renews our lease with a heartbeat and acts on what it found.
    pub(super) async fn renew(&mut self, link: &mut Link) -> Result<(), FleetError> {
        let beat = timed(link.heartbeat(false)).await?;
        self.last_renewed = std::time::Instant::now();
        self.on_beat(link, beat).await
    }

    /// Acts on a heartbeat: another boot holds our node id (write
    /// nothing, say why), we hold it again (rewrite everything), or our
    /// hash is not what we wrote (rewrite everything).
    async fn on_beat(&mut self, link: &mut Link, beat: Beat) -> Result<(), FleetError> {
        if let Some(other) = beat.taken_by {
            if self.claimed || self.status.is_connected() || self.status.resyncs.load(RELAXED) == 0
            {
                tracing::error!(node = %self.config.node_id, other_boot = %other,
                    "fleet: another gateway holds this node id's lease; not writing presence until it is free (give each gateway its own --node-id)");
            }
            self.claimed = false;
            self.status.set_degraded(format!(
                "node id {:?} is held by another gateway (boot {other}); two gateways share --node-id",
                self.config.node_id
            ));
            self.synced = Some(self.reader.load_full());
            return Ok(());
        }
        if !self.claimed {
            self.claimed = true;
            timed(self.sync(link, true)).await?;
            self.status.set_connected();
            tracing::info!(node = %self.config.node_id, "fleet in sync");
            return Ok(());
        }
        let expected = link.stamp(self.own_rows);
        if beat.stamp.as_ref() != Some(&expected) || beat.rows != self.own_rows {
            tracing::warn!(node = %self.config.node_id, rows = beat.rows, expected = self.own_rows,
                "fleet: our rows in Redis are not what we wrote (flushed, evicted or edited); rewriting them");
            self.status.repairs.fetch_add(1, RELAXED);
            timed(self.sync(link, true)).await?;
        }
        Ok(())
    }

    /// Writes what changed in own rows since `synced` (everything when
    /// `reset`), plus the self entry when it is due. Writes nothing while
    /// another boot holds the lease.
    pub(super) async fn sync(&mut self, link: &mut Link, reset: bool) -> Result<(), FleetError> {
        let snapshot = self.reader.load_full();
        if !self.claimed {
            self.synced = Some(snapshot);
            return Ok(());
        }
        let now = now_millis();
        let ttl = millis(self.config.ttl);
        let before = if reset { None } else { self.synced.as_deref() };
        let out = outbound::diff(before, &snapshot, &self.config.node_id, ttl);
        let self_due = reset || now.saturating_sub(self.self_sent) >= self.self_refresh();
        if !out.is_empty() || self_due {
            let own = self_due.then(|| outbound::self_record(&snapshot, now));
            let rows = outbound::own_rows(&snapshot, &self.config.node_id) + 1;
            link.write(&out, own, (reset, rows), now).await?;
            self.own_rows = rows;
            self.count(&out);
            if self_due {
                self.self_sent = now;
            }
        }
        self.synced = Some(snapshot);
        Ok(())
    }

    /// How often the self entry's `ts` is renewed in the other gateways'
    /// lists: well within the TTL and the Active window.
    fn self_refresh(&self) -> Millis {
        (millis(self.config.ttl) / 3).clamp(1, 30_000)
    }

    fn count(&self, out: &Outbound) {
        self.status.batches.fetch_add(1, RELAXED);
        let rows = (out.records.len() + out.removed.len()) as u64;
        self.status.rows_out.fetch_add(rows, RELAXED);
    }

    async fn on_tick(&mut self, link: &mut Link) -> Result<(), FleetError> {
        self.renew(link).await?;
        self.poll_peers(link).await?;
        if self.claimed {
            // Peers measure our clock and check they missed nothing; its
            // return through our subscription marks every message
            // published before this poll as read (`inbound.rs`).
            let at = now_millis();
            timed(link.beat(at)).await?;
            // One check at a time: it covers every stamp noted until now.
            self.marker.get_or_insert((at, self.peers.generation()));
        }
        self.status
            .set_skews(self.peers.skews(), self.screen.max_skew);
        if now_millis().saturating_sub(self.self_sent) >= self.self_refresh() {
            timed(self.sync(link, false)).await?;
        }
        Ok(())
    }

    /// Graceful stop: the engine has drained, so this writes the last own
    /// rows (disconnects included) and gives up the lease.
    async fn finish(&mut self, link: &mut Link) {
        let done = timed(async {
            self.sync(link, false).await?;
            link.release().await.map_err(FleetError::from)
        });
        if let Err(error) = done.await {
            tracing::warn!(%error, "fleet: could not write the last rows on shutdown");
        }
    }

    /// Queues `op` for the writer, waiting while the queue is full: what
    /// another gateway holds must not be dropped.
    pub(super) async fn push(&self, op: RemoteOp) -> Result<(), FleetError> {
        let mut event = Event::Remote(op);
        loop {
            match self.sender.try_push(event) {
                Ok(()) => return Ok(()),
                Err(PushError::Full(back)) => {
                    event = back;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err(PushError::Closed(_)) => return Err(FleetError::EngineStopped),
            }
        }
    }

    /// Like [`Task::push`], and returns the receiver of its ack.
    pub(super) async fn push_acked(
        &self,
        op: RemoteOp,
    ) -> Result<tokio::sync::oneshot::Receiver<u64>, FleetError> {
        let mut event = Event::Remote(op);
        loop {
            match self.sender.try_push_acked(event) {
                Ok(applied) => return Ok(applied),
                Err(PushError::Full(back)) => {
                    event = back;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err(PushError::Closed(_)) => return Err(FleetError::EngineStopped),
            }
        }
    }
}

/// Resolves once stop is asked for (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Relaxed: the status counters publish nothing else.
pub(super) const RELAXED: std::sync::atomic::Ordering = std::sync::atomic::Ordering::Relaxed;

/// A row of a gateway without a lease: its connection is gone.
pub(super) fn disconnect(row: &mut RemoteRow) {
    row.pinned = false;
    if row.live {
        row.live = false;
        mark_disconnected(&mut row.entry);
    }
}

/// Bounds one Redis step by [`IO_TIMEOUT`] (a blackholed Redis answers
/// nothing at all).
pub(super) async fn timed<T, E: Into<FleetError>>(
    step: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, FleetError> {
    match tokio::time::timeout(IO_TIMEOUT * 2, step).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(FleetError::Timeout),
    }
}
