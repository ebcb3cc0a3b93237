//! Starting and stopping fleet mode: [`Fleet`] runs the fleet task on the
//! current tokio runtime; [`preload`] reads what Redis holds before the
//! engine starts, so a restarted gateway's first snapshot already shows it.
//!
//! Invariant: once [`Fleet::stop_blocking`] returns, the task has written
//! its last rows (or given up after a bounded wait) and will write nothing
//! more.

use super::link::Link;
use super::peers::Peers;
use super::status::FleetStatus;
use super::task::{Task, disconnect, millis};
use super::wire::Keys;
use crate::engine::{Event, EventSender, SnapshotReader};
use crate::presence::RemoteOp;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::watch;

/// How a gateway joins its fleet.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// `redis://HOST:PORT`.
    pub url: String,
    /// Prefix of every key and channel.
    pub prefix: String,
    /// This gateway's node id.
    pub node_id: String,
    /// Lease of a gateway that stops renewing it.
    pub lease: Duration,
    /// The presence TTL (rows in Redis expire with it).
    pub ttl: Duration,
}

/// Why the fleet link failed (the gateway keeps running, degraded).
#[derive(Debug, Error)]
pub enum FleetError {
    /// Redis refused or dropped a command.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer in time.
    #[error("redis did not answer in time")]
    Timeout,
    /// The change subscription ended (the connection was lost).
    #[error("redis subscription lost")]
    SubscriptionLost,
    /// The presence engine stopped; nothing is left to sync.
    #[error("presence engine stopped")]
    EngineStopped,
}

/// The running fleet task.
pub struct Fleet {
    status: Arc<FleetStatus>,
    stop: watch::Sender<bool>,
    done: Mutex<Option<mpsc::Receiver<()>>>,
}

impl Fleet {
    /// Spawns the fleet task on the current runtime, reporting into
    /// `status`. `restored` says
    /// whether [`preload`] already put this gateway's old rows in the
    /// store. Fails only on a URL that can never work.
    pub fn start(
        config: FleetConfig,
        status: Arc<FleetStatus>,
        engine: (EventSender<Event>, SnapshotReader),
        restored: bool,
    ) -> Result<Fleet, FleetError> {
        let (sender, reader) = engine;
        let client = redis::Client::open(config.url.as_str())?;
        let (stop, stop_rx) = watch::channel(false);
        let (done_tx, done) = mpsc::channel();
        let task = Task {
            keys: Keys::new(&config.prefix),
            boot: uuid::Uuid::new_v4().to_string(),
            config,
            client,
            sender,
            reader,
            status: Arc::clone(&status),
            stop: stop_rx,
            restored,
            peers: Peers::default(),
            synced: None,
            self_sent: 0,
        };
        tokio::spawn(async move {
            task.run().await;
            let _ = done_tx.send(());
        });
        Ok(Fleet {
            status,
            stop,
            done: Mutex::new(Some(done)),
        })
    }

    /// The link's state, for reports.
    pub fn status(&self) -> Arc<FleetStatus> {
        Arc::clone(&self.status)
    }

    /// Tells the task to write its last rows and stop, and waits up to
    /// `wait` for it. Call after the engine has drained; blocks, so call
    /// from a blocking thread. Idempotent.
    pub fn stop_blocking(&self, wait: Duration) {
        self.stop.send_replace(true);
        let done = self.done.lock().ok().and_then(|mut d| d.take());
        if let Some(done) = done {
            if done.recv_timeout(wait).is_err() {
                tracing::warn!("fleet task did not stop in time");
            }
        }
    }
}

/// Reads, within about a second, this gateway's rows of a previous run and
/// every other gateway's rows, as the ops that put them in a fresh store.
/// The second value is true if this gateway's own rows were read. Redis
/// unreachable: no ops, and the fleet task restores them once it connects.
pub fn preload(config: &FleetConfig) -> (Vec<RemoteOp>, bool) {
    let read = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                tokio::time::timeout(Duration::from_millis(1500), read_all(config))
                    .await
                    .ok()?
                    .ok()
            })
        });
        reader.join().ok().flatten()
    });
    match read {
        Some(ops) => (ops, true),
        None => {
            tracing::warn!(url = %config.url, "fleet: redis unreachable at start; serving local presence");
            (Vec::new(), false)
        }
    }
}

async fn read_all(config: &FleetConfig) -> Result<Vec<RemoteOp>, FleetError> {
    let client = redis::Client::open(config.url.as_str())?;
    let keys = Keys::new(&config.prefix);
    let identity = (&keys, config.node_id.as_str(), "");
    let timeout = Duration::from_secs(1);
    let ttl = millis(config.ttl);
    let mut link = Link::connect(&client, identity, config.lease, ttl, timeout).await?;
    let own = link.load(&config.node_id).await?;
    let mut ops = vec![RemoteOp::Restore { rows: own.rows }];
    for (node, _) in link.leases().await? {
        let loaded = link.load(&node).await?;
        let mut rows = loaded.rows;
        if loaded.lease.is_none() {
            rows.iter_mut().for_each(disconnect);
        }
        let node = node.as_str().into();
        ops.push(RemoteOp::Reset { node, rows });
    }
    Ok(ops)
}
