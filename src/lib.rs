//! rollcall: a lock-free, high-throughput presence engine for gateways that
//! speak the OpenClaw Gateway WebSocket protocol.
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod client;
pub mod config;
pub mod engine;
pub mod gateway;
pub mod http;
pub mod metrics;
pub mod presence;
pub mod protocol;
