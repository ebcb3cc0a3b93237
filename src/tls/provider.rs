//! The crypto provider of every TLS configuration rollcall builds.

use std::sync::Arc;

/// The one crypto provider every TLS config uses: ring (no C toolchain
/// beyond gcc; see Cargo.toml). Never the process default, which another
/// crate (redis) might install differently.
///
/// rustls 0.23.48 deprecates ring's provider for lacking post-quantum key
/// exchange; aws-lc-rs would need cmake and a C toolchain on every build
/// machine. X25519 and the NIST curves remain.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
