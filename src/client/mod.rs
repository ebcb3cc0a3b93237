//! The client side of the protocol: `rollcall presence` / `rollcall beacon`;
//! `rollcall doctor`, over plain HTTP ([`doctor_cli`], with [`doctor_text`]
//! to read and render its report); and the one WebSocket client the first
//! two and the load generator ([`crate::load`]) share: dial and upgrade
//! ([`ws_dial`]), whole messages (the gateway's own [`crate::frame_reader`],
//! reading a server's frames), and the `connect` handshake
//! ([`handshake`]); and what every printed string goes through
//! ([`mod@visible`]).

pub mod cli;
pub mod doctor_cli;
pub mod doctor_text;
pub mod handshake;
pub mod stream;
pub mod visible;
pub mod ws_dial;

pub use handshake::{CONNECT_ID, Envelope, HandshakeError, HelloReply, hello};
pub use stream::{ClientStream, StreamRead, StreamWrite, TlsTarget};
pub use visible::{visible, visible_json, visible_strings};
pub use ws_dial::{
    DialError, MAX_MESSAGE_BYTES, Target, TargetError, UrlError, WsConn, connect, connect_from,
    resolve,
};
