//! The gateway's composition root: it starts the engine and hands each part
//! the narrow handle it needs (the routes an [`http::Context`], the outbox
//! writers a [`Renderer`]), keeping for the connection tasks what only they
//! use.
//!
//! In fleet mode it also starts the fleet task, after reading what Redis
//! holds into the engine's first snapshot; without a fleet, a state file
//! (if configured) plays that part. Both stop after the engine drained.
//!
//! [`http::Context`]: crate::http::Context

use super::claims::Claims;
use super::registry::Registry;
use super::render::Renderer;
use super::self_entry::SelfInfo;
use super::waiting::WaitingPool;
use crate::auth::FailureLimiter;
use crate::auth::Grants;
use crate::clock::Clock;
use crate::config::ServeConfig;
use crate::engine::{Engine, EngineConfig, Event, EventSender, SnapshotReader, WriterStats};
use crate::fleet::{Fleet, FleetConfig, FleetError, FleetStatus, StateFile};
use crate::http::{Context, Doctor, OriginPolicy, SseFeed};
use crate::metrics::Metrics;
use crate::presence::{
    DEFAULT_LOG_KEYS, DoctorConfig, Entry, HostStatsBook, Key, RemoteOp, StoreConfig,
};
use crate::tls::CertResolver;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Semaphore, watch};

/// List bytes that `hello-ok` frames may hold at once, queued or being
/// written, in KiB: a few hundred full 200-entry lists, or a dozen of
/// 20,000 entries. A single hello larger than this still goes, alone.
pub const HELLO_BUDGET_KIB: u32 = 64 * 1024;

/// The gateway's shared state.
pub struct State {
    /// The configuration it was started with.
    pub config: ServeConfig,
    /// This machine, as the self entry reports it.
    pub self_info: SelfInfo,
    /// Producer handle of the presence engine.
    pub sender: EventSender<Event>,
    /// Readers' handle of the presence engine.
    pub reader: SnapshotReader,
    /// The writer's counters.
    pub writer_stats: Arc<WriterStats>,
    /// Connections that receive broadcasts.
    pub registry: Registry,
    /// What the HTTP routes see; also holds auth, metrics and the SSE feed.
    pub http: Arc<Context>,
    /// Renders the replies an outbox writer sends.
    pub renderer: Arc<Renderer>,
    /// Flips to `true` when graceful shutdown begins.
    pub shutdown: watch::Sender<bool>,
    /// Which principal holds each tracked key (docs/protocol.md §5.1).
    pub claims: Claims,
    /// Failed authentication per client address (docs/protocol.md §3.8).
    pub auth_failures: FailureLimiter,
    /// The budget for `hello-ok` lists in flight, in KiB (see
    /// `HELLO_BUDGET_KIB`).
    pub hellos: Arc<Semaphore>,
    /// Connections that have not sent a request yet (at most half of
    /// `--max-connections`), evicted oldest first to make room.
    pub waiting: WaitingPool,
    /// The reserved key of the gateway's own entry, parsed once: every
    /// connect and beacon is checked against it.
    self_key: Key,
    next_conn: AtomicU64,
    engine: Engine,
    fleet: Option<Fleet>,
    state_file: Option<StateFile>,
}

impl State {
    /// Starts the engine and builds the state. Fails only when the fleet
    /// refuses this gateway: another running gateway holds its node id.
    /// With TLS, `tls` is the certificate served, for `health` and stats.
    pub fn new(
        config: ServeConfig,
        tls: Option<Arc<CertResolver>>,
        clock: Clock,
    ) -> Result<Arc<State>, FleetError> {
        let self_info = SelfInfo::detect();
        let fleet_config = fleet_config(&config);
        let status = fleet_config
            .as_ref()
            .map(|c| Arc::new(FleetStatus::new(&c.node_id)));
        let metrics = Arc::new(Metrics::with_fleet(status.clone()));
        let state_file = config
            .state_file
            .as_deref()
            .filter(|_| fleet_config.is_none())
            .map(|path| StateFile::new(path, config.presence_ttl));
        let mut self_entry = self_info.entry();
        self_entry.gateway_id = fleet_config.as_ref().map(|c| c.node_id.clone());
        let (preload, restored) = preload(fleet_config.as_ref(), state_file.as_ref(), &clock)?;
        let engine = start_engine(&config, &clock, self_entry, preload, Arc::clone(&metrics));
        let (shutdown, _) = watch::channel(false);
        if let Some(file) = &state_file {
            file.spawn_saver(engine.reader(), config.state_interval, shutdown.subscribe());
        }
        let fleet = fleet_config.zip(status.clone()).and_then(|(c, status)| {
            let handles = (engine.sender(), engine.reader());
            Fleet::start(c, status, handles, restored)
                .inspect_err(|error| tracing::error!(%error, "fleet mode not started"))
                .ok()
        });
        let http = Arc::new(Context {
            doctor_gzip: Default::default(),
            fleet: status.clone(),
            reader: engine.reader(),
            sse: SseFeed::with_clock(clock.clone()).with_stall(config.sse_stall_timeout),
            auth: Arc::new(Grants::new(config.tokens.clone())),
            metrics: Arc::clone(&metrics),
            sender: engine.sender(),
            writer_stats: engine.stats(),
            shutdown: shutdown.subscribe(),
            doctor: Doctor::new(DoctorConfig {
                stale_after: config.stale_after,
            })
            .with_clock(clock.clone()),
            origins: OriginPolicy::new(&config.allowed_origins, config.tokens.is_empty()),
            tls: tls.clone(),
            host_stats: HostStatsBook::new(config.max_entries),
            clock: clock.clone(),
        });
        // Until the first fan-out, the interval is the coalescing one.
        metrics.paced(config.coalesce, 0, 0);
        Ok(Arc::new(State {
            self_key: Key::parse(&self_info.instance_id).expect("a UUID is not blank"),
            self_info,
            sender: engine.sender(),
            reader: engine.reader(),
            writer_stats: engine.stats(),
            registry: Registry::new(engine.reader().load_full(), DEFAULT_LOG_KEYS),
            renderer: Arc::new(
                Renderer::new(engine.reader(), Arc::clone(&metrics))
                    .with_fleet(status)
                    .with_tls(tls)
                    .with_clock(clock.clone()),
            ),
            http,
            shutdown,
            hellos: Arc::new(Semaphore::new(HELLO_BUDGET_KIB as usize)),
            waiting: WaitingPool::within(config.max_connections, config.max_waiting_connections),
            claims: Claims::default(),
            auth_failures: FailureLimiter::default(),
            next_conn: AtomicU64::new(1),
            engine,
            fleet,
            state_file,
            config,
        }))
    }

