//! `GET /v1/presence/doctor`: the doctor's report on the current snapshot
//! (`presence::diagnose`), as JSON.
//!
//! A diagnosis costs O(rows): about 40 µs at 200 rows, 56 ms at 100,000
//! (`cargo bench --bench doctor`). So it runs on a blocking thread, never
//! on the threads serving connections, one at a time, and at most once
//! per [`REPORT_MAX_AGE`]: every request in between gets the last report.
//! However many dashboards, scripts or hostile readers ask, the doctor
//! costs at most one diagnosis a second.

use crate::clock::now_millis;
use crate::engine::SnapshotReader;
use crate::presence::{DoctorConfig, Millis, diagnose};
use bytes::Bytes;
use tokio::sync::Mutex;

/// How old a report may be when served: the doctor's findings are about
/// minutes (Idle after two, TTL after five), so a second is fresh enough.
pub const REPORT_MAX_AGE: Millis = 1000;

/// The doctor's settings and its last report.
#[derive(Debug)]
pub struct Doctor {
    config: DoctorConfig,
    /// When the last report was made, and its JSON. Held while a new one
    /// is made, so that concurrent requests wait for it instead of making
    /// their own.
    last: Mutex<Option<(Millis, Bytes)>>,
}

/// The diagnosis did not finish (it panicked): a bug, not the client's.
#[derive(Debug, thiserror::Error)]
#[error("the doctor failed: {0}")]
pub struct DoctorFailed(String);

impl Doctor {
    /// A doctor judging with `config`.
    pub fn new(config: DoctorConfig) -> Doctor {
        Doctor {
            config,
            last: Mutex::new(None),
        }
    }

    /// The report on the current snapshot, as JSON, at most
    /// `REPORT_MAX_AGE` old.
    pub async fn answer(&self, reader: &SnapshotReader) -> Result<Bytes, DoctorFailed> {
        let mut last = self.last.lock().await;
        let now = now_millis();
        if let Some((at, body)) = last.as_ref() {
            if (0..REPORT_MAX_AGE).contains(&now.saturating_sub(*at)) {
                return Ok(body.clone());
            }
        }
        let snapshot = reader.load_full();
        let config = self.config;
        let body = tokio::task::spawn_blocking(move || {
            let report = diagnose(&snapshot, now, config);
            Bytes::from(serde_json::to_vec(&report).expect("a Report always encodes"))
        })
        .await
        .map_err(|e| DoctorFailed(e.to_string()))?;
        *last = Some((now, body.clone()));
        Ok(body)
    }
}
