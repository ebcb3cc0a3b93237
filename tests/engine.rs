//! The hand-off end to end: queues, the writer thread and the snapshot cell.

use rollcall::engine::{Engine, EngineConfig, Event, PushError};
use rollcall::presence::{Entry, Key, Patch, StoreConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

fn self_entry() -> Entry {
    Entry {
        instance_id: Some("gw".into()),
        text: "Gateway".into(),
        ..Entry::default()
    }
}

fn beacon(key: &str) -> Event {
    Event::Beacon {
        key: Key::parse(key).unwrap(),
        patch: Patch {
            host: Some(key.into()),
            ..Patch::default()
        },
    }
}

fn keys(engine: &Engine) -> Vec<String> {
    engine
        .reader()
        .load()
        .entries()
        .map(|e| e.key.as_str().to_owned())
        .collect()
}

#[test]
fn acked_event_is_visible_in_the_snapshot() {
    let engine = Engine::start(EngineConfig::default(), self_entry());
    let applied = engine.sender().try_push_acked(beacon("a")).unwrap();
    let version = applied.blocking_recv().unwrap();
    let reader = engine.reader();
    let snap = reader.load();
    assert!(snap.version() >= version);
    assert_eq!(version, 2);
    assert_eq!(keys(&engine), ["gw", "a"]);
}

#[test]
fn waiter_wakes_when_its_version_is_published() {
    let engine = Engine::start(EngineConfig::default(), self_entry());
    let reader = engine.reader();
    let waiter = std::thread::spawn(move || reader.wait_for_blocking(3));
    engine
        .sender()
        .try_push_acked(beacon("a"))
        .unwrap()
        .blocking_recv()
        .unwrap();
    engine
        .sender()
        .try_push_acked(beacon("b"))
        .unwrap()
        .blocking_recv()
        .unwrap();
    waiter.join().unwrap();
    assert!(engine.reader().version() >= 3);
}

#[test]
fn full_queue_hands_the_event_back() {
    // A one-slot queue under 100k back-to-back pushes fills faster than
    // the writer drains it.
    let engine = Engine::start(
        EngineConfig {
            queue_capacity: 1,
            ..EngineConfig::default()
        },
        self_entry(),
    );
    let sender = engine.sender();
    let mut full = 0;
    let mut accepted = 0;
    for i in 0..100_000 {
        match sender.try_push(beacon(&format!("k{i}"))) {
            Ok(()) => accepted += 1,
            Err(PushError::Full(Event::Beacon { key, .. })) => {
                assert_eq!(key.as_str(), format!("k{i}"), "the same event comes back");
                full += 1;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(full > 0, "a one-slot queue must fill under 100k pushes");
    assert_eq!(sender.rejected(), full);
    engine.shutdown();
    assert!(accepted > 0);
}

#[test]
fn shutdown_applies_every_accepted_event() {
    let engine = Engine::start(
        EngineConfig {
            store: StoreConfig {
                max_entries: 1_000_000,
                ..StoreConfig::default()
            },
            ..EngineConfig::default()
        },
        self_entry(),
    );
    let accepted = Arc::new(AtomicI64::new(0));
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let sender = engine.sender();
            let accepted = Arc::clone(&accepted);
            std::thread::spawn(move || {
                for i in 0..20_000 {
                    if sender.try_push(beacon(&format!("p{p}-{i}"))).is_ok() {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    engine.shutdown();
    let snap = engine.reader().load_full();
    assert_eq!(snap.len() as i64 - 1, accepted.load(Ordering::Relaxed));
    assert!(matches!(
        engine.sender().try_push(beacon("late")),
        Err(PushError::Closed(_))
    ));
}

#[test]
fn expiry_runs_on_a_timer_without_events() {
    let clock = Arc::new(AtomicI64::new(1_000_000));
    let writer_clock = Arc::clone(&clock);
    let engine = Engine::start_with(
        EngineConfig {
            store: StoreConfig {
                ttl: Duration::from_millis(50),
                max_entries: 10,
            },
            ..EngineConfig::default()
        },
        self_entry(),
        move || writer_clock.load(Ordering::SeqCst),
        |_| {},
    );
    let v = engine
        .sender()
        .try_push_acked(beacon("a"))
        .unwrap()
        .blocking_recv()
        .unwrap();
    assert_eq!(keys(&engine), ["gw", "a"]);
    // Time passes on the writer's clock; the writer wakes at the expiry
    // deadline by itself (its wait uses the real clock, 51 ms).
    clock.fetch_add(1_000, Ordering::SeqCst);
    engine.reader().wait_for_blocking(v + 1);
    assert_eq!(keys(&engine), ["gw"]);
}

#[test]
fn disconnect_stays_behind_the_same_producers_beacons() {
    let engine = Engine::start(
        EngineConfig {
            store: StoreConfig {
                max_entries: 10_000,
                ..StoreConfig::default()
            },
            ..EngineConfig::default()
        },
        self_entry(),
    );
    let sender = engine.sender();
    for i in 0..2_000u64 {
        let key = Key::parse(&format!("k{i}")).unwrap();
        let connect = Event::Connect {
            conn: i,
            key: key.clone(),
            patch: Patch::default(),
        };
        sender
            .try_push_acked(connect)
            .unwrap()
            .blocking_recv()
            .unwrap();
        // A beacon still queued when its connection closes must not be
        // applied after the close.
        sender
            .try_push(Event::Beacon {
                key: key.clone(),
                patch: Patch::reason("periodic"),
            })
            .unwrap();
        sender
            .push_control(Event::Disconnect {
                conn: i,
                key,
                is_node: false,
                tag: None,
            })
            .unwrap();
    }
    engine.shutdown();
    let snapshot = engine.reader().load_full();
    let wrong: Vec<_> = snapshot
        .rows()
        .filter(|row| row.entry().reason.as_deref() != Some("disconnect"))
        .map(|row| row.key.as_str().to_owned())
        .collect();
    assert_eq!(snapshot.len(), 2_001);
    assert!(
        wrong.is_empty(),
        "rows whose beacon overtook the close: {wrong:?}"
    );
}
