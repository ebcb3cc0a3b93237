//! RSS per row of the presence store at a given size (issue 19), and where
//! the bytes go.
//!
//! ```text
//! cargo run --release --example rows_rss -- [ROWS] [fleet|admin|admin:BYTES]
//! ```
//!
//! The rows' shape: `fleet` (the default) is a macOS and node-host fleet's
//! rows, 536 bytes of JSON each; `admin` is what `rollcall load --fill`
//! writes (the rows of issue 19's measurements): beacons sent by an admin
//! for distinct `instanceId`s, with a host, an ip, a version, a mode and a
//! reason parsed from their text, about 280 bytes each; `admin:BYTES`
//! pads the reason so row 0's JSON is about BYTES (`admin:350`: the
//! issue's estimate).
//!
//! Each measurement runs in its own child process (this binary again, with
//! the part's name), so memory one part freed cannot hide another's:
//!
//! - `store`: the real [`Store`] filled with `ROWS` rows shaped like a
//!   macOS and node-host fleet's (UUID instance ids, 64-hex device ids,
//!   host names, ips, a few versions, platforms and models), published;
//!   then the writer's steady state: 100 batches of 8,192 beacons rewriting
//!   rows, each published while a reader holds the previous snapshot.
//! - `json`, `keys`, `origins`: the same rows' parts alone, as the store
//!   holds them (the encoded rows joined 64 to a buffer as the list's
//!   chunks hold them, the `Key`s, one `Origin` per row, inline as each
//!   list row holds it). What the
//!   store costs beyond their sum is its own structures: slots, index,
//!   expiry order, list rows.
//! - `entries`: what one parsed `Arc<Entry>` per row costs, for comparison:
//!   the store no longer keeps one (issue 19); before, it did.
//!
//! RSS comes from `/proc/self/status` before and after; the allocator is
//! mimalloc, as in the `rollcall` binary.

use rollcall::presence::text::ParsedText;
use rollcall::presence::{
    self, BeaconInput, Entry, Key, Millis, Origin, Patch, Store, StoreConfig, Write, WriteKind,
    Writer,
};
use std::hint::black_box;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Beacons per steady-state batch: the engine's default `max_batch`.
const BATCH: usize = 8_192;
const START: Millis = 1_780_000_000_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let rows: usize = args
        .next()
        .map_or(1_000_000, |a| a.parse().expect("ROWS is a number"));
    let shape = match args.next().as_deref() {
        None | Some("fleet") => Shape::Fleet,
        Some("admin") => Shape::Admin(0),
        Some(other) => {
            let bytes = other.strip_prefix("admin:").and_then(|b| b.parse().ok());
            let bytes: usize = bytes.unwrap_or_else(|| panic!("no row shape {other}"));
            let natural = serde_json::to_vec(&entry(Shape::Admin(0), 0)).expect("encodes");
            Shape::Admin(bytes.saturating_sub(natural.len()) / 2)
        }
    };
    match args.next().as_deref() {
        None => parent(rows, shape),
        Some(part) => child(rows, shape, part),
    }
}

/// What the rows look like; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Fleet,
    /// Admin beacons, their reason padded by this many bytes (it shows
    /// twice: as `reason`, and in the text).
    Admin(usize),
}

impl Shape {
    /// The shape's argument, for a child process.
    fn name(self) -> String {
        match self {
            Shape::Fleet => "fleet".into(),
            Shape::Admin(0) => "admin".into(),
            Shape::Admin(pad) => {
                let natural = serde_json::to_vec(&entry(Shape::Admin(0), 0)).expect("encodes");
                format!("admin:{}", natural.len() + 2 * pad)
            }
        }
    }
}

/// Runs every part in a child process and prints the table.
fn parent(rows: usize, shape: Shape) {
    let exe = std::env::current_exe().expect("this binary");
    let run = |part: &str| -> Vec<(String, f64)> {
        let out = Command::new(&exe)
            .args([rows.to_string(), shape.name(), part.to_string()])
            .output()
            .expect("the child runs");
        assert!(out.status.success(), "{part}: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let (name, bytes) = line.split_once('\t')?;
                Some((name.to_owned(), bytes.parse().ok()?))
            })
            .collect()
    };
    println!("rows: {rows}, shape: {}", shape.name());
    let json = serde_json::to_vec(&entry(shape, 0)).expect("encodes");
    println!("row 0: {} bytes of JSON", json.len());
    let store = run("store");
    let mut parts = 0.0;
    println!("{:<48} {:>12} {:>10}", "component", "RSS MiB", "B/row");
    for part in ["json", "keys", "origins"] {
        for (name, bytes) in run(part) {
            if name.contains("exact") {
                line(&name, bytes, rows);
                continue;
            }
            parts += bytes;
            line(&name, bytes, rows);
        }
    }
    for (name, bytes) in &store {
        if name == "store, published" {
            line(
                "rest: slots, index, expiry order, list rows",
                bytes - parts,
                rows,
            );
        }
    }
    for (name, bytes) in &store {
        line(name, *bytes, rows);
    }
    for (name, bytes) in run("entries") {
        line(&format!("not held: {name}"), bytes, rows);
    }
}

