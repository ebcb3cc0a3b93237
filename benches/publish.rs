//! Publishing at 1,000, 100,000 and 1,000,000 rows: one batch of 1,000
//! beacons (each for a row already present, so each moves its row to the
//! front of the list), applied and then published, three ways:
//!
//! - `rollcall/N`: the real `Store` (`upsert` × 1,000, then `publish`),
//!   whose list is persistent: the publish touches the rows written and
//!   the chunks they leave and join, and shares the rest.
//! - `whole_list/N`: the publish rollcall had before (issue 19), kept here
//!   as the baseline: written rows are encoded and sorted, then every row
//!   is cloned into a new vector and every row's JSON copied into one new
//!   list buffer (from a pool of spare buffers), O(rows) per publish.
//! - `imbl_ordmap/N`: a persistent map (`imbl::OrdMap`, a B-tree with
//!   shared nodes) keyed by list order: the publish is a clone, O(1), but
//!   the snapshot holds no list bytes: each reply would encode or join all
//!   rows itself.
//!
//! In each, a reader holds the previous snapshot (as the engine's cell
//! does), so the writer's first edit of anything shared copies it.
//!
//! `engine_max_load/1000000`: the real engine at 1,000,000 rows, fed by
//! one producer as fast as the queue takes beacons; events and publishes
//! per second, and the writer thread's CPU per event, are printed after
//! the function. `engine_max_load_batch_64k`:
//! the same with batches as large as the queue.

mod common;

use common::{beacon, now_millis, push, self_entry, thread_cpu};
use criterion::measurement::WallTime;
use criterion::{
    BatchSize, BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};
use rollcall::engine::{DEFAULT_MAX_BATCH, DEFAULT_QUEUE_CAPACITY};
use rollcall::presence::{
    Entry, Key, Millis, Origin, Patch, RowJson, SnapshotEntry, Store, StoreConfig, Write,
    WriteKind, Writer,
};
use std::cmp::{Ordering, Reverse};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];
/// Beacons per published batch.
const BATCH: usize = 1_000;

fn encode(entry: &Entry) -> RowJson {
    RowJson::from(serde_json::to_vec(entry).expect("an Entry encodes"))
}

fn origin(at: Millis) -> Origin {
    Origin::new(Write {
        by: Writer::elsewhere(WriteKind::Beacon),
        at,
    })
}

fn row(key: Key, entry: &Entry) -> SnapshotEntry {
    SnapshotEntry::new(key, entry, 0, origin(entry.ts))
}

/// The publish rollcall had before issue 19, reduced to its list.
struct WholeList {
    rows: Vec<SnapshotEntry>,
    /// Each row's entry, parsed, as rows held it then.
    entries: Vec<Entry>,
    index: HashMap<Key, usize>,
    /// Slots written since the last publish.
    written: Vec<usize>,
    /// Slots in list order as of the last publish.
    listed: Vec<usize>,
    spare: Vec<Vec<u8>>,
}

/// What `WholeList::publish` hands readers.
struct WholeSnapshot {
    _rows: Vec<SnapshotEntry>,
    list: Vec<u8>,
}

