//! Trusting one certificate by its SHA-256 fingerprint, as OpenClaw's
//! clients do with `--tls-fingerprint`: no CA, no name check, no expiry
//! (a self-signed certificate has none of those to check), but the
//! handshake's signatures are still verified against that certificate's
//! key, so only the holder of its private key can complete it.

use super::Fingerprint;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, OtherError, SignatureScheme};
use std::sync::Arc;

/// Accepts exactly the end-entity certificate whose SHA-256 is the pin.
#[derive(Debug)]
pub struct PinnedCert {
    pin: Fingerprint,
    algorithms: WebPkiSupportedAlgorithms,
}

/// The server sent another certificate than the pinned one.
#[derive(Debug, thiserror::Error)]
#[error("certificate fingerprint mismatch: pinned sha256 {expected}, the server's is {actual}")]
pub struct PinMismatch {
    /// The pin.
    pub expected: Fingerprint,
    /// What the server sent.
    pub actual: Fingerprint,
}

impl PinMismatch {
    /// The mismatch inside a failed handshake's error, if that is why it
    /// failed. rustls prints the error it wraps with `Debug`; this lets a
    /// client print it as a sentence.
    pub fn find(error: &std::io::Error) -> Option<&PinMismatch> {
        let rustls::Error::InvalidCertificate(CertificateError::Other(other)) =
            error.get_ref()?.downcast_ref::<rustls::Error>()?
        else {
            return None;
        };
        other.0.downcast_ref::<PinMismatch>()
    }
}

impl PinnedCert {
    /// A verifier for `pin`, checking signatures with the provider's
    /// algorithms.
    pub fn new(pin: Fingerprint) -> PinnedCert {
        PinnedCert {
            pin,
            algorithms: super::provider().signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let actual = Fingerprint::of(end_entity.as_ref());
        if actual == self.pin {
            return Ok(ServerCertVerified::assertion());
        }
        let mismatch = PinMismatch {
            expected: self.pin,
            actual,
        };
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(mismatch)),
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
