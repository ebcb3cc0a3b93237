//! The gateway's composition root: it starts the engine and hands each part
//! the narrow handle it needs (the routes an [`http::Context`], the outbox
//! writers a [`Renderer`]), keeping for the connection tasks what only they
//! use.
//!
//! [`http::Context`]: crate::http::Context

use super::pacing::Pacing;
use super::registry::Registry;
use super::render::Renderer;
use super::self_entry::SelfInfo;
use crate::auth::Auth;
use crate::clock::now_millis;
use crate::config::ServeConfig;
use crate::engine::{Engine, EngineConfig, Event, EventSender, SnapshotReader, WriterStats};
use crate::http::{Context, SseFeed};
use crate::metrics::Metrics;
use crate::presence::{DEFAULT_LOG_KEYS, Key, StoreConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::watch;

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
    /// The broadcaster's pacing decision, for `health`.
    pub pacing: Arc<Pacing>,
    /// Flips to `true` when graceful shutdown begins.
    pub shutdown: watch::Sender<bool>,
    /// The reserved key of the gateway's own entry, parsed once: every
    /// connect and beacon is checked against it.
    self_key: Key,
    next_conn: AtomicU64,
    engine: Engine,
}

impl State {
    /// Starts the engine and builds the state.
    pub fn new(config: ServeConfig) -> Arc<State> {
        let self_info = SelfInfo::detect();
        let metrics = Arc::new(Metrics::new());
        let engine = start_engine(&config, &self_info, Arc::clone(&metrics));
        let (shutdown, _) = watch::channel(false);
        let http = Arc::new(Context {
            reader: engine.reader(),
            sse: SseFeed::default(),
            auth: Arc::new(Auth::new(config.tokens.clone())),
            metrics,
            sender: engine.sender(),
            writer_stats: engine.stats(),
            shutdown: shutdown.subscribe(),
        });
        let pacing = Arc::new(Pacing::default());
        pacing.set(config.coalesce, 0, 0);
        Arc::new(State {
            self_key: Key::parse(&self_info.instance_id).expect("a UUID is not blank"),
            self_info,
            sender: engine.sender(),
            reader: engine.reader(),
            writer_stats: engine.stats(),
            registry: Registry::new(engine.reader().load_full(), DEFAULT_LOG_KEYS),
            renderer: Arc::new(Renderer::new(engine.reader(), Arc::clone(&pacing))),
            pacing,
            http,
            shutdown,
            next_conn: AtomicU64::new(1),
            engine,
            config,
        })
    }

    /// Token checks.
    pub fn auth(&self) -> &Auth {
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

    /// True once graceful shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Drains and stops the presence engine. Blocks.
    pub fn stop_engine(&self) {
        self.engine.shutdown();
    }
}

fn start_engine(config: &ServeConfig, self_info: &SelfInfo, metrics: Arc<Metrics>) -> Engine {
    Engine::start_with(
        EngineConfig {
            store: StoreConfig {
                ttl: config.presence_ttl,
                max_entries: config.max_entries,
            },
            queue_capacity: config.queue_capacity,
            max_batch: config.max_batch,
        },
        self_info.entry(),
        now_millis,
        move |report| metrics.observe_batch(&report),
    )
}
