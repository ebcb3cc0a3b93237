//! Wall-clock time as the protocol counts it: milliseconds since the Unix
//! epoch. The one clock every module reads, so none of them needs the engine
//! for it; pure code (`presence/`) takes `now` as an argument instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, as `ts` fields carry them.
pub type Millis = i64;

/// Wall-clock milliseconds since the Unix epoch; 0 if the clock is before it.
pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX))
        .unwrap_or(0)
}

/// A served gateway's clock: the wall clock, or (for tests) the wall
/// clock plus an offset that [`Clock::advance`] moves forward, so a test
/// can pass a TTL without waiting for it. Cheap to clone; clones share
/// the offset. [`Clock::system`] (the default) reads [`now_millis`] and
/// nothing else.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// `None` for the system clock; the shared offset in ms otherwise.
    offset: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The wall clock, as [`now_millis`] reads it.
    pub fn system() -> Clock {
        Clock { offset: None }
    }

    /// The wall clock plus an offset, zero until [`Clock::advance`] moves
    /// it: a test hook, never set from the command line.
    pub fn adjustable() -> Clock {
        Clock {
            offset: Some(Arc::new(AtomicI64::new(0))),
        }
    }

    /// Milliseconds since the Unix epoch on this clock.
    pub fn now(&self) -> Millis {
        let wall = now_millis();
        match &self.offset {
            None => wall,
            // Relaxed: the offset is a lone value, ordered by whoever
            // then wakes the readers (the writer's queue).
            Some(offset) => wall.saturating_add(offset.load(Ordering::Relaxed)),
        }
    }

    /// Moves this clock (and every clone of it) `ms` forward.
    ///
    /// # Panics
    /// On a [`Clock::system`] clock: only an adjustable one can move.
    pub fn advance(&self, ms: Millis) {
        let offset = self
            .offset
            .as_ref()
            .expect("only a Clock::adjustable() can advance");
        offset.fetch_add(ms.max(0), Ordering::Relaxed);
    }
}

/// The single writer's clock: the wall clock while it runs forward, and
/// never backwards or frozen when it steps back.
///
/// After a backwards step of `D`, time keeps running at half speed (from
/// the monotonic clock) until the wall clock catches up, `2·D` later:
/// rows keep expiring, `ts` stays monotonic (per row and overall), and
/// the offset from the wall clock is gone again afterwards. A forward
/// step is followed at once, like the wall clock.
pub struct WriterClock<W, M> {
    wall: W,
    monotonic: M,
    /// The time returned when the wall clock was last followed.
    anchor: Millis,
    /// The monotonic reading at `anchor`.
    anchor_mono: std::time::Duration,
}

impl<W: FnMut() -> Millis> WriterClock<W, fn() -> std::time::Duration> {
    /// `wall` slewed with the process's monotonic clock.
    pub fn new(wall: W) -> WriterClock<W, fn() -> std::time::Duration> {
        fn since_start() -> std::time::Duration {
            static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
            START.get_or_init(std::time::Instant::now).elapsed()
        }
        WriterClock::with_monotonic(wall, since_start)
    }
}

impl<W: FnMut() -> Millis, M: FnMut() -> std::time::Duration> WriterClock<W, M> {
    /// `wall` slewed with `monotonic` (injected in tests).
    pub fn with_monotonic(wall: W, mut monotonic: M) -> WriterClock<W, M> {
        let anchor_mono = monotonic();
        WriterClock {
            wall,
            monotonic,
            anchor: Millis::MIN,
            anchor_mono,
        }
    }

    /// The writer's time now.
    pub fn now(&mut self) -> Millis {
        let wall = (self.wall)();
        let mono = (self.monotonic)();
        let since = mono.saturating_sub(self.anchor_mono).as_millis() / 2;
        let slewed = self
            .anchor
            .saturating_add(Millis::try_from(since).unwrap_or(Millis::MAX));
        if wall >= slewed {
            self.anchor = wall;
            self.anchor_mono = mono;
            return wall;
        }
        slewed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::time::Duration;

    #[test]
    fn a_backwards_step_slows_time_instead_of_freezing_it() {
        let wall = Cell::new(1_000_000);
        let mono = Cell::new(Duration::ZERO);
        let mut clock = WriterClock::with_monotonic(|| wall.get(), || mono.get());
        assert_eq!(clock.now(), 1_000_000);
        let tick = |ms: u64| {
            wall.set(wall.get() + ms as Millis);
            mono.set(mono.get() + Duration::from_millis(ms));
        };
        tick(1_000);
        assert_eq!(clock.now(), 1_001_000, "forward: the wall clock");
        wall.set(wall.get() - 60_000);
        assert_eq!(clock.now(), 1_001_000, "never backwards");
        tick(10_000);
        assert_eq!(clock.now(), 1_006_000, "runs at half speed, not frozen");
        tick(110_000);
        assert_eq!(clock.now(), wall.get(), "caught up after twice the step");
        let before = clock.now();
        wall.set(wall.get() + 3_600_000);
        assert_eq!(
            clock.now(),
            before + 3_600_000,
            "forward steps are followed"
        );
    }

    #[test]
    fn an_adjustable_clock_moves_with_its_clones_and_the_system_one_does_not() {
        let clock = Clock::adjustable();
        let clone = clock.clone();
        let before = clock.now();
        clone.advance(3_600_000);
        assert!(clock.now() >= before + 3_600_000);
        assert!(Clock::system().now() < before + 3_600_000);
        assert!(Clock::default().offset.is_none());
    }

    #[test]
    fn time_never_decreases_whatever_the_wall_clock_does() {
        let wall = Cell::new(500);
        let mono = Cell::new(Duration::ZERO);
        let mut clock = WriterClock::with_monotonic(|| wall.get(), || mono.get());
        let mut last = clock.now();
        for (i, jump) in [-300, 20, -5, 400, -1_000, 7, 0, 3].into_iter().enumerate() {
            wall.set(wall.get() + jump);
            mono.set(mono.get() + Duration::from_millis(i as u64 * 3));
            let now = clock.now();
            assert!(now >= last, "{now} < {last}");
            last = now;
        }
    }
}
