//! The doctor's report as `rollcall doctor` reads it, and the text it
//! shows a person: a verdict line, the findings grouped by kind, the
//! provenance of every row they name, and the cap.
//!
//! Invariant: these types require only the fields the text uses, so a newer
//! gateway's extra fields or finding kinds still read and render.

use crate::presence::{self, WriteKind, human};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Text is wrapped to this many columns.
const WIDTH: usize = 100;

/// The doctor's report, as far as this client reads it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// When the gateway made it, ms since the epoch.
    pub generated_at: i64,
    /// The presence version it describes.
    pub version: u64,
    /// Rows, the gateway's own included.
    pub entries: u64,
    /// Findings per kind, all of them (the list may stop short).
    #[serde(default)]
    pub counts: BTreeMap<String, u64>,
    /// The findings listed.
    pub findings: Vec<Finding>,
    /// Provenance of every row a finding names.
    #[serde(default)]
    pub rows: BTreeMap<String, Row>,
    /// The cap and its use.
    pub cap: Cap,
}

/// One finding.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// `duplicate`, `stale-connected`, `gone`, `cap-pressure`, or a newer kind.
    pub kind: String,
    /// The row it is about.
    pub key: String,
    /// The rows involved, `key` first (the gateway lists at most 20).
    #[serde(default)]
    pub keys: Vec<String>,
    /// Rows involved beyond `keys`.
    #[serde(default)]
    pub more_keys: usize,
    /// What is wrong.
    pub summary: String,
    /// What to change.
    #[serde(default)]
    pub fix: Option<String>,
    /// Age of `key`'s row, ms.
    #[serde(default)]
    pub age_ms: Option<u64>,
    /// Time until the TTL removes `key`'s row, ms.
    #[serde(default)]
    pub removed_in_ms: Option<u64>,
}

/// A named row's provenance.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// Where its key came from, in plain words.
    pub key_explained: String,
    /// A connection for it is open.
    pub live: bool,
    /// `active`, `idle` or `stale`.
    pub status: String,
    /// Age, ms.
    pub age_ms: u64,
    /// The write that created it.
    pub created: Write,
    /// The last few writes, oldest first.
    #[serde(default)]
    pub writes: Vec<Write>,
}

/// One recorded write.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Write {
    /// `connect`, `beacon`, `disconnect`, …
    pub kind: String,
    /// The connection's `connId`, when a connection wrote.
    #[serde(default)]
    pub conn: Option<String>,
    /// When, ms since the epoch.
    pub at: i64,
}

/// The cap and its use.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cap {
    /// Rows besides the gateway's own.
    pub entries: u64,
    /// `--max-entries`.
    pub max_entries: u64,
    /// Rows the cap evicted within the last TTL.
    pub evicted_recent: u64,
    /// Rows the TTL removed within the last TTL.
    pub expired_recent: u64,
    /// The TTL, ms.
    pub ttl_ms: u64,
    /// The next row the cap would evict.
    #[serde(default)]
    pub oldest_key: Option<String>,
    /// Its age, ms.
    #[serde(default)]
    pub oldest_age_ms: Option<u64>,
}

impl Report {
    /// Findings of every kind, those the list left out included.
    pub fn total(&self) -> u64 {
        let counted: u64 = self.counts.values().sum();
        counted.max(self.findings.len() as u64)
    }
}

/// Known kinds in report order, with what each means.
const KINDS: [(&str, &str); 4] = [
    ("duplicate", "several rows for one client"),
    (
        "stale-connected",
        "connected, but nothing wrote the row lately",
    ),
    (
        "gone",
        "disconnected; the row stays until the TTL removes it",
    ),
    ("cap-pressure", "the row cap evicts rows, or is about to"),
];

/// The report as text for a person: a verdict line, the findings by kind,
/// the provenance of each row they name, and the cap.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let total = report.total();
    if total == 0 {
        let _ = writeln!(
            out,
            "rollcall doctor: all good, no findings in {} rows (presence version {}): no \
             duplicates, no stale or gone rows, and the cap has room.",
            report.entries, report.version
        );
        out.push_str(&cap_line(&report.cap));
        return out;
    }
    let _ = writeln!(
        out,
        "rollcall doctor: {total} finding{} in {} rows, presence version {}",
        if total == 1 { "" } else { "s" },
        report.entries,
        report.version
    );
    let mut kinds: Vec<(&str, &str)> = KINDS.to_vec();
    for finding in &report.findings {
        if !kinds.iter().any(|(k, _)| *k == finding.kind) {
            kinds.push((finding.kind.as_str(), "reported by a newer gateway"));
        }
    }
    for (kind, meaning) in kinds {
        render_kind(&mut out, report, kind, meaning);
    }
    render_rows(&mut out, report);
    out.push('\n');
    out.push_str(&cap_line(&report.cap));
    out
}

