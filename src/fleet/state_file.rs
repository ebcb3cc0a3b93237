//! Warm restart without a fleet: the presence list kept in a file,
//! written atomically (temp file, fsync, rename) periodically and on
//! shutdown, and read at start.
//!
//! Invariants: a reader never sees a half-written file (rename is atomic
//! on one filesystem, and the temp file sits next to the target); a file
//! that does not parse, or is not ours, is reported and ignored, never
//! fatal; rows past their TTL are dropped on load.

use super::outbound::record;
use super::wire::Record;
use crate::clock::Millis;
use crate::engine::SnapshotReader;
use crate::presence::{RemoteRow, Snapshot};
use serde::Deserialize;
use std::io::Write;
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
        temp.push(format!(".tmp{}", std::process::id()));
        let temp = PathBuf::from(temp);
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&temp, &self.path)
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
    for (i, row) in snapshot.entries()[1..].iter().enumerate() {
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
    Ok(rows.filter(fresh).collect())
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
}
