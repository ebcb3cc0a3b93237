//! The client commands' TLS (`rollcall presence`, `beacon`, `doctor`,
//! `load` on `wss://` or `https://`): whom to trust, from `--ca-file`, a
//! pinned `--tls-fingerprint`, or else the system's roots.

use super::{Fingerprint, PinnedCert};
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::PathBuf;
use std::sync::Arc;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// `--ca-file` / `--tls-fingerprint`: how a client trusts a `wss://` or
/// `https://` gateway.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// For wss:// and https://: trust the CA certificates in this PEM file
    /// (instead of the system's roots).
    #[arg(long, env = "ROLLCALL_CA_FILE", conflicts_with = "tls_fingerprint")]
    pub ca_file: Option<PathBuf>,
    /// For wss:// and https://: trust only the certificate with this
    /// SHA-256 fingerprint (64 hex digits or AB:CD:… pairs), as
    /// `rollcall serve` prints it and `openclaw node run --tls-fingerprint`
    /// takes it. Its name and dates are not checked.
    #[arg(long, env = "ROLLCALL_TLS_FINGERPRINT")]
    pub tls_fingerprint: Option<Fingerprint>,
}

/// Why the client's TLS could not be set up.
#[derive(Debug, Error)]
pub enum ClientTlsError {
    /// `--ca-file` could not be read.
    #[error("cannot read --ca-file {path}: {source}")]
    CaRead {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `--ca-file` holds no usable certificate.
    #[error("--ca-file {path} holds no usable CA certificate: {why}")]
    CaParse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        why: String,
    },
    /// No `--ca-file`, no pin, and the system has no roots.
    #[error(
        "no trusted CA certificates on this system for wss:// / https://: pass --ca-file FILE \
         or --tls-fingerprint SHA256"
    )]
    NoRoots,
    /// rustls refused the configuration.
    #[error("TLS configuration refused: {0}")]
    Config(#[from] rustls::Error),
}

/// A client's TLS configuration, shared by all its connections.
#[derive(Clone)]
pub struct ClientTls {
    connector: TlsConnector,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

impl ClientTls {
    /// Builds the configuration `args` ask for.
    pub fn new(args: &TlsArgs) -> Result<ClientTls, ClientTlsError> {
        let builder = ClientConfig::builder_with_provider(super::provider())
            .with_safe_default_protocol_versions()?;
        let mut config = match (&args.tls_fingerprint, &args.ca_file) {
            (Some(pin), _) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedCert::new(*pin)))
                .with_no_client_auth(),
            (None, Some(path)) => builder
                .with_root_certificates(ca_file(path)?)
                .with_no_client_auth(),
            (None, None) => builder
                .with_root_certificates(system_roots()?)
                .with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // Every connection makes a full handshake: the CLI's commands are
        // one connection per process, and the load generator's clients
        // stand for distinct devices, which would not share tickets.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(ClientTls {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// Runs the handshake on `tcp` for `host` (a name or an IP address).
    pub async fn connect(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(bare.to_owned()).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{bare:?}: {e}"))
        })?;
        self.connector.connect(name, tcp).await
    }
}

fn ca_file(path: &PathBuf) -> Result<rustls::RootCertStore, ClientTlsError> {
    let pem = std::fs::read(path).map_err(|source| ClientTlsError::CaRead {
        path: path.clone(),
        source,
    })?;
    let bad = |why: String| ClientTlsError::CaParse {
        path: path.clone(),
        why,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no CERTIFICATE block".into()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    Ok(roots)
}

fn system_roots() -> Result<rustls::RootCertStore, ClientTlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(ClientTlsError::NoRoots);
    }
    Ok(roots)
}
