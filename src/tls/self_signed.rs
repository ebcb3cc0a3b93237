//! A self-signed certificate made on first start and kept (as the
//! OpenClaw gateway's `gateway.tls.autoGenerate` does): its names are the
//! ones a client on this machine or the LAN dials.
//!
//! Invariants: existing files are never overwritten (a restart reuses
//! them, so the pinned fingerprint stays); the key file is created with
//! mode 0600 and never exists with wider permissions; a half-written pair
//! is never left behind under the final names.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why the self-signed certificate could not be made or kept.
#[derive(Debug, Error)]
pub enum SelfSignedError {
    /// Only one of the two files exists: refuse to guess which to replace.
    #[error(
        "{present} exists but {missing} does not: remove {present} to make a new self-signed \
         certificate, or give both files"
    )]
    HalfPresent {
        /// The file that exists.
        present: PathBuf,
        /// The one that does not.
        missing: PathBuf,
    },
    /// rcgen could not make the certificate.
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file or directory could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The names the certificate is made for: `localhost`, `127.0.0.1`, `::1`,
/// this host's name, and the bind address when it is a specific one.
pub fn self_signed_names(bind: SocketAddr) -> Vec<String> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let ip = bind.ip();
    let extra = [
        (!host.is_empty()).then_some(host),
        (!ip.is_unspecified()).then(|| ip.to_string()),
    ];
    for name in extra.into_iter().flatten() {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Makes a self-signed certificate for `names` at `cert` and `key` unless
/// both exist already. True if it made one.
pub fn ensure_self_signed(
    cert: &Path,
    key: &Path,
    names: &[String],
) -> Result<bool, SelfSignedError> {
    match (cert.exists(), key.exists()) {
        (true, true) => return Ok(false),
        (true, false) | (false, true) => {
            let (present, missing) = if cert.exists() {
                (cert, key)
            } else {
                (key, cert)
            };
            return Err(SelfSignedError::HalfPresent {
                present: present.to_owned(),
                missing: missing.to_owned(),
            });
        }
        (false, false) => {}
    }
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "rollcall self-signed");
    let signing_key = rcgen::KeyPair::generate()?;
    let certificate = params.self_signed(&signing_key)?;
    // The key first: a certificate without its key would be HalfPresent.
    write_new(key, signing_key.serialize_pem().as_bytes(), 0o600)?;
    write_new(cert, certificate.pem().as_bytes(), 0o644)?;
    Ok(true)
}

/// Writes `bytes` to a fresh temporary file beside `path` with `mode`
/// from its creation, syncs it, and renames it into place.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SelfSignedError> {
    let failed = |path: &Path| {
        let path = path.to_owned();
        move |source| SelfSignedError::Write { path, source }
    };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        create_private_dir(dir).map_err(failed(dir))?;
    }
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".tmp-{}", uuid::Uuid::new_v4()));
    let tmp = path.with_file_name(name);
    let written = (|| {
        let mut file = open_new(&tmp, mode)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(failed(path))
}

#[cfg(unix)]
fn open_new(path: &Path, mode: u32) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
}

#[cfg(not(unix))]
fn open_new(path: &Path, _mode: u32) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// Creates `dir` and its parents; a new directory is readable by its
/// owner only.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rollcall-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn made_once_then_reused_with_a_private_key_file() {
        let dir = scratch();
        let (cert, key) = (dir.join("tls/cert.pem"), dir.join("tls/key.pem"));
        let names = self_signed_names("127.0.0.1:0".parse().unwrap());
        assert!(ensure_self_signed(&cert, &key, &names).unwrap());
        let first = std::fs::read(&cert).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "key mode {mode:o}");
        }
        assert!(!ensure_self_signed(&cert, &key, &names).unwrap(), "reused");
        assert_eq!(std::fs::read(&cert).unwrap(), first);
        let served = crate::tls::load_certified_key(&cert, &key).unwrap();
        assert_eq!(served.cert.len(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_lone_file_is_not_replaced() {
        let dir = scratch();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, "mine").unwrap();
        let err = ensure_self_signed(&cert, &key, &["localhost".into()]).unwrap_err();
        assert!(matches!(err, SelfSignedError::HalfPresent { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&cert).unwrap(), "mine");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn names_cover_loopback_host_and_a_specific_bind() {
        let names = self_signed_names("192.0.2.7:18789".parse().unwrap());
        for want in ["localhost", "127.0.0.1", "::1", "192.0.2.7"] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
        let any = self_signed_names("0.0.0.0:18789".parse().unwrap());
        assert!(!any.iter().any(|n| n == "0.0.0.0"));
    }
}
