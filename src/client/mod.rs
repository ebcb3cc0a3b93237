//! The client side of the protocol: `rollcall presence` / `rollcall beacon`,
//! and the one WebSocket client they and the load generator
//! ([`crate::load`]) share: dial and upgrade ([`ws`]), whole messages
//! ([`reader`]), and the `connect` handshake ([`handshake`]).

pub mod cli;
pub mod handshake;
pub mod reader;
pub mod ws;

pub use handshake::{CONNECT_ID, Envelope, HandshakeError, Hello, hello};
pub use reader::{MAX_MESSAGE_BYTES, Message, ReadError, Reader};
pub use ws::{ConnectError, Target, UrlError, WsConn, connect, connect_from, resolve};
