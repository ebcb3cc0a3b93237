//! A certificate's SHA-256 fingerprint: how rollcall prints it and how
//! it reads a pinned one.
//!
//! Printed as OpenClaw prints and stores it (`fingerprintSha256`): 64
//! lowercase hex digits. Read as OpenClaw's clients read
//! `--tls-fingerprint`: that form, or Node's `fingerprint256` form
//! (`AB:CD:…`, 32 colon-separated pairs), either with an optional
//! `sha256:` prefix, in any case.

use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// The SHA-256 of a certificate's DER bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

/// Why a `--tls-fingerprint` value was refused.
#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "{0:?} is not a SHA-256 certificate fingerprint: expected 64 hex digits, or 32 \
     colon-separated hex pairs (AB:CD:…), optionally prefixed with sha256:"
)]
pub struct FingerprintError(pub String);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of(der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(der).into())
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    /// 64 lowercase hex digits, OpenClaw's `fingerprintSha256`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = FingerprintError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || FingerprintError(s.to_owned());
        let trimmed = s.trim();
        let value = match trimmed.get(..7) {
            Some(prefix) if prefix.eq_ignore_ascii_case("sha256:") => &trimmed[7..],
            _ => trimmed,
        };
        let hex: String = if value.len() == 64 {
            value.to_owned()
        } else if value.len() == 95 && value.split(':').all(|pair| pair.len() == 2) {
            value.split(':').collect()
        } else {
            return Err(bad());
        };
        // Not `from_str_radix` alone: it takes a leading `+`.
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            let pair = hex.get(2 * i..2 * i + 2).ok_or_else(bad)?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
        }
        Ok(Fingerprint(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_lowercase_hex_and_reads_every_openclaw_form() {
        let fp = Fingerprint::of(b"certificate");
        let hex = fp.to_string();
        assert_eq!(hex.len(), 64);
        assert_eq!(hex, hex.to_lowercase());
        let colons: Vec<String> = fp.0.iter().map(|b| format!("{b:02X}")).collect();
        let node = colons.join(":");
        for form in [
            hex.clone(),
            hex.to_uppercase(),
            node.clone(),
            format!("sha256:{hex}"),
            format!("SHA256:{node}"),
            format!("  {hex}\n"),
        ] {
            assert_eq!(form.parse::<Fingerprint>(), Ok(fp), "{form}");
        }
    }

    #[test]
    fn anything_else_is_refused_by_value() {
        let fp = Fingerprint::of(b"x").to_string();
        for bad in [
            "",
            "abc",
            &fp[..62],
            &format!("{fp}00"),
            &format!("+{}", &fp[1..]),
            &format!("g{}", &fp[1..]),
            "sha1:00",
            &format!("{}:{}", &fp[..2], &fp[2..]),
        ] {
            let err = bad.parse::<Fingerprint>().unwrap_err();
            assert!(err.to_string().contains("SHA-256"), "{err}");
        }
    }
}
