//! The server's TLS: what `rollcall serve --tls-cert/--tls-key` or
//! `--tls-self-signed` serves, as one acceptor for every connection.

use super::reload::CertResolver;
use super::{Fingerprint, PemError, SelfSignedError, ensure_self_signed};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// Why TLS could not be set up.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A certificate or key file is unusable.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// The self-signed certificate could not be made.
    #[error(transparent)]
    SelfSigned(#[from] SelfSignedError),
    /// rustls refused the configuration.
    #[error("TLS configuration refused: {0}")]
    Config(#[from] rustls::Error),
}

/// The acceptor every connection's handshake goes through, and the
/// certificate it serves.
pub struct ServerTls {
    acceptor: TlsAcceptor,
    resolver: Arc<CertResolver>,
    /// True when rollcall made the certificate in this run.
    generated: bool,
}

impl ServerTls {
    /// Serves the PEM files `cert` and `key`. With `self_signed`, first
    /// makes a self-signed certificate for `bind`'s names there unless
    /// both files exist.
    pub fn new(
        cert: &Path,
        key: &Path,
        self_signed: bool,
        bind: SocketAddr,
    ) -> Result<ServerTls, TlsError> {
        let generated =
            self_signed && ensure_self_signed(cert, key, &super::self_signed_names(bind))?;
        let resolver = Arc::new(CertResolver::load(cert, key)?);
        let mut config = rustls::ServerConfig::builder_with_provider(super::provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&resolver) as _);
        // WebSocket upgrades and the routes are HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            resolver,
            generated,
        })
    }

    /// The acceptor.
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// The certificate being served, reloaded as it changes.
    pub fn resolver(&self) -> &Arc<CertResolver> {
        &self.resolver
    }

    /// The SHA-256 fingerprint of the certificate served now.
    pub fn fingerprint(&self) -> Fingerprint {
        self.resolver.fingerprint()
    }

    /// True if the self-signed certificate was made by this run.
    pub fn generated(&self) -> bool {
        self.generated
    }

    /// Starts reloading the certificate on SIGHUP and when the files
    /// change (checked every `interval`; never if zero).
    pub fn watch(&self, interval: Duration, stop: watch::Receiver<bool>) {
        self.resolver.spawn_watcher(interval, stop);
    }
}
