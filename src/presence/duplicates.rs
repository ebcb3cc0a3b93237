//! Likely duplicates: rows that describe one client under several keys,
//! and which of them lacks a stable id (issue 12).
//!
//! Two rows are linked when
//! - one connection's `connect` wrote one row and its beacons another (the
//!   beacons carry another `instanceId`, or none), as the rows' provenance
//!   shows; or
//! - they have the same mode and host and no two different ips; or
//! - they have the same mode and ip, and one of them is keyed by a beacon's
//!   text (the ip is one a client reported).
//!
//! Linked rows form groups; a group is a finding only when one of its rows
//! is weakly keyed (a connection id, or something parsed from a beacon's
//! text) or written by beacons of another row's connection. Rows that all
//! carry stable ids are distinct instances, even on one host.
//!
//! Cost: O(rows) hashing, whatever the groups look like.

use super::entry::Millis;
use super::provenance::{ConnTag, KeySource, WriteKind};
use super::row::ParsedRow;
use std::collections::{HashMap, HashSet};

/// One finding's worth of rows, by index into the rows given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Every row of the group, in list order.
    pub members: Vec<usize>,
    /// The row lacking a stable id (or, failing that, written by another
    /// row's connection).
    pub suspect: usize,
    /// What the rows are, in plain words.
    pub summary: String,
    /// What to change.
    pub fix: String,
}

/// Why a row is suspect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// Keyed by its connection id: the connect sent no stable id.
    NoConnectId,
    /// Keyed by its connection id: its connect named a row another
    /// principal holds (§5.1).
    NotOwner,
    /// Written by beacons of the connection whose connect wrote `connect`.
    BeaconElsewhere { conn: ConnTag, connect: usize },
    /// Keyed by a beacon's text: the beacons sent no id.
    BeaconWithoutId,
    /// No provenance here, and no `instanceId` or `deviceId` either.
    NoStableId,
}

/// What the grouping found.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// The groups that are findings, newest suspect first.
    pub groups: Vec<Group>,
    /// Rows a connect wrote whose connection beacons to another row: they
    /// look silent because the beacons land elsewhere.
    pub beacons_elsewhere: HashSet<usize>,
}

/// The groups among `rows` (the self entry excluded).
pub fn find(rows: &[ParsedRow<'_>]) -> Found {
    let mut sets = DisjointSets::new(rows.len());
    let relayed = link_by_connection(rows, &mut sets);
    link_by_host(rows, &mut sets);
    link_by_reported_ip(rows, &mut sets);
    // Most rows are alone: only groups of two or more get a list.
    let roots: Vec<usize> = (0..rows.len()).map(|i| sets.find(i)).collect();
    let mut size = vec![0u32; rows.len()];
    for &root in &roots {
        size[root] += 1;
    }
    let mut members: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, &root) in roots.iter().enumerate().filter(|&(_, &r)| size[r] > 1) {
        members.entry(root).or_default().push(i);
    }
    let mut found: Vec<Group> = members
        .into_values()
        .filter_map(|m| describe(rows, m, &relayed))
        .collect();
    // Newest suspect first, like the list.
    found.sort_by_key(|g| g.suspect);
    Found {
        groups: found,
        beacons_elsewhere: relayed.values().map(|&(_, connect)| connect).collect(),
    }
}

