//! The write path: beacons applied per second at 200, 10k and 100k entries.
//!
//! - `engine/N`: the real `Engine` driven through its `EventSender` by one
//!   producer (the bench thread) as fast as the queue takes events. One
//!   iteration is `BATCH` events; a sample pushes all of its iterations
//!   back to back, so the queue stays full and the writer runs full
//!   batches, and the clock stops once the writer has applied and published
//!   all of them. Includes the hand-off, batching and one publish per batch.
//!   Events and publishes per second of that time are printed after the
//!   function.
//! - `engine_max_batch_64k/100000`: the same with `max_batch` raised to the
//!   queue's capacity: fewer, larger publishes.
//! - `store_publish/N`: `Store::upsert` for a batch of `BATCH` events, then
//!   one `Store::publish`, on the bench thread: apply plus publication,
//!   without the hand-off.
//! - `store_upsert/N`: `Store::upsert` alone.
//! - `mutex_hashmap_upsert/N`: the baseline (see `common`), one lock per
//!   upsert.
//!
//! Every event is a beacon for an instance already present (the store is
//! filled first), cycling through all N, so every event merges and moves
//! its entry to the young end of the expiry order.

mod common;

use common::{MutexStore, beacons, now_millis, push, self_entry};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rollcall::engine::{DEFAULT_MAX_BATCH, DEFAULT_QUEUE_CAPACITY, Engine, EngineConfig};
use rollcall::presence::{Key, Patch, Store, StoreConfig};
use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SIZES: [usize; 3] = [200, 10_000, 100_000];
/// Events per iteration, and between two publishes in `store_publish`: the
/// engine's most per batch.
const BATCH: usize = DEFAULT_MAX_BATCH;

fn store_config(entries: usize) -> StoreConfig {
    StoreConfig {
        max_entries: entries,
        ..StoreConfig::default()
    }
}

fn engine(c: &mut Criterion) {
    let mut group = c.benchmark_group("writer_apply");
    group.sample_size(10);
    group.throughput(Throughput::Elements(BATCH as u64));
    // The default config at every size, and at 100k entries also with
    // batches as large as the queue: fewer, larger publishes.
    let runs = SIZES
        .map(|entries| ("engine", entries, DEFAULT_MAX_BATCH))
        .into_iter()
        .chain([("engine_max_batch_64k", 100_000, DEFAULT_QUEUE_CAPACITY)]);
    for (name, entries, max_batch) in runs {
        let engine = Engine::start(
            EngineConfig {
                store: store_config(entries),
                max_batch,
                ..EngineConfig::default()
            },
            self_entry(),
        );
        let events = beacons(entries);
        let sender = engine.sender();
        let stats = engine.stats();
        // Relaxed everywhere below: metrics counters, polled.
        let filled = stats.events.load(Ordering::Relaxed) + entries as u64;
        for event in &events {
            push(&sender, event.clone());
        }
        while stats.events.load(Ordering::Relaxed) < filled {
            std::thread::yield_now();
        }
        assert_eq!(engine.reader().load().len(), entries + 1);

        let mut next = 0;
        let (mut busy, mut applied, mut publishes) = (Duration::ZERO, 0u64, 0u64);
        group.bench_function(BenchmarkId::new(name, entries), |b| {
            b.iter_custom(|iters| {
                let count = iters * BATCH as u64;
                let target = stats.events.load(Ordering::Relaxed) + count;
                let publishes0 = stats.publishes.load(Ordering::Relaxed);
                let start = Instant::now();
                for _ in 0..count {
                    push(&sender, events[next].clone());
                    next = (next + 1) % events.len();
                }
                while stats.events.load(Ordering::Relaxed) < target {
                    std::thread::yield_now();
                }
                let elapsed = start.elapsed();
                busy += elapsed;
                applied += count;
                publishes += stats.publishes.load(Ordering::Relaxed) - publishes0;
                elapsed
            })
        });
        if applied > 0 {
            eprintln!(
                "writer_apply/{name}/{entries}: {:.0} events/s and {:.1} publishes/s over all \
                 samples ({:.0} events per publish)",
                applied as f64 / busy.as_secs_f64(),
                publishes as f64 / busy.as_secs_f64(),
                applied as f64 / publishes.max(1) as f64,
            );
        }
        engine.shutdown();
    }
    group.finish();
}

/// Clones the next `BATCH` beacons of `ring`, round robin.
fn next_batch(ring: &[(Key, Patch)], next: &mut usize) -> Vec<(Key, Patch)> {
    (0..BATCH)
        .map(|_| {
            let item = ring[*next].clone();
            *next = (*next + 1) % ring.len();
            item
        })
        .collect()
}

fn store(c: &mut Criterion) {
    let mut group = c.benchmark_group("writer_apply");
    group.sample_size(10);
    group.throughput(Throughput::Elements(BATCH as u64));
    for entries in SIZES {
        let ring: Vec<(Key, Patch)> = (0..entries)
            .map(|n| common::beacon(common::arrival(n, entries)))
            .collect();
        let mut store = Store::new(store_config(entries), self_entry());
        let mut now = now_millis();
        for (key, patch) in &ring {
            store.upsert(key.clone(), patch.clone(), now);
        }
        // A reader holds the current snapshot, as in the engine, so the
        // first write to a row after a publish copies it.
        let mut current = store.publish(now);
        let mut next = 0;
        group.bench_function(BenchmarkId::new("store_publish", entries), |b| {
            b.iter_batched(
                || next_batch(&ring, &mut next),
                |batch| {
                    now += 1;
                    for (key, patch) in batch {
                        store.upsert(key, patch, now);
                    }
                    current = store.publish(now);
                },
                BatchSize::PerIteration,
            )
        });
        black_box(&current);
        group.bench_function(BenchmarkId::new("store_upsert", entries), |b| {
            b.iter_batched(
                || next_batch(&ring, &mut next),
                |batch| {
                    now += 1;
                    for (key, patch) in batch {
                        store.upsert(key, patch, now);
                    }
                },
                BatchSize::PerIteration,
            )
        });

        let baseline = MutexStore::new(entries);
        for (key, patch) in &ring {
            baseline.upsert(key, patch.clone(), now);
        }
        group.bench_function(BenchmarkId::new("mutex_hashmap_upsert", entries), |b| {
            b.iter_batched(
                || next_batch(&ring, &mut next),
                |batch| {
                    now += 1;
                    for (key, patch) in batch {
                        baseline.upsert(&key, patch, now);
                    }
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, engine, store);
criterion_main!(benches);