fn render_kind(out: &mut String, report: &Report, kind: &str, meaning: &str) {
    let listed: Vec<&Finding> = report.findings.iter().filter(|f| f.kind == kind).collect();
    let count = report
        .counts
        .get(kind)
        .copied()
        .unwrap_or(0)
        .max(listed.len() as u64);
    if count == 0 {
        return;
    }
    let shown = if (listed.len() as u64) < count {
        format!(", {} listed", listed.len())
    } else {
        String::new()
    };
    let _ = writeln!(out, "\n{kind} ({count}{shown}): {meaning}");
    for finding in listed {
        let mut head = format!("`{}`", finding.key);
        let mut others: Vec<String> = finding
            .keys
            .iter()
            .filter(|k| **k != finding.key)
            .map(|k| format!("`{k}`"))
            .collect();
        if finding.more_keys > 0 {
            others.push(format!("and {} more", finding.more_keys));
        }
        if !others.is_empty() {
            let _ = write!(head, " (with {})", others.join(", "));
        }
        if let Some(age) = finding.age_ms {
            let _ = write!(head, ", {} old", human(age));
        }
        if let Some(left) = finding.removed_in_ms {
            let _ = write!(head, ", removed in {}", human(left));
        }
        let _ = writeln!(out, "  - {head}");
        wrap(out, &finding.summary, "    ", "    ");
        if let Some(fix) = &finding.fix {
            wrap(out, &format!("fix: {fix}"), "    ", "         ");
        }
    }
}

/// A write's kind as it reads in a sentence (`presence::write_name`); a
/// kind this build does not know, from a newer gateway, as it is.
fn write_name(kind: &str) -> &str {
    use serde::de::IntoDeserializer;
    let parsed: Result<WriteKind, serde::de::value::Error> =
        WriteKind::deserialize(kind.to_owned().into_deserializer());
    parsed.map_or(kind, |k| presence::write_name(k))
}

fn write_line(write: &Write, now: i64) -> String {
    let ago = u64::try_from(now.saturating_sub(write.at)).unwrap_or(0);
    let mut line = format!("{} {} ago", write_name(&write.kind), human(ago));
    if let Some(conn) = &write.conn {
        let _ = write!(line, ", connection {conn}");
    }
    line
}

fn render_rows(out: &mut String, report: &Report) {
    if report.rows.is_empty() {
        return;
    }
    out.push_str("\nrows named above (provenance):\n");
    for (key, row) in &report.rows {
        let state = match row.writes.last() {
            _ if row.live => "connected",
            Some(last) if last.kind == "disconnect" => "disconnected",
            // Written by beacons or another gateway: no connection of its own.
            _ => "no open connection",
        };
        let _ = writeln!(
            out,
            "  `{key}`: {state}, {}, {} old",
            row.status,
            human(row.age_ms),
        );
        wrap(
            out,
            &format!("key from {}", row.key_explained),
            "    ",
            "      ",
        );
        if !row.writes.contains(&row.created) {
            let line = write_line(&row.created, report.generated_at);
            let _ = writeln!(out, "    created: {line}");
        }
        let _ = writeln!(out, "    last writes, oldest first:");
        for write in &row.writes {
            let _ = writeln!(out, "      {}", write_line(write, report.generated_at));
        }
    }
}

/// One line on the cap: how full, what it and the TTL removed lately, and
/// which row goes next.
fn cap_line(cap: &Cap) -> String {
    let mut line = format!(
        "cap: {} of {} rows in use; in the last {} the cap evicted {} and the TTL expired {}",
        cap.entries,
        cap.max_entries,
        human(cap.ttl_ms),
        cap.evicted_recent,
        cap.expired_recent,
    );
    if let Some(key) = &cap.oldest_key {
        let _ = write!(line, "; oldest `{key}`");
        if let Some(age) = cap.oldest_age_ms {
            let _ = write!(line, ", {} old", human(age));
        }
    }
    line.push('\n');
    line
}