impl WholeList {
    fn new(rows: Vec<SnapshotEntry>) -> Self {
        let entries = rows.iter().map(SnapshotEntry::entry).collect();
        let index = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.key.clone(), i))
            .collect();
        let written = (0..rows.len()).collect();
        WholeList {
            rows,
            entries,
            index,
            written,
            listed: Vec::new(),
            spare: Vec::new(),
        }
    }

    fn cmp(&self, a: usize, b: usize) -> Ordering {
        let (a, b) = (&self.rows[a], &self.rows[b]);
        b.ts.cmp(&a.ts).then_with(|| a.key.cmp(&b.key))
    }

    fn upsert(&mut self, key: &Key, patch: Patch, now: Millis) {
        let id = self.index[key];
        self.entries[id].merge(patch, now);
        let row = &mut self.rows[id];
        row.ts = now;
        row.origin = origin(now);
        self.written.push(id);
    }

    fn publish(&mut self, old: Option<WholeSnapshot>) -> WholeSnapshot {
        if let Some(old) = old {
            self.spare.push(old.list);
        }
        let mut written = std::mem::take(&mut self.written);
        written.sort_unstable_by(|&a, &b| self.cmp(a, b));
        written.dedup();
        for &id in &written {
            self.rows[id].json = encode(&self.entries[id]);
        }
        let is_written: std::collections::HashSet<usize> = written.iter().copied().collect();
        let kept: Vec<usize> = self
            .listed
            .iter()
            .copied()
            .filter(|id| !is_written.contains(id))
            .collect();
        let mut listed = Vec::with_capacity(kept.len() + written.len());
        let (mut a, mut b) = (kept.iter().peekable(), written.iter().peekable());
        while let Some(next) = match (a.peek(), b.peek()) {
            (Some(&&x), Some(&&y)) if self.cmp(y, x) == Ordering::Less => b.next(),
            (Some(_), _) => a.next(),
            (None, _) => b.next(),
        } {
            listed.push(*next);
        }
        let rows: Vec<SnapshotEntry> = listed.iter().map(|&id| self.rows[id].clone()).collect();
        let mut list = self.spare.pop().unwrap_or_default();
        list.clear();
        list.push(b'[');
        for row in &rows {
            list.extend_from_slice(&row.json);
            list.push(b',');
        }
        list.push(b']');
        self.listed = listed;
        WholeSnapshot { _rows: rows, list }
    }
}

/// A persistent ordered map as the snapshot.
struct PersistentMap {
    list: imbl::OrdMap<(Reverse<Millis>, Key), SnapshotEntry>,
    /// Each row's entry, parsed.
    entries: HashMap<Key, Entry>,
}

impl PersistentMap {
    fn upsert(&mut self, key: &Key, patch: Patch, now: Millis) {
        let entry = self.entries.get_mut(key).expect("the row exists");
        let old = entry.ts;
        entry.merge(patch, now);
        self.list
            .remove(&(Reverse(old), key.clone()))
            .expect("listed");
        self.list
            .insert((Reverse(now), key.clone()), row(key.clone(), entry));
    }
}

/// `entries` rows, and the ring of beacons that rewrites them.
fn rows(entries: usize, now: Millis) -> (Vec<SnapshotEntry>, Vec<(Key, Patch)>) {
    let ring: Vec<(Key, Patch)> = (0..entries)
        .map(|n| beacon(common::arrival(n, entries)))
        .collect();
    let rows = ring
        .iter()
        .map(|(key, patch)| {
            let mut entry = Entry::default();
            entry.merge(patch.clone(), now);
            row(key.clone(), &entry)
        })
        .collect();
    (rows, ring)
}

fn next_batch(ring: &[(Key, Patch)], next: &mut usize) -> Vec<(Key, Patch)> {
    (0..BATCH)
        .map(|_| {
            *next = (*next + 1) % ring.len();
            ring[*next].clone()
        })
        .collect()
}

