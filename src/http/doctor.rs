//! `GET /v1/presence/doctor`: the doctor's report on the current snapshot
//! (`presence::diagnose`), as JSON.
//!
//! A diagnosis costs O(rows): about 40 µs at 200 rows, 56 ms at 100,000
//! (`cargo bench --bench doctor`). So it runs on a blocking thread, never
//! on the threads serving connections, one at a time, and starts at most
//! once per [`REPORT_MAX_AGE`]. However many dashboards, scripts or hostile
//! readers ask, the doctor costs at most one diagnosis a second.
//!
//! Invariant: an answer is never a report on an older presence version
//! than the one current when the request arrived, so `rollcall doctor` run
//! right after a change sees it. The last report is served while it is
//! younger than [`REPORT_MAX_AGE`] and covers that version; otherwise the
//! request waits for the next diagnosis, which starts once the last one is
//! a second old (the wait is at most that second plus one diagnosis).

use crate::clock::Clock;
use crate::engine::SnapshotReader;
use crate::presence::{DoctorConfig, Millis, diagnose};
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How old a report may be when served, and the least time between two
/// diagnoses: the doctor's findings are about minutes (Idle after two, TTL
/// after five), so a second is fresh enough, and waiting up to one is cheap.
pub const REPORT_MAX_AGE: Millis = 1000;

/// [`REPORT_MAX_AGE`] as a duration.
const MIN_INTERVAL: Duration = Duration::from_millis(REPORT_MAX_AGE.unsigned_abs());

/// A report and what it was made from.
#[derive(Debug)]
struct Made {
    /// When the diagnosis started (tokio's clock, so tests can pause it).
    at: Instant,
    /// The presence version of the snapshot it diagnosed.
    version: u64,
    /// The report's JSON.
    body: Bytes,
}

/// The doctor's settings and its last report.
#[derive(Debug)]
pub struct Doctor {
    config: DoctorConfig,
    /// What rows' ages are measured against.
    clock: Clock,
    /// The last report. Held while a new one is made (and while waiting
    /// for its turn), so that concurrent requests wait for it instead of
    /// making their own.
    last: Mutex<Option<Made>>,
    /// Diagnoses run so far.
    diagnoses: AtomicU64,
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
            clock: Clock::system(),
            last: Mutex::new(None),
            diagnoses: AtomicU64::new(0),
        }
    }

    /// This doctor, measuring rows' ages on `clock` (the gateway's).
    pub fn with_clock(mut self, clock: Clock) -> Doctor {
        self.clock = clock;
        self
    }

    /// How many diagnoses have run.
    pub fn diagnoses(&self) -> u64 {
        // Relaxed: a count read for reporting; it orders nothing.
        self.diagnoses.load(Ordering::Relaxed)
    }

    /// The report, as JSON, on a snapshot at least as new as the one
    /// current now, at most `REPORT_MAX_AGE` old.
    pub async fn answer(&self, reader: &SnapshotReader) -> Result<Bytes, DoctorFailed> {
        let wanted = reader.version();
        let mut last = self.last.lock().await;
        if let Some(made) = last.as_ref() {
            let fresh = made.at.elapsed() < MIN_INTERVAL;
            if fresh && made.version >= wanted {
                return Ok(made.body.clone());
            }
            // Too old, or older than the request: wait for the next
            // diagnosis' turn (holding the lock: others queue behind it).
            tokio::time::sleep_until(made.at + MIN_INTERVAL).await;
        }
        let made = self.diagnose(reader).await?;
        let body = made.body.clone();
        *last = Some(made);
        Ok(body)
    }

    /// One diagnosis of the current snapshot, on a blocking thread.
    async fn diagnose(&self, reader: &SnapshotReader) -> Result<Made, DoctorFailed> {
        let at = Instant::now();
        let snapshot = reader.load_full();
        let version = snapshot.version();
        let config = self.config;
        let clock = self.clock.clone();
        // Relaxed: see `diagnoses`.
        self.diagnoses.fetch_add(1, Ordering::Relaxed);
        let body = tokio::task::spawn_blocking(move || {
            let report = diagnose(&snapshot, clock.now(), config);
            Bytes::from(serde_json::to_vec(&report).expect("a Report always encodes"))
        })
        .await
        .map_err(|e| DoctorFailed(e.to_string()))?;
        Ok(Made { at, version, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Engine, EngineConfig, Event};
    use crate::presence::{Entry, Key, Patch};
    use serde_json::Value;
    use std::sync::Arc;

    fn engine() -> Engine {
        let gateway = Entry {
            instance_id: Some("gw".into()),
            text: "Gateway".into(),
            ..Entry::default()
        };
        Engine::start(EngineConfig::default(), gateway)
    }

    /// A beacon for `key`, applied before this returns.
    async fn beacon(engine: &Engine, key: &str) -> u64 {
        let event = Event::Beacon {
            key: Key::parse(key).expect("a test key is not blank"),
            patch: Patch {
                host: Some(key.into()),
                ..Patch::default()
            },
        };
        let applied = engine.sender().try_push_acked(event).expect("room");
        applied.await.expect("the writer applies it")
    }

    async fn version_answered(doctor: &Doctor, reader: &SnapshotReader) -> u64 {
        let body = doctor.answer(reader).await.expect("a report");
        let report: Value = serde_json::from_slice(&body).expect("JSON");
        report["version"].as_u64().expect("a version")
    }

    #[tokio::test(start_paused = true)]
    async fn a_report_is_never_older_than_the_version_asked_about() {
        let engine = engine();
        let reader = engine.reader();
        let doctor = Doctor::new(DoctorConfig::default());
        let first = version_answered(&doctor, &reader).await;
        assert_eq!(doctor.diagnoses(), 1);

        tokio::time::sleep(Duration::from_millis(500)).await;
        let changed = beacon(&engine, "a").await;
        assert!(changed > first);
        let started = Instant::now();
        let answered = version_answered(&doctor, &reader).await;
        assert!(answered >= changed, "{answered} predates {changed}");
        assert_eq!(doctor.diagnoses(), 2);
        // It waited for the next diagnosis' turn: one second after the first.
        assert_eq!(started.elapsed(), Duration::from_millis(500));

        // Nothing changed since: the same report, no new diagnosis.
        assert_eq!(version_answered(&doctor, &reader).await, answered);
        assert_eq!(doctor.diagnoses(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn many_requests_after_a_change_share_one_diagnosis() {
        let engine = engine();
        let reader = engine.reader();
        let doctor = Arc::new(Doctor::new(DoctorConfig::default()));
        version_answered(&doctor, &reader).await;
        let changed = beacon(&engine, "b").await;
        let asks: Vec<_> = (0..20)
            .map(|_| {
                let (doctor, reader) = (doctor.clone(), reader.clone());
                tokio::spawn(async move { version_answered(&doctor, &reader).await })
            })
            .collect();
        for ask in asks {
            assert!(ask.await.unwrap() >= changed);
        }
        assert_eq!(
            doctor.diagnoses(),
            2,
            "one diagnosis for the first, one for the twenty"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_report_older_than_a_second_is_made_again() {
        let engine = engine();
        let reader = engine.reader();
        let doctor = Doctor::new(DoctorConfig::default());
        version_answered(&doctor, &reader).await;
        tokio::time::sleep(MIN_INTERVAL).await;
        let started = Instant::now();
        version_answered(&doctor, &reader).await;
        assert_eq!(doctor.diagnoses(), 2);
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "no wait: its turn had come"
        );
    }
}
