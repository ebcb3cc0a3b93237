//! The doctor: findings about a snapshot, in plain words, for the operator
//! debugging "duplicated or stale instance rows" (issue 12). Pure: it reads
//! one snapshot and a time, and never the store.
//!
//! Findings, each naming the rows it is about:
//! - `duplicate`: rows that describe one client under several keys, with
//!   the row lacking a stable id and what to change (see `duplicates.rs`);
//! - `stale-connected`: a row whose connection is open but whose client
//!   stopped sending the beacons it used to send: none for longer than
//!   `stale_after` (a client that never beacons is not stale);
//! - `gone`: a row kept after its disconnect, until the TTL removes it;
//! - `cap-pressure`: the cap evicted rows within the last TTL, or is
//!   nearly full.
//!
//! Invariants of a [`Report`]: every key a finding names is in `rows`, and
//! each row's `findings` lists exactly the findings naming it; at most
//! [`MAX_FINDINGS_PER_KIND`] findings of a kind are listed, `counts` has
//! them all.

use super::duplicates::{self, Group};
use super::entry::Millis;
use super::pressure::Pressure;
use super::provenance::{ConnTag, KeySource, WriteKind};
use super::report::{CapReport, Finding, FindingKind, MAX_KEYS_PER_FINDING, Report, RowReport};
use super::row::ParsedRow;
use super::snapshot::Snapshot;
use super::source::disconnect_reason;
use super::status::{ACTIVE_MAX_AGE, Status};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// Findings of one kind listed in a report; the count says how many more.
/// A dashboard marks rows, and a person reads the list: more than the
/// default cap of rows is more than either uses.
pub const MAX_FINDINGS_PER_KIND: usize = 500;

/// A cap this full counts as pressure before anything is evicted: the
/// next few new instances evict the oldest rows.
const NEARLY_FULL_PERCENT: usize = 90;

/// What the doctor may be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoctorConfig {
    /// A connected row not written for longer than this is
    /// `stale-connected`. Default: the Idle threshold (docs/protocol.md §6), the
    /// age at which the dashboard stops showing the row as Active.
    pub stale_after: Duration,
}

impl Default for DoctorConfig {
    fn default() -> Self {
        DoctorConfig {
            stale_after: ACTIVE_MAX_AGE,
        }
    }
}

/// Examines `snapshot` as of `now`.
pub fn diagnose(snapshot: &Snapshot, now: Millis, config: DoctorConfig) -> Report {
    // Gateways' own entries (this one's first, then other fleet
    // gateways') are never a client's finding, and the cap does not count
    // them: every pass below sees only the other rows.
    // Each row is parsed once here: the passes read many of its fields.
    let clients: Vec<ParsedRow<'_>> = snapshot
        .entries()
        .filter(|r| !r.pinned)
        .map(ParsedRow::new)
        .collect();
    let rows = clients.as_slice();
    let ttl_ms = snapshot.pressure().ttl_ms;
    let mut counts = BTreeMap::new();
    let mut findings = Vec::new();
    let mut add = |kind: FindingKind, found: Vec<Finding>| {
        counts.insert(kind.as_str().into(), found.len());
        findings.extend(found.into_iter().take(MAX_FINDINGS_PER_KIND));
    };
    let found = duplicates::find(rows);
    add(
        FindingKind::Duplicate,
        duplicate_findings(rows, &found.groups, now),
    );
    let elsewhere = &found.beacons_elsewhere;
    add(
        FindingKind::StaleConnected,
        stale(rows, elsewhere, now, config),
    );
    add(FindingKind::Gone, gone(rows, now, ttl_ms));
    add(FindingKind::NotOwner, not_owner(rows, now));
    let cap = cap_report(rows, snapshot.pressure(), now);
    add(
        FindingKind::CapPressure,
        cap_pressure(&cap).into_iter().collect(),
    );
    let rows = row_reports(rows, &findings, now);
    Report {
        generated_at: now,
        version: snapshot.version(),
        entries: snapshot.len(),
        counts,
        findings,
        rows,
        cap,
    }
}

fn age_ms(row: &ParsedRow<'_>, now: Millis) -> u64 {
    u64::try_from(now.saturating_sub(row.ts)).unwrap_or(0)
}

/// A duration as a person says it: `4m 18s`, `2h 5m`, `0s`.
pub fn human(ms: u64) -> String {
    let secs = ms / 1000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m"),
    }
}

