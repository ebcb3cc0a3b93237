//! `GET /v1/presence/doctor`: the doctor's report on the current snapshot
//! (`presence::diagnose`), as JSON.
//!
//! A report costs O(rows), so one is made per presence version and second
//! at most, however many dashboards and scripts ask: a reader hammering
//! the route costs a lock and a copy of `Bytes`, not a diagnosis each.

use crate::clock::now_millis;
use crate::engine::SnapshotReader;
use crate::presence::{DoctorConfig, Millis, diagnose};
use bytes::Bytes;
use std::sync::Mutex;

/// The doctor's settings and its last answer.
#[derive(Debug)]
pub struct Doctor {
    config: DoctorConfig,
    /// (version, second, body) of the last report.
    last: Mutex<Option<(u64, Millis, Bytes)>>,
}

impl Doctor {
    /// A doctor judging with `config`.
    pub fn new(config: DoctorConfig) -> Doctor {
        Doctor {
            config,
            last: Mutex::new(None),
        }
    }

    /// The report on the current snapshot, as JSON.
    pub fn answer(&self, reader: &SnapshotReader) -> Bytes {
        let snapshot = reader.load_full();
        let now = now_millis();
        let second = now.div_euclid(1000);
        let fresh = |(version, at, _): &(u64, Millis, Bytes)| {
            *version == snapshot.version() && *at == second
        };
        if let Ok(last) = self.last.lock() {
            if let Some(hit) = last.as_ref().filter(|l| fresh(l)) {
                return hit.2.clone();
            }
        }
        // Made outside the lock: two readers may both make one, and
        // neither waits on the other.
        let report = diagnose(&snapshot, now, self.config);
        let body = Bytes::from(serde_json::to_vec(&report).expect("a Report always encodes"));
        if let Ok(mut last) = self.last.lock() {
            *last = Some((snapshot.version(), second, body.clone()));
        }
        body
    }
}
