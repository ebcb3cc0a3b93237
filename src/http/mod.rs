//! Plain HTTP on the gateway's port (PROTOCOL.md §8): the dashboard, REST,
//! Server-Sent Events and metrics.

mod body;
mod dashboard;
mod rest;
mod sse;

pub use body::{Body, empty, full};
pub use rest::{error as rest_error, route};
