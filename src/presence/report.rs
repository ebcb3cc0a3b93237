//! The doctor's report: findings, the provenance of the rows they name,
//! and the cap, as `GET /v1/presence/doctor` serves them (camelCase JSON).
//! The same types are what `rollcall doctor` and the tests read it into:
//! the schema is written once.
//!
//! Invariant: a report from a newer gateway still reads. Extra fields are
//! ignored, a finding, write or key-source kind this build does not know
//! reads as `Unknown`, and fields the server may leave out default.

use super::entry::Millis;
use super::provenance::{KeySource, Write};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Rows one finding names; `moreKeys` counts the rest. With the limit
/// above, a report names at most about 11,000 rows (a few megabytes of
/// JSON) even for a 100k-row fleet view of one misconfigured client.
pub const MAX_KEYS_PER_FINDING: usize = 20;

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// Several rows describe one client.
    Duplicate,
    /// Connected, but not written for longer than `stale_after`.
    StaleConnected,
    /// Kept after a disconnect until the TTL removes it.
    Gone,
    /// The cap evicts rows, or is about to.
    CapPressure,
    /// A connect named a row another client holds (docs/protocol.md §5.1),
    /// so it was tracked under its connection id.
    NotOwner,
    /// A kind this build does not know, from a newer gateway. The doctor
    /// never makes it.
    #[serde(other)]
    Unknown,
}

impl FindingKind {
    /// Every kind, in report order.
    pub const ALL: [FindingKind; 5] = [
        FindingKind::Duplicate,
        FindingKind::StaleConnected,
        FindingKind::Gone,
        FindingKind::CapPressure,
        FindingKind::NotOwner,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Duplicate => "duplicate",
            FindingKind::StaleConnected => "stale-connected",
            FindingKind::Gone => "gone",
            FindingKind::CapPressure => "cap-pressure",
            FindingKind::NotOwner => "not-owner",
            FindingKind::Unknown => "unknown",
        }
    }

    /// The kind named `name` on the wire; `Unknown` for a name this build
    /// does not know.
    pub fn parse(name: &str) -> FindingKind {
        FindingKind::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .unwrap_or(FindingKind::Unknown)
    }

    /// What a finding of this kind means, in a few words.
    pub fn meaning(self) -> &'static str {
        match self {
            FindingKind::Duplicate => "several rows for one client",
            FindingKind::StaleConnected => "connected, but its beacons stopped",
            FindingKind::Gone => "disconnected; the row stays until the TTL removes it",
            FindingKind::CapPressure => "the row cap evicts rows, or is about to",
            FindingKind::NotOwner => {
                "a connect named a row another client holds, so it got a row of its own"
            }
            FindingKind::Unknown => "kinds this rollcall does not know (a newer gateway's)",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// What it is about.
    pub kind: FindingKind,
    /// The row the finding is about: for a duplicate, the one lacking a
    /// stable id.
    pub key: String,
    /// The rows involved, `key` first, at most [`MAX_KEYS_PER_FINDING`].
    #[serde(default)]
    pub keys: Vec<String>,
    /// Rows involved beyond `keys`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub more_keys: usize,
    /// What is wrong, in plain words.
    pub summary: String,
    /// What to change, when something should.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// Age of `key`'s row, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_ms: Option<u64>,
    /// Time until the TTL removes `key`'s row, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_in_ms: Option<u64>,
}

/// The provenance of one row a finding names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RowReport {
    /// Where its key came from.
    pub key_source: KeySource,
    /// The same in plain words.
    pub key_explained: Cow<'static, str>,
    /// A connection for it is open (here or on its fleet gateway).
    pub live: bool,
    /// Active, Idle or Stale (docs/protocol.md §6).
    pub status: Cow<'static, str>,
    /// Its `ts`, as the list shows it: how a page matches the row to a
    /// list entry, which carries no key.
    pub ts: Millis,
    /// Age of its `ts`, ms.
    pub age_ms: u64,
    /// The write that created it.
    pub created: Write,
    /// The last few writes, oldest first.
    #[serde(default)]
    pub writes: Vec<Write>,
    /// Indexes into `findings` of the findings naming this row.
    #[serde(default)]
    pub findings: Vec<usize>,
}