/// The newest write a connection made, and that connection.
fn last_conn(row: &ParsedRow<'_>) -> Option<(ConnTag, WriteKind)> {
    row.origin
        .recent()
        .rev()
        .find_map(|w| Some((w.by.conn?, w.by.kind)))
}

/// The newest beacon among the row's remembered writes, if any.
fn last_beacon(row: &ParsedRow<'_>) -> Option<Millis> {
    row.origin
        .recent()
        .rev()
        .find(|w| w.by.kind == WriteKind::Beacon)
        .map(|w| w.at)
}

/// Connected rows whose client stopped sending the beacons it used to
/// send: the last one is older than `stale_after`. A live connection keeps
/// its row's `ts` fresh (docs/protocol.md §5.4), so what ages is the beacon,
/// not the row; a client that never beaconed is not stale. Left out: rows
/// whose connection beacons to another row (`elsewhere`: the duplicate
/// finding explains those).
fn stale(
    rows: &[ParsedRow<'_>],
    elsewhere: &HashSet<usize>,
    now: Millis,
    config: DoctorConfig,
) -> Vec<Finding> {
    let limit = u64::try_from(config.stale_after.as_millis()).unwrap_or(u64::MAX);
    let silent = |row: &ParsedRow<'_>| {
        last_beacon(row).map(|at| u64::try_from(now.saturating_sub(at)).unwrap_or(0))
    };
    let mut found: Vec<(u64, Finding)> = rows
        .iter()
        .enumerate()
        .filter(|&(i, row)| row.live && !elsewhere.contains(&i))
        // Another gateway's row carries no beacon history here, so whether
        // its client beacons to another row cannot be told: the gateway
        // holding the connection reports it.
        .filter(|(_, row)| row.origin.last().by.kind != WriteKind::Remote)
        .filter_map(|(_, row)| Some((row, silent(row).filter(|&age| age > limit)?)))
        .map(|(row, age)| {
            let conn = match last_conn(row) {
                Some((tag, _)) if tag.to_string() != row.key.as_str() => {
                    format!("its connection {tag}")
                }
                _ => "its connection".to_owned(),
            };
            let summary = format!(
                "`{key}` is connected but its last beacon was {age_h} ago: the client stopped \
                 sending the beacons it used to send. The row stays listed while {conn} is open, \
                 but what the beacons reported (last input, text) is {age_h} old.",
                key = row.key,
                age_h = human(age),
            );
            let fix = format!(
                "Make the client send a `system-event` beacon at least every {}, or close its \
                 connection when it stops.",
                human(limit)
            );
            (
                age,
                finding(FindingKind::StaleConnected, row, summary, Some(fix), age),
            )
        })
        .collect();
    // The longest silent first.
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found.into_iter().map(|(_, f)| f).collect()
}

/// True for the `reason` a close writes (`source::disconnect_reason`).
fn is_disconnect_reason(reason: Option<&str>) -> bool {
    reason.is_some_and(|r| [false, true].map(disconnect_reason).contains(&r))
}

