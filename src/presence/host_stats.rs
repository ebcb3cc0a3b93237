//! The last host stats each node reported (`node.event` `node.host.stats`,
//! docs/protocol.md §4), kept next to the rows rather than in them: OpenClaw
//! clients never see them in the list; the dashboard and
//! `GET /v1/presence/hosts` do.
//!
//! Invariants: a [`HostStats`] is fixed-size (numbers only; what the node
//! sent beyond the known fields is dropped), so a node cannot grow what is
//! stored for it; the book holds at most one per key and, once past twice
//! its bound, keeps only keys the current list has, so it never outgrows
//! the rows it describes by more than that. Stats are shown only while
//! their row is listed, so they outlive a disconnect exactly as long as
//! the row does.

use super::entry::Millis;
use super::key::Key;
use super::snapshot::Snapshot;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// Most CPUs a host may report (OpenClaw clamps to the same).
pub const MAX_CPU_COUNT: u64 = 4096;

/// One node's host stats, as it reported them, and when.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostStats {
    /// When the gateway received them (ms since the epoch).
    pub received_at: Millis,
    /// CPUs on the host.
    pub cpu_count: u64,
    /// 1, 5 and 15 minute load averages, when the host has them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_average: Option<[f64; 3]>,
    /// Memory, bytes.
    pub memory_total_bytes: u64,
    /// Free memory, bytes.
    pub memory_free_bytes: u64,
    /// Disk of the node's home, bytes, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_total_bytes: Option<u64>,
    /// Available disk, bytes, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_available_bytes: Option<u64>,
}

impl HostStats {
    /// Reads an OpenClaw `NodeHostStatsPayload`: `cpuCount` (1..=4096),
    /// `memoryTotalBytes` and `memoryFreeBytes` (integers >= 0, free <=
    /// total), and optionally `loadAverage` (three finite numbers >= 0),
    /// `diskTotalBytes` and `diskAvailableBytes`. `None` if it is not one.
    pub fn parse(payload: &Map<String, Value>, received_at: Millis) -> Option<HostStats> {
        let count = |name: &str| payload.get(name).and_then(Value::as_u64);
        let optional = |name: &str| match payload.get(name) {
            None | Some(Value::Null) => Some(None),
            Some(value) => value.as_u64().map(Some),
        };
        let cpu_count = count("cpuCount").filter(|n| (1..=MAX_CPU_COUNT).contains(n))?;
        let memory_total_bytes = count("memoryTotalBytes")?;
        let memory_free_bytes = count("memoryFreeBytes").filter(|&f| f <= memory_total_bytes)?;
        let load_average = match payload.get("loadAverage") {
            None | Some(Value::Null) => None,
            Some(Value::Array(loads)) if loads.len() == 3 => {
                let mut out = [0.0; 3];
                for (slot, load) in out.iter_mut().zip(loads) {
                    *slot = load.as_f64().filter(|l| l.is_finite() && *l >= 0.0)?;
                }
                Some(out)
            }
            Some(_) => return None,
        };
        Some(HostStats {
            received_at,
            cpu_count,
            load_average,
            memory_total_bytes,
            memory_free_bytes,
            disk_total_bytes: optional("diskTotalBytes")?,
            disk_available_bytes: optional("diskAvailableBytes")?,
        })
    }
}

/// The last stats per key.
#[derive(Debug)]
pub struct HostStatsBook {
    stats: Mutex<HashMap<Key, HostStats>>,
    /// Past twice this many keys, keys the list no longer has are dropped.
    bound: usize,
}

impl HostStatsBook {
    /// An empty book for a list of about `rows` rows.
    pub fn new(rows: usize) -> HostStatsBook {
        HostStatsBook {
            stats: Mutex::new(HashMap::new()),
            bound: rows.saturating_add(1).max(16),
        }
    }

    /// Keeps `stats` as `key`'s last; `listed` is the current list, read
    /// only when the book must shed keys without a row.
    pub fn put(&self, key: Key, stats: HostStats, listed: &Snapshot) {
        let mut book = self.lock();
        book.insert(key, stats);
        if book.len() > 2 * self.bound {
            let keep: HashSet<&Key> = listed.entries().map(|row| &row.key).collect();
            book.retain(|key, _| keep.contains(key));
        }
    }

    /// The stats of the rows `listed` has, in list order.
    pub fn listed(&self, listed: &Snapshot) -> Vec<(Key, HostStats)> {
        let book = self.lock();
        listed
            .entries()
            .filter_map(|row| Some((row.key.clone(), *book.get(&row.key)?)))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, HostStats>> {
        // Insert and retain leave the map whole: a poisoned lock is fine.
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::{Entry, Patch, Store, StoreConfig};

    fn payload(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn an_openclaw_payload_reads_and_extra_fields_are_dropped() {
        let p = payload(
            r#"{"cpuCount":8,"loadAverage":[0.5,1,1.5],"memoryTotalBytes":1000,
                "memoryFreeBytes":400,"diskTotalBytes":9,"extra":"x"}"#,
        );
        let stats = HostStats::parse(&p, 7).unwrap();
        assert_eq!(stats.cpu_count, 8);
        assert_eq!(stats.load_average, Some([0.5, 1.0, 1.5]));
        assert_eq!(stats.disk_total_bytes, Some(9));
        assert_eq!(stats.disk_available_bytes, None);
        let json = serde_json::to_value(stats).unwrap();
        assert_eq!(json["receivedAt"], 7);
        assert!(json.get("extra").is_none());
    }

    #[test]
    fn payloads_that_break_the_schema_are_refused() {
        for bad in [
            r#"{"memoryTotalBytes":1,"memoryFreeBytes":1}"#,
            r#"{"cpuCount":0,"memoryTotalBytes":1,"memoryFreeBytes":1}"#,
            r#"{"cpuCount":1.5,"memoryTotalBytes":1,"memoryFreeBytes":1}"#,
            r#"{"cpuCount":1,"memoryTotalBytes":1,"memoryFreeBytes":2}"#,
            r#"{"cpuCount":1,"memoryTotalBytes":-1,"memoryFreeBytes":0}"#,
            r#"{"cpuCount":1,"memoryTotalBytes":1,"memoryFreeBytes":1,"loadAverage":[1,2]}"#,
            r#"{"cpuCount":1,"memoryTotalBytes":1,"memoryFreeBytes":1,"loadAverage":"high"}"#,
            r#"{"cpuCount":1,"memoryTotalBytes":1,"memoryFreeBytes":1,"diskTotalBytes":"x"}"#,
        ] {
            assert_eq!(HostStats::parse(&payload(bad), 1), None, "{bad}");
        }
    }

    #[test]
    fn the_book_shows_listed_rows_only_and_sheds_the_rest_past_its_bound() {
        let me = Entry {
            instance_id: Some("gw".into()),
            ..Entry::default()
        };
        let mut store = Store::new(StoreConfig::default(), me);
        let key = |s: &str| Key::parse(s).unwrap();
        store.upsert(key("n1"), Patch::reason("connect"), 1);
        let listed = store.publish(1);
        let book = HostStatsBook::new(0);
        let stats = HostStats::parse(
            &payload(r#"{"cpuCount":1,"memoryTotalBytes":1,"memoryFreeBytes":1}"#),
            1,
        )
        .unwrap();
        for i in 0..40 {
            book.put(key(&format!("gone-{i}")), stats, &listed);
        }
        book.put(key("n1"), stats, &listed);
        assert!(book.lock().len() <= 2 * 16 + 1);
        let shown = book.listed(&listed);
        assert_eq!(shown.len(), 1);
        assert_eq!(shown[0].0, key("n1"));
    }
}
