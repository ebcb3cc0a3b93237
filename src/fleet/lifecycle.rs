//! Starting and stopping fleet mode: [`Fleet`] runs the fleet task on the
//! current tokio runtime; [`preload`] reads what Redis holds before the
//! engine starts, so a restarted gateway's first snapshot already shows it.
//!
//! Invariants: once [`Fleet::stop_blocking`] returns, the task has written
//! its last rows (or given up after a bounded wait) and will write nothing
//! more; [`preload`] either takes the node id's lease for this boot, finds
//! Redis unreachable, or refuses (another live gateway holds the id).

use super::endpoint::{Endpoint, EndpointError, redact};
use super::link::Link;
use super::link_status::FleetStatus;
use super::peers::Peers;
use super::task::{Task, disconnect, millis};
use super::validate::Screen;
use super::wire::Keys;
use crate::clock::now_millis;
use crate::engine::{Event, EventSender, SnapshotReader};
use crate::presence::{RemoteOp, RemoteRow};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::watch;

/// How a gateway joins its fleet. Its `Debug` never shows the password.
#[derive(Clone)]
pub struct FleetConfig {
    /// `redis://`, `rediss://` or `redis+sentinel://` URL.
    pub url: String,
    /// The Redis password, when not in the URL.
    pub password: Option<String>,
    /// PEM roots a `rediss://` server's certificate must chain to.
    pub ca: Option<Vec<u8>>,
    /// This run's boot id (a fresh UUID per start).
    pub boot: String,
    /// How far ahead of this gateway's clock a peer's `ts` may be.
    pub max_skew: Duration,
    /// The most rows read from one peer (this gateway's cap).
    pub max_rows: usize,
    /// Take the node id's lease at start even if another boot holds it.
    pub takeover: bool,
    /// Prefix of every key and channel.
    pub prefix: String,
    /// This gateway's node id.
    pub node_id: String,
    /// Lease of a gateway that stops renewing it.
    pub lease: Duration,
    /// The presence TTL (rows in Redis expire with it).
    pub ttl: Duration,
}

impl std::fmt::Debug for FleetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetConfig")
            .field("url", &redact(&self.url))
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("node_id", &self.node_id)
            .field("boot", &self.boot)
            .finish_non_exhaustive()
    }
}

/// Why the fleet link failed (the gateway keeps running, degraded), or
/// why a gateway must not start.
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
    /// The URL can never work.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// Another running gateway holds this node id's lease.
    #[error(
        "fleet node id {node:?} is held by another running gateway (boot {boot}): give each gateway its own --node-id, or pass --fleet-takeover to take it over"
    )]
    NodeIdTaken {
        /// The node id.
        node: String,
        /// The boot id holding its lease.
        boot: String,
    },
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
        let endpoint = Endpoint::open(
            &config.url,
            config.password.as_deref(),
            config.ca.as_deref(),
        )?;
        let (stop, stop_rx) = watch::channel(false);
        let (done_tx, done) = mpsc::channel();
        status.set_skew_bound(millis(config.max_skew));
        let task = Task {
            keys: Keys::new(&config.prefix),
            screen: Screen {
                max_skew: millis(config.max_skew),
            },
            config,
            endpoint,
            sender,
            reader,
            status: Arc::clone(&status),
            stop: stop_rx,
            restored,
            peers: Peers::default(),
            synced: None,
            self_sent: 0,
            own_rows: 0,
            claimed: false,
            poll_soon: false,
            marker: None,
            last_renewed: std::time::Instant::now(),
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

/// Takes this node id's lease for this boot, then reads, within about a
/// second, this gateway's rows of a previous run and every other
/// gateway's rows, as the ops that put them in a fresh store. The second
/// value is true if this gateway's own rows were read. Redis unreachable:
/// no ops, and the fleet task restores them once it connects. Another
/// gateway holding the node id (it renewed the lease for longer than one
/// lease): [`FleetError::NodeIdTaken`], and the gateway must not start.
pub fn preload(config: &FleetConfig) -> Result<(Vec<RemoteOp>, bool), FleetError> {
    let endpoint = Endpoint::open(
        &config.url,
        config.password.as_deref(),
        config.ca.as_deref(),
    )?;
    let budget = Duration::from_millis(1500) + config.lease * 2;
    let started = std::time::Instant::now();
    let read = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                tokio::time::timeout(budget, read_all(config, &endpoint))
                    .await
                    .ok()
            })
        });
        reader.join().ok().flatten()
    });
    match read {
        Some(Ok(ops)) => {
            tracing::info!(
                gateways = ops.len() - 1,
                ms = started.elapsed().as_millis() as u64,
                "fleet: read the fleet's rows before serving"
            );
            Ok((ops, true))
        }
        Some(Err(error @ FleetError::NodeIdTaken { .. })) => Err(error),
        Some(Err(error)) => {
            tracing::warn!(url = %redact(&config.url), %error, "fleet: redis unreachable at start; serving local presence");
            Ok((Vec::new(), false))
        }
        None => {
            tracing::warn!(url = %redact(&config.url), budget_ms = budget.as_millis() as u64,
                "fleet: redis unreachable at start, or reading the fleet took longer than the budget; serving local presence until the fleet task has read it");
            Ok((Vec::new(), false))
        }
    }
}

/// Takes the lease: at once if it is free or `takeover`, else waits for
/// a holder that stopped renewing it (a crashed run of this node) for up
/// to one and a half leases.
async fn claim(link: &mut Link, config: &FleetConfig) -> Result<(), FleetError> {
    let deadline = tokio::time::Instant::now() + config.lease + config.lease / 2;
    loop {
        let beat = link.heartbeat(config.takeover).await?;
        let Some(boot) = beat.taken_by else {
            return Ok(());
        };
        if tokio::time::Instant::now() >= deadline {
            let node = config.node_id.clone();
            return Err(FleetError::NodeIdTaken { node, boot });
        }
        tokio::time::sleep(config.lease / 4).await;
    }
}

async fn read_all(config: &FleetConfig, endpoint: &Endpoint) -> Result<Vec<RemoteOp>, FleetError> {
    let timeout = Duration::from_secs(1);
    let client = tokio::time::timeout(timeout, endpoint.client())
        .await
        .map_err(|_| FleetError::Timeout)??;
    let keys = Keys::new(&config.prefix);
    let identity = (&keys, config.node_id.as_str(), config.boot.as_str());
    let ttl = millis(config.ttl);
    let mut link = Link::connect(&client, identity, config.lease, ttl, timeout).await?;
    claim(&mut link, config).await?;
    let screen = Screen {
        max_skew: millis(config.max_skew),
    };
    let own = link.load(&config.node_id, config.max_rows).await?;
    let rows = screened(&screen, own.raw);
    let mut ops = vec![RemoteOp::Restore { rows }];
    for poll in link.leases().await? {
        let loaded = link.load(&poll.node, config.max_rows).await?;
        let mut rows = screened(&screen, loaded.raw);
        if loaded.lease.is_none() {
            rows.iter_mut().for_each(disconnect);
        }
        let node = poll.node.as_str().into();
        ops.push(RemoteOp::Reset { node, rows });
    }
    Ok(ops)
}

/// The valid rows of one hash (the fleet task reports refused ones once
/// it runs; here they are only left out).
fn screened(screen: &Screen, raw: Vec<(String, Vec<u8>)>) -> Vec<RemoteRow> {
    screen.hash(raw, now_millis()).rows
}