fn gone(rows: &[ParsedRow<'_>], now: Millis, ttl_ms: u64) -> Vec<Finding> {
    // List order is newest first: the most recent disconnects lead.
    rows.iter()
        .filter(|row| !row.live && is_disconnect_reason(row.entry.reason.as_deref()))
        .map(|row| {
            let age = age_ms(row, now);
            let left = ttl_ms.saturating_sub(age);
            let by = match last_conn(row) {
                Some((tag, WriteKind::Disconnect)) if tag.to_string() != row.key.as_str() => {
                    format!(" (connection {tag})")
                }
                _ => String::new(),
            };
            let summary = format!(
                "`{key}` disconnected {ago} ago{by}; its row stays in the list, aging like any \
                 other, until the TTL removes it in {left_h}.",
                key = row.key,
                ago = human(age),
                left_h = human(left),
            );
            let mut f = finding(FindingKind::Gone, row, summary, None, age);
            f.removed_in_ms = Some(left);
            f
        })
        .collect()
}

/// The cap over the rows it counts (the same the store counts: not
/// gateways' own entries); the last in list order is the next to go.
fn cap_report(rows: &[ParsedRow<'_>], pressure: Pressure, now: Millis) -> CapReport {
    let oldest = rows.last();
    CapReport {
        entries: rows.len(),
        max_entries: pressure.max_entries,
        evicted_recent: pressure.evicted_recent,
        expired_recent: pressure.expired_recent,
        ttl_ms: pressure.ttl_ms,
        oldest_key: oldest.map(|row| row.key.to_string()),
        oldest_age_ms: oldest.map(|row| age_ms(row, now)),
    }
}

fn cap_pressure(cap: &CapReport) -> Option<Finding> {
    let nearly_full = cap.entries * 100 >= cap.max_entries * NEARLY_FULL_PERCENT;
    if cap.evicted_recent == 0 && !nearly_full {
        return None;
    }
    let key = cap.oldest_key.clone()?;
    let age = cap.oldest_age_ms.unwrap_or(0);
    let state = if cap.evicted_recent > 0 {
        format!(
            "The cap ({max}) evicted {n} row(s) in the last {ttl}: more instances report than \
             it holds, so rows vanish before the TTL.",
            max = cap.max_entries,
            n = cap.evicted_recent,
            ttl = human(cap.ttl_ms),
        )
    } else {
        format!(
            "{used} of {max} rows are in use: the next new instances evict the oldest rows.",
            used = cap.entries,
            max = cap.max_entries,
        )
    };
    let summary = format!("{state} Next to go: `{key}`, {} old.", human(age));
    let fix = format!(
        "Raise --max-entries above {} if this many instances are expected; look for duplicates \
         first, they fill the cap too.",
        cap.max_entries
    );
    Some(Finding {
        kind: FindingKind::CapPressure,
        keys: vec![key.clone()],
        more_keys: 0,
        key,
        summary,
        fix: Some(fix),
        age_ms: Some(age),
        removed_in_ms: None,
    })
}

/// Rows a connect could not write under the key it named, because another
/// principal holds that row (docs/protocol.md §5.1).
fn not_owner(rows: &[ParsedRow<'_>], now: Millis) -> Vec<Finding> {
    rows.iter()
        .filter(|row| row.origin.key_source() == KeySource::NotOwner)
        .map(|row| {
            let summary = format!(
                "its connect named a row that another client holds (a live connection with \
                 another token, or a proven device), so it is tracked under its connection id \
                 `{}` instead: a client may not write another's row",
                row.key
            );
            let fix = "connect with that row's token or device identity, or give this client \
                       an `instanceId` of its own"
                .to_owned();
            finding(
                FindingKind::NotOwner,
                row,
                summary,
                Some(fix),
                age_ms(row, now),
            )
        })
        .collect()
}

fn finding(
    kind: FindingKind,
    row: &ParsedRow<'_>,
    summary: String,
    fix: Option<String>,
    age: u64,
) -> Finding {
    Finding {
        kind,
        key: row.key.to_string(),
        keys: vec![row.key.to_string()],
        more_keys: 0,
        summary,
        fix,
        age_ms: Some(age),
        removed_in_ms: None,
    }
}

/// How a write reads in a sentence.
pub fn write_name(kind: WriteKind) -> &'static str {
    match kind {
        WriteKind::Connect => "connect",
        WriteKind::Beacon => "beacon",
        WriteKind::Disconnect => "disconnect",
        WriteKind::Remote => "fleet update",
        WriteKind::Lapse => "gateway lease lapsed",
        WriteKind::Restore => "restored at start",
        WriteKind::Start => "gateway start",
        WriteKind::Unknown => "a write of a newer kind",
    }
}

fn duplicate_findings(rows: &[ParsedRow<'_>], groups: &[Group], now: Millis) -> Vec<Finding> {
    groups
        .iter()
        .map(|group| {
            let suspect = &rows[group.suspect];
            let mut keys = vec![suspect.key.to_string()];
            keys.extend(
                group
                    .members
                    .iter()
                    .filter(|&&i| i != group.suspect)
                    .take(MAX_KEYS_PER_FINDING - 1)
                    .map(|&i| rows[i].key.to_string()),
            );
            Finding {
                kind: FindingKind::Duplicate,
                key: keys[0].clone(),
                more_keys: group.members.len() - keys.len(),
                keys,
                summary: group.summary.clone(),
                fix: Some(group.fix.clone()),
                age_ms: Some(age_ms(suspect, now)),
                removed_in_ms: None,
            }
        })
        .collect()
}

fn row_reports(
    rows: &[ParsedRow<'_>],
    findings: &[Finding],
    now: Millis,
) -> BTreeMap<String, RowReport> {
    // Only the rows findings name are looked up: one pass, no index of
    // every key.
    let mut named: HashMap<&str, Vec<usize>> = HashMap::new();
    for (index, finding) in findings.iter().enumerate() {
        for key in &finding.keys {
            named.entry(key.as_str()).or_default().push(index);
        }
    }
    let mut out = BTreeMap::new();
    for row in rows {
        let Some(indexes) = named.remove(row.key.as_str()) else {
            continue;
        };
        let source = row.origin.key_source();
        let report = RowReport {
            key_source: source,
            key_explained: source.explain().into(),
            live: row.live,
            status: Status::of(row.ts, now).as_str().into(),
            ts: row.ts,
            age_ms: age_ms(row, now),
            created: row.origin.created(),
            writes: row.origin.recent().collect(),
            findings: indexes,
        };
        out.insert(row.key.to_string(), report);
        if named.is_empty() {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::provenance::{ConnTag, KeySource};
    use crate::presence::source::{BeaconInput, ConnectInfo, beacon, connect};
    use crate::presence::{Entry, Store, StoreConfig};

    const T0: Millis = 1_000_000_000;

    fn store(max_entries: usize) -> Store {
        let me = Entry {
            instance_id: Some("gw-self".into()),
            host: Some("gw".into()),
            mode: Some("gateway".into()),
            text: "Gateway: gw".into(),
            ..Entry::default()
        };
        let config = StoreConfig {
            ttl: Duration::from_secs(300),
            max_entries,
        };
        Store::new(config, me)
    }

    fn info(conn: u64, instance_id: Option<&str>) -> ConnectInfo {
        ConnectInfo {
            conn_id: format!("conn-{conn}"),
            client_id: "openclaw-macos".into(),
            display_name: Some("Ada's Mac".into()),
            version: "2.0".into(),
            platform: "darwin".into(),
            mode: "ui".into(),
            role: "operator".into(),
            scopes: vec!["operator.admin".into()],
            instance_id: instance_id.map(str::to_owned),
            conn: Some(ConnTag::from_u128(u128::from(conn))),
            ..ConnectInfo::default()
        }
    }

    fn open(s: &mut Store, conn: u64, instance_id: Option<&str>, at: Millis) -> String {
        let (key, patch) = connect(info(conn, instance_id));
        s.connect(conn, key.clone(), patch, at);
        key.to_string()
    }

    fn close(s: &mut Store, conn: u64, key: &str, at: Millis) {
        let key = crate::presence::Key::parse(key).unwrap();
        s.disconnect(
            conn,
            key,
            false,
            Some(ConnTag::from_u128(u128::from(conn))),
            at,
        );
    }

    fn send_beacon(s: &mut Store, conn: u64, input: BeaconInput<'_>, at: Millis) -> String {
        let (key, mut patch) = beacon(&input, "gw");
        patch.by.conn = Some(ConnTag::from_u128(u128::from(conn)));
        s.upsert(key.clone(), patch, at);
        key.to_string()
    }

    fn report(s: &mut Store, now: Millis) -> Report {
        diagnose(&s.publish(now), now, DoctorConfig::default())
    }

    fn of_kind(r: &Report, kind: FindingKind) -> Vec<&Finding> {
        r.findings.iter().filter(|f| f.kind == kind).collect()
    }

    #[test]
    fn a_reconnect_without_instance_id_is_a_duplicate_of_its_old_row() {
        let mut s = store(10);
        let first = open(&mut s, 1, None, T0);
        close(&mut s, 1, &first, T0 + 1_000);
        let second = open(&mut s, 2, None, T0 + 2_000);
        let r = report(&mut s, T0 + 3_000);
        let dup = of_kind(&r, FindingKind::Duplicate);
        assert_eq!(dup.len(), 1, "{r:#?}");
        assert_eq!(dup[0].key, second, "the newest row without a stable id");
        assert_eq!(dup[0].keys, [second.clone(), first.clone()]);
        let fix = dup[0].fix.as_deref().unwrap();
        assert!(fix.contains("sends no `client.instanceId`"), "{fix}");
        assert!(dup[0].summary.contains("host \"Ada's Mac\""));
        assert_eq!(r.rows[&second].key_source, KeySource::ConnectionId);
        assert_eq!(
            r.rows[&first].writes.last().unwrap().by.kind,
            WriteKind::Disconnect
        );
    }

    #[test]
    fn beacons_with_another_instance_id_than_the_connect_are_named() {
        let mut s = store(10);
        let home = open(&mut s, 3, Some("Mac-1"), T0);
        let input = BeaconInput {
            text: "Node: ada (10.0.0.9) · app 2.0 · last input 1 s ago · mode ui · reason periodic",
            instance_id: Some("Mac-2"),
            ..BeaconInput::default()
        };
        let other = send_beacon(&mut s, 3, input, T0 + 1_000);
        let r = report(&mut s, T0 + 2_000);
        let dup = of_kind(&r, FindingKind::Duplicate);
        assert_eq!(dup.len(), 1, "{r:#?}");
        assert_eq!(dup[0].key, other);
        assert_eq!(dup[0].keys, [other, home]);
        let fix = dup[0].fix.as_deref().unwrap();
        assert!(
            fix.contains("beacons use `instanceId` Mac-2 while its connect used Mac-1"),
            "{fix}"
        );
    }

    #[test]
    fn beacons_with_an_id_the_connect_lacked_say_to_send_it_in_connect() {
        let mut s = store(10);
        open(&mut s, 4, None, T0);
        let input = BeaconInput {
            text: "periodic",
            instance_id: Some("mac-9"),
            ..BeaconInput::default()
        };
        send_beacon(&mut s, 4, input, T0 + 1_000);
        let r = report(&mut s, T0 + 2_000);
        let dup = of_kind(&r, FindingKind::Duplicate);
        assert_eq!(dup.len(), 1, "{r:#?}");
        assert_eq!(dup[0].key, "conn-4", "the row lacking a stable id");
        let fix = dup[0].fix.as_deref().unwrap();
        assert!(
            fix.contains("send `client.instanceId` mac-9 in `connect`"),
            "{fix}"
        );
    }

    #[test]
    fn stable_rows_on_one_host_are_distinct_instances() {
        let mut s = store(10);
        open(&mut s, 1, Some("a"), T0);
        open(&mut s, 2, Some("b"), T0);
        let r = report(&mut s, T0 + 1_000);
        assert!(r.is_clean(), "{r:#?}");
        assert_eq!(r.counts["duplicate"], 0);
    }

    #[test]
    fn rows_on_one_host_with_different_ips_stay_apart() {
        let mut s = store(10);
        for (conn, ip) in [(1, "10.0.0.1"), (2, "10.0.0.2")] {
            let mut i = info(conn, None);
            i.ip = Some(ip.into());
            let (key, patch) = connect(i);
            s.connect(conn, key, patch, T0);
        }
        let r = report(&mut s, T0 + 1_000);
        assert!(of_kind(&r, FindingKind::Duplicate).is_empty(), "{r:#?}");
    }

    #[test]
    fn a_connection_relaying_beacons_for_many_rows_links_none() {
        let mut s = store(10);
        open(&mut s, 5, Some("relay"), T0);
        for id in ["x", "y"] {
            let text = format!("beacon for {id}");
            let input = BeaconInput {
                text: &text,
                instance_id: Some(id),
                mode: Some(id),
                ..BeaconInput::default()
            };
            send_beacon(&mut s, 5, input, T0 + 1_000);
        }
        let r = report(&mut s, T0 + 2_000);
        assert!(of_kind(&r, FindingKind::Duplicate).is_empty(), "{r:#?}");
    }

    #[test]
    fn a_connected_row_nothing_wrote_for_long_is_stale_connected() {
        let mut s = store(10);
        let quiet = open(&mut s, 1, Some("quiet"), T0 - 5_000);
        let input = BeaconInput {
            text: "periodic",
            instance_id: Some("quiet"),
            ..BeaconInput::default()
        };
        send_beacon(&mut s, 1, input, T0);
        let closed = open(&mut s, 2, Some("closed"), T0);
        close(&mut s, 2, &closed, T0);
        let fresh = open(&mut s, 3, Some("fresh"), T0 + 200_000);
        let now = T0 + 200_500;
        let r = report(&mut s, now);
        let stale = of_kind(&r, FindingKind::StaleConnected);
        assert_eq!(stale.len(), 1, "{r:#?}");
        assert_eq!(stale[0].key, quiet);
        assert_eq!(stale[0].age_ms, Some(200_500));
        assert!(stale[0].summary.contains("stopped sending the beacons"));
        assert!(!r.rows.contains_key(&fresh));
        assert_eq!(r.rows[&quiet].status, "idle");
    }

    #[test]
    fn stale_after_is_the_doctors_to_set() {
        let mut s = store(10);
        open(&mut s, 1, Some("quiet"), T0);
        let input = BeaconInput {
            text: "once",
            instance_id: Some("quiet"),
            ..BeaconInput::default()
        };
        send_beacon(&mut s, 1, input, T0);
        let snapshot = s.publish(T0 + 2_000);
        let short = DoctorConfig {
            stale_after: Duration::from_secs(1),
        };
        assert_eq!(
            diagnose(&snapshot, T0 + 2_000, short).counts["stale-connected"],
            1
        );
        let default = diagnose(&snapshot, T0 + 2_000, DoctorConfig::default());
        assert_eq!(default.counts["stale-connected"], 0);
    }

    #[test]
    fn a_disconnected_row_is_gone_with_the_time_the_ttl_leaves_it() {
        let mut s = store(10);
        let key = open(&mut s, 1, Some("left"), T0);
        close(&mut s, 1, &key, T0 + 10_000);
        let r = report(&mut s, T0 + 40_000);
        let gone = of_kind(&r, FindingKind::Gone);
        assert_eq!(gone.len(), 1, "{r:#?}");
        assert_eq!(gone[0].removed_in_ms, Some(270_000));
        assert!(
            gone[0].summary.contains("disconnected 30s ago"),
            "{}",
            gone[0].summary
        );
        assert!(gone[0].summary.contains("in 4m 30s"));
    }

    #[test]
    fn evictions_in_the_last_ttl_are_cap_pressure() {
        let mut s = store(2);
        for (conn, id) in [(1, "a"), (2, "b"), (3, "c")] {
            open(&mut s, conn, Some(id), T0 + i64::from(conn as u8) * 1000);
        }
        let r = report(&mut s, T0 + 5_000);
        let cap = of_kind(&r, FindingKind::CapPressure);
        assert_eq!(cap.len(), 1, "{r:#?}");
        assert_eq!(r.cap.evicted_recent, 1);
        assert_eq!(cap[0].key, "b", "the oldest left goes next");
        assert!(cap[0].summary.contains("evicted 1 row(s)"));
        // Once the TTL has passed, the evictions are forgotten; 2 of 2 is
        // still nearly full.
        let later = report(&mut s, T0 + 5_000 + 320_000);
        assert_eq!(later.cap.evicted_recent, 0);
    }

    #[test]
    fn a_cap_with_room_is_no_finding() {
        let mut s = store(10);
        open(&mut s, 1, Some("a"), T0);
        let r = report(&mut s, T0 + 1_000);
        assert!(r.is_clean(), "{r:#?}");
        assert_eq!(r.cap.entries, 1);
        assert_eq!(r.cap.oldest_key.as_deref(), Some("a"));
    }

    #[test]
    fn every_named_row_has_its_provenance_and_findings() {
        let mut s = store(3);
        let first = open(&mut s, 1, None, T0);
        close(&mut s, 1, &first, T0 + 1_000);
        open(&mut s, 2, None, T0 + 2_000);
        open(&mut s, 3, Some("x"), T0 + 3_000);
        let r = report(&mut s, T0 + 4_000);
        assert!(!r.is_clean());
        for (index, finding) in r.findings.iter().enumerate() {
            assert_eq!(finding.keys[0], finding.key);
            for key in &finding.keys {
                assert!(r.rows[key].findings.contains(&index), "{key}");
            }
        }
        let named: usize = r.findings.iter().map(|f| f.keys.len()).sum();
        let indexed: usize = r.rows.values().map(|row| row.findings.len()).sum();
        assert_eq!(named, indexed);
    }

    #[test]
    fn a_connected_client_that_never_beaconed_is_not_stale() {
        let mut s = store(10);
        let mut i = info(1, Some("watcher"));
        i.scopes = vec!["operator.read".into()];
        let (key, patch) = connect(i);
        s.connect(1, key, patch, T0);
        // An admin client may beacon, but never did: not stale either.
        open(&mut s, 2, Some("admin"), T0);
        let r = report(&mut s, T0 + 200_000);
        assert_eq!(r.counts["stale-connected"], 0, "{r:#?}");
    }

    #[test]
    fn a_renewed_row_is_stale_from_its_last_beacon_not_its_ts() {
        let mut s = store(10);
        let key = open(&mut s, 1, Some("quiet"), T0);
        let input = BeaconInput {
            text: "once",
            instance_id: Some("quiet"),
            ..BeaconInput::default()
        };
        send_beacon(&mut s, 1, input, T0);
        assert_eq!(s.renew_live(T0 + 190_000, 0), 1);
        let r = report(&mut s, T0 + 200_000);
        let stale = of_kind(&r, FindingKind::StaleConnected);
        assert_eq!(stale.len(), 1, "{r:#?}");
        assert_eq!(stale[0].age_ms, Some(200_000));
        assert_eq!(r.rows[&key].status, "active", "the row itself is fresh");
    }

    #[test]
    fn a_connect_row_whose_beacons_land_elsewhere_is_a_duplicate_not_stale() {
        let mut s = store(10);
        open(&mut s, 3, Some("mac-1"), T0);
        let input = BeaconInput {
            text: "periodic",
            instance_id: Some("mac-2"),
            ..BeaconInput::default()
        };
        send_beacon(&mut s, 3, input, T0 + 190_000);
        let r = report(&mut s, T0 + 200_000);
        assert_eq!(r.counts["duplicate"], 1, "{r:#?}");
        assert_eq!(r.counts["stale-connected"], 0, "{r:#?}");
        let dup = of_kind(&r, FindingKind::Duplicate);
        assert!(
            dup[0]
                .summary
                .contains("one ui client on host \"Ada's Mac\""),
            "{}",
            dup[0].summary
        );
    }

    #[test]
    fn beacons_for_another_kind_of_client_are_a_relay_not_a_duplicate() {
        let mut s = store(10);
        open(&mut s, 5, Some("relay-1"), T0);
        let input = BeaconInput {
            text: "node a",
            instance_id: Some("inst-a"),
            mode: Some("node"),
            ..BeaconInput::default()
        };
        send_beacon(&mut s, 5, input, T0 + 1_000);
        let r = report(&mut s, T0 + 2_000);
        assert!(of_kind(&r, FindingKind::Duplicate).is_empty(), "{r:#?}");
    }

    #[test]
    fn a_device_id_connect_is_told_to_beacon_its_device_id() {
        let mut s = store(10);
        let mut i = info(6, Some("inst-p"));
        i.device_id = Some("dev-p".into());
        let (key, patch) = connect(i);
        s.connect(6, key, patch, T0);
        let input = BeaconInput {
            text: "periodic",
            instance_id: Some("inst-p"),
            ..BeaconInput::default()
        };
        send_beacon(&mut s, 6, input, T0 + 1_000);
        let r = report(&mut s, T0 + 2_000);
        let dup = of_kind(&r, FindingKind::Duplicate);
        assert_eq!(dup.len(), 1, "{r:#?}");
        let fix = dup[0].fix.as_deref().unwrap();
        assert!(
            fix.contains("send `deviceId` dev-p with every beacon"),
            "{fix}"
        );
    }

    #[test]
    fn rows_connected_at_once_are_not_called_one_client() {
        let mut s = store(10);
        open(&mut s, 1, None, T0);
        open(&mut s, 2, None, T0 + 1);
        let r = report(&mut s, T0 + 1_000);
        let dup = of_kind(&r, FindingKind::Duplicate);
        assert_eq!(dup.len(), 1, "{r:#?}");
        assert!(
            dup[0]
                .summary
                .contains("may be one client or several, 2 of them connected")
        );
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(999), "0s");
        assert_eq!(human(61_000), "1m 1s");
        assert_eq!(human(7_500_000), "2h 5m");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::presence::provenance::ConnTag;
    use crate::presence::source::{BeaconInput, ConnectInfo, beacon, connect};
    use crate::presence::{Entry, Key, Store, StoreConfig};
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[derive(Debug, Clone)]
    enum Op {
        /// Connection `conn` connects, with an instanceId from a small set
        /// or none, and one of a few display names.
        Connect { conn: u8, id: Option<u8>, name: u8 },
        /// Connection `conn` closes (if open).
        Close { conn: u8 },
        /// Connection `conn` beacons, with an instanceId or a `Node:` line.
        Beacon { conn: u8, id: Option<u8>, host: u8 },
        /// Time passes.
        Wait { secs: u16 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..6u8, proptest::option::of(0..4u8), 0..3u8)
                .prop_map(|(conn, id, name)| Op::Connect { conn, id, name }),
            (0..6u8).prop_map(|conn| Op::Close { conn }),
            (0..6u8, proptest::option::of(0..4u8), 0..3u8)
                .prop_map(|(conn, id, host)| Op::Beacon { conn, id, host }),
            (0..200u16).prop_map(|secs| Op::Wait { secs }),
        ]
    }

    fn run(ops: &[Op], cap: usize) -> (Snapshot, Millis) {
        let me = Entry {
            instance_id: Some("gw-self".into()),
            host: Some("host-0".into()),
            mode: Some("gateway".into()),
            text: "Gateway: host-0".into(),
            ..Entry::default()
        };
        let config = StoreConfig {
            ttl: Duration::from_secs(300),
            max_entries: cap,
        };
        let mut s = Store::new(config, me);
        let mut now: Millis = 1_000_000_000;
        // conn -> (generation, key) of its open connection.
        let mut open: HashMap<u8, (u64, Key)> = HashMap::new();
        let mut generation = 0u64;
        for op in ops {
            now += 7;
            match *op {
                Op::Connect { conn, id, name } if !open.contains_key(&conn) => {
                    generation += 1;
                    let tag = (u128::from(conn) << 64) | u128::from(generation);
                    let info = ConnectInfo {
                        conn_id: format!("conn-{conn}-{generation}"),
                        client_id: "app".into(),
                        display_name: Some(format!("host-{name}")),
                        mode: "ui".into(),
                        role: "operator".into(),
                        scopes: vec!["operator.admin".into()],
                        instance_id: id.map(|i| format!("inst-{i}")),
                        conn: Some(ConnTag::from_u128(tag)),
                        ..ConnectInfo::default()
                    };
                    let (key, patch) = connect(info);
                    s.connect(generation, key.clone(), patch, now);
                    open.insert(conn, (generation, key));
                }
                Op::Close { conn } => {
                    if let Some((generation, key)) = open.remove(&conn) {
                        let tag = (u128::from(conn) << 64) | u128::from(generation);
                        s.disconnect(generation, key, false, Some(ConnTag::from_u128(tag)), now);
                    }
                }
                Op::Beacon { conn, id, host } => {
                    let Some(&(generation, _)) = open.get(&conn) else {
                        continue;
                    };
                    let text = format!(
                        "Node: host-{host} (10.0.0.{host}) · app 1 · last input 1 s ago · mode ui · reason periodic"
                    );
                    let instance_id = id.map(|i| format!("inst-{i}"));
                    let input = BeaconInput {
                        text: &text,
                        instance_id: instance_id.as_deref(),
                        ..BeaconInput::default()
                    };
                    let (key, mut patch) = beacon(&input, "gw");
                    let tag = (u128::from(conn) << 64) | u128::from(generation);
                    patch.by.conn = Some(ConnTag::from_u128(tag));
                    s.upsert(key, patch, now);
                }
                Op::Wait { secs } => now += Millis::from(secs) * 1000,
                Op::Connect { .. } => {}
            }
            s.expire(now);
        }
        (s.publish(now), now)
    }

    proptest! {
        #[test]
        fn reports_are_consistent_whatever_happened(
            ops in proptest::collection::vec(op(), 0..60),
            cap in 2..12usize,
            stale_secs in 1..200u64,
        ) {
            let (snapshot, now) = run(&ops, cap);
            let config = DoctorConfig { stale_after: Duration::from_secs(stale_secs) };
            let r = diagnose(&snapshot, now, config);
            prop_assert_eq!(&r, &diagnose(&snapshot, now, config), "deterministic");
            let live: HashMap<&str, bool> = snapshot.entries()
                .map(|row| (row.key.as_str(), row.live)).collect();
            let self_key = snapshot.own().key.as_str();
            let mut in_duplicates = HashSet::new();
            for (index, f) in r.findings.iter().enumerate() {
                prop_assert_eq!(&f.keys[0], &f.key);
                for key in &f.keys {
                    prop_assert!(key != self_key, "the self entry is never a finding");
                    prop_assert!(live.contains_key(key.as_str()), "{} is listed", key);
                    prop_assert!(r.rows[key].findings.contains(&index));
                    if f.kind == FindingKind::Duplicate {
                        prop_assert!(in_duplicates.insert(key.clone()), "{} in one group", key);
                    }
                }
                match f.kind {
                    FindingKind::StaleConnected => prop_assert!(live[f.key.as_str()]),
                    FindingKind::Gone => prop_assert!(!live[f.key.as_str()]),
                    FindingKind::Duplicate => prop_assert!(f.keys.len() >= 2),
                    FindingKind::CapPressure => {}
                    FindingKind::NotOwner => {}
                    FindingKind::Unknown => prop_assert!(false, "the doctor never makes Unknown"),
                }
            }
            let named: usize = r.findings.iter().map(|f| f.keys.len()).sum();
            let indexed: usize = r.rows.values().map(|row| row.findings.len()).sum();
            prop_assert_eq!(named, indexed);
            for kind in FindingKind::ALL {
                let listed = r.findings.iter().filter(|f| f.kind == kind).count();
                prop_assert!(r.counts[kind.as_str()] >= listed);
            }
            prop_assert_eq!(r.is_clean(), r.counts.values().all(|&n| n == 0));
        }
    }
}