/// Appends `text` wrapped at [`WIDTH`] columns on word boundaries, the
/// first line indented by `first`, the others by `rest`.
fn wrap(out: &mut String, text: &str, first: &str, rest: &str) {
    let mut line = String::from(first);
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.chars().count() + 1 + word.chars().count() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = String::from(rest);
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(&line);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_000_000;

    #[test]
    fn write_kinds_read_as_the_gateway_names_them() {
        assert_eq!(write_name("lapse"), "gateway lease lapsed");
        assert_eq!(write_name("connect"), "connect");
        assert_eq!(write_name("from-a-newer-gateway"), "from-a-newer-gateway");
    }

    fn sample() -> Report {
        let body = json!({
            "generatedAt": NOW, "version": 42, "entries": 3,
            "counts": {"duplicate": 1, "stale-connected": 0, "gone": 1, "cap-pressure": 0},
            "findings": [
                {"kind": "duplicate", "key": "new", "keys": ["new", "old"],
                 "summary": "2 rows look like one ui client.", "fix": "Send a stable id.",
                 "ageMs": 1000},
                {"kind": "gone", "key": "old", "keys": ["old"], "summary": "`old` left.",
                 "ageMs": 30_000, "removedInMs": 270_000},
            ],
            "rows": {
                "new": {"keySource": "connection-id", "keyExplained": "the connection id",
                        "live": true, "status": "active", "ageMs": 1000,
                        "created": {"kind": "connect", "conn": "c-2", "source": "connection-id", "at": NOW - 1000},
                        "writes": [{"kind": "connect", "conn": "c-2", "source": "connection-id", "at": NOW - 1000}],
                        "findings": [0]},
                "old": {"keySource": "connection-id", "keyExplained": "the connection id",
                        "live": false, "status": "active", "ageMs": 30_000,
                        "created": {"kind": "connect", "conn": "c-1", "source": "connection-id", "at": NOW - 60_000},
                        "writes": [{"kind": "disconnect", "conn": "c-1", "source": "connection-id", "at": NOW - 30_000}],
                        "findings": [0, 1]},
            },
            "cap": {"entries": 2, "maxEntries": 200, "evictedRecent": 0, "expiredRecent": 0,
                    "ttlMs": 300_000, "oldestKey": "old", "oldestAgeMs": 30_000},
            "someFutureField": true,
        });
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn findings_render_by_kind_with_rows_and_cap() {
        let text = render(&sample());
        assert!(
            text.starts_with("rollcall doctor: 2 findings in 3 rows, presence version 42\n"),
            "{text}"
        );
        assert!(text.contains("\nduplicate (1): "), "{text}");
        assert!(text.contains("  - `new` (with `old`), 1s old\n"), "{text}");
        let mut more = sample();
        more.findings[0].more_keys = 3;
        more.findings[0].keys[1] = "old".into();
        assert!(render(&more).contains("  - `new` (with `old`, and 3 more), 1s old\n"));
        assert!(text.contains("    fix: Send a stable id.\n"), "{text}");
        assert!(
            text.contains("  - `old`, 30s old, removed in 4m 30s\n"),
            "{text}"
        );
        assert!(!text.contains("stale-connected ("), "{text}");
        assert!(
            text.contains("      disconnect 30s ago, connection c-1\n"),
            "{text}"
        );
        // A creating write that fell out of the recent ones is still shown.
        assert!(text.contains("    created: connect 1m 0s ago, connection c-1\n"));
        assert!(text.ends_with("; oldest `old`, 30s old\n"), "{text}");
    }

    #[test]
    fn a_clean_report_is_one_verdict_and_the_cap() {
        let mut report = sample();
        report.findings.clear();
        report.counts.values_mut().for_each(|c| *c = 0);
        report.rows.clear();
        let text = render(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("rollcall doctor: all good, no findings"));
        assert!(lines[1].starts_with("cap: 2 of 200 rows in use"));
        assert_eq!(report.total(), 0);
    }

    #[test]
    fn unlisted_findings_still_count() {
        let mut report = sample();
        report.counts.insert("gone".into(), 1500);
        report.counts.insert("something-new".into(), 0);
        assert_eq!(report.total(), 1501);
        assert!(render(&report).contains("\ngone (1500, 1 listed): "));
    }

    #[test]
    fn long_text_wraps_on_words() {
        let mut out = String::new();
        wrap(&mut out, &"word ".repeat(40), "  ", "    ");
        for line in out.lines() {
            assert!(line.len() <= WIDTH, "{line}");
        }
        assert!(out.lines().nth(1).unwrap().starts_with("    word"));
    }
}
