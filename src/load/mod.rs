//! `rollcall load`: a fleet simulator and load generator for the gateway
//! protocol, and (with `--echo`) for a bare WebSocket echo server, the
//! transport baseline ([`echo`]).
//!
//! A run ([`run()`]) ramps clients up at `--ramp-rate`, measures a steady
//! phase of `--duration` (with churn, if asked), stops every client, and
//! returns a [`Summary`]. Each simulated client is one task (`simulated_client.rs`)
//! that speaks through the crate's one WebSocket client ([`crate::client`]).
//! The library prints nothing: the binary shows progress through the
//! callback it hands to [`run_with_progress`], and prints the summary.
//!
//! # Why a module and not a workspace member
//!
//! The load generator could be its own crate. It is a module because one
//! crate keeps one build and one `Cargo.lock`, and because it reuses the
//! crate's `protocol` (the fragment reassembler, the text limit), `presence`
//! (the beacon text) and `client` (dial, upgrade, handshake) without making
//! them a published API that a second crate would have to depend on.
//!
//! Layout: [`args`] (options and their checks), [`run`](mod@run) (the phases),
//! `simulated_client.rs` (one client), `fleet.rs` (what the clients share), `requests.rs` (the frames it sends), [`stats`]
//! (what is recorded), [`summary`] (the report), `source_ips.rs` (loopback source
//! addresses), [`fdlimit`] (`RLIMIT_NOFILE`), [`echo`] (the baseline server);
//! `crew.rs` (starting and stopping the client tasks), `fill.rs` (`--fill`: rows written before the ramp), `progress.rs` (what
//! the callback gets); for `--watchers`: `watch.rs` (one watcher), `watch_stats.rs` (what watchers
//! record) and `settle.rs` (the wait for them to converge at the end).

pub mod args;
pub mod echo;
pub mod fdlimit;
pub mod run;
pub mod stats;
pub mod summary;
pub mod vfleet;

mod crew;
mod fill;
mod fleet;
mod progress;
mod requests;
mod settle;
mod simulated_client;
mod source_ips;
mod watch;
mod watch_stats;

pub use args::WatchFeed;
pub use args::{LoadArgs, LoadError, MAX_DURATION};
pub use crew::STOP_GRACE;
pub use fdlimit::{NofileShortfall, raise_nofile};
pub use fill::FillError;
pub use progress::LoadProgress;
pub use run::{run, run_with_progress};
pub use summary::{Summary, WatchSummary};
