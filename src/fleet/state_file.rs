//! Warm restart without a fleet: the presence list kept in a file,
//! written atomically (temp file, fsync, rename, directory fsync)
//! periodically and on shutdown, and read at start.
//!
//! Invariants: a reader never sees a half-written file (rename is atomic
//! on one filesystem, and the temp file sits next to the target); the file
//! holds IPs and device ids, so it is created `0600`, through a temp file
//! with an unpredictable name opened exclusively (`O_EXCL`, `O_NOFOLLOW`),
//! so a planted file or symlink is never written through; after the
//! rename the directory is fsynced, so a crash cannot lose the rename; a
//! file that does not parse, or is not ours, is reported and ignored,
//! never fatal; rows past their TTL are dropped on load, and a row dated
//! in the future is dated now, so it still expires.

use super::outbound::record;
use super::wire::Record;
use crate::clock::Millis;
use crate::engine::SnapshotReader;
use crate::presence::{RemoteRow, Snapshot};
use serde::Deserialize;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::watch;

/// Names the format, so a file written by something else is refused.
const FORMAT: &str = "rollcall.presence";
/// Bumped when the layout changes incompatibly.
const FORMAT_VERSION: u64 = 1;

/// Why a state file was not used or not written.
#[derive(Debug, Error)]
pub enum StateFileError {
    /// Reading or writing failed.
    #[error("state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// It is not JSON of the expected shape.
    #[error("state file does not parse: {0}")]
    Corrupt(#[from] serde_json::Error),
    /// It is JSON, but not a rollcall state file of this version.
    #[error("not a rollcall state file (format {format:?}, version {version})")]
    Foreign {
        /// Its `format`.
        format: String,
        /// Its `version`.
        version: u64,
    },
}

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    format: String,
    #[serde(default)]
    version: u64,
    #[serde(default)]
    rows: Vec<Record>,
}

/// Where presence survives restarts.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
    ttl: Millis,
}

impl StateFile {
    /// The file at `path`; rows older than `ttl` are not restored.
    pub fn new(path: &Path, ttl: Duration) -> StateFile {
        StateFile {
            path: path.to_owned(),
            ttl: super::task::millis(ttl),
        }
    }

    /// The rows the file holds that are still within the TTL at `now`. A
    /// missing file is an empty one.
    pub fn load(&self, now: Millis) -> Result<Vec<RemoteRow>, StateFileError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => parse(&bytes, self.ttl, now),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(self.io(source)),
        }
    }

    fn io(&self, source: std::io::Error) -> StateFileError {
        StateFileError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Replaces the file with `snapshot`'s rows (the self entry left out).
    pub fn save(&self, snapshot: &Snapshot, now: Millis) -> Result<(), StateFileError> {
        let bytes = encode(snapshot, now);
        let mut temp = self.path.clone().into_os_string();
        temp.push(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
        let temp = PathBuf::from(temp);
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&temp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&temp, &self.path)?;
            let dir = match self.path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|source| {
            let _ = std::fs::remove_file(&temp);
            self.io(source)
        })
    }

    /// Saves `reader`'s snapshot every `interval` when it changed, until
    /// `stop` flips (the final save is the caller's, after the engine
    /// drained).
    pub fn spawn_saver(
        &self,
        reader: SnapshotReader,
        interval: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        let file = self.clone();
        tokio::spawn(async move {
            let mut saved = 0;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stop.wait_for(|stop| *stop) => return,
                }
                let snapshot = reader.load_full();
                if snapshot.version() == saved {
                    continue;
                }
                let version = snapshot.version();
                let file = file.clone();
                let now = crate::clock::now_millis();
                let result = tokio::task::spawn_blocking(move || file.save(&snapshot, now)).await;
                match result {
                    Ok(Ok(())) => saved = version,
                    Ok(Err(error)) => tracing::warn!(%error, "could not save presence"),
                    Err(_) => return,
                }
            }
        });
    }
}