    /// Token checks.
    pub fn auth(&self) -> &Grants {
        &self.http.auth
    }

    /// Metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.http.metrics
    }

    /// A process-unique connection number.
    pub fn next_conn_id(&self) -> u64 {
        // Relaxed: uniqueness needs only atomicity.
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// The reserved key of the gateway's own entry.
    pub fn self_key(&self) -> &Key {
        &self.self_key
    }

    /// Moves the gateway's clock `by` forward and wakes the presence
    /// writer, which expires at once what the new time makes too old.
    /// A test hook: panics unless the server was configured with
    /// `Clock::adjustable()`.
    #[doc(hidden)]
    pub fn advance_clock(&self, by: std::time::Duration) {
        let ms =
            crate::clock::Millis::try_from(by.as_millis()).unwrap_or(crate::clock::Millis::MAX);
        self.http.clock.advance(ms);
        self.sender.nudge();
    }

    /// True once graceful shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Drains and stops the presence engine, then writes the last rows to
    /// the fleet or the state file. Blocks.
    pub fn stop_engine(&self) {
        self.engine.shutdown();
        if let Some(fleet) = &self.fleet {
            fleet.stop_blocking(std::time::Duration::from_secs(5));
        }
        if let Some(file) = &self.state_file {
            let snapshot = self.engine.reader().load_full();
            if let Err(error) = file.save(&snapshot, self.http.clock.now()) {
                tracing::warn!(%error, "could not save presence on shutdown");
            }
        }
    }
}

/// The fleet this gateway joins, if `--fleet` is set.
fn fleet_config(config: &ServeConfig) -> Option<FleetConfig> {
    Some(FleetConfig {
        url: config.fleet.clone()?,
        prefix: config.fleet_prefix.clone(),
        node_id: config.node_id(),
        password: config.fleet_password().ok().flatten(),
        ca: config.fleet_ca().ok().flatten(),
        boot: uuid::Uuid::new_v4().to_string(),
        max_skew: config.max_clock_skew,
        max_rows: config.max_entries,
        takeover: config.fleet_takeover,
        lease: config.fleet_lease,
        ttl: config.presence_ttl,
    })
}

/// What the first snapshot starts from (warm restart), and whether it
/// holds this gateway's own rows of the previous run.
fn preload(
    fleet: Option<&FleetConfig>,
    file: Option<&StateFile>,
    clock: &Clock,
) -> Result<(Vec<RemoteOp>, bool), FleetError> {
    if let Some(fleet) = fleet {
        return crate::fleet::preload(fleet);
    }
    let rows = match file.map(|f| f.load(clock.now())) {
        Some(Ok(rows)) => rows,
        Some(Err(error)) => {
            tracing::warn!(%error, "ignoring the state file");
            Vec::new()
        }
        None => Vec::new(),
    };
    Ok((vec![RemoteOp::Restore { rows }], true))
}

fn start_engine(
    config: &ServeConfig,
    clock: &Clock,
    self_entry: Entry,
    preload: Vec<RemoteOp>,
    metrics: Arc<Metrics>,
) -> Engine {
    Engine::start_from(
        EngineConfig {
            store: StoreConfig {
                ttl: config.presence_ttl,
                max_entries: config.max_entries,
            },
            queue_capacity: config.queue_capacity,
            max_batch: config.max_batch,
            renew_every: config.keepalive / 2,
        },
        self_entry,
        preload,
        {
            let clock = clock.clone();
            move || clock.now()
        },
        move |report| metrics.observe_batch(&report),
    )
}
