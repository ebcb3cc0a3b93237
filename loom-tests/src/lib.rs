//! Loom model checks of rollcall's event hand-off: producers -> queues ->
//! the single writer -> the snapshot cell -> readers and waiters.
//!
//! This package compiles the real engine files (`sync.rs`, `cell.rs`,
//! `queue.rs`, `writer.rs` from `../src/engine/`, see [`engine`]) under
//! `--cfg rollcall_loom`, so the models run the code the server runs, with
//! loom's instrumented `Arc`, `Mutex`, `RwLock`, atomics and threads in place
//! of std's. It is its own workspace, so neither loom nor the flag reaches the
//! server's build; the flag is not `loom`, so tokio (used here only for the
//! acks' `oneshot`) compiles as usual.
//!
//! # What is stood in for
//!
//! arc-swap and crossbeam-channel contain no loom code, so loom could not see
//! their operations or explore their interleavings. Under the flag,
//! `src/engine/sync.rs` replaces them with stand-ins of the same contract:
//! - `ArcCell` (arc-swap's `ArcSwap`) becomes a loom `RwLock<Arc<T>>`: `load`
//!   returns the last stored `Arc`. The models therefore check the protocol
//!   *around* the cell (version after snapshot, waiter registration,
//!   publish-before-ack); arc-swap's own algorithm is taken as given.
//! - the crossbeam queue pair becomes a loom `Mutex<VecDeque>` per queue,
//!   with counted senders and park/unpark for the writer's wait. loom has no
//!   clock, so a deadline is taken to have passed as soon as both queues
//!   are empty (see `channel` in `sync.rs`); the models' machine has no
//!   deadline unless a model asks for one.
//!
//! The acks use `tokio::sync::oneshot`, which is not instrumented either:
//! loom sees no happens-before edge through it. The models only rely on what
//! they read through instrumented objects (the cell's lock) after an ack.
//!
//! loom also treats a `SeqCst` access as `AcqRel`, which would make the
//! `closing`/`in_flight` handshake of `EventSender::push` and `close` report
//! a lost event that C11 rules out; the shim's atomics add a `SeqCst` fence
//! after each `SeqCst` access to restore the total order (see `seq_cst` in
//! `sync.rs`).
//!
//! # What the models check
//!
//! See `models.rs`: a reader never sees a torn snapshot or goes back, and an
//! acknowledged event is visible; a waiter for version V wakes once V is
//! published; shutdown applies every accepted event and refuses later
//! pushes; the writer's timeout path loses nothing. Each was checked to fail
//! against a seeded bug (see `PREEMPTIONS`). `list_models.rs` runs the real
//! `src/presence/list.rs` (see [`presence`]): a reader holding a published
//! list sees it whole and unchanged while the writer edits and publishes the
//! next ones (it fails if the writer publishes a list it has not sealed). A deadlock is reported by loom
//! as a panic that aborts the test binary rather than failing one test.
//!
//! # Running
//!
//! ```text
//! cd loom-tests && RUSTFLAGS="--cfg rollcall_loom" cargo test --release
//! ```
//!
//! Each model runs under a preemption bound (`PREEMPTIONS` in `models.rs`);
//! `LOOM_MAX_PREEMPTIONS=N` overrides it for a deeper, slower search.

#[cfg(not(rollcall_loom))]
compile_error!(
    "rollcall-loom-tests only builds under the model checker: \
     RUSTFLAGS=\"--cfg rollcall_loom\" cargo test --release"
);

/// The crate's clock, which `writer.rs` names as `crate::clock`.
#[path = "../../src/clock.rs"]
pub mod clock;
pub mod engine;
pub mod presence;

#[cfg(test)]
mod list_models;
#[cfg(test)]
mod models;
#[cfg(test)]
mod toy;
