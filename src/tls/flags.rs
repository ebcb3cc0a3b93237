//! `rollcall serve`'s TLS flags, and which certificate and key files they
//! name.

use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// How often the TLS files are checked for changes: a renewed certificate
/// is served within seconds, and a `stat` of two files costs nothing.
pub const DEFAULT_TLS_WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// Where `--tls-self-signed` keeps its certificate without `--tls-cert`:
/// under the home directory, as OpenClaw keeps its own in `~/.openclaw`.
pub const DEFAULT_SELF_SIGNED_DIR: &str = ".rollcall/tls";

/// The TLS flags of `rollcall serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsConfig {
    /// Speak only TLS (wss:// and https://) with this certificate chain
    /// (PEM, end-entity first); needs --tls-key. Reloaded on SIGHUP and
    /// when the file changes, without dropping connections.
    #[arg(long = "tls-cert", env = "ROLLCALL_TLS_CERT")]
    pub cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long = "tls-key", env = "ROLLCALL_TLS_KEY")]
    pub key: Option<PathBuf>,

    /// Speak only TLS with a self-signed certificate, made on first start
    /// (for localhost, this host's name and the bind address) and reused
    /// after, at --tls-cert/--tls-key or else in ~/.rollcall/tls/. Its
    /// SHA-256 fingerprint is logged at start, for clients to pin.
    #[arg(long = "tls-self-signed", env = "ROLLCALL_TLS_SELF_SIGNED")]
    pub self_signed: bool,

    /// How often the TLS files are checked for changes (0: reload only on
    /// SIGHUP).
    #[arg(long = "tls-watch-interval", env = "ROLLCALL_TLS_WATCH_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub watch_interval: Duration,
}

/// The certificate and key files TLS serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// Make a self-signed pair there if neither exists.
    pub self_signed: bool,
}

/// Why the TLS flags name no usable pair of files.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TlsConfigError {
    /// One of `--tls-cert` and `--tls-key` without the other.
    #[error("{given} needs {missing}: TLS serves a certificate together with its private key")]
    Half {
        /// The flag given.
        given: &'static str,
        /// The flag missing.
        missing: &'static str,
    },
    /// `--tls-self-signed` without files and without a home directory.
    #[error(
        "--tls-self-signed has nowhere to keep its certificate: HOME is not set; pass --tls-cert \
         and --tls-key to say where"
    )]
    NoHome,
}

impl Default for TlsConfig {
    /// No TLS.
    fn default() -> Self {
        TlsConfig {
            cert: None,
            key: None,
            self_signed: false,
            watch_interval: DEFAULT_TLS_WATCH_INTERVAL,
        }
    }
}

impl TlsConfig {
    /// The files TLS serves, if TLS is on: `--tls-cert`/`--tls-key`, or
    /// with `--tls-self-signed` alone, `~/.rollcall/tls/{cert,key}.pem`.
    pub fn files(&self) -> Result<Option<TlsFiles>, TlsConfigError> {
        let half = |given, missing| TlsConfigError::Half { given, missing };
        let (cert, key) = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => (cert.clone(), key.clone()),
            (Some(_), None) => return Err(half("--tls-cert", "--tls-key")),
            (None, Some(_)) => return Err(half("--tls-key", "--tls-cert")),
            (None, None) if !self.self_signed => return Ok(None),
            (None, None) => {
                let home = std::env::var_os("HOME")
                    .filter(|h| !h.is_empty())
                    .ok_or(TlsConfigError::NoHome)?;
                let dir = PathBuf::from(home).join(DEFAULT_SELF_SIGNED_DIR);
                (dir.join("cert.pem"), dir.join("key.pem"))
            }
        };
        Ok(Some(TlsFiles {
            cert,
            key,
            self_signed: self.self_signed,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_needs_both_files_or_self_signed() {
        let mut config = TlsConfig::default();
        assert_eq!(config.files().unwrap(), None);
        config.cert = Some("c.pem".into());
        let err = config.files().unwrap_err();
        assert!(
            err.to_string().contains("--tls-cert needs --tls-key"),
            "{err}"
        );
        config.key = Some("k.pem".into());
        let files = config.files().unwrap().unwrap();
        assert_eq!((files.cert, files.key), ("c.pem".into(), "k.pem".into()));
        assert!(!files.self_signed);
        let own = TlsConfig {
            self_signed: true,
            ..TlsConfig::default()
        };
        let files = own.files().unwrap().unwrap();
        assert!(files.self_signed);
        assert!(files.key.ends_with(".rollcall/tls/key.pem"), "{files:?}");
    }
}