/// The cap and its use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapReport {
    /// Rows besides the gateway's own.
    pub entries: usize,
    /// The cap (`--max-entries`).
    pub max_entries: usize,
    /// Rows the cap removed within the last TTL.
    pub evicted_recent: u64,
    /// Rows the TTL removed within the last TTL.
    pub expired_recent: u64,
    /// The TTL, ms: the window of both counts.
    pub ttl_ms: u64,
    /// The oldest row: the next the cap would evict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_key: Option<String>,
    /// Its age, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_age_ms: Option<u64>,
}

/// The doctor's answer for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// When it was made, ms since the epoch.
    pub generated_at: Millis,
    /// The presence version it describes.
    pub version: u64,
    /// Rows, the gateway's own included.
    pub entries: usize,
    /// Findings per kind, by wire name, all of them (the list may stop
    /// short). Keyed by name, not [`FindingKind`], so that a newer
    /// gateway's kinds keep their counts apart.
    #[serde(default)]
    pub counts: BTreeMap<Cow<'static, str>, usize>,
    /// The findings: duplicates, then stale, gone and cap pressure.
    pub findings: Vec<Finding>,
    /// Provenance of every row a listed finding names, by key.
    #[serde(default)]
    pub rows: BTreeMap<String, RowReport>,
    /// The cap.
    pub cap: CapReport,
}

impl Report {
    /// True when nothing was found.
    pub fn is_clean(&self) -> bool {
        self.total() == 0
    }

    /// Findings of every kind, those the list left out included.
    pub fn total(&self) -> usize {
        let counted: usize = self.counts.values().sum();
        counted.max(self.findings.len())
    }

    /// Findings of `kind`, those the list left out included; for
    /// `Unknown`, of every kind this build does not know.
    pub fn count(&self, kind: FindingKind) -> usize {
        let counted: usize = self
            .counts
            .iter()
            .filter(|(name, _)| FindingKind::parse(name) == kind)
            .map(|(_, n)| n)
            .sum();
        counted.max(self.listed(kind).count())
    }

    /// The listed findings of `kind`.
    pub fn listed(&self, kind: FindingKind) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.kind == kind)
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_gateways_report_still_reads() {
        let body = serde_json::json!({
            "generatedAt": 5, "version": 2, "entries": 3,
            "counts": {"duplicate": 1, "flapping": 4, "haunted": 2},
            "findings": [
                {"kind": "flapping", "key": "a", "keys": ["a"], "summary": "new"},
                {"kind": "duplicate", "key": "b", "keys": ["b", "c"], "summary": "dup",
                 "confidence": 0.9},
            ],
            "rows": {"a": {"keySource": "quantum-id", "keyExplained": "?", "live": true,
                           "status": "active", "ts": 5, "ageMs": 0,
                           "created": {"kind": "teleport", "source": "quantum-id", "at": 5}}},
            "cap": {"entries": 2, "maxEntries": 200, "evictedRecent": 0, "expiredRecent": 0,
                    "ttlMs": 300000},
            "fromTheFuture": true,
        });
        let report: Report = serde_json::from_value(body).expect("a newer report reads");
        assert_eq!(report.findings[0].kind, FindingKind::Unknown);
        assert_eq!(
            report.count(FindingKind::Unknown),
            6,
            "both new kinds' counts"
        );
        assert_eq!(report.count(FindingKind::Duplicate), 1);
        assert_eq!(report.total(), 7);
        let row = &report.rows["a"];
        assert_eq!(row.key_source, KeySource::Unknown);
        assert_eq!(
            row.created.by.kind,
            super::super::provenance::WriteKind::Unknown
        );
        assert!(row.writes.is_empty() && row.findings.is_empty());
    }

    #[test]
    fn kinds_parse_from_their_wire_names() {
        for kind in FindingKind::ALL {
            assert_eq!(FindingKind::parse(kind.as_str()), kind);
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, kind.as_str());
        }
        assert_eq!(FindingKind::parse("flapping"), FindingKind::Unknown);
    }
}
