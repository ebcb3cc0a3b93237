//! Plain HTTP on the gateway's port (docs/protocol.md §9): the dashboard, REST,
//! Server-Sent Events and metrics.

mod body;
mod context;
mod dashboard;
mod doctor;
mod encoding;
mod origin;
mod rest;
mod screen;
mod sse;

pub use body::{Body, empty, full};
pub use context::Context;
pub use doctor::Doctor;
pub use origin::{OriginPolicy, OriginRefusal};
pub use rest::{error as rest_error, route};
pub use screen::{screen_http, screen_origin};
pub use sse::{CloseConnection, DEFAULT_SSE_STALL, SSE_UNSENT_BUDGET, SseFeed};
