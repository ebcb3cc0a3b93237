//! Device identity (docs/protocol.md §3.7): the `device` block of
//! `connect` and its verification, as the OpenClaw gateway verifies it.
//!
//! A client proves it holds an ed25519 key: `publicKey` (raw base64url, or
//! PEM), `id` = lowercase hex SHA-256 of the raw key, and `signature`
//! (base64url) over the v3 payload
//! `v3|id|client.id|client.mode|role|scopes|signedAt|token|nonce|platform|deviceFamily`
//! or the v2 payload (the same without the last two), where `nonce` is the
//! connection's `connect.challenge` nonce and `signedAt` is within
//! [`SIGNATURE_SKEW_MS`] of the server's clock. A block that passes makes
//! `id` a proven identity; one that fails names its check in
//! `details.code`.
//!
//! Pure: the caller passes the challenge nonce and the clock.

use base64::Engine;
use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ed25519_dalek::pkcs8::DecodePublicKey;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fmt::Write;

/// OpenClaw's `DEVICE_SIGNATURE_SKEW_MS`: how far `signedAt` may be from
/// the server's clock, either way.
pub const SIGNATURE_SKEW_MS: i64 = 120_000;

/// Longest accepted `publicKey` or `signature`: a PEM key is about 113
/// bytes, a signature 86; OpenClaw decodes at most 4096.
pub const MAX_KEY_LEN: usize = 4096;

/// base64 or base64url, padded or not (OpenClaw's permissive decoder).
const PERMISSIVE: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The `device` block as sent, with what else of `connect` the signature
/// covers exactly as the client sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceBlock {
    /// `device.id`.
    pub id: Option<String>,
    /// `device.publicKey`.
    pub public_key: Option<String>,
    /// `device.signature`.
    pub signature: Option<String>,
    /// `device.signedAt`, ms since the epoch.
    pub signed_at: Option<u64>,
    /// `device.nonce`.
    pub nonce: Option<String>,
    /// `client.mode` as sent (not normalized): it is what was signed.
    pub signed_mode: String,
    /// `auth.token`, else `auth.deviceToken`, else `auth.bootstrapToken`,
    /// else empty: the token the signature covers.
    pub signed_token: String,
}

/// The rest of what the signature covers, from the validated `connect`.
pub struct Signed<'a> {
    /// `client.id`.
    pub client_id: &'a str,
    /// `role`.
    pub role: &'a str,
    /// `scopes` as requested.
    pub scopes: &'a [String],
    /// `client.platform`.
    pub platform: &'a str,
    /// `client.deviceFamily`, or empty.
    pub device_family: &'a str,
}

/// A device that proved it holds the key `id` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenDevice {
    /// The lowercase hex SHA-256 of its raw public key.
    pub id: String,
}

/// Why a `device` block was refused; each is a `details.code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeviceAuthError {
    /// `publicKey` is not an ed25519 public key.
    #[error("device public key invalid")]
    PublicKeyInvalid,
    /// `id` is not the SHA-256 of the key.
    #[error("device identity mismatch")]
    IdMismatch,
    /// `signedAt` is missing or too far from the server's clock.
    #[error("device signature expired")]
    SignatureExpired,
    /// `nonce` is missing or blank.
    #[error("device nonce required")]
    NonceRequired,
    /// `nonce` is not this connection's challenge.
    #[error("device nonce mismatch")]
    NonceMismatch,
    /// `signature` verifies over neither payload.
    #[error("device signature invalid")]
    SignatureInvalid,
    /// The block lacks `id`, `publicKey` or `signature`.
    #[error("device identity invalid")]
    Invalid,
}

impl DeviceAuthError {
    /// The `details.code` of the refusal.
    pub fn detail_code(self) -> &'static str {
        match self {
            Self::PublicKeyInvalid => "DEVICE_AUTH_PUBLIC_KEY_INVALID",
            Self::IdMismatch => "DEVICE_AUTH_DEVICE_ID_MISMATCH",
            Self::SignatureExpired => "DEVICE_AUTH_SIGNATURE_EXPIRED",
            Self::NonceRequired => "DEVICE_AUTH_NONCE_REQUIRED",
            Self::NonceMismatch => "DEVICE_AUTH_NONCE_MISMATCH",
            Self::SignatureInvalid => "DEVICE_AUTH_SIGNATURE_INVALID",
            Self::Invalid => "DEVICE_AUTH_INVALID",
        }
    }

    /// The `details.reason`, as OpenClaw words it.
    pub fn reason(self) -> &'static str {
        match self {
            Self::PublicKeyInvalid => "device-public-key",
            Self::IdMismatch => "device-id-mismatch",
            Self::SignatureExpired => "device-signature-stale",
            Self::NonceRequired => "device-nonce-missing",
            Self::NonceMismatch => "device-nonce-mismatch",
            Self::SignatureInvalid => "device-signature",
            Self::Invalid => "device-invalid",
        }
    }
}

