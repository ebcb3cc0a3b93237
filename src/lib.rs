//! rollcall: a presence engine for OpenClaw-protocol gateways.
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod engine;
pub mod presence;
