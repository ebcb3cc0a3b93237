//! TLS on the one port (docs/protocol.md §1), through rustls with the ring
//! provider: the server's certificate, loaded from PEM files or made
//! self-signed and kept, reloaded without dropping connections; and the
//! clients' side, which trusts a CA file, the system roots, or one pinned
//! certificate fingerprint.
//!
//! Nothing here knows the gateway or the client commands: `gateway::listener`
//! wraps accepted sockets with a [`ServerTls`] acceptor, `client::stream`
//! wraps dialled ones with a [`ClientTls`] connector.

mod client;
mod fingerprint;
mod flags;
mod pem;
mod pin;
mod provider;
mod reload;
mod self_signed;
mod server;

pub use client::{ClientTls, ClientTlsError, TlsArgs};
pub use fingerprint::{Fingerprint, FingerprintError};
pub use flags::{
    DEFAULT_SELF_SIGNED_DIR, DEFAULT_TLS_WATCH_INTERVAL, TlsConfig, TlsConfigError, TlsFiles,
};
pub use pem::{PemError, load_certified_key};
pub use pin::{PinMismatch, PinnedCert};
pub use provider::provider;
pub use reload::{CertResolver, WatchProgress};
pub use self_signed::{SelfSignedError, ensure_self_signed, self_signed_names};
pub use server::{ServerTls, TlsError};