/// The file's bytes for `snapshot`.
fn encode(snapshot: &Snapshot, now: Millis) -> Vec<u8> {
    let mut out =
        format!(r#"{{"format":"{FORMAT}","version":{FORMAT_VERSION},"savedAt":{now},"rows":["#)
            .into_bytes();
    for (i, row) in snapshot.rows().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&record(row, false));
    }
    out.extend_from_slice(b"]}");
    out
}

/// The rows of a state file that are within `ttl` at `now`.
fn parse(bytes: &[u8], ttl: Millis, now: Millis) -> Result<Vec<RemoteRow>, StateFileError> {
    let file: File = serde_json::from_slice(bytes)?;
    if file.format != FORMAT || file.version != FORMAT_VERSION {
        return Err(StateFileError::Foreign {
            format: file.format,
            version: file.version,
        });
    }
    let fresh = |row: &RemoteRow| now.saturating_sub(row.entry.ts) <= ttl;
    let rows = file.rows.into_iter().filter_map(Record::into_row);
    // A row from the future (a clock that was wrong, or an edited file)
    // would never expire: it is dated now.
    let dated = rows.map(|mut row| {
        row.entry.ts = row.entry.ts.min(now);
        row
    });
    Ok(dated.filter(fresh).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::{Entry, Key, Patch, Store, StoreConfig};

    fn snapshot() -> Snapshot {
        let me = Entry {
            instance_id: Some("me".into()),
            ..Entry::default()
        };
        let mut store = Store::new(StoreConfig::default(), me);
        store.connect(
            1,
            Key::parse("old").unwrap(),
            Patch::reason("connect"),
            1_000,
        );
        store.upsert(Key::parse("new").unwrap(), Patch::reason("periodic"), 9_000);
        store.publish(9_000)
    }

    #[test]
    fn saved_rows_load_back_within_the_ttl() {
        let bytes = encode(&snapshot(), 9_500);
        let rows = parse(&bytes, 5_000, 10_000).unwrap();
        assert_eq!(rows.len(), 1, "old is past the TTL");
        assert_eq!(rows[0].key.as_str(), "new");
        assert_eq!(rows[0].entry.ts, 9_000);
        let rows = parse(&bytes, 60_000, 10_000).unwrap();
        let old = rows.iter().find(|r| r.key.as_str() == "old").unwrap();
        assert!(old.live, "restore marks it disconnected");
    }

    #[test]
    fn corrupt_and_foreign_files_are_errors() {
        assert!(matches!(
            parse(b"{\"format\":", 1, 1),
            Err(StateFileError::Corrupt(_))
        ));
        assert!(matches!(
            parse(br#"{"name":"something else"}"#, 1, 1),
            Err(StateFileError::Foreign { .. })
        ));
        assert!(matches!(
            parse(b"[1,2]", 1, 1),
            Err(StateFileError::Corrupt(_))
        ));
    }

    #[test]
    fn save_replaces_the_file_atomically_and_a_missing_file_is_empty() {
        let dir = std::env::temp_dir().join(format!("rollcall-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = StateFile::new(&dir.join("state.json"), Duration::from_secs(60));
        assert!(file.load(10_000).unwrap().is_empty());
        file.save(&snapshot(), 9_500).unwrap();
        assert_eq!(file.load(10_000).unwrap().len(), 2);
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "no temp file is left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rows_from_the_future_are_dated_now() {
        // Saved by a gateway whose clock ran ahead: rows at 1,000 and 9,000.
        let bytes = encode(&snapshot(), 9_500);
        let rows = parse(&bytes, 60_000, 5_000).unwrap();
        let new = rows.iter().find(|r| r.key.as_str() == "new").unwrap();
        assert_eq!(
            new.entry.ts, 5_000,
            "dated now, so the TTL still removes it"
        );
        let old = rows.iter().find(|r| r.key.as_str() == "old").unwrap();
        assert_eq!(old.entry.ts, 1_000);
    }

    #[test]
    fn a_saved_file_is_private_and_never_written_through_a_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("rollcall-private-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        let path = dir.join("state.json");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let file = StateFile::new(&path, Duration::from_secs(60));
        file.save(&snapshot(), 9_500).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(
            meta.file_type().is_file(),
            "the link is replaced, not followed"
        );
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(file.load(10_000).unwrap().len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