fn cause(
    rows: &[ParsedRow<'_>],
    i: usize,
    relayed: &HashMap<usize, (ConnTag, usize)>,
) -> Option<Cause> {
    let source = rows[i].origin.key_source();
    match source {
        KeySource::ConnectionId => Some(Cause::NoConnectId),
        KeySource::NotOwner => Some(Cause::NotOwner),
        _ if relayed.contains_key(&i) => {
            let (conn, connect) = relayed[&i];
            Some(Cause::BeaconElsewhere { conn, connect })
        }
        s if s.is_weak() => Some(Cause::BeaconWithoutId),
        KeySource::Unknown | KeySource::Elsewhere => {
            let entry = &rows[i].entry;
            (entry.instance_id.is_none() && entry.device_id.is_none()).then_some(Cause::NoStableId)
        }
        _ => None,
    }
}

/// Links each row written by a connection's beacons to the row its
/// connect wrote, when those beacons wrote exactly one other row: a
/// connection whose beacons write many rows relays for others. Returns
/// the beacon rows, with the connection and its connect row.
fn link_by_connection(
    rows: &[ParsedRow<'_>],
    sets: &mut DisjointSets,
) -> HashMap<usize, (ConnTag, usize)> {
    let mut connect_of: HashMap<ConnTag, usize> = HashMap::new();
    // The rows a connection's beacons wrote: one, or "several".
    let mut beacons_of: HashMap<ConnTag, Targets> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        let created = std::iter::once(row.origin.created());
        for write in created.chain(row.origin.recent()) {
            let Some(conn) = write.by.conn else { continue };
            match write.by.kind {
                WriteKind::Connect => {
                    connect_of.insert(conn, i);
                }
                WriteKind::Beacon => {
                    let targets = beacons_of.entry(conn).or_insert(Targets::One(i, write.at));
                    match targets {
                        Targets::One(row, at) if *row == i => *at = (*at).max(write.at),
                        _ => *targets = Targets::Several,
                    }
                }
                _ => {}
            }
        }
    }
    // A row several connections beaconed is explained by the newest of
    // them (ties: the larger id), whatever order the map yields them in.
    let mut relayed: HashMap<usize, (ConnTag, usize)> = HashMap::new();
    let mut newest: HashMap<usize, (Millis, ConnTag)> = HashMap::new();
    for (conn, targets) in beacons_of {
        let Some(&connect) = connect_of.get(&conn) else {
            continue;
        };
        // A connection beaconing its own row and one other relays for
        // others as much as one beaconing two others: only a single
        // target that is not its own row links, and only when it does not
        // report another kind of client (a `ui` app beaconing for a node).
        if let Targets::One(beacon, at) = targets {
            let modes = (mode_of(&rows[beacon]), mode_of(&rows[connect]));
            let other_kind = matches!(modes, (Some(a), Some(b)) if !same(Some(a), Some(b)));
            if beacon != connect && !other_kind {
                sets.union(beacon, connect);
                if newest.get(&beacon).is_none_or(|&seen| (at, conn) > seen) {
                    newest.insert(beacon, (at, conn));
                    relayed.insert(beacon, (conn, connect));
                }
            }
        }
    }
    relayed
}

/// The rows one connection's beacons wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Targets {
    /// One row, last beaconed at this time.
    One(usize, Millis),
    Several,
}

/// `text` as keys compare it: trimmed, lowercased; no allocation.
fn folded(text: &str) -> impl Iterator<Item = char> + '_ {
    text.trim().chars().flat_map(char::to_lowercase)
}

fn same(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => folded(a).eq(folded(b)),
        (None, None) => true,
        _ => false,
    }
}

/// A field of a parsed row, for [`runs`] and the descriptions.
type Field = for<'r> fn(&'r ParsedRow<'r>) -> Option<&'r str>;

fn mode_of<'r>(row: &'r ParsedRow<'r>) -> Option<&'r str> {
    row.entry.mode.as_deref()
}

/// Runs of rows sharing `field` (folded) and mode, two rows or more each.
/// Sorting hashes instead of filling a map of owned strings keeps a
/// 100k-row diagnosis to one allocation per pass; rows whose hashes
/// collide but whose values differ are left out of the run.
fn runs(rows: &[ParsedRow<'_>], field: Field) -> Vec<Vec<usize>> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hashed: Vec<(u64, usize)> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, row)| {
            let value = field(row).filter(|v| !v.trim().is_empty())?;
            let mut h = DefaultHasher::new();
            folded(value).for_each(|c| c.hash(&mut h));
            0xffu8.hash(&mut h);
            folded(mode_of(row).unwrap_or("")).for_each(|c| c.hash(&mut h));
            Some((h.finish(), i))
        })
        .collect();
    hashed.sort_unstable();
    hashed
        .chunk_by(|a, b| a.0 == b.0)
        .filter(|run| run.len() > 1)
        .map(|run| {
            let first = &rows[run[0].1];
            run.iter()
                .map(|&(_, i)| i)
                .filter(|&i| {
                    same(field(&rows[i]), field(first)) && same(mode_of(&rows[i]), mode_of(first))
                })
                .collect::<Vec<usize>>()
        })
        .filter(|run| run.len() > 1)
        .collect()
}

