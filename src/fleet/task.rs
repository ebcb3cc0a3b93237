//! The fleet task: keeps this gateway's rows in Redis and the other
//! gateways' rows in the local store, and survives Redis going away.
//!
//! One session per Redis connection: subscribe, restore own rows once (warm
//! restart), resync (republish everything, reload every peer), then loop
//! over new snapshots (diff own rows, one pipeline per batch), change
//! messages (queued to the writer as `Event::Remote`) and the heartbeat
//! tick (lease, peer leases, pruning). Any Redis error ends the session:
//! the gateway reports degraded, keeps serving what it has, and retries
//! with backoff; the next session's resync makes up for what was missed.
//!
//! Invariants: `synced` is the last snapshot whose own rows Redis holds
//! (it only advances after a successful write); nothing here runs on a
//! connection's path: connections only ever push to the engine's queue.

use super::link::Link;
use super::outbound::{self, Outbound};
use super::peers::{Action, OnMessage, Peers};
use super::status::FleetStatus;
use super::wire::{Keys, Message};
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
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest pause between two reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the fleet task owns.
pub(super) struct Task {
    pub(super) config: FleetConfig,
    pub(super) client: redis::Client,
    pub(super) keys: Keys,
    pub(super) boot: String,
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
}

/// Converts milliseconds of a `Duration`.
pub(super) fn millis(duration: Duration) -> Millis {
    Millis::try_from(duration.as_millis()).unwrap_or(Millis::MAX)
}

