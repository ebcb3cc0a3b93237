//! The cap's pressure: how many rows the TTL and the cap removed over the
//! last TTL, counted in a small ring of time buckets so that the count
//! costs the same at ten removals a minute as at a million.
//!
//! Invariants: a bucket counts removals whose time falls in its slice
//! (`index * width ..`); a bucket whose index is older than the window is
//! ignored by [`Removals::pressure`] and reset before it is reused.

use crate::clock::Millis;
use serde::Serialize;
use std::time::Duration;

/// Slices of the window: counts are exact to within one slice (10 s of
/// the default 5-minute TTL).
const BUCKETS: usize = 30;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    index: i64,
    evicted: u64,
    expired: u64,
}

/// Removal counts over a sliding window as long as the TTL.
#[derive(Debug, Clone)]
pub struct Removals {
    /// The cap, reported with the counts.
    max_entries: usize,
    /// The TTL, ms.
    ttl_ms: u64,
    /// Width of one bucket, ms; at least 1.
    width: i64,
    buckets: [Bucket; BUCKETS],
}

/// What the doctor needs to judge the cap: published with each snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pressure {
    /// The cap: rows kept besides the gateway's own.
    pub max_entries: usize,
    /// The TTL, ms; also the window the counts cover.
    pub ttl_ms: u64,
    /// Rows the cap removed within the window.
    pub evicted_recent: u64,
    /// Rows the TTL removed within the window.
    pub expired_recent: u64,
}

impl Removals {
    /// Counts over a window of `ttl`, for a store capped at `max_entries`.
    pub fn new(ttl: Duration, max_entries: usize) -> Removals {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let ttl = i64::try_from(ttl_ms).unwrap_or(i64::MAX);
        Removals {
            max_entries,
            ttl_ms,
            width: (ttl / BUCKETS as i64).max(1),
            buckets: [Bucket::default(); BUCKETS],
        }
    }

    fn bucket(&mut self, now: Millis) -> &mut Bucket {
        let index = now.div_euclid(self.width);
        let slot = usize::try_from(index.rem_euclid(BUCKETS as i64))
            .expect("rem_euclid of a positive modulus is in range");
        let bucket = &mut self.buckets[slot];
        if bucket.index != index {
            *bucket = Bucket {
                index,
                ..Bucket::default()
            };
        }
        bucket
    }

    /// `n` rows were removed by the cap at `now`.
    pub fn evicted(&mut self, now: Millis, n: u64) {
        self.bucket(now).evicted += n;
    }

    /// `n` rows were removed by the TTL at `now`.
    pub fn expired(&mut self, now: Millis, n: u64) {
        self.bucket(now).expired += n;
    }

    /// The counts of the window ending at `now`.
    pub fn pressure(&self, now: Millis) -> Pressure {
        let newest = now.div_euclid(self.width);
        let oldest = newest - (BUCKETS as i64 - 1);
        let live = self
            .buckets
            .iter()
            .filter(|b| (oldest..=newest).contains(&b.index));
        let (evicted, expired) = live.fold((0, 0), |(ev, ex), b| (ev + b.evicted, ex + b.expired));
        Pressure {
            max_entries: self.max_entries,
            ttl_ms: self.ttl_ms,
            evicted_recent: evicted,
            expired_recent: expired,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_removals_within_the_window() {
        let mut r = Removals::new(Duration::from_secs(300), 200);
        r.evicted(1_000, 3);
        r.expired(2_000, 2);
        r.evicted(100_000, 1);
        let p = r.pressure(100_000);
        assert_eq!((p.evicted_recent, p.expired_recent), (4, 2));
        assert_eq!(p.max_entries, 200);
        assert_eq!(p.ttl_ms, 300_000);
    }

    #[test]
    fn removals_older_than_the_window_are_forgotten() {
        let mut r = Removals::new(Duration::from_secs(300), 200);
        r.evicted(1_000, 3);
        assert_eq!(r.pressure(299_000).evicted_recent, 3);
        assert_eq!(r.pressure(310_000).evicted_recent, 0);
        // A reused bucket starts from zero.
        r.evicted(301_000 + 10_000 * 30, 1);
        assert_eq!(r.pressure(611_000).evicted_recent, 1);
    }

    #[test]
    fn a_tiny_ttl_still_has_a_positive_bucket_width() {
        let mut r = Removals::new(Duration::from_millis(3), 200);
        r.evicted(5, 1);
        assert_eq!(r.pressure(5).evicted_recent, 1);
    }
}