/// Same mode and host; rows with different ips stay apart, and rows
/// without one join the only ip the others have.
fn link_by_host(rows: &[ParsedRow<'_>], sets: &mut DisjointSets) {
    for bucket in runs(rows, |row| row.entry.host.as_deref()) {
        let mut by_ip: HashMap<&str, usize> = HashMap::new();
        let mut without_ip: Option<usize> = None;
        for &i in &bucket {
            match rows[i].entry.ip.as_deref() {
                Some(ip) => {
                    let first = *by_ip.entry(ip).or_insert(i);
                    sets.union(first, i);
                }
                None => {
                    let first = *without_ip.get_or_insert(i);
                    sets.union(first, i);
                }
            }
        }
        if let (Some(i), [only]) = (without_ip, &by_ip.values().copied().collect::<Vec<_>>()[..]) {
            sets.union(i, *only);
        }
    }
}

/// Same mode and ip, when one of the rows is keyed by a beacon's text.
fn link_by_reported_ip(rows: &[ParsedRow<'_>], sets: &mut DisjointSets) {
    for bucket in runs(rows, |row| row.entry.ip.as_deref()) {
        let reported = bucket.iter().copied().find(|&i| {
            matches!(
                rows[i].origin.key_source(),
                KeySource::TextHost | KeySource::TextIp | KeySource::Text
            )
        });
        if let Some(r) = reported {
            for &i in &bucket {
                sets.union(r, i);
            }
        }
    }
}

/// The finding for one group, if a row of it is suspect.
fn describe(
    rows: &[ParsedRow<'_>],
    mut members: Vec<usize>,
    relayed: &HashMap<usize, (ConnTag, usize)>,
) -> Option<Group> {
    members.sort_unstable();
    let causes: Vec<(usize, Cause)> = members
        .iter()
        .filter_map(|&i| Some((i, cause(rows, i, relayed)?)))
        .collect();
    // The row lacking a stable id comes first; a beacon row with a stable
    // id of its own only when no row lacks one.
    let rank = |c: &Cause| match c {
        Cause::NoConnectId | Cause::NotOwner => 0,
        Cause::BeaconWithoutId | Cause::NoStableId => 1,
        Cause::BeaconElsewhere { .. } => 2,
    };
    let &(suspect, _) = causes.iter().min_by_key(|(i, c)| (rank(c), *i))?;
    // Described by the rows that are not suspect first: a beacon row names
    // the host its text says, or none; its connect row says what the app
    // calls itself.
    let suspects: HashSet<usize> = causes.iter().map(|&(i, _)| i).collect();
    let (sound, suspect_rows): (Vec<usize>, Vec<usize>) =
        members.iter().partition(|i| !suspects.contains(i));
    let order: Vec<usize> = sound.into_iter().chain(suspect_rows).collect();
    let pick = |f: Field| order.iter().find_map(|&i| f(&rows[i]));
    let place = match (
        pick(|r| r.entry.host.as_deref()),
        pick(|r| r.entry.ip.as_deref()),
    ) {
        (Some(host), _) => format!("host \"{host}\""),
        (None, Some(ip)) => format!("ip {ip}"),
        (None, None) => "an unknown host".to_owned(),
    };
    let mode = pick(mode_of).unwrap_or("unknown-mode");
    let keys = named_keys(rows, members.iter().copied());
    let live = members.iter().filter(|&&i| rows[i].live).count();
    let summary = if live > 1 {
        format!(
            "{n} {mode} rows on {place} may be one client or several, {live} of them \
             connected now: {keys}.",
            n = members.len(),
        )
    } else {
        format!(
            "{n} rows look like one {mode} client on {place}: {keys}.",
            n = members.len()
        )
    };
    Some(Group {
        fix: fixes(rows, &causes),
        members,
        suspect,
        summary,
    })
}

/// Keys named in a sentence: the first few, then how many more.
fn named_keys(rows: &[ParsedRow<'_>], members: impl ExactSizeIterator<Item = usize>) -> String {
    const NAMED: usize = 5;
    let total = members.len();
    let mut named: Vec<String> = members
        .take(NAMED)
        .map(|i| format!("`{}`", rows[i].key))
        .collect();
    if total > NAMED {
        named.push(format!("and {} more", total - NAMED));
    }
    named.join(", ")
}

/// Sentences a fix says about single rows; a group of thousands of rows
/// gets a readable fix, not one sentence per row.
const MAX_SENTENCES: usize = 5;

/// One sentence per cause, rows of one cause named together.
fn fixes(rows: &[ParsedRow<'_>], causes: &[(usize, Cause)]) -> String {
    let key = |i: usize| format!("`{}`", rows[i].key);
    let mut out = Vec::new();
    let unkeyed: Vec<usize> = causes
        .iter()
        .filter(|(_, c)| matches!(c, Cause::NoConnectId))
        .map(|&(i, _)| i)
        .collect();
    if !unkeyed.is_empty() {
        out.push(format!(
            "{} {} keyed by a connection id: this client sends no `client.instanceId` (nor \
             `device.id`) in `connect`, so every connection makes a new row. Send a stable \
             `client.instanceId`.",
            named_keys(rows, unkeyed.iter().copied()),
            if unkeyed.len() == 1 { "is" } else { "are" },
        ));
    }
    let single = causes
        .iter()
        .filter(|(_, c)| !matches!(c, Cause::NoConnectId));
    for &(i, c) in single.take(MAX_SENTENCES) {
        match c {
            Cause::BeaconElsewhere { conn, connect } => {
                out.push(beacon_elsewhere(rows, i, conn, connect));
            }
            Cause::NotOwner => out.push(format!(
                "{} is keyed by its connection id: its connect named a row that another client \
                 holds (a live connection with another token, or a proven device), and a client \
                 may not write another's row. Connect with that row's token or device identity, \
                 or give this client an `instanceId` of its own.",
                key(i),
            )),
            Cause::BeaconWithoutId => out.push(format!(
                "{} is keyed by {}. Send the client's `instanceId` with every beacon.",
                key(i),
                rows[i].origin.key_source().explain(),
            )),
            Cause::NoStableId => out.push(format!(
                "{} has no `instanceId` or `deviceId`, and came from {}: its client connects \
                 without `client.instanceId` or beacons without `instanceId`; the gateway \
                 holding it names which.",
                key(i),
                match rows[i].entry.gateway_id.as_deref() {
                    Some(node) => format!("gateway {node}"),
                    None => "another gateway or a previous run".to_owned(),
                },
            )),
            Cause::NoConnectId => {}
        }
    }
    out.join(" ")
}

/// The id a row's writes used, as the client spelled it.
fn id_of(row: &ParsedRow<'_>) -> String {
    row.entry
        .instance_id
        .clone()
        .or_else(|| row.entry.device_id.clone())
        .unwrap_or_else(|| row.key.to_string())
}

fn beacon_elsewhere(rows: &[ParsedRow<'_>], i: usize, conn: ConnTag, connect: usize) -> String {
    let (beacon, home) = (&rows[i], &rows[connect]);
    let used = match beacon.origin.key_source() {
        KeySource::BeaconInstanceId => format!("`instanceId` {}", id_of(beacon)),
        KeySource::BeaconDeviceId => format!("`deviceId` {}", id_of(beacon)),
        KeySource::TextHost => "no `instanceId`, so their key is the host in their text".into(),
        KeySource::TextIp => "no `instanceId`, so their key is the ip in their text".into(),
        _ => "no `instanceId`, so their key is their text".into(),
    };
    if home.origin.key_source() == KeySource::ConnectionId {
        return format!(
            "Connection {conn} connected without `client.instanceId`, while its beacons use \
             {used}: send `client.instanceId` {id} in `connect`, and both write one row.",
            id = id_of(beacon),
        );
    }
    // The field the connect's key came from is the one to repeat.
    let field = match home.origin.key_source() {
        KeySource::DeviceId => "deviceId",
        _ => "instanceId",
    };
    format!(
        "Its beacons use {used} while its connect used {id} (connection {conn}, row `{home}`): \
         send `{field}` {id} with every beacon.",
        id = id_of(home),
        home = home.key,
    )
}

/// Union-find over row indexes, with path halving.
struct DisjointSets {
    parent: Vec<usize>,
}

impl DisjointSets {
    fn new(n: usize) -> Self {
        DisjointSets {
            parent: (0..n).collect(),
        }
    }

    fn find(&mut self, mut i: usize) -> usize {
        while self.parent[i] != i {
            self.parent[i] = self.parent[self.parent[i]];
            i = self.parent[i];
        }
        i
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            // The lower index (the newer row) stays the root.
            let (root, child) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.parent[child] = root;
        }
    }
}
