//! Pacing of full-list fan-out (docs/protocol.md §7): full lists go out no more
//! often than their egress budget allows. The broadcaster records each
//! decision in the metrics, where `health` also reads it.
//!
//! Invariant: the interval is `max(coalesce, list bytes × full-list
//! subscribers / budget)`, so full-list egress averages at most the budget
//! however many watchers there are; deltas are not paced.

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
