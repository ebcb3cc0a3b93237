//! The methods a connection may call after the handshake (docs/protocol.md §4),
//! one file each; [`dispatch`] maps a request to its reply.

mod dispatch;
mod health;
mod node_event;
mod system_event;
mod system_presence;

pub use dispatch::{Reply, dispatch};
