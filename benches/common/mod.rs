//! What both benches share: realistic beacons, a producer paced to a fixed
//! event rate, and the baseline store they compare rollcall against.
//!
//! The baseline is what a direct port of OpenClaw's in-memory presence
//! would be: one `Mutex<HashMap<String, Entry>>`, upserts merging in place
//! under the lock, and every list pruning expired entries, sorting by `ts`
//! descending and serialising, all under the lock (OpenClaw does all of it
//! on its one event-loop thread). It uses the same `Entry`, merge and JSON
//! encoding as rollcall, so only the design differs.

// Each bench uses part of this module.
#![allow(dead_code)]

use rollcall::engine::{Engine, EngineConfig, Event, EventSender, PushError};
use rollcall::presence::{DEFAULT_TTL, Entry, Key, Millis, Patch, StoreConfig};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The gateway's own entry; its key is reserved in both stores.
pub fn self_entry() -> Entry {
    Entry {
        instance_id: Some("gw-bench".into()),
        host: Some("gw-bench".into()),
        ip: Some("10.0.0.1".into()),
        version: Some("2026.11.1".into()),
        platform: Some("linux 6.12".into()),
        mode: Some("gateway".into()),
        reason: Some("self".into()),
        text: "Gateway: gw-bench · app 2026.11.1 · mode gateway".into(),
        ..Entry::default()
    }
}

/// The key and patch of a periodic beacon from instance `i`, shaped like
/// what a macOS client sends (about 250 bytes of JSON once merged).
pub fn beacon(i: usize) -> (Key, Patch) {
    let host = format!("mac-mini-{i:06}");
    let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
    let patch = Patch {
        instance_id: Some(format!("inst-{i:06}")),
        host: Some(host.clone()),
        ip: Some(ip.clone()),
        version: Some("2026.11.1".into()),
        platform: Some("darwin 24.1.0".into()),
        device_family: Some("Mac".into()),
        model_identifier: Some("Mac14,3".into()),
        mode: Some("ui".into()),
        last_input_seconds: Some(Some((i % 120) as u64)),
        reason: Some("periodic".into()),
        text: Some(format!(
            "Node: {host} ({ip}) · app 2026.11.1 · last input {}s ago · mode ui · reason periodic",
            i % 120
        )),
        ..Patch::default()
    };
    let key = Key::parse(&format!("inst-{i:06}")).expect("not blank");
    (key, patch)
}

/// A prime larger than any store here: stepping by it visits every
/// instance once, in an order unrelated to their keys.
const STRIDE: usize = 1_000_003;

/// The instance the `n`th of `count` beacons comes from. Beacons arrive in
/// no particular key order; sending them in key order would make the
/// store's per-`ts` key sort look cheaper than it is.
pub fn arrival(n: usize, count: usize) -> usize {
    n * STRIDE % count
}

/// `count` beacons from `count` distinct instances, in arrival order, built
/// once so the producer only clones.
pub fn beacons(count: usize) -> Vec<Event> {
    (0..count)
        .map(|n| {
            let (key, patch) = beacon(arrival(n, count));
            Event::Beacon { key, patch }
        })
        .collect()
}

/// Wall-clock milliseconds, as the writer stamps entries.
pub fn now_millis() -> Millis {
    rollcall::clock::now_millis()
}

/// A thread calling `push` at `rate` calls per second until stopped.
pub struct PacedProducer {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<PacedReport>,
}

/// What a [`PacedProducer`] did.
#[derive(Debug, Clone, Copy)]
pub struct PacedReport {
    /// Calls made.
    pub attempted: u64,
    /// Calls that returned true.
    pub accepted: u64,
    /// How long it ran.
    pub elapsed: Duration,
}

impl PacedReport {
    /// Accepted calls per second.
    pub fn accepted_rate(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64()
    }

    /// Attempted calls per second.
    pub fn attempted_rate(&self) -> f64 {
        self.attempted as f64 / self.elapsed.as_secs_f64()
    }
}

impl PacedProducer {
    /// Starts calling `push(n)` for n = 0, 1, ... at `rate` per second. It
    /// catches up in bursts after each short sleep, so it needs only a
    /// fraction of a core at 1M/s.
    pub fn start(rate: f64, mut push: impl FnMut(u64) -> bool + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let start = Instant::now();
            let (mut attempted, mut accepted) = (0u64, 0u64);
            // Relaxed: a stop flag; the join publishes the report.
            while !stopped.load(Ordering::Relaxed) {
                let due = (start.elapsed().as_secs_f64() * rate) as u64;
                if attempted >= due {
                    std::thread::sleep(Duration::from_micros(50));
                    continue;
                }
                // Bounded bursts, so a stop is noticed soon.
                let until = due.min(attempted + 4096);
                while attempted < until {
                    accepted += u64::from(push(attempted));
                    attempted += 1;
                }
            }
            PacedReport {
                attempted,
                accepted,
                elapsed: start.elapsed(),
            }
        });
        PacedProducer { stop, handle }
    }

    /// Stops the thread and returns what it did.
    pub fn stop(self) -> PacedReport {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("the producer does not panic")
    }
}

