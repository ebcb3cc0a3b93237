//! The doctor's cost: one `diagnose` of a published snapshot, which is
//! what `GET /v1/presence/doctor` pays at most once per version and second.
//!
//! - `clean/N`: N rows with stable ids, all live and fresh: no findings,
//!   the common case.
//! - `reconnects/N`: N rows of one client that reconnects without
//!   `client.instanceId`, all disconnected: one duplicate group of N rows
//!   and N `gone` rows, the worst case for the grouping and the report.
//!
//! Rows carry the provenance a real connect and disconnect write.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rollcall::presence::{
    ConnTag, ConnectInfo, DoctorConfig, Entry, Key, Millis, Snapshot, Store, StoreConfig, connect,
    diagnose,
};
use std::hint::black_box;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SIZES: [usize; 3] = [200, 10_000, 100_000];
const NOW: Millis = 1_800_000_000_000;

fn store(entries: usize) -> Store {
    let me = Entry {
        instance_id: Some("gw-bench".into()),
        host: Some("gw-bench".into()),
        mode: Some("gateway".into()),
        text: "Gateway: gw-bench".into(),
        ..Entry::default()
    };
    // Room to spare: a cap under pressure would be a finding.
    let config = StoreConfig {
        max_entries: entries * 2,
        ..StoreConfig::default()
    };
    Store::new(config, me)
}

fn info(i: usize, instance_id: Option<String>) -> ConnectInfo {
    ConnectInfo {
        conn_id: format!("7d0c4c52-0000-4000-8000-{i:012}"),
        client_id: "openclaw-macos".into(),
        display_name: Some(if instance_id.is_some() {
            format!("mac-{i}")
        } else {
            "Ada's Mac".into()
        }),
        version: "2026.11.1".into(),
        platform: "darwin 24.1.0".into(),
        mode: "ui".into(),
        role: "operator".into(),
        scopes: vec!["operator.read".into()],
        instance_id,
        conn: Some(ConnTag::from_u128(i as u128 + 1)),
        ..ConnectInfo::default()
    }
}

/// `entries` rows: stable and live, or one client's reconnects, gone.
fn snapshot(entries: usize, reconnects: bool) -> Snapshot {
    let mut s = store(entries);
    for i in 0..entries {
        let at = NOW - 60_000 + (i % 60_000) as Millis;
        let id = (!reconnects).then(|| format!("inst-{i:06}"));
        let (key, patch): (Key, _) = connect(info(i, id));
        s.connect(i as u64, key.clone(), patch, at);
        if reconnects {
            s.disconnect(
                i as u64,
                key,
                false,
                Some(ConnTag::from_u128(i as u128 + 1)),
                at + 1,
            );
        }
    }
    s.publish(NOW)
}

fn doctor(c: &mut Criterion) {
    let mut group = c.benchmark_group("doctor");
    for entries in SIZES {
        for (name, reconnects) in [("clean", false), ("reconnects", true)] {
            let snap = snapshot(entries, reconnects);
            let report = diagnose(&snap, NOW, DoctorConfig::default());
            assert_eq!(report.is_clean(), !reconnects);
            let bytes = serde_json::to_vec(&report).expect("a report encodes").len();
            eprintln!("doctor/{name}/{entries}: report {bytes} bytes");
            group.bench_function(BenchmarkId::new(name, entries), |b| {
                b.iter(|| {
                    let report = diagnose(black_box(&snap), NOW, DoctorConfig::default());
                    serde_json::to_vec(&report).expect("a report encodes")
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, doctor);
criterion_main!(benches);
