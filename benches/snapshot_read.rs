//! The read path: what one `system-presence` list costs a reader, alone and
//! while the writer applies a steady stream of beacons, against the
//! `Mutex<HashMap>` baseline (see `common`).
//!
//! Every function reads a store of 200 entries plus self (OpenClaw's cap).
//! "1M_writes" runs a producer paced at 1M beacons/s attempted on another
//! thread for the whole function; what it achieved is printed after each
//! function (rollcall's writer is a third thread; the baseline's writes take
//! the lock on the producer thread itself). This machine has 2 cores, so
//! with a writer busy the readers share the other core with the producer.

mod common;

use common::{MutexStore, PacedProducer, PacedReport, beacons, now_millis, self_entry};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rollcall::engine::{Engine, EngineConfig, Event, SnapshotReader};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// OpenClaw's cap: the size every list has in practice.
const ENTRIES: usize = 200;
/// The write load benches/README.md's "reads slowed ≤ 2x" target is quoted at.
const WRITE_RATE: f64 = 1_000_000.0;

/// The measured read: load the current snapshot and take the shared
/// pieces of its list (what a vectored write would send), touching each.
fn read(reader: &SnapshotReader) -> usize {
    let snap = reader.load();
    snap.list_pieces(snap.published_at())
        .map(|piece| piece.len() + usize::from(piece[0]))
        .sum()
}

/// Runs `iters` of `op` on each of `threads` threads at once; returns the
/// wall time until all are done.
fn parallel(threads: usize, iters: u64, op: impl Fn() + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..iters {
                    op();
                }
            });
        }
    });
    start.elapsed()
}

fn started_engine() -> (Engine, Arc<Vec<Event>>) {
    let engine = Engine::start(EngineConfig::default(), self_entry());
    let events = Arc::new(beacons(ENTRIES));
    let sender = engine.sender();
    for event in events.iter() {
        sender
            .try_push(event.clone())
            .expect("the queue holds 200 events");
    }
    let (key, patch) = common::beacon(0);
    let applied = sender
        .try_push_acked(Event::Beacon { key, patch })
        .expect("the queue holds 201 events");
    applied.blocking_recv().expect("the writer is running");
    assert_eq!(engine.reader().load().len(), ENTRIES + 1);
    (engine, events)
}

/// Shorter than any measured function: the function was filtered out.
const SKIPPED: Duration = Duration::from_millis(250);

fn report_rollcall(name: &str, producer: PacedReport, engine: &Engine, events0: u64, pubs0: u64) {
    if producer.elapsed < SKIPPED {
        return;
    }
    let stats = engine.stats();
    // Relaxed: metrics counters, read after the producer was joined.
    let events = stats.events.load(std::sync::atomic::Ordering::Relaxed) - events0;
    let pubs = stats.publishes.load(std::sync::atomic::Ordering::Relaxed) - pubs0;
    let secs = producer.elapsed.as_secs_f64();
    eprintln!(
        "{name}: producer attempted {:.0}/s, accepted {:.0}/s; writer applied {:.0} events/s, \
         {:.0} publishes/s",
        producer.attempted_rate(),
        producer.accepted_rate(),
        events as f64 / secs,
        pubs as f64 / secs,
    );
}

fn rollcall(c: &mut Criterion) {
    let (engine, events) = started_engine();
    let reader = engine.reader();
    let mut group = c.benchmark_group("snapshot_read");

    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("rollcall_load", "idle"), |b| {
        b.iter(|| black_box(read(&reader)))
    });

    // The full reply body, self `ts` refreshed: what the baseline's list
    // produces, for a like-for-like comparison.
    let mut body = Vec::new();
    group.bench_function(BenchmarkId::new("rollcall_write_list", "idle"), |b| {
        b.iter(|| {
            body.clear();
            reader.load().write_list(now_millis(), &mut body);
            black_box(body.len())
        })
    });

    for readers in [1usize, 2] {
        let stats = engine.stats();
        let (events0, pubs0) = (
            stats.events.load(std::sync::atomic::Ordering::Relaxed),
            stats.publishes.load(std::sync::atomic::Ordering::Relaxed),
        );
        let sender = engine.sender();
        let ring = Arc::clone(&events);
        let producer = PacedProducer::start(WRITE_RATE, move |n| {
            sender
                .try_push(ring[n as usize % ring.len()].clone())
                .is_ok()
        });
        let param = format!("1M_writes_{readers}_readers");
        let id = BenchmarkId::new("rollcall_load", &param);
        group.throughput(Throughput::Elements(readers as u64));
        if readers == 1 {
            group.bench_function(id, |b| b.iter(|| black_box(read(&reader))));
        } else {
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    parallel(readers, iters, || {
                        black_box(read(&reader));
                    })
                })
            });
        }
        report_rollcall(
            &format!("snapshot_read/rollcall_load/{param}"),
            producer.stop(),
            &engine,
            events0,
            pubs0,
        );
    }
    group.finish();
    engine.shutdown();
}

fn baseline(c: &mut Criterion) {
    let store = Arc::new(MutexStore::new(ENTRIES));
    let events = Arc::new(common::beacons(ENTRIES));
    let now = now_millis();
    for event in events.iter() {
        if let Event::Beacon { key, patch } = event {
            store.upsert(key, patch.clone(), now);
        }
    }
    let mut group = c.benchmark_group("snapshot_read");
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("mutex_hashmap_list", "idle"), |b| {
        b.iter(|| black_box(store.list(now_millis()).len()))
    });

    for readers in [1usize, 2] {
        let writer_store = Arc::clone(&store);
        let ring = Arc::clone(&events);
        let producer = PacedProducer::start(WRITE_RATE, move |n| {
            if let Event::Beacon { key, patch } = &ring[n as usize % ring.len()] {
                writer_store.upsert(key, patch.clone(), now_millis());
            }
            true
        });
        let param = format!("1M_writes_{readers}_readers");
        let id = BenchmarkId::new("mutex_hashmap_list", &param);
        group.throughput(Throughput::Elements(readers as u64));
        if readers == 1 {
            group.bench_function(id, |b| b.iter(|| black_box(store.list(now_millis()).len())));
        } else {
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    parallel(readers, iters, || {
                        black_box(store.list(now_millis()).len());
                    })
                })
            });
        }
        let report = producer.stop();
        if report.elapsed < SKIPPED {
            continue;
        }
        eprintln!(
            "snapshot_read/mutex_hashmap_list/{param}: writer attempted and applied {:.0} \
             upserts/s",
            report.accepted_rate(),
        );
    }
    group.finish();
}

criterion_group!(benches, rollcall, baseline);
criterion_main!(benches);