fn line(name: &str, bytes: f64, rows: usize) {
    println!(
        "{name:<48} {:>12.1} {:>10.0}",
        bytes / 1048576.0,
        bytes / rows as f64
    );
}

/// RSS of this process, in bytes.
fn rss() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in kB");
    kib * 1024.0
}

fn report(name: &str, bytes: f64) {
    println!("{name}\t{bytes}");
}

fn child(rows: usize, shape: Shape, part: &str) {
    let base = rss();
    let beacon_of = |i| beacon(shape, i);
    match part {
        "store" => store(rows, shape, base),
        "entries" => {
            let entries: Vec<Arc<Entry>> = (0..rows).map(|i| Arc::new(entry(shape, i))).collect();
            report("Entry structs + their strings", rss() - base);
            black_box(entries);
        }
        "json" => {
            let chunks: Vec<Vec<u8>> = (0..rows.div_ceil(64))
                .map(|c| {
                    // Encoded one by one, then joined into a buffer of the
                    // exact size, as `list.rs` joins a chunk.
                    let rows: Vec<Vec<u8>> = (c * 64..rows)
                        .take(64)
                        .map(|i| serde_json::to_vec(&entry(shape, i)).expect("encodes"))
                        .collect();
                    let mut chunk = Vec::with_capacity(rows.iter().map(|r| r.len() + 1).sum());
                    for row in rows {
                        chunk.push(b',');
                        chunk.extend_from_slice(&row);
                    }
                    chunk
                })
                .collect();
            let bytes: usize = chunks.iter().map(Vec::len).sum();
            report("JSON, in 64-row chunks", rss() - base);
            println!("JSON bytes (exact)\t{bytes}");
            black_box(chunks);
        }
        "keys" => {
            let keys: Vec<Key> = (0..rows).map(|i| beacon_of(i).0).collect();
            report("keys", rss() - base);
            black_box(keys);
        }
        "origins" => {
            let origins: Vec<Origin> = (0..rows)
                .map(|i| {
                    Origin::new(Write {
                        by: Writer::elsewhere(WriteKind::Beacon),
                        at: START + i as Millis,
                    })
                })
                .collect();
            report("origins (provenance)", rss() - base);
            black_box(origins);
        }
        other => panic!("no part {other}"),
    }
}

/// The real store at `rows` rows, then its steady state under writes.
fn store(rows: usize, shape: Shape, base: f64) {
    let beacon_of = |i| beacon(shape, i);
    let config = StoreConfig {
        max_entries: rows,
        ..StoreConfig::default()
    };
    let mut store = Store::new(config, self_entry());
    let started = Instant::now();
    let mut now = START;
    // Filled as the writer fills it: a publish after every batch, while
    // a reader holds the previous snapshot.
    let mut held = store.publish(now);
    for first in (0..rows).step_by(BATCH) {
        for i in first..(first + BATCH).min(rows) {
            let (key, patch) = beacon_of(i);
            store.upsert(key, patch, now);
        }
        now += 1;
        held = store.publish(now);
    }
    report("store, published", rss() - base);
    eprintln!(
        "filled in {:.1} s, list {} bytes",
        started.elapsed().as_secs_f64(),
        held.list_len()
    );
    // Rewrites in arrival order unrelated to the keys, as beacons come.
    let mut next = 0usize;
    for _ in 0..100 {
        now += 1_000;
        for _ in 0..BATCH {
            next = (next + 1_000_003) % rows;
            let (key, patch) = beacon_of(next);
            store.upsert(key, patch, now);
        }
        held = store.publish(now);
    }
    report(
        "store, after 100 publishes, reader holding one",
        rss() - base,
    );
    black_box(held);
}

fn self_entry() -> Entry {
    Entry {
        instance_id: Some("3F2A9C1E-7B44-4D1A-9E0B-5C6D7E8F9A0B".into()),
        host: Some("gateway-01".into()),
        version: Some("2026.11.1".into()),
        platform: Some("linux 6.12.0".into()),
        mode: Some("gateway".into()),
        reason: Some("self".into()),
        text: "Gateway: gateway-01 · app 2026.11.1 · mode gateway".into(),
        ..Entry::default()
    }
}

