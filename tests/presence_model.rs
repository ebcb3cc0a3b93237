//! Property test: the store against a plain `HashMap` + sort model, over
//! random sequences of connect, disconnect, beacon, expiry and publish; at
//! a handful of keys (every collision and tie) and at thousands (lists of
//! many chunks, split and merged as rows move). Every publish is also
//! checked against the last: the delta between the two snapshots, applied
//! to the last list, gives the new one.

use proptest::prelude::*;
use rollcall::presence::{Entry, Key, Millis, Patch, Snapshot, Store, StoreConfig, changed_rows};
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Clone)]
enum Op {
    Connect {
        conn: u64,
        key: u16,
        upper: bool,
    },
    Disconnect {
        conn: u64,
    },
    Beacon {
        key: u16,
        host: Option<u8>,
        ip: Option<u8>,
        last_input: Option<Option<u8>>,
    },
    Advance(Millis),
    Publish,
}

/// Operations on `keys` keys (key 7 is the self entry's) from `conns`
/// connections, the clock advancing up to `advance` ms at a time, with a
/// publish `publish` times as likely as each other kind of operation, in
/// tenths.
fn op(keys: u16, conns: u64, advance: Millis, publish: u32) -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0..conns, 0..keys, any::<bool>()).prop_map(|(conn, key, upper)| Op::Connect {
            conn,
            key,
            upper
        }),
        10 => (0..conns).prop_map(|conn| Op::Disconnect { conn }),
        10 => (
            0..keys,
            proptest::option::of(0u8..4),
            proptest::option::of(0u8..4),
            proptest::option::of(proptest::option::of(0u8..50))
        )
            .prop_map(|(key, host, ip, last_input)| Op::Beacon {
                key,
                host,
                ip,
                last_input
            }),
        10 => (0..advance).prop_map(Op::Advance),
        publish => Just(Op::Publish),
    ]
}

const TTL_MS: Millis = 300_000;

/// The reference: a map, with TTL and cap applied by sorting.
#[derive(Default)]
struct Model {
    cap: usize,
    entries: HashMap<String, (Entry, u64)>,
    owners: HashMap<String, Vec<u64>>,
    seq: u64,
    version: u64,
    changed: bool,
    renewed: bool,
}

impl Model {
    fn upsert(&mut self, key: &str, patch: Patch, now: Millis) {
        if key == "self" {
            return;
        }
        self.seq += 1;
        let mut entry = self.entries.remove(key).map(|(e, _)| e).unwrap_or_default();
        entry.merge(patch, now);
        self.entries.insert(key.to_owned(), (entry, self.seq));
        while self.entries.len() > self.cap {
            // Rows without a live connection go first; live ones only when
            // nothing else is left (docs/protocol.md §5.4).
            let oldest = |live: bool| {
                self.entries
                    .iter()
                    .filter(|(k, _)| live || !self.owners.contains_key(*k))
                    .min_by_key(|(_, (e, seq))| (e.ts, *seq))
                    .map(|(k, _)| k.clone())
            };
            let victim = oldest(false).or_else(|| oldest(true)).unwrap();
            self.entries.remove(&victim);
        }
        self.changed = true;
    }

    /// The TTL removes rows without a live connection and renews the
    /// others, oldest first.
    fn expire(&mut self, now: Millis) {
        let before = self.entries.len();
        let owners = &self.owners;
        self.entries
            .retain(|k, (e, _)| now - e.ts <= TTL_MS || owners.contains_key(k));
        self.changed |= self.entries.len() != before;
        let mut renew: Vec<(Millis, u64, String)> = self
            .entries
            .iter()
            .filter(|(_, (e, _))| now - e.ts > TTL_MS)
            .map(|(k, (e, seq))| (e.ts, *seq, k.clone()))
            .collect();
        renew.sort();
        for (_, _, key) in renew {
            self.seq += 1;
            let (entry, seq) = self.entries.get_mut(&key).unwrap();
            entry.ts = now;
            *seq = self.seq;
            self.renewed = true;
        }
    }

    fn list(&self) -> Vec<(String, Entry)> {
        let mut list: Vec<_> = self
            .entries
            .iter()
            .map(|(k, (e, _))| (k.clone(), e.clone()))
            .collect();
        list.sort_by(|a, b| b.1.ts.cmp(&a.1.ts).then_with(|| a.0.cmp(&b.0)));
        list
    }
}

fn key_name(key: u16, upper: bool) -> String {
    // Key 7 collides with the self entry's reserved key.
    let name = if key == 7 {
        "self".to_owned()
    } else {
        format!("k{key}")
    };
    if upper {
        format!("  {} ", name.to_uppercase())
    } else {
        name
    }
}

/// The rows after the self entry, as (key, entry).
fn rows(snap: &Snapshot) -> Vec<(String, Entry)> {
    snap.rows()
        .map(|e| (e.key.as_str().to_owned(), e.entry()))
        .collect()
}