/// The baseline: OpenClaw's presence map behind one mutex.
pub struct MutexStore {
    map: Mutex<HashMap<String, Entry>>,
    self_key: String,
    ttl: Millis,
    max_entries: usize,
}

impl MutexStore {
    /// A store holding only the self entry.
    pub fn new(max_entries: usize) -> Self {
        let entry = self_entry();
        let self_key = entry
            .instance_id
            .clone()
            .expect("the self entry has an id")
            .to_lowercase();
        let mut map = HashMap::new();
        map.insert(self_key.clone(), entry);
        MutexStore {
            map: Mutex::new(map),
            self_key,
            ttl: DEFAULT_TTL.as_millis() as Millis,
            max_entries,
        }
    }

    /// Merges `patch` under `key` (already normalised), evicting the
    /// oldest entry when a new key goes over the cap.
    pub fn upsert(&self, key: &Key, patch: Patch, now: Millis) {
        let mut map = self.map.lock().expect("no bench thread panics");
        match map.get_mut(key.as_str()) {
            Some(entry) => entry.merge(patch, now),
            None => {
                let mut entry = Entry::default();
                entry.merge(patch, now);
                map.insert(key.as_str().to_owned(), entry);
                if map.len() > self.max_entries + 1 {
                    let oldest = map
                        .iter()
                        .filter(|(k, _)| **k != self.self_key)
                        .min_by_key(|(_, e)| e.ts)
                        .map(|(k, _)| k.clone());
                    if let Some(oldest) = oldest {
                        map.remove(&oldest);
                    }
                }
            }
        }
    }

    /// The list reply: prune expired, refresh the self entry's `ts`, sort
    /// by `ts` descending, serialise. Returns the JSON.
    pub fn list(&self, now: Millis) -> Vec<u8> {
        let mut map = self.map.lock().expect("no bench thread panics");
        let ttl = self.ttl;
        let self_key = &self.self_key;
        map.retain(|k, e| k == self_key || now.saturating_sub(e.ts) <= ttl);
        if let Some(me) = map.get_mut(self_key) {
            me.ts = now;
        }
        let mut rows: Vec<&Entry> = map.values().collect();
        rows.sort_by_key(|e| std::cmp::Reverse(e.ts));
        serde_json::to_vec(&rows).expect("an Entry always encodes")
    }
}

/// Pushes `event`, retrying while the queue is full.
pub fn push(sender: &EventSender<Event>, mut event: Event) {
    loop {
        match sender.try_push(event) {
            Ok(()) => return,
            Err(PushError::Full(back)) => {
                event = back;
                std::hint::spin_loop();
            }
            Err(PushError::Closed(_)) => panic!("the engine is running"),
        }
    }
}

/// The real engine holding `rows` rows, with batches of at most
/// `max_batch` events: every one of [`beacons`]`(rows)` is pushed and
/// applied before it returns. Returns the engine and those beacons, for
/// the caller to push again (each writes a row already present).
pub fn filled_engine(rows: usize, max_batch: usize) -> (Engine, Vec<Event>) {
    let config = EngineConfig {
        store: StoreConfig {
            max_entries: rows,
            ..StoreConfig::default()
        },
        max_batch,
        ..EngineConfig::default()
    };
    let engine = Engine::start(config, self_entry());
    let events = beacons(rows);
    let (sender, stats) = (engine.sender(), engine.stats());
    // Relaxed: metrics counters, polled.
    let filled = stats.events.load(Ordering::Relaxed) + rows as u64;
    for event in &events {
        push(&sender, event.clone());
    }
    while stats.events.load(Ordering::Relaxed) < filled {
        std::thread::yield_now();
    }
    (engine, events)
}

/// CPU time this process's thread named `name` has used, from its
/// `/proc/self/task/*/schedstat` (Linux; zero without `/proc` or without
/// such a thread). On a shared machine the writer gets a varying share of
/// a core, so its CPU per event compares builds better than events per
/// second do.
pub fn thread_cpu(name: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            let nanos = stat.split_whitespace().next().and_then(|n| n.parse().ok());
            return Duration::from_nanos(nanos.unwrap_or(0));
        }
    }
    Duration::ZERO
}