/// A deterministic pseudo-random 64-bit value for row `i` and `salt`.
fn mix(i: usize, salt: u64) -> u64 {
    let mut x = (i as u64) ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// An upper-case UUID, as macOS's `UUID().uuidString` writes one.
fn uuid(i: usize) -> String {
    let (a, b) = (mix(i, 1), mix(i, 2));
    format!(
        "{:08X}-{:04X}-4{:03X}-{:04X}-{:012X}",
        a >> 32,
        (a >> 16) & 0xFFFF,
        a & 0xFFF,
        0x8000 | (b >> 48) & 0x3FFF,
        b & 0xFFFF_FFFF_FFFF
    )
}

/// A node's `device.id`: a SHA-256 of its public key, in hex.
fn device_id(i: usize) -> String {
    (3..7).map(|s| format!("{:016x}", mix(i, s))).collect()
}

/// The beacon row `i` sends, in `shape`.
fn beacon(shape: Shape, i: usize) -> (Key, Patch) {
    match shape {
        Shape::Fleet => fleet_beacon(i),
        Shape::Admin(pad) => admin_beacon(i, pad),
    }
}

/// A `rollcall load --fill` beacon: an admin writing row `i` under its own
/// `instanceId`, everything else parsed from the beacon's text (the
/// crate's own text form and beacon parsing, as the server does); its
/// reason padded by `pad` bytes.
fn admin_beacon(i: usize, pad: usize) -> (Key, Patch) {
    let host = format!("fill-{i}");
    let reason = format!("periodic{}", "x".repeat(pad));
    let text = presence::text::format(&ParsedText {
        host: &host,
        ip: "10.255.0.1",
        version: "0.1.0",
        last_input_seconds: 0,
        mode: "backend",
        reason: &reason,
    });
    let instance = format!("load-{:08x}-f{i}", mix(0, 11) as u32);
    let input = BeaconInput {
        text: &text,
        instance_id: Some(&instance),
        ..BeaconInput::default()
    };
    presence::beacon(&input, "gw-rss")
}

/// The beacon row `i` sends: three in five are macOS apps, the rest node
/// hosts on Linux, as a fleet of both would.
fn fleet_beacon(i: usize) -> (Key, Patch) {
    const VERSIONS: [&str; 3] = ["2026.11.1", "2026.10.4", "2026.11.2-beta.1"];
    const MODELS: [&str; 4] = ["Mac14,3", "Mac15,8", "MacBookPro18,1", "Mac16,10"];
    const NAMES: [&str; 5] = ["Johns", "Marias", "build", "Office", "Studio"];
    let r = mix(i, 9);
    let mac = r % 5 < 3;
    let version = VERSIONS[(r >> 8) as usize % VERSIONS.len()];
    let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
    let idle = (r >> 16) % 600;
    let (host, platform, mode, family, model, client, role) = if mac {
        let name = NAMES[(r >> 24) as usize % NAMES.len()];
        (
            format!("{name}-MacBook-Pro-{}", i % 10_000),
            "macos 15.1.1",
            "ui",
            Some("Mac"),
            Some(MODELS[(r >> 32) as usize % MODELS.len()]),
            "openclaw-macos",
            "operator",
        )
    } else {
        (
            format!("node-{i:07}.build.internal"),
            "linux 6.8.0-49-generic",
            "node",
            None,
            None,
            "node-host",
            "node",
        )
    };
    let instance = uuid(i);
    let patch = Patch {
        instance_id: Some(instance.clone()),
        host: Some(host.clone()),
        ip: Some(ip.clone()),
        version: Some(version.into()),
        platform: Some(platform.into()),
        device_family: family.map(Into::into),
        model_identifier: model.map(Into::into),
        mode: Some(mode.into()),
        last_input_seconds: mac.then_some(Some(idle)),
        reason: Some("periodic".into()),
        device_id: Some(device_id(i)),
        client_id: Some(client.into()),
        roles: vec![role.into()],
        scopes: if mac {
            vec!["operator.read".into(), "operator.write".into()]
        } else {
            Vec::new()
        },
        text: Some(format!(
            "Node: {host} ({ip}) · app {version} · last input {idle}s ago · mode {mode} · reason periodic"
        )),
        by: Writer::UNKNOWN,
    };
    (Key::parse(&instance).expect("not blank"), patch)
}

/// Row `i`'s entry, built as the store builds it.
fn entry(shape: Shape, i: usize) -> Entry {
    let mut entry = Entry::default();
    entry.merge(beacon(shape, i).1, START + i as Millis);
    entry
}
