//! Fleet mode and warm restarts (docs/protocol.md §8): several gateways share
//! one presence view through Redis or Valkey, and a restarted gateway shows
//! what it held (from Redis in a fleet, else from a state file).
//!
//! Each gateway stays the single writer of its own rows; rows of the
//! others reach its store as `engine::Event::Remote`, through the same
//! queue and writer as local events, so readers stay wait-free.

mod endpoint;
mod inbound;
mod lifecycle;
mod link;
mod link_status;
mod outbound;
mod peers;
mod state_file;
mod task;
mod validate;
mod wire;

pub use endpoint::{Endpoint, EndpointError, SENTINEL_SCHEME, redact};
pub use lifecycle::{Fleet, FleetConfig, FleetError, preload};
/// The Redis side, for `rollcall load fleet-sim`'s simulated gateways.
pub(crate) use link::Link;
pub use link_status::FleetStatus;
pub use outbound::{Outbound, diff};
pub use peers::{Action, OnMessage, Peers, Poll};
pub use state_file::{StateFile, StateFileError};
pub use validate::{Invalid, MAX_MESSAGE_BYTES, MAX_RECORD_BYTES, Screen, Screened};
pub use wire::{FleetMessage, Keys, Record, Stamp};
