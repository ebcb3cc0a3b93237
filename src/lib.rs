//! rollcall: a lock-free, high-throughput presence engine for gateways that
//! speak the OpenClaw Gateway WebSocket protocol (v3 and v4).
//!
//! It keeps one bounded map of who is connected to a gateway and what each
//! instance last reported, and serves it to dashboards. The wire protocol
//! and the presence semantics are specified in `docs/protocol.md`.
//!
//! # How do I use it?
//!
//! The server (`rollcall serve`) wires everything up, but the engine embeds
//! on its own: start it with the gateway's own entry, push events from any
//! number of producers, and read snapshots from any number of readers.
//!
//! ```
//! use rollcall::engine::{Engine, EngineConfig, Event};
//! use rollcall::presence::{self, BeaconInput, Entry};
//!
//! // The gateway's own row, always first in the list.
//! let own = Entry {
//!     instance_id: Some("gw".into()),
//!     text: "Gateway: gw".into(),
//!     ..Entry::default()
//! };
//! let engine = Engine::start(EngineConfig::default(), own);
//!
//! // A producer turns what a client said into a key and a patch itself, so
//! // the single writer only merges.
//! let beacon = BeaconInput {
//!     text: "laptop is online",
//!     instance_id: Some("laptop"),
//!     ..BeaconInput::default()
//! };
//! let (key, patch) = presence::beacon(&beacon, "gw");
//!
//! // `try_push_acked` never blocks: a full queue hands the event back. The
//! // receiver completes with the version whose snapshot has the event.
//! let applied = engine
//!     .sender()
//!     .try_push_acked(Event::Beacon { key, patch })
//!     .expect("a fresh queue has room");
//! let version = applied
//!     .blocking_recv()
//!     .expect("the writer acks every event it applies");
//!
//! // Readers load the last published snapshot without waiting; an acked
//! // event is always in it (read-your-writes).
//! let reader = engine.reader();
//! let snapshot = reader.load();
//! assert!(snapshot.version() >= version);
//! let keys: Vec<&str> = snapshot.entries().map(|row| row.key.as_str()).collect();
//! assert_eq!(keys, ["gw", "laptop"]);
//!
//! // Applies and publishes whatever was accepted, then joins the writer
//! // (dropping the engine does the same).
//! engine.shutdown();
//! ```
//!
//! Inside an async task, `.await` the ack instead of `blocking_recv`, and
//! hold [`engine::SnapshotCell::load_full`] rather than a guard across an
//! `.await`. A thread that did not push the event can wait for its version
//! with [`engine::SnapshotCell::wait_for_blocking`] (or `wait_for` in async
//! code).
//!
//! # Data flow
//!
//! ```text
//! WebSocket connections            gateway::connection (one task per socket) reads
//!   │  frames, reassembly, limits  frame_reader        over protocol::{ws, message}
//!   │  parse requests (simd-json)  protocol::{parse_request, parse_connect, …}
//!   │  compute key + patch         presence::{connect, beacon}
//!   └─ try_push(Event)             engine::EventSender: bounded queue, never blocks;
//!        │                         a full queue hands the event back (UNAVAILABLE)
//!        ▼
//!   ONE writer thread              engine::writer: drains a batch, applies it to
//!        │                         the presence::Store it alone owns, publishes one
//!        │                         immutable presence::Snapshot, then acks the batch
//!        ▼
//!   SnapshotCell (arc-swap)        engine::SnapshotCell: readers load() wait-free
//!        │
//!        ├─ system-presence        rendered from the snapshot's bytes when the
//!        │                         reply's turn comes (gateway::render)
//!        ├─ presence events        gateway::broadcast: encoded once, offered to
//!        │                         every outbox (latest wins), numbered per
//!        │                         connection when written; full lists paced
//!        ├─ HTTP / SSE / page      http::{rest, sse, dashboard} via http::Context
//!        └─ the doctor             presence::diagnose over the snapshot's rows and
//!                                  their provenance (http::doctor, rollcall doctor)
//! ```
//!
//! # Layout
//!
//! - [`presence`]: entries, keys, merge rules, the beacon text parser, the
//!   store (TTL, cap, list order), snapshots, their diffs and the change log
//!   delta clients resume from; each row's provenance (why it has its key,
//!   its last writes) and the doctor that explains duplicate and stale rows
//!   from it. Pure: no I/O, no clock reads.
//! - [`protocol`]: WebSocket frame headers and reassembly, request frames,
//!   `connect` and `system-event` params, wire errors, close codes, the
//!   method list, and a pure `write_*` encoder for every frame rollcall
//!   sends. Pure.
//! - [`engine`]: the hand-off from producers to the single writer and from
//!   the writer to readers; `engine/sync.rs` is the seam loom replaces.
//! - [`gateway`]: in the mini-redis mould: `listener` (accept loop, limits,
//!   timeouts, shutdown), `connection` (one connection's life, one task
//!   reading and writing), `frames` (frames out over any `AsyncWrite`; they
//!   come in through [`frame_reader`]), `admission` (the handshake),
//!   `methods/` (one file per method), `outbox`, `registry`, `broadcast`,
//!   `pacing`, `state` (the composition root).
//! - [`http`]: the dashboard page, REST routes and the SSE stream, behind a
//!   narrow [`http::Context`]: it never imports the gateway.
//! - [`auth`], [`clock`]: token grants and constant-time checks; the wall
//!   clock every module may read without importing the engine.
//! - [`client`]: `rollcall presence`, `rollcall beacon` and `rollcall
//!   doctor` (HTTP or HTTPS), and the one
//!   WebSocket client they share with the load generator: dial and upgrade
//!   (`ws_dial`), whole messages through [`frame_reader`], and the `connect`
//!   handshake (`handshake`).
//! - [`frame_reader`]: the one WebSocket reader, for the gateway reading
//!   its clients and the client reading a server: frames checked from
//!   their headers, fragments joined, permessage-deflate inflated, limits
//!   counted after inflation, one error type mapped to close codes.
//! - [`load`]: `rollcall load`, the fleet simulator and load generator, and
//!   the `--echo` transport baseline server. It returns a `Summary` and
//!   reports progress through a callback; the binary prints both (the
//!   library never prints).
//! - [`fleet`]: fleet mode on Redis (other gateways' rows enter the
//!   writer as `Event::Remote`) and warm restarts (Redis or a state file).
//! - [`metrics`], [`config`]: Prometheus metrics; `rollcall serve` flags.
//! - [`tls`]: TLS on the one port (rustls, ring): the served certificate
//!   from PEM files or made self-signed, reloaded without dropping
//!   connections; the clients' trust (CA file, system roots, or a pinned
//!   SHA-256 fingerprint). `gateway::listener` and `client::stream` use it.
//!
//! # Trade-offs
//!
//! - **One writer.** The store needs no locks and every change is ordered,
//!   but write throughput is one core's. Batching amortises the publish;
//!   under load a batch is as large as the queue allows.
//! - **Publish per batch, not per event.** Readers see state as of the last
//!   batch. Read-your-writes is kept per connection by acknowledging an
//!   event only after the snapshot containing it is published.
//! - **Persistent snapshots.** The list is a three-level tree of shared
//!   pieces (`presence/list.rs`): parts of chunks of at most 64 rows, each
//!   chunk carrying its rows' JSON already joined. The writer edits its own
//!   copy with copy-on-write, so a publish moves or drops only the rows
//!   written or removed since the last one and rejoins only their chunks:
//!   O(k log n + n / 4096) for k changed rows among n, and two versions
//!   share every chunk neither changed. Invariants: rows in list order
//!   (`ts` descending, key ascending), each key once; a chunk's bytes are
//!   exactly its rows' JSON; nothing a published snapshot reaches is ever
//!   written again (an edit copies whatever has a second owner, so a reader
//!   holding an old version sees it whole); a reader never writes list
//!   bytes, it copies the chunks (or sends them as they are). The costs:
//!   a written row's chunk (up to 64 rows) is copied and rejoined once per
//!   publish, so a batch of writes scattered over a large list copies up to
//!   64 rows of JSON per written row (about 22 KB); a full list is no longer
//!   one buffer but a chunk per 64 rows; and diffs between two snapshots
//!   (`presence.delta`, the fleet's own rows) walk both lists, skipping the
//!   shared pieces, O(changes × 64) rather than O(rows).
//! - **Latest wins per connection.** Broadcasts never wait for a socket and
//!   never pile up: a slow client gets the newest list (or a merged delta)
//!   when it catches up, never every list it missed, and its `seq` has no
//!   gaps. One that cannot take its own replies is closed.
//! - **Paced full lists.** Full-list egress is bounded by a budget, so with
//!   thousands of watchers a full list arrives less often than every
//!   change; clients that need every change should ask for deltas.
//! - **Fleets share through Redis, not with each other.** Each gateway
//!   writes only its own rows and merges the others' as events; there is no
//!   ordering across gateways beyond "a live connection wins, then the
//!   newer `ts`", and a dead gateway is noticed within one lease.
//! - **Provenance on every write.** Each row carries why it has its key and
//!   its last four writes, copied on write like the row itself: a little
//!   writer time and about 200 bytes a row buy a doctor that can name the
//!   connection and the field behind a duplicate. It is published beside
//!   the row, never in the list clients receive, and does not travel to
//!   other fleet gateways (their rows read "written elsewhere").
//! - **Two tasks per connection.** The read half and the write half each get
//!   a task, so a socket that does not read never blocks reading. That costs
//!   memory per idle connection (see `benches/README.md`).
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod auth;
pub mod client;
pub mod clock;
pub mod compress;
pub mod config;
pub mod config_file;
pub mod engine;
pub mod fleet;
pub mod frame_reader;
pub mod gateway;
pub mod http;
pub mod load;
pub mod metrics;
pub mod presence;
pub mod protocol;
pub mod tls;
