//! The writer's CPU time per event and per publish at a million rows,
//! read from `/proc` (Linux), so two builds compare on a shared machine
//! where the writer gets a varying share of a core and wall-clock rates
//! mostly measure the other load (benches/README.md, issue 19).
//!
//! ```sh
//! cargo run --release --example writer_cpu -- max-load [ROWS] [SECONDS]
//! cargo run --release --example writer_cpu -- batch
//! cargo run --release --example writer_cpu -- renew [ROWS]
//! ```
//!
//! `max-load`: the real engine holding ROWS rows (default 1,000,000), fed
//! by one producer as fast as the queue takes beacons for SECONDS
//! (default 8); prints events/s, publishes/s, events per publish and the
//! writer thread's CPU per event and per publish. `batch`: the store
//! alone, 300 batches of 1,000 upserts of rows already present, each
//! published while the previous snapshot is held, at 1,000 and at
//! 1,000,000 rows; prints the median CPU time of a batch at each size and
//! their ratio (issue 19's "≤ 2×" target, measured in CPU time).
//! `renew`: the store alone holding ROWS live rows (default 1,000,000),
//! renewed once in one turn (one pass and one publish, as before issue
//! 19's renewal steps) and once in the writer's steps of
//! `RENEWALS_PER_TURN` rows, each published; prints the CPU time of the
//! one turn, of a median and the longest step, and of the whole pass.
//!
//! `renew` needs 6acb286 or later (it imports `RenewalPass` and
//! `RENEWALS_PER_TURN`), and this file needs `thread_cpu` and
//! `filled_engine` from `benches/common`. To measure `max-load` or `batch`
//! on an older tree, put the version before `renew` in it:
//! `git show a14d167:examples/writer_cpu.rs > examples/writer_cpu.rs`.

#[path = "../benches/common/mod.rs"]
mod common;

use common::{beacon, now_millis, push, self_entry, thread_cpu};
use rollcall::engine::DEFAULT_MAX_BATCH;
use rollcall::engine::RENEWALS_PER_TURN;
use rollcall::presence::{RenewalPass, Store, StoreConfig};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn max_load(rows: usize, seconds: u64) {
    let (engine, events) = common::filled_engine(rows, DEFAULT_MAX_BATCH);
    let (sender, stats) = (engine.sender(), engine.stats());
    // Relaxed: metrics counters, polled.
    let (events0, publishes0) = (stats.events.load(Relaxed), stats.publishes.load(Relaxed));
    let (start, cpu0) = (Instant::now(), thread_cpu("rollcall-writer"));
    let mut next = 0;
    while start.elapsed() < Duration::from_secs(seconds) {
        for _ in 0..4096 {
            push(&sender, events[next].clone());
            next = (next + 1) % events.len();
        }
    }
    let cpu = (thread_cpu("rollcall-writer") - cpu0).as_secs_f64();
    let elapsed = start.elapsed().as_secs_f64();
    let applied = (stats.events.load(Relaxed) - events0) as f64;
    let published = (stats.publishes.load(Relaxed) - publishes0).max(1) as f64;
    println!(
        "max-load {rows} rows: {:.0} events/s, {:.2} publishes/s, {:.0} events per publish; \
         writer CPU {:.2} s of {elapsed:.1} s: {:.2} µs per event, {:.1} ms per publish",
        applied / elapsed,
        published / elapsed,
        applied / published,
        cpu,
        cpu * 1e6 / applied,
        cpu * 1e3 / published,
    );
    engine.shutdown();
}

