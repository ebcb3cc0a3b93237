//! The per-connection bound on rows written through beacons (docs/protocol.md
//! §5.4): within one TTL window a connection may beacon at most `limit`
//! distinct keys besides its own, so no single client can fill the cap and
//! push everyone else out. Keys already admitted in the window stay
//! writable; the window restarts one TTL after it began.
//!
//! Memory: nothing until the connection beacons another key, then at most
//! `limit` keys. Time: O(1) per beacon whatever the limit (a hash set), so
//! a relay or `rollcall load --fill` allowed hundreds of thousands of rows
//! (`--max-beacon-rows`) does not scan them on every beacon.

use crate::presence::Key;
use std::collections::HashSet;
use std::time::Duration;
use tokio::time::Instant;

/// The keys one connection beaconed in the current window.
#[derive(Debug, Default)]
pub struct BeaconRows {
    /// When the window began; `None` before the first beacon to another key.
    since: Option<Instant>,
    /// Distinct keys admitted in the window, at most the limit.
    keys: HashSet<Key>,
}

/// Over the bound: how long until the window restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit {
    /// Until the window restarts.
    pub retry_after: Duration,
}

impl BeaconRows {
    /// Admits a beacon for `key` at `now`, under at most `limit` distinct
    /// keys per `window`.
    pub fn admit(
        &mut self,
        key: &Key,
        now: Instant,
        limit: usize,
        window: Duration,
    ) -> Result<(), OverLimit> {
        let since = match self.since {
            Some(since) if now.saturating_duration_since(since) < window => since,
            _ => {
                self.keys.clear();
                self.since = Some(now);
                now
            }
        };
        if self.keys.contains(key) {
            return Ok(());
        }
        if self.keys.len() >= limit {
            return Err(OverLimit {
                retry_after: window.saturating_sub(now.saturating_duration_since(since)),
            });
        }
        self.keys.insert(key.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        Key::parse(s).unwrap()
    }

    #[test]
    fn distinct_keys_are_bounded_per_window_and_admitted_ones_stay_writable() {
        let mut rows = BeaconRows::default();
        let t0 = Instant::now();
        let window = Duration::from_secs(300);
        assert!(rows.admit(&key("a"), t0, 2, window).is_ok());
        assert!(rows.admit(&key("b"), t0, 2, window).is_ok());
        assert!(rows.admit(&key("A "), t0, 2, window).is_ok(), "same key");
        let later = t0 + Duration::from_secs(100);
        assert_eq!(
            rows.admit(&key("c"), later, 2, window),
            Err(OverLimit {
                retry_after: Duration::from_secs(200)
            })
        );
        assert!(rows.admit(&key("b"), later, 2, window).is_ok());
        let next = t0 + window;
        assert!(
            rows.admit(&key("c"), next, 2, window).is_ok(),
            "a new window"
        );
        assert!(rows.admit(&key("d"), next, 2, window).is_ok());
        assert!(rows.admit(&key("a"), next, 2, window).is_err());
    }
}
