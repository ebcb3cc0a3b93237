//! Reading a certificate chain and its private key from PEM files into
//! what rustls serves, with errors that name the file and what was wrong.

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a certificate or key file cannot be served.
#[derive(Debug, Error)]
pub enum PemError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file holds no usable PEM block of the kind needed.
    #[error("{path} holds no {what} in PEM form: {why}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// `certificate` or `private key`.
        what: &'static str,
        /// The parser's word.
        why: String,
    },
    /// The key is not one the provider signs with, or does not belong to
    /// the certificate.
    #[error("the key in {key} cannot serve the certificate in {cert}: {why}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's word.
        why: String,
    },
}

/// Reads the chain (end-entity certificate first) from `cert` and the
/// private key (PKCS#8, PKCS#1 or SEC1) from `key`, and checks that they
/// belong together.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, PemError> {
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let parse = |path: &Path, what, why: String| PemError::Parse {
        path: path.to_owned(),
        what,
        why,
    };
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| parse(cert, "certificate", e.to_string()))?;
    if chain.is_empty() {
        return Err(parse(cert, "certificate", "no CERTIFICATE block".into()));
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| parse(key, "private key", e.to_string()))?;
    CertifiedKey::from_der(chain, private, &super::provider()).map_err(|e| PemError::Mismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
        why: e.to_string(),
    })
}

fn read(path: &Path) -> Result<Vec<u8>, PemError> {
    std::fs::read(path).map_err(|source| PemError::Read {
        path: path.to_owned(),
        source,
    })
}
