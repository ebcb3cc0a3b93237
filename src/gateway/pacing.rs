//! Pacing of full-list fan-out (docs/protocol.md §7): full lists go out no more
//! often than their egress budget allows. The broadcaster records each
//! decision in the metrics, where `health` also reads it.
//!
//! Invariant: the interval is `max(coalesce, bytes of one round / budget)`,
//! where a round is the list sent to every full-list subscriber, each
//! counted at what it costs on the wire (its compressed size with
//! permessage-deflate), so full-list egress averages at most the budget
//! however many watchers there are; deltas are not paced.

use std::time::Duration;

/// The interval between two full-list fan-outs of `round_bytes` in all.
pub fn full_interval(coalesce: Duration, round_bytes: u64, budget: u64) -> Duration {
    let paced = Duration::from_secs_f64(round_bytes as f64 / budget.max(1) as f64);
    coalesce.max(paced)
}

/// The wire bytes of one round: `plain` bytes to each of `watchers`, but
/// `deflated` bytes to the `compressing` ones among them.
pub fn round_bytes(plain: usize, deflated: usize, watchers: usize, compressing: usize) -> u64 {
    let compressing = compressing.min(watchers);
    (plain as u64) * (watchers - compressing) as u64 + (deflated as u64) * compressing as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_watchers_get_the_coalescing_interval() {
        let coalesce = Duration::from_millis(100);
        assert_eq!(full_interval(coalesce, 20_000 * 10, 64 << 20), coalesce);
    }

    #[test]
    fn many_watchers_stretch_the_interval_to_the_budget() {
        let coalesce = Duration::from_millis(100);
        // 12,000 watchers × 50 KB = 600 MB per round at 100 MB/s: 6 s.
        let interval = full_interval(coalesce, round_bytes(50_000, 0, 12_000, 0), 100_000_000);
        assert_eq!(interval, Duration::from_secs(6));
        // Compressed 5:1 for half of them: 360 MB per round.
        let bytes = round_bytes(50_000, 10_000, 12_000, 6_000);
        assert_eq!(bytes, 360_000_000);
        let interval = full_interval(coalesce, bytes, 100_000_000);
        assert_eq!(interval, Duration::from_millis(3600));
    }

    #[test]
    fn a_zero_budget_does_not_divide_by_zero() {
        let interval = full_interval(Duration::ZERO, 100, 0);
        assert_eq!(interval, Duration::from_secs(100));
    }
}
