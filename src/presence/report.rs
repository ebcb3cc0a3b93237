//! The doctor's report: findings, the provenance of the rows they name,
//! and the cap, as `GET /v1/presence/doctor` serves them (camelCase JSON)
//! and `rollcall doctor` and the dashboard read them.

use super::entry::Millis;
use super::origin::{KeySource, Write};
use serde::Serialize;
use std::collections::BTreeMap;

/// Rows one finding names; `moreKeys` counts the rest. With the limit
/// above, a report names at most about 11,000 rows (a few megabytes of
/// JSON) even for a 100k-row fleet view of one misconfigured client.
pub const MAX_KEYS_PER_FINDING: usize = 20;

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
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
}

impl FindingKind {
    /// Every kind, in report order.
    pub const ALL: [FindingKind; 4] = [
        FindingKind::Duplicate,
        FindingKind::StaleConnected,
        FindingKind::Gone,
        FindingKind::CapPressure,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Duplicate => "duplicate",
            FindingKind::StaleConnected => "stale-connected",
            FindingKind::Gone => "gone",
            FindingKind::CapPressure => "cap-pressure",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// What it is about.
    pub kind: FindingKind,
    /// The row the finding is about: for a duplicate, the one lacking a
    /// stable id.
    pub key: String,
    /// The rows involved, `key` first, at most [`MAX_KEYS_PER_FINDING`].
    pub keys: Vec<String>,
    /// Rows involved beyond `keys`.
    #[serde(skip_serializing_if = "is_zero")]
    pub more_keys: usize,
    /// What is wrong, in plain words.
    pub summary: String,
    /// What to change, when something should.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// Age of `key`'s row, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_ms: Option<u64>,
    /// Time until the TTL removes `key`'s row, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed_in_ms: Option<u64>,
}

/// The provenance of one row a finding names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RowReport {
    /// Where its key came from.
    pub key_source: KeySource,
    /// The same in plain words.
    pub key_explained: &'static str,
    /// A connection for it is open (here or on its fleet gateway).
    pub live: bool,
    /// Active, Idle or Stale (docs/protocol.md §6).
    pub status: &'static str,
    /// Its `ts`, as the list shows it: how a page matches the row to a
    /// list entry, which carries no key.
    pub ts: Millis,
    /// Age of its `ts`, ms.
    pub age_ms: u64,
    /// The write that created it.
    pub created: Write,
    /// The last few writes, oldest first.
    pub writes: Vec<Write>,
    /// Indexes into `findings` of the findings naming this row.
    pub findings: Vec<usize>,
}

/// The cap and its use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_key: Option<String>,
    /// Its age, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_age_ms: Option<u64>,
}

/// The doctor's answer for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// When it was made, ms since the epoch.
    pub generated_at: Millis,
    /// The presence version it describes.
    pub version: u64,
    /// Rows, the gateway's own included.
    pub entries: usize,
    /// Findings per kind, all of them (the list may stop short).
    pub counts: BTreeMap<&'static str, usize>,
    /// The findings: duplicates, then stale, gone and cap pressure.
    pub findings: Vec<Finding>,
    /// Provenance of every row a listed finding names, by key.
    pub rows: BTreeMap<String, RowReport>,
    /// The cap.
    pub cap: CapReport,
}

impl Report {
    /// True when nothing was found.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}
