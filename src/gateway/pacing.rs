//! Pacing of full-list fan-out (PROTOCOL.md §7): full lists go out no more
//! often than their egress budget allows, and the current interval and
//! watcher counts are readable by `health` and `/metrics`.
//!
//! Invariant: the interval is `max(coalesce, list bytes × full-list
//! subscribers / budget)`, so full-list egress averages at most the budget
//! however many watchers there are; deltas are not paced.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The interval between two full-list fan-outs.
pub fn full_interval(
    coalesce: Duration,
    list_bytes: usize,
    watchers: usize,
    budget: u64,
) -> Duration {
    let bytes = list_bytes as f64 * watchers as f64;
    let paced = Duration::from_secs_f64(bytes / budget.max(1) as f64);
    coalesce.max(paced)
}

/// What the broadcaster last decided, for `health` and `/metrics`.
#[derive(Debug, Default)]
pub struct Pacing {
    /// The current full-list interval, in milliseconds.
    interval_ms: AtomicU64,
    /// Full-list subscribers at the last fan-out.
    full: AtomicU64,
    /// Delta subscribers at the last fan-out.
    delta: AtomicU64,
}

/// A reading of [`Pacing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacingReading {
    /// The current full-list interval, in milliseconds.
    pub interval_ms: u64,
    /// Full-list subscribers.
    pub full: u64,
    /// Delta subscribers.
    pub delta: u64,
}

impl Pacing {
    /// Records the broadcaster's latest decision.
    pub fn set(&self, interval: Duration, full: usize, delta: usize) {
        let ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        // Relaxed: independent figures read for reporting only.
        self.interval_ms.store(ms, Ordering::Relaxed);
        self.full.store(full as u64, Ordering::Relaxed);
        self.delta.store(delta as u64, Ordering::Relaxed);
    }

    /// The latest decision.
    pub fn read(&self) -> PacingReading {
        PacingReading {
            interval_ms: self.interval_ms.load(Ordering::Relaxed),
            full: self.full.load(Ordering::Relaxed),
            delta: self.delta.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_watchers_get_the_coalescing_interval() {
        let coalesce = Duration::from_millis(100);
        assert_eq!(full_interval(coalesce, 20_000, 10, 64 << 20), coalesce);
    }

    #[test]
    fn many_watchers_stretch_the_interval_to_the_budget() {
        let coalesce = Duration::from_millis(100);
        // 12,000 watchers × 50 KB = 600 MB per round at 100 MB/s: 6 s.
        let interval = full_interval(coalesce, 50_000, 12_000, 100_000_000);
        assert_eq!(interval, Duration::from_secs(6));
    }

    #[test]
    fn a_zero_budget_does_not_divide_by_zero() {
        let interval = full_interval(Duration::ZERO, 10, 10, 0);
        assert_eq!(interval, Duration::from_secs(100));
    }
}