impl DeviceBlock {
    /// Verifies the block against this connection's challenge `nonce` at
    /// server time `now_ms`.
    ///
    /// # Errors
    ///
    /// The first check that fails, in the order of docs/protocol.md §3.7.
    pub fn verify(
        &self,
        signed: &Signed<'_>,
        nonce: &str,
        now_ms: i64,
    ) -> Result<ProvenDevice, DeviceAuthError> {
        let (Some(id), Some(public_key), Some(signature)) =
            (&self.id, &self.public_key, &self.signature)
        else {
            return Err(DeviceAuthError::Invalid);
        };
        let key = parse_public_key(public_key).ok_or(DeviceAuthError::PublicKeyInvalid)?;
        if *id != device_id(&key) {
            return Err(DeviceAuthError::IdMismatch);
        }
        let signed_at = self
            .signed_at
            .and_then(|at| i64::try_from(at).ok())
            .filter(|at| now_ms.abs_diff(*at) <= SIGNATURE_SKEW_MS.unsigned_abs())
            .ok_or(DeviceAuthError::SignatureExpired)?;
        let sent_nonce = self.nonce.as_deref().map(str::trim).unwrap_or_default();
        if sent_nonce.is_empty() {
            return Err(DeviceAuthError::NonceRequired);
        }
        if sent_nonce != nonce {
            return Err(DeviceAuthError::NonceMismatch);
        }
        let signature = decode(signature)
            .and_then(|bytes| Signature::from_slice(&bytes).ok())
            .ok_or(DeviceAuthError::SignatureInvalid)?;
        let v2 = self.payload_v2(id, signed, signed_at, sent_nonce);
        let v3 = format!(
            "v3{}|{}|{}",
            &v2[2..],
            normalize(signed.platform),
            normalize(signed.device_family)
        );
        let verifies = |payload: &str| key.verify_strict(payload.as_bytes(), &signature).is_ok();
        if verifies(&v3) || verifies(&v2) {
            Ok(ProvenDevice { id: id.clone() })
        } else {
            Err(DeviceAuthError::SignatureInvalid)
        }
    }

    /// `v2|id|client.id|client.mode|role|scopes|signedAt|token|nonce`.
    fn payload_v2(&self, id: &str, signed: &Signed<'_>, signed_at: i64, nonce: &str) -> String {
        let mut out = String::with_capacity(256);
        let _ = write!(
            out,
            "v2|{id}|{}|{}|{}|{}|{signed_at}|{}|{nonce}",
            signed.client_id,
            self.signed_mode,
            signed.role,
            signed.scopes.join(","),
            self.signed_token,
        );
        out
    }
}

/// The lowercase hex SHA-256 of a raw public key: the device id it proves.
pub fn device_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// An ed25519 public key from PEM (SPKI) or raw base64url.
fn parse_public_key(text: &str) -> Option<VerifyingKey> {
    if text.contains("BEGIN") {
        return VerifyingKey::from_public_key_pem(text.trim()).ok();
    }
    let raw: [u8; 32] = decode(text)?.try_into().ok()?;
    VerifyingKey::from_bytes(&raw).ok()
}

/// base64url or base64, padded or not, at most [`MAX_KEY_LEN`] long.
fn decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text.is_empty() || text.len() > MAX_KEY_LEN {
        return None;
    }
    let standard = text.replace('-', "+").replace('_', "/");
    PERMISSIVE.decode(standard).ok()
}

