//! Wall-clock time as the protocol counts it: milliseconds since the Unix
//! epoch. The one clock every module reads, so none of them needs the engine
//! for it; pure code (`presence/`) takes `now` as an argument instead.

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
