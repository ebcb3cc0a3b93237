//! The models: each runs the real writer loop on a loom thread against
//! producers, readers and waiters on others, and loom explores their
//! interleavings up to a preemption bound.

use crate::engine::{self, EventSender, PushError, SnapshotCell, WriterConfig};
use crate::toy::{Applied, Log};
use loom::sync::Arc;
use loom::thread::{self, JoinHandle};

/// Preemptions loom may insert per execution unless `LOOM_MAX_PREEMPTIONS`
/// says otherwise. Three is the least that finds every seeded bug we tried
/// (ack before publish, version stored before the snapshot, no re-check
/// under the waiter lock, no final drain, `closing` read before `in_flight`
/// is raised, `close` not waiting for in-flight pushes); the last one needs
/// three. The suite takes under a minute at three.
const PREEMPTIONS: usize = 3;

/// Checks `f` under every interleaving loom explores within the bound, and
/// prints how many that was (`cargo test -- --nocapture` shows it).
pub(crate) fn model(name: &str, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(PREEMPTIONS);
    }
    // A plain std counter: it lives outside the model and counts runs.
    let executions = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&executions);
    builder.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    println!(
        "{name}: {} executions, preemption bound {:?}",
        executions.load(std::sync::atomic::Ordering::Relaxed),
        builder.preemption_bound
    );
}

/// A running hand-off: the producers' handle, the cell and the writer.
struct HandOff {
    sender: EventSender<u32>,
    cell: Arc<SnapshotCell<Applied>>,
    writer: JoinHandle<()>,
}

impl HandOff {
    fn start(capacity: usize, max_batch: usize, expiry_due: bool) -> HandOff {
        let (log, initial) = Log::new(expiry_due);
        let cell = Arc::new(SnapshotCell::new(Arc::new(initial), 1));
        let (sender, receivers) = engine::queue::queues(capacity);
        let writer_cell = Arc::clone(&cell);
        let writer = thread::spawn(move || {
            engine::writer::run(
                log,
                receivers,
                writer_cell,
                WriterConfig { max_batch },
                || 0,
                |_| {},
            )
        });
        HandOff {
            sender,
            cell,
            writer,
        }
    }

    /// Joins the writer (it must already have been told to stop) and
    /// returns its last publication.
    fn join(self) -> Arc<Applied> {
        let HandOff {
            sender,
            cell,
            writer,
        } = self;
        drop(sender);
        writer.join().expect("the writer does not panic");
        cell.load_full()
    }
}

/// A reader racing the writer never sees a torn snapshot or one older than
/// it saw before, and a producer whose event was acknowledged finds it in
/// the snapshot it loads next (read-your-writes).
#[test]
fn acked_event_is_visible_and_reads_never_go_back() {
    model("acked_event_is_visible_and_reads_never_go_back", || {
        let hand_off = HandOff::start(2, 16, false);

        let producer = {
            let sender = hand_off.sender.clone();
            let cell = Arc::clone(&hand_off.cell);
            thread::spawn(move || {
                let applied = sender
                    .try_push_acked(7)
                    .expect("a two-slot queue has room for one event");
                let version = loom::future::block_on(applied)
                    .expect("the writer acks every event it applied");
                let snap = cell.load();
                assert!(snap.version >= version, "acked v{version}, loaded {snap:?}");
                assert!(
                    snap.events.contains(&7),
                    "acked v{version}, loaded {snap:?}"
                );
            })
        };

        // The main thread reads while the writer publishes.
        let cell = &hand_off.cell;
        let seen = cell.version();
        let first = cell.load_full();
        assert!(first.is_whole(), "torn: {first:?}");
        assert!(
            first.version >= seen,
            "version {seen} announced, loaded {first:?}"
        );
        let second = cell.load_full();
        assert!(second.is_whole(), "torn: {second:?}");
        assert!(
            second.extends(&first),
            "went back: {first:?} then {second:?}"
        );

        producer.join().expect("the producer's checks hold");
        // Dropping the last sender (in `join`) is the writer's cue to stop.
        let last = hand_off.join();
        assert_eq!(last.events, [7]);
    });
}