fn publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish");
    group.sample_size(10);
    group.throughput(Throughput::Elements(BATCH as u64));
    for entries in SIZES {
        let mut now = now_millis();
        let (built, ring) = rows(entries, now);
        let mut next = 0;
        {
            let config = StoreConfig {
                max_entries: entries,
                ..StoreConfig::default()
            };
            let mut store = Store::new(config, self_entry());
            for (key, patch) in &ring {
                store.upsert(key.clone(), patch.clone(), now);
            }
            let mut held = store.publish(now);
            group.bench_function(BenchmarkId::new("rollcall", entries), |b| {
                b.iter_batched(
                    || next_batch(&ring, &mut next),
                    |batch| {
                        now += 1;
                        for (key, patch) in batch {
                            store.upsert(key, patch, now);
                        }
                        held = store.publish(now);
                    },
                    BatchSize::PerIteration,
                )
            });
            black_box(&held);
        }
        {
            let mut whole = WholeList::new(built.clone());
            let mut held = Some(whole.publish(None));
            group.bench_function(BenchmarkId::new("whole_list", entries), |b| {
                b.iter_batched(
                    || next_batch(&ring, &mut next),
                    |batch| {
                        now += 1;
                        for (key, patch) in batch {
                            whole.upsert(&key, patch, now);
                        }
                        held = Some(whole.publish(held.take()));
                    },
                    BatchSize::PerIteration,
                )
            });
            black_box(held.map(|s| s.list.len()));
        }
        {
            let mut map = PersistentMap {
                entries: built.iter().map(|r| (r.key.clone(), r.entry())).collect(),
                list: built
                    .into_iter()
                    .map(|r| ((Reverse(r.ts), r.key.clone()), r))
                    .collect(),
            };
            let mut held = map.list.clone();
            group.bench_function(BenchmarkId::new("imbl_ordmap", entries), |b| {
                b.iter_batched(
                    || next_batch(&ring, &mut next),
                    |batch| {
                        now += 1;
                        for (key, patch) in batch {
                            map.upsert(&key, patch, now);
                        }
                        held = map.list.clone();
                    },
                    BatchSize::PerIteration,
                )
            });
            black_box(held.len());
        }
    }
    group.finish();
}

fn engine(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish");
    group.sample_size(10);
    group.throughput(Throughput::Elements(PUSHED as u64));
    // The default batch, and batches as large as the queue (the default
    // before publishing became O(changes)).
    for (name, max_batch) in [
        ("engine_max_load", DEFAULT_MAX_BATCH),
        ("engine_max_load_batch_64k", DEFAULT_QUEUE_CAPACITY),
    ] {
        max_load(&mut group, name, max_batch);
    }
    group.finish();
}

/// Beacons pushed per iteration of `engine_max_load`.
const PUSHED: usize = 65_536;

fn max_load(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, max_batch: usize) {
    const ENTRIES: usize = 1_000_000;
    let chunk = PUSHED;
    let (engine, events) = common::filled_engine(ENTRIES, max_batch);
    let (sender, stats) = (engine.sender(), engine.stats());
    // Relaxed everywhere below: metrics counters, polled.
    let mut next = 0;
    let (mut busy, mut applied, mut publishes) = (Duration::ZERO, 0u64, 0u64);
    let mut cpu = Duration::ZERO;
    group.bench_function(BenchmarkId::new(name, ENTRIES), |b| {
        b.iter_custom(|iters| {
            let count = iters * chunk as u64;
            let target = stats.events.load(Relaxed) + count;
            let publishes0 = stats.publishes.load(Relaxed);
            let (start, cpu0) = (Instant::now(), thread_cpu("rollcall-writer"));
            for _ in 0..count {
                push(&sender, events[next].clone());
                next = (next + 1) % events.len();
            }
            while stats.events.load(Relaxed) < target {
                std::thread::yield_now();
            }
            let elapsed = start.elapsed();
            cpu += thread_cpu("rollcall-writer").saturating_sub(cpu0);
            busy += elapsed;
            applied += count;
            publishes += stats.publishes.load(Relaxed) - publishes0;
            elapsed
        })
    });
    if applied > 0 {
        eprintln!(
            "publish/{name}/{ENTRIES}: {:.0} events/s and {:.1} publishes/s over all \
             samples ({:.0} events per publish); the writer thread's CPU: {:.2} µs per \
             event, {:.1} ms per publish",
            applied as f64 / busy.as_secs_f64(),
            publishes as f64 / busy.as_secs_f64(),
            applied as f64 / publishes.max(1) as f64,
            cpu.as_secs_f64() * 1e6 / applied as f64,
            cpu.as_secs_f64() * 1e3 / publishes.max(1) as f64,
        );
    }
    engine.shutdown();
}

criterion_group!(benches, publish, engine);
criterion_main!(benches);
