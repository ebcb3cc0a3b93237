//! The server's certificate, swappable while serving: a
//! [`ResolvesServerCert`] that hands each new handshake the current
//! certificate from an `ArcSwap`, and the task that reloads it on SIGHUP
//! or when the files change.
//!
//! Invariants: a handshake always gets a whole certificate and key, never
//! a mix; a reload never touches established connections (they keep the
//! session keys they negotiated); a file that fails to load is logged and
//! the certificate in use is kept.

use super::Fingerprint;
use super::pem::{PemError, load_certified_key};
use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// A watch interval that never ticks in a process's life.
const NEVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// What a handshake is served: the key, and its fingerprint for `health`.
struct Current {
    key: Arc<CertifiedKey>,
    fingerprint: Fingerprint,
}

/// What the watcher has done so far: counts that only grow, for whoever
/// must wait until it has looked at the files (tests, instead of sleeping
/// through a few watch intervals).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchProgress {
    /// Watch intervals at which the files were checked (and reloaded if
    /// they had changed).
    pub checks: u64,
    /// Reloads that serve a new certificate, on SIGHUP or a change.
    pub reloaded: u64,
    /// Reloads refused because the files did not load; the previous
    /// certificate stayed.
    pub refused: u64,
}

/// The certificate in use, and where it is reloaded from.
pub struct CertResolver {
    current: ArcSwap<Current>,
    cert_path: PathBuf,
    key_path: PathBuf,
    /// The files' stamp taken just before they were loaded: the watcher
    /// compares against it, so a change made before it starts is seen.
    loaded: Stamp,
    progress: watch::Sender<WatchProgress>,
}

/// What identifies the cert's and the key's contents without reading them.
type Stamp = [Option<(u64, SystemTime, u64)>; 2];

impl std::fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertResolver")
            .field("cert_path", &self.cert_path)
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

impl CertResolver {
    /// Loads `cert` and `key` (PEM).
    pub fn load(cert: &Path, key: &Path) -> Result<CertResolver, PemError> {
        // Stamped first: a change while loading is seen as a change.
        let loaded = [stamp(cert), stamp(key)];
        Ok(CertResolver {
            current: ArcSwap::from_pointee(current(cert, key)?),
            cert_path: cert.to_owned(),
            key_path: key.to_owned(),
            loaded,
            progress: watch::Sender::new(WatchProgress::default()),
        })
    }

    /// What the watcher has done so far, updated as it works.
    pub fn progress(&self) -> watch::Receiver<WatchProgress> {
        self.progress.subscribe()
    }

    /// The SHA-256 fingerprint of the end-entity certificate served now.
    pub fn fingerprint(&self) -> Fingerprint {
        self.current.load().fingerprint
    }

    /// Reads the files again and serves them to new handshakes; on error
    /// the certificate in use stays. The new fingerprint.
    pub fn reload(&self) -> Result<Fingerprint, PemError> {
        let next = current(&self.cert_path, &self.key_path)?;
        let fingerprint = next.fingerprint;
        self.current.store(Arc::new(next));
        Ok(fingerprint)
    }

    /// Reloads on SIGHUP and whenever the files' size, mtime or inode
    /// change (checked every `interval`; never if zero), until `stop`
    /// flips to true. Each outcome is logged once.
    pub fn spawn_watcher(self: &Arc<Self>, interval: Duration, mut stop: watch::Receiver<bool>) {
        let resolver = Arc::clone(self);
        tokio::spawn(async move {
            let mut hangup = hangups();
            let mut seen = resolver.loaded;
            // Zero: a tick that never comes (a year is never, here).
            let period = if interval.is_zero() { NEVER } else { interval };
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let (why, checked) = tokio::select! {
                    _ = stop.wait_for(|stop| *stop) => return,
                    Some(()) = next_hangup(&mut hangup) => ("SIGHUP", false),
                    _ = tick.tick() => {
                        let now = resolver.stamp();
                        if now == seen {
                            resolver.progress.send_modify(|p| p.checks += 1);
                            continue;
                        }
                        seen = now;
                        ("the files changed", true)
                    }
                };
                resolver.reload_logged(why, checked);
            }
        });
    }

    /// Reloads for `why`, logs the outcome once, and counts it (and the
    /// check that led to it, if `checked`).
    fn reload_logged(&self, why: &str, checked: bool) {
        let outcome = self.reload();
        match &outcome {
            Ok(fingerprint) => tracing::info!(%fingerprint, why, "TLS certificate reloaded"),
            Err(error) => tracing::error!(
                %error, why,
                "TLS certificate not reloaded; still serving the previous one"
            ),
        }
        self.progress.send_modify(|p| {
            p.checks += u64::from(checked);
            match outcome {
                Ok(_) => p.reloaded += 1,
                Err(_) => p.refused += 1,
            }
        });
    }

    /// What identifies the files' contents without reading them.
    fn stamp(&self) -> Stamp {
        [stamp(&self.cert_path), stamp(&self.key_path)]
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.load().key))
    }
}

fn current(cert: &Path, key: &Path) -> Result<Current, PemError> {
    let key = load_certified_key(cert, key)?;
    // `load_certified_key` refuses an empty chain.
    let fingerprint = Fingerprint::of(key.cert[0].as_ref());
    Ok(Current {
        key: Arc::new(key),
        fingerprint,
    })
}

#[cfg(unix)]
fn stamp(path: &Path) -> Option<(u64, SystemTime, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?, meta.ino()))
}

#[cfg(not(unix))]
fn stamp(path: &Path) -> Option<(u64, SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?, 0))
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = Option<()>;

#[cfg(unix)]
fn hangups() -> Hangups {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup())
        .inspect_err(|error| tracing::warn!(%error, "SIGHUP will not reload the certificate"))
        .ok()
}

#[cfg(not(unix))]
fn hangups() -> Hangups {
    None
}

/// The next SIGHUP; never, without a handler.
async fn next_hangup(hangups: &mut Hangups) -> Option<()> {
    #[cfg(unix)]
    if let Some(signal) = hangups {
        return signal.recv().await;
    }
    let _ = hangups;
    std::future::pending().await
}
