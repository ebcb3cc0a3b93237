//! The OpenClaw-protocol gateway: hyper server, WebSocket upgrade,
//! connection tasks and broadcasts.

mod auth;
mod broadcast;
mod client_ip;
mod connection;
mod outbox;
mod self_entry;
mod server;
mod state;

pub use auth::{Auth, AuthError};
pub use broadcast::{HEALTH_VERSION, PresenceFeed, Registry, Subscriber, delta_json};
pub use client_ip::client_ip;
pub use connection::{CloseReason, EVENTS, METHODS};
pub use self_entry::{SelfInfo, VERSION};
pub use server::{ACCEPT_BACKLOG, ServeError, Server, listen};
pub use state::State;
