//! The crypto provider of every TLS configuration rollcall builds.

use rustls::crypto::ring::kx_group;
use std::sync::Arc;

/// The one crypto provider every TLS config uses: ring (no C toolchain
/// beyond gcc; see Cargo.toml). Never the process default, which another
/// crate (redis) might install differently.
///
/// rustls 0.23.48 deprecates ring's provider for lacking post-quantum key
/// exchange; aws-lc-rs would need cmake and a C toolchain on every build
/// machine. X25519 and the NIST curves remain.
///
/// Key exchange prefers X25519: ring's provider lists P-384 first, and
/// ring computes P-384 with generic code: a profile of TLS reconnects
/// showed 55% of the server's time in it (benches/README.md, TLS). Node
/// (OpenClaw's clients) offers X25519 first too.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
    Arc::new(provider)
}

#[cfg(test)]
mod tests {
    #[test]
    fn x25519_is_offered_first() {
        let provider = super::provider();
        let first = provider.kx_groups[0].name();
        assert_eq!(first, rustls::NamedGroup::X25519);
    }
}
