//! What every connection task and HTTP handler shares: configuration, the
//! engine's handles, auth, the subscriber registry and metrics.

use super::auth::Auth;
use super::broadcast::Registry;
use super::self_entry::SelfInfo;
use crate::config::ServeConfig;
use crate::engine::{Engine, EngineConfig, Event, EventSender, SnapshotReader, WriterStats};
use crate::metrics::Metrics;
use crate::presence::StoreConfig;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::watch;

/// The gateway's shared state.
pub struct State {
    /// The configuration it was started with.
    pub config: ServeConfig,
    /// Token checks.
    pub auth: Auth,
    /// This machine, as the self entry reports it.
    pub self_info: SelfInfo,
    /// The reserved key of the gateway's own entry, parsed once: every
    /// connect and beacon is checked against it.
    self_key: crate::presence::Key,
    /// Producer handle of the presence engine.
    pub sender: EventSender<Event>,
    /// Readers' handle of the presence engine.
    pub reader: SnapshotReader,
    /// The writer's counters.
    pub writer_stats: Arc<WriterStats>,
    /// Connections that receive broadcasts.
    pub registry: Registry,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// When the server started.
    pub started: Instant,
    /// Flips to `true` when graceful shutdown begins.
    pub shutdown: watch::Sender<bool>,
    /// The latest coalesced list for SSE readers: (version, bytes of the
    /// SSE `data:` JSON). Published by the broadcaster.
    pub sse: watch::Sender<Option<(u64, bytes::Bytes)>>,
    next_conn: AtomicU64,
    engine: Engine,
}

impl State {
    /// Starts the engine and builds the state.
    pub fn new(config: ServeConfig) -> Arc<State> {
        let self_info = SelfInfo::detect();
        let metrics = Arc::new(Metrics::new());
        let observer = Arc::clone(&metrics);
        let engine = Engine::start_with(
            EngineConfig {
                store: StoreConfig {
                    ttl: config.presence_ttl,
                    max_entries: config.max_entries,
                },
                queue_capacity: config.queue_capacity,
                max_batch: config.max_batch,
            },
            self_info.entry(),
            crate::clock::now_millis,
            move |report| observer.observe_batch(&report),
        );
        let (shutdown, _) = watch::channel(false);
        let (sse, _) = watch::channel(None);
        Arc::new(State {
            auth: Auth::new(config.tokens.clone()),
            config,
            self_key: crate::presence::Key::parse(&self_info.instance_id)
                .expect("a UUID is not blank"),
            self_info,
            sender: engine.sender(),
            reader: engine.reader(),
            writer_stats: engine.stats(),
            registry: Registry::default(),
            metrics,
            started: Instant::now(),
            shutdown,
            sse,
            next_conn: AtomicU64::new(1),
            engine,
        })
    }

    /// A process-unique connection number.
    pub fn next_conn_id(&self) -> u64 {
        // Relaxed: uniqueness needs only atomicity.
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Milliseconds since start.
    pub fn uptime_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The `health` payload.
    pub fn health_json(&self) -> Vec<u8> {
        let snapshot = self.reader.load();
        format!(
            r#"{{"ok":true,"uptimeMs":{},"presence":{{"entries":{},"version":{}}}}}"#,
            self.uptime_ms(),
            snapshot.len(),
            snapshot.version()
        )
        .into_bytes()
    }

    /// The reserved key of the gateway's own entry.
    pub fn self_key(&self) -> &crate::presence::Key {
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