/// OpenClaw's `normalizeDeviceMetadataForAuth`: trimmed, ASCII-lowercased.
fn normalize(value: &str) -> String {
    value.trim().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use ed25519_dalek::pkcs8::EncodePublicKey;
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::{Signer, SigningKey};

    const NOW: i64 = 1_767_225_600_000;
    const NONCE: &str = "5e0c5d3a-0000-4000-8000-000000000001";

    fn signing_key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    fn signed() -> Signed<'static> {
        static SCOPES: [String; 0] = [];
        Signed {
            client_id: "node-host",
            role: "node",
            scopes: &SCOPES,
            platform: " Linux ",
            device_family: "",
        }
    }

    /// A block signed over `payload(id)` by `key`.
    fn block(key: &SigningKey, payload: impl Fn(&str) -> String) -> DeviceBlock {
        let id = device_id(&key.verifying_key());
        let signature = key.sign(payload(&id).as_bytes());
        DeviceBlock {
            public_key: Some(URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes())),
            signature: Some(URL_SAFE_NO_PAD.encode(signature.to_bytes())),
            signed_at: Some(NOW as u64),
            nonce: Some(NONCE.into()),
            signed_mode: "node".into(),
            signed_token: "secret".into(),
            id: Some(id),
        }
    }

    fn v3(id: &str) -> String {
        format!("v3|{id}|node-host|node|node||{NOW}|secret|{NONCE}|linux|")
    }

    fn v2(id: &str) -> String {
        format!("v2|{id}|node-host|node|node||{NOW}|secret|{NONCE}")
    }

    fn verify(block: &DeviceBlock) -> Result<ProvenDevice, DeviceAuthError> {
        block.verify(&signed(), NONCE, NOW + 1_000)
    }

    #[test]
    fn v3_and_v2_signatures_prove_the_device() {
        let key = signing_key();
        let id = device_id(&key.verifying_key());
        assert_eq!(id.len(), 64);
        assert_eq!(
            verify(&block(&key, v3)),
            Ok(ProvenDevice { id: id.clone() })
        );
        assert_eq!(verify(&block(&key, v2)), Ok(ProvenDevice { id }));
    }

    #[test]
    fn a_pem_key_and_padded_base64_are_accepted() {
        let key = signing_key();
        let mut block = block(&key, v3);
        let pem = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        block.public_key = Some(pem);
        assert!(verify(&block).is_ok());
        let padded =
            base64::engine::general_purpose::STANDARD.encode(key.verifying_key().as_bytes());
        block.public_key = Some(padded);
        assert!(verify(&block).is_ok());
    }

    #[test]
    fn each_failure_has_its_code() {
        let key = signing_key();
        let good = block(&key, v3);
        let with = |edit: &dyn Fn(&mut DeviceBlock)| {
            let mut b = good.clone();
            edit(&mut b);
            verify(&b).map_err(DeviceAuthError::detail_code)
        };
        let fail = |code| Err::<ProvenDevice, _>(code);
        assert_eq!(
            with(&|b| b.public_key = Some("AAAA".into())),
            fail("DEVICE_AUTH_PUBLIC_KEY_INVALID")
        );
        assert_eq!(
            with(&|b| b.id = Some("f".repeat(64))),
            fail("DEVICE_AUTH_DEVICE_ID_MISMATCH")
        );
        let upper = good.id.clone().unwrap().to_ascii_uppercase();
        assert_eq!(
            with(&|b| b.id = Some(upper.clone())),
            fail("DEVICE_AUTH_DEVICE_ID_MISMATCH")
        );
        assert_eq!(
            with(&|b| b.signed_at = Some((NOW - 200_000) as u64)),
            fail("DEVICE_AUTH_SIGNATURE_EXPIRED")
        );
        assert_eq!(
            with(&|b| b.signed_at = None),
            fail("DEVICE_AUTH_SIGNATURE_EXPIRED")
        );
        assert_eq!(
            with(&|b| b.nonce = Some(" ".into())),
            fail("DEVICE_AUTH_NONCE_REQUIRED")
        );
        assert_eq!(
            with(&|b| b.nonce = Some("other".into())),
            fail("DEVICE_AUTH_NONCE_MISMATCH")
        );
        assert_eq!(
            with(&|b| b.signed_token = "stolen".into()),
            fail("DEVICE_AUTH_SIGNATURE_INVALID")
        );
        assert_eq!(
            with(&|b| b.signature = Some("c2ln".into())),
            fail("DEVICE_AUTH_SIGNATURE_INVALID")
        );
        assert_eq!(with(&|b| b.signature = None), fail("DEVICE_AUTH_INVALID"));
        let other = SigningKey::from_bytes(&[9; 32]);
        let stolen = block(&other, v3);
        assert_eq!(
            with(&|b| b.signature = stolen.signature.clone()),
            fail("DEVICE_AUTH_SIGNATURE_INVALID"),
            "another key's signature over the same payload"
        );
    }
}