/// CPU time this thread has used, to the nanosecond (`schedstat` may lag
/// a running thread by a scheduler tick, too coarse for one batch).
fn own_cpu() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the call's duration.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(status, 0, "Linux has a thread CPU clock");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Median CPU time of a batch of 1,000 upserts and its publish at `rows`.
fn batch_cpu(rows: usize) -> Duration {
    let mut now = now_millis();
    let ring: Vec<_> = (0..rows)
        .map(|n| beacon(common::arrival(n, rows)))
        .collect();
    let config = StoreConfig {
        max_entries: rows,
        ..StoreConfig::default()
    };
    let mut store = Store::new(config, self_entry());
    for (key, patch) in &ring {
        store.upsert(key.clone(), patch.clone(), now);
    }
    let mut held = store.publish(now);
    let (mut next, mut times) = (0, Vec::new());
    for _ in 0..300 {
        let batch: Vec<_> = (0..1_000)
            .map(|_| {
                next = (next + 1) % ring.len();
                ring[next].clone()
            })
            .collect();
        now += 1;
        let cpu0 = own_cpu();
        for (key, patch) in batch {
            store.upsert(key, patch, now);
        }
        held = store.publish(now);
        times.push(own_cpu() - cpu0);
    }
    std::hint::black_box(&held);
    times.sort();
    times[times.len() / 2]
}

/// A store holding `rows` rows, each with a live connection, written at
/// `at`, published once.
fn live_store(rows: usize, at: rollcall::presence::Millis) -> Store {
    let config = StoreConfig {
        max_entries: rows,
        ..StoreConfig::default()
    };
    let mut store = Store::new(config, self_entry());
    for n in 0..rows {
        let (key, patch) = beacon(n);
        store.connect(n as u64, key, patch, at);
    }
    store.publish(at);
    store
}

/// One renewal of `rows` live rows, whole and in steps.
fn renew(rows: usize) {
    let at = now_millis();
    let (every, now) = (12_500, at + 12_500);
    let mut store = live_store(rows, at);
    let cpu0 = own_cpu();
    let renewed = store.renew_live(now, every);
    let held = store.publish(now);
    let whole = own_cpu() - cpu0;
    assert_eq!(renewed, rows, "every row is due");
    drop((store, held));
    let mut store = live_store(rows, at);
    let mut pass = RenewalPass::new(now, every).expect("a time");
    let (mut steps, mut renewed) = (Vec::new(), 0);
    loop {
        let cpu0 = own_cpu();
        let (count, finished) = store.renew_some(now, &mut pass, RENEWALS_PER_TURN);
        let held = store.publish(now);
        steps.push(own_cpu() - cpu0);
        std::hint::black_box(&held);
        renewed += count;
        if finished {
            break;
        }
    }
    assert_eq!(renewed, rows, "every row is due");
    let total: Duration = steps.iter().sum();
    steps.sort();
    println!(
        "renewing {rows} live rows: in one turn {:.0} ms of CPU; in {} steps of at most \
         {RENEWALS_PER_TURN} rows: median step {:.2} ms, longest {:.2} ms, all {:.0} ms \
         ({:.2} us per row)",
        whole.as_secs_f64() * 1e3,
        steps.len(),
        steps[steps.len() / 2].as_secs_f64() * 1e3,
        steps[steps.len() - 1].as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e6 / rows as f64,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: u64| {
        args.get(i)
            .map_or(default, |a| a.parse().expect("a number"))
    };
    match args.first().map(String::as_str) {
        Some("max-load") => max_load(arg(1, 1_000_000) as usize, arg(2, 8)),
        Some("batch") => {
            let small = batch_cpu(1_000);
            let large = batch_cpu(1_000_000);
            println!(
                "batch of 1,000 upserts + publish, median CPU: {:.2} ms at 1,000 rows, \
                 {:.2} ms at 1,000,000 rows ({:.2}×)",
                small.as_secs_f64() * 1e3,
                large.as_secs_f64() * 1e3,
                large.as_secs_f64() / small.as_secs_f64(),
            );
        }
        Some("renew") => renew(arg(1, 1_000_000) as usize),
        _ => eprintln!(
            "usage: writer_cpu max-load [ROWS] [SECONDS] | writer_cpu batch | writer_cpu renew [ROWS]"
        ),
    }
}