/// `before`'s rows with the delta to `after` applied, in list order.
fn delta_applied(before: &Snapshot, after: &Snapshot) -> Vec<(String, Entry)> {
    let (upserts, removed) = changed_rows(before, after);
    let mut map: HashMap<String, Entry> = rows(before).into_iter().collect();
    for key in removed {
        map.remove(key.as_str());
    }
    for row in upserts.into_iter().filter(|row| row.key != after.own().key) {
        map.insert(row.key.as_str().to_owned(), row.entry());
    }
    let mut list: Vec<_> = map.into_iter().collect();
    list.sort_by(|a, b| b.1.ts.cmp(&a.1.ts).then_with(|| a.0.cmp(&b.0)));
    list
}

fn run(cap: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let self_entry = Entry {
        instance_id: Some("SELF".into()),
        text: "Gateway".into(),
        ..Entry::default()
    };
    let mut store = Store::new(
        StoreConfig {
            ttl: Duration::from_millis(TTL_MS as u64),
            max_entries: cap,
        },
        self_entry,
    );
    let mut model = Model {
        cap,
        version: 1,
        ..Model::default()
    };
    let mut conns: HashMap<u64, String> = HashMap::new();
    let mut now: Millis = 1_000_000;
    let mut last_version = store.version();
    let mut last: Option<Snapshot> = None;

    for op in ops {
        match op {
            Op::Connect { conn, key, upper } => {
                if conns.contains_key(&conn) {
                    continue;
                }
                let name = key_name(key, upper);
                let norm = Key::parse(&name).unwrap();
                let patch = Patch {
                    host: Some(format!("h{conn}")),
                    roles: vec!["operator".into()],
                    ..Patch::default()
                };
                store.connect(conn, norm.clone(), patch.clone(), now);
                if norm.as_str() != "self" {
                    model
                        .owners
                        .entry(norm.as_str().to_owned())
                        .or_default()
                        .push(conn);
                }
                model.upsert(norm.as_str(), patch, now);
                conns.insert(conn, norm.as_str().to_owned());
            }
            Op::Disconnect { conn } => {
                let Some(k) = conns.remove(&conn) else {
                    continue;
                };
                store.disconnect(conn, Key::parse(&k).unwrap(), false, None, now);
                if k == "self" {
                    continue;
                }
                let owners = model.owners.get_mut(&k).unwrap();
                owners.retain(|&c| c != conn);
                if owners.is_empty() {
                    model.owners.remove(&k);
                    model.upsert(&k, Patch::reason("disconnect"), now);
                }
            }
            Op::Beacon {
                key,
                host,
                ip,
                last_input,
            } => {
                let name = key_name(key, false);
                let patch = Patch {
                    host: host.map(|h| format!("host{h}")),
                    ip: ip.map(|i| {
                        if i == 0 {
                            "127.0.0.1".into()
                        } else {
                            format!("10.0.0.{i}")
                        }
                    }),
                    last_input_seconds: last_input.map(|o| o.map(u64::from)),
                    text: Some(format!("beacon {key}")),
                    ..Patch::default()
                };
                store.upsert(Key::parse(&name).unwrap(), patch.clone(), now);
                model.upsert(&name, patch, now);
            }
            Op::Advance(ms) => {
                now += ms;
                store.expire(now);
                model.expire(now);
            }
            Op::Publish => {
                store.expire(now);
                model.expire(now);
                if model.changed || model.renewed {
                    model.version += 1;
                }
                model.changed = false;
                model.renewed = false;
                let snap = store.publish(now);
                prop_assert_eq!(snap.version(), model.version);
                prop_assert!(snap.version() >= last_version);
                last_version = snap.version();
                prop_assert!(snap.len() <= cap + 1);
                prop_assert_eq!(snap.own().key.as_str(), "self");
                let got = rows(&snap);
                prop_assert_eq!(&got, &model.list());
                let mut json = Vec::new();
                snap.write_list(now, &mut json);
                let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
                let want: Vec<Entry> = snap.entries().map(|row| row.entry()).collect();
                let want = serde_json::to_value(&want).unwrap();
                prop_assert_eq!(json.as_array().unwrap().len(), snap.len());
                prop_assert_eq!(
                    &json.as_array().unwrap()[1..],
                    &want.as_array().unwrap()[1..]
                );
                if let Some(last) = &last {
                    prop_assert_eq!(&delta_applied(last, &snap), &got);
                }
                last = Some(snap);
                for (_, e) in &got {
                    prop_assert!(e.ip.as_deref() != Some("127.0.0.1"));
                    prop_assert!(!e.text.is_empty());
                }
            }
        }
        prop_assert_eq!(store.len(), model.entries.len());
        prop_assert!(store.len() <= cap);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn store_matches_model(cap in 0usize..6, ops in proptest::collection::vec(op(8, 6, 200_000, 10), 1..80)) {
        run(cap, ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    /// Thousands of rows: many chunks and parts, rows moving between them.
    #[test]
    fn store_matches_model_at_thousands_of_rows(
        cap in 500usize..3_000,
        ops in proptest::collection::vec(op(3_000, 64, 500, 1), 2_000..4_000),
    ) {
        run(cap, ops)?;
    }
}
