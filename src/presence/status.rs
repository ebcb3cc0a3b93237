//! Active / Idle / Stale, derived from an entry's age alone (docs/protocol.md §6).

use super::entry::Millis;
use std::time::Duration;

/// Ages up to this are Active.
pub const ACTIVE_MAX_AGE: Duration = Duration::from_secs(120);
/// Ages up to this (and over [`ACTIVE_MAX_AGE`]) are Idle; older is Stale.
pub const IDLE_MAX_AGE: Duration = Duration::from_secs(300);

/// How fresh an entry is, for UIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Written in the last two minutes.
    Active,
    /// Written in the last five minutes.
    Idle,
    /// Older.
    Stale,
}

impl Status {
    /// The status of an entry written at `ts`, seen at `now`. A `ts` in the
    /// future counts as age 0.
    pub fn of(ts: Millis, now: Millis) -> Status {
        let age = u128::try_from(now.saturating_sub(ts)).unwrap_or(0);
        if age <= ACTIVE_MAX_AGE.as_millis() {
            Status::Active
        } else if age <= IDLE_MAX_AGE.as_millis() {
            Status::Idle
        } else {
            Status::Stale
        }
    }

    /// Lowercase name, as `/v1/presence/stats` reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Idle => "idle",
            Status::Stale => "stale",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_boundaries_are_inclusive() {
        let now = 1_000_000;
        assert_eq!(Status::of(now, now), Status::Active);
        assert_eq!(Status::of(now - 120_000, now), Status::Active);
        assert_eq!(Status::of(now - 120_001, now), Status::Idle);
        assert_eq!(Status::of(now - 300_000, now), Status::Idle);
        assert_eq!(Status::of(now - 300_001, now), Status::Stale);
        assert_eq!(Status::of(now + 5, now), Status::Active);
    }
}
