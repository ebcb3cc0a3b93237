//! The doctor's report as `rollcall doctor` shows it to a person: a verdict
//! line, the findings grouped by kind, the provenance of every row they
//! name, and the cap. The report is [`presence::Report`], the type the
//! gateway serializes; kinds a newer gateway adds read as `Unknown` and
//! are shown under their own heading.

use crate::presence::{self, CapReport, Finding, FindingKind, Report, Write, WriteKind, human};
use std::fmt::Write as _;

/// Text is wrapped to this many columns.
const WIDTH: usize = 100;

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
    for kind in FindingKind::ALL.into_iter().chain([FindingKind::Unknown]) {
        render_kind(&mut out, report, kind);
    }
    render_rows(&mut out, report);
    out.push('\n');
    out.push_str(&cap_line(&report.cap));
    out
}

fn render_kind(out: &mut String, report: &Report, kind: FindingKind) {
    let listed: Vec<&Finding> = report.listed(kind).collect();
    let count = report.count(kind);
    if count == 0 {
        return;
    }
    let shown = if listed.len() < count {
        format!(", {} listed", listed.len())
    } else {
        String::new()
    };
    let (name, meaning) = (kind.as_str(), kind.meaning());
    let _ = writeln!(out, "\n{name} ({count}{shown}): {meaning}");
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

fn write_line(write: &Write, now: i64) -> String {
    let ago = u64::try_from(now.saturating_sub(write.at)).unwrap_or(0);
    let mut line = format!("{} {} ago", presence::write_name(write.by.kind), human(ago));
    if let Some(conn) = &write.by.conn {
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
            Some(last) if last.by.kind == WriteKind::Disconnect => "disconnected",
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
fn cap_line(cap: &CapReport) -> String {
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

    const C1: &str = "00000000-0000-0000-0000-0000000000c1";
    const C2: &str = "00000000-0000-0000-0000-0000000000c2";

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
                        "live": true, "status": "active", "ts": NOW - 1000, "ageMs": 1000,
                        "created": {"kind": "connect", "conn": C2, "source": "connection-id", "at": NOW - 1000},
                        "writes": [{"kind": "connect", "conn": C2, "source": "connection-id", "at": NOW - 1000}],
                        "findings": [0]},
                "old": {"keySource": "connection-id", "keyExplained": "the connection id",
                        "live": false, "status": "active", "ts": NOW - 30_000, "ageMs": 30_000,
                        "created": {"kind": "connect", "conn": C1, "source": "connection-id", "at": NOW - 60_000},
                        "writes": [{"kind": "disconnect", "conn": C1, "source": "connection-id", "at": NOW - 30_000}],
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
            text.contains(&format!("      disconnect 30s ago, connection {C1}\n")),
            "{text}"
        );
        // A creating write that fell out of the recent ones is still shown.
        assert!(text.contains(&format!(
            "    created: connect 1m 0s ago, connection {C1}\n"
        )));
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
    fn a_newer_gateways_kinds_show_under_their_own_heading() {
        let mut body = serde_json::to_value(sample()).unwrap();
        body["findings"][1]["kind"] = json!("flapping");
        body["counts"]["flapping"] = json!(1);
        body["counts"]["gone"] = json!(0);
        body["rows"]["old"]["writes"][0]["kind"] = json!("teleport");
        let report: Report = serde_json::from_value(body).unwrap();
        let text = render(&report);
        assert!(
            text.contains(&format!(
                "\nunknown (1): {}\n",
                FindingKind::Unknown.meaning()
            )),
            "{text}"
        );
        assert!(
            text.contains("  - `old`, 30s old, removed in 4m 30s\n"),
            "{text}"
        );
        assert!(!text.contains("\ngone ("), "{text}");
        assert!(
            text.contains("      a write of a newer kind 30s ago"),
            "{text}"
        );
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
