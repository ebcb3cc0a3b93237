//! The OpenClaw-protocol gateway: the listener and its limits, the
//! WebSocket connection tasks, the handshake, the methods, and broadcasts.
//!
//! Data flow inside: `listener` accepts and upgrades; `connection` runs
//! one connection's life in one task (`crate::frame_reader` reads its frames,
//! `frames` writes them, `admission` admits it, `methods` answers its
//! requests); `registry` holds the connections that `broadcast` fans out
//! to; `state` wires them to the engine.

mod admission;
mod beacon_rows;
mod broadcast;
mod claims;
mod client_ip;
mod connection;
mod frames;
mod keepalive;
mod list_frame;
mod listener;
mod methods;
mod outbox;
mod pacing;
mod push;
mod registry;
mod render;
mod self_entry;
mod state;
mod waiting;

pub use listener::{ACCEPT_BACKLOG, ServeError, Server, listen};
pub use state::State;
pub use waiting::WaitingPool;