impl Task {
    /// Runs sessions until told to stop or the engine stops.
    pub(super) async fn run(mut self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let error = match self.session().await {
                Ok(()) | Err(FleetError::EngineStopped) => return,
                Err(error) => error,
            };
            if self.status.is_connected() || self.status.resyncs.load(RELAXED) == 0 {
                tracing::warn!(%error, "fleet link down; serving local presence alone");
                backoff = Duration::from_millis(100);
            }
            self.status.set_degraded(error.to_string());
            self.synced = None;
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stopped(&mut self.stop) => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF).min(self.config.lease);
        }
    }

    async fn session(&mut self) -> Result<(), FleetError> {
        let identity = (&self.keys, self.config.node_id.as_str(), self.boot.as_str());
        let ttl = millis(self.config.ttl);
        let connect = Link::connect(&self.client, identity, self.config.lease, ttl, IO_TIMEOUT);
        let mut link = timed(connect).await?;
        let mut pubsub = timed(self.client.get_async_pubsub()).await?;
        timed(pubsub.subscribe(self.keys.channel())).await?;
        let mut messages = pubsub.into_on_message();
        if !self.restored {
            self.restore_own(&mut link).await?;
        }
        self.resync(&mut link).await?;
        self.status.set_connected();
        tracing::info!(node = %self.config.node_id, peers = self.peers.alive(), "fleet in sync");
        let mut tick = tokio::time::interval(self.config.lease / 3);
        let (mut stop, reader) = (self.stop.clone(), Arc::clone(&self.reader));
        loop {
            let next = self.synced.as_ref().map_or(0, |s| s.version()) + 1;
            tokio::select! {
                _ = stopped(&mut stop) => {
                    self.finish(&mut link).await;
                    return Ok(());
                }
                _ = reader.wait_for(next) => timed(self.sync(&mut link, false)).await?,
                message = messages.next() => match message {
                    Some(message) => timed(self.on_message(&mut link, &message)).await?,
                    None => return Err(FleetError::SubscriptionLost),
                },
                _ = tick.tick() => timed(self.on_tick(&mut link)).await?,
            }
        }
    }

    /// Loads the rows a previous run of this gateway left in Redis, once.
    async fn restore_own(&mut self, link: &mut Link) -> Result<(), FleetError> {
        let loaded = timed(link.load(&self.config.node_id)).await?;
        let event = Event::Remote(RemoteOp::Restore { rows: loaded.rows });
        let applied = self
            .sender
            .try_push_acked(event)
            .map_err(|_| FleetError::EngineStopped)?;
        applied.await.map_err(|_| FleetError::EngineStopped)?;
        self.restored = true;
        Ok(())
    }

    /// Republishes every own row, then reloads every peer.
    async fn resync(&mut self, link: &mut Link) -> Result<(), FleetError> {
        self.peers.clear();
        timed(self.sync(link, true)).await?;
        timed(self.poll_peers(link)).await
    }

    /// Writes what changed in own rows since `synced` (everything when
    /// `reset`), plus the self entry when it is due.
    async fn sync(&mut self, link: &mut Link, reset: bool) -> Result<(), FleetError> {
        let snapshot = self.reader.load_full();
        let now = now_millis();
        let ttl = millis(self.config.ttl);
        let before = if reset { None } else { self.synced.as_deref() };
        let out = outbound::diff(before, &snapshot, &self.config.node_id, ttl);
        let self_due = reset || now.saturating_sub(self.self_sent) >= self.self_refresh();
        if !out.is_empty() || self_due {
            let own = self_due.then(|| outbound::self_record(&snapshot, now));
            link.write(&out, own, reset, now).await?;
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

    async fn on_message(&mut self, link: &mut Link, raw: &redis::Msg) -> Result<(), FleetError> {
        let message: Message = match serde_json::from_slice(raw.get_payload_bytes()) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, "ignoring a fleet message that does not parse");
                return Ok(());
            }
        };
        if message.node == self.config.node_id {
            return Ok(());
        }
        self.status.messages_in.fetch_add(1, RELAXED);
        let Message {
            node,
            boot,
            seq,
            reset,
            ..
        } = &message;
        match self.peers.message(node, boot, *seq, *reset) {
            OnMessage::Reload => self.reload(link, node).await,
            OnMessage::Apply => self.apply(message).await,
        }
    }

    async fn apply(&self, message: Message) -> Result<(), FleetError> {
        let node: Arc<str> = Arc::from(message.node.as_str());
        for row in message.upserts.into_iter().filter_map(|r| r.into_row()) {
            let node = Arc::clone(&node);
            let row = Box::new(row);
            self.push(RemoteOp::Upsert { node, row }).await?;
        }
        for key in message
            .removed
            .iter()
            .filter_map(|k| crate::presence::Key::parse(k))
        {
            let node = Arc::clone(&node);
            self.push(RemoteOp::Remove { node, key }).await?;
        }
        Ok(())
    }

    /// Replaces what the store holds of `node` with its hash; a gateway
    /// without a lease has no live connection.
    async fn reload(&self, link: &mut Link, node: &str) -> Result<(), FleetError> {
        let loaded = link.load(node).await?;
        let mut rows = loaded.rows;
        if loaded.lease.is_none() {
            rows.iter_mut().for_each(disconnect);
        }
        let node = Arc::from(node);
        self.push(RemoteOp::Reset { node, rows }).await
    }

    async fn on_tick(&mut self, link: &mut Link) -> Result<(), FleetError> {
        link.heartbeat().await?;
        self.poll_peers(link).await?;
        if now_millis().saturating_sub(self.self_sent) >= self.self_refresh() {
            self.sync(link, false).await?;
        }
        Ok(())
    }

    /// Reads every peer's lease: reloads new or restarted peers, lapses
    /// dead ones, prunes dead ones' expired rows.
    async fn poll_peers(&mut self, link: &mut Link) -> Result<(), FleetError> {
        let leases = link.leases().await?;
        let dead: Vec<String> = leases
            .iter()
            .filter(|(_, lease)| lease.is_none())
            .map(|(node, _)| node.clone())
            .collect();
        for action in self.peers.observe(leases) {
            match action {
                Action::Reload(node) => self.reload(link, &node).await?,
                Action::Lapse(node) => {
                    tracing::info!(%node, "fleet gateway lease lapsed; its connections read as disconnected");
                    self.status.lapses.fetch_add(1, RELAXED);
                    self.push(RemoteOp::Lapse { node: node.into() }).await?;
                }
            }
        }
        for node in dead {
            link.prune(&node, now_millis()).await?;
        }
        self.status.peers.store(self.peers.alive() as u64, RELAXED);
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
    async fn push(&self, op: RemoteOp) -> Result<(), FleetError> {
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
}

/// Resolves once stop is asked for (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Relaxed: the status counters publish nothing else.
const RELAXED: std::sync::atomic::Ordering = std::sync::atomic::Ordering::Relaxed;

/// A row of a gateway without a lease: its connection is gone.
pub(super) fn disconnect(row: &mut RemoteRow) {
    if row.live {
        row.live = false;
        mark_disconnected(&mut row.entry);
    }
}

/// Bounds one Redis step by [`IO_TIMEOUT`] (a blackholed Redis answers
/// nothing at all).
async fn timed<T, E: Into<FleetError>>(
    step: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, FleetError> {
    match tokio::time::timeout(IO_TIMEOUT * 2, step).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(FleetError::Timeout),
    }
}
