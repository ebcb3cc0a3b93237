//! The CLI's client side: `rollcall presence` / `rollcall beacon`, the load
//! generator, and the WebSocket client they share.

pub mod cli;
pub mod echo;
pub mod load;
pub mod stats;
pub mod ws;

mod fdlimit;
mod requests;
mod session;

pub use fdlimit::{NofileShortfall, raise_nofile};