/// A task waiting for version V resolves once V is published, whichever
/// comes first: its registration, or the writer's publish.
#[test]
fn waiter_wakes_once_its_version_is_published() {
    model("waiter_wakes_once_its_version_is_published", || {
        let hand_off = HandOff::start(2, 16, false);
        let waiter = {
            let cell = Arc::clone(&hand_off.cell);
            thread::spawn(move || {
                let woke_at = loom::future::block_on(cell.wait_for(2));
                assert!(woke_at >= 2);
                let snap = cell.load();
                assert!(snap.version >= 2, "woke for v2, loaded {snap:?}");
                assert_eq!(snap.events, [1]);
            })
        };
        hand_off
            .sender
            .try_push(1)
            .expect("a two-slot queue has room for one event");
        waiter.join().expect("the waiter's checks hold");
        hand_off.sender.close();
        hand_off.join();
    });
}

/// Two waiters for different versions against a publisher that publishes
/// them one by one: each wakes, none waits forever. Drives the cell alone,
/// so the bound is spent on the waiter registration race.
#[test]
fn every_waiter_wakes_for_its_own_version() {
    model("every_waiter_wakes_for_its_own_version", || {
        let cell = Arc::new(SnapshotCell::new(Arc::new(snapshot(1)), 1));
        let waiters: Vec<_> = [2, 3]
            .into_iter()
            .map(|target| {
                let cell = Arc::clone(&cell);
                thread::spawn(move || {
                    let woke_at = loom::future::block_on(cell.wait_for(target));
                    assert!(woke_at >= target);
                    assert!(cell.load().version >= target);
                })
            })
            .collect();
        cell.publish(Arc::new(snapshot(2)), 2);
        cell.publish(Arc::new(snapshot(3)), 3);
        for waiter in waiters {
            waiter.join().expect("the waiter's checks hold");
        }
    });
}

fn snapshot(version: u64) -> Applied {
    Applied {
        version,
        ..Applied::default()
    }
}

/// Producers push on both queues while the engine shuts down: every push
/// that returned `Ok` is applied in the final snapshot, every refused one
/// is not, and a push after `close` returns is refused as `Closed`.
#[test]
fn shutdown_drains_every_accepted_event() {
    model("shutdown_drains_every_accepted_event", || {
        let hand_off = HandOff::start(2, 16, false);
        let producers: Vec<_> = [(1, false), (2, true)]
            .into_iter()
            .map(|(event, control)| {
                let sender = hand_off.sender.clone();
                thread::spawn(move || {
                    let pushed = if control {
                        sender.push_control(event)
                    } else {
                        sender.try_push(event)
                    };
                    match pushed {
                        Ok(()) => Some(event),
                        Err(PushError::Closed(_)) => None,
                        Err(PushError::Full(_)) => panic!("a two-slot queue filled up"),
                    }
                })
            })
            .collect();

        hand_off.sender.close();
        assert!(
            matches!(hand_off.sender.try_push(9), Err(PushError::Closed(9))),
            "a push after close is refused"
        );

        let mut accepted: Vec<u32> = producers
            .into_iter()
            .filter_map(|p| p.join().expect("producers do not panic"))
            .collect();
        accepted.sort_unstable();
        let last = hand_off.join();
        let mut applied = last.events.clone();
        applied.sort_unstable();
        assert_eq!(applied, accepted, "final snapshot {last:?}");
    });
}

/// The writer's timeout path: with an expiry due and nothing queued it
/// wakes, expires, and goes back to waiting; an event pushed meanwhile
/// still lands, and the last sender's drop still stops it.
#[test]
fn expiry_wake_up_loses_no_event() {
    model("expiry_wake_up_loses_no_event", || {
        let hand_off = HandOff::start(2, 16, true);
        let producer = {
            let sender = hand_off.sender.clone();
            thread::spawn(move || sender.try_push(5).is_ok())
        };
        assert!(producer.join().expect("the producer does not panic"));
        let last = hand_off.join();
        assert_eq!(last.events, [5]);
    });
}
