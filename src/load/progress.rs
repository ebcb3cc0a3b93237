//! What a run reports while it goes: the [`LoadProgress`] values handed to the
//! caller's callback (the binary draws them as a progress bar).

use std::time::Duration;

/// How a run is going, handed to the caller's callback about every
/// 200 ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoadProgress {
    /// The ramp: connections open out of those asked for.
    Ramp {
        /// Connections open now.
        held: u64,
        /// Connections asked for.
        total: u64,
        /// Connection failures so far.
        failed: u64,
    },
    /// The steady phase.
    Steady {
        /// Time since the phase started.
        elapsed: Duration,
        /// The phase's length (`--duration`).
        length: Duration,
        /// Connections open now.
        held: u64,
        /// Replies per second since the last report.
        per_sec: f64,
        /// Error replies plus connection failures so far.
        errors: u64,
    },
    /// The watchers catching up after the other clients stopped.
    Settle {
        /// Time since the settle started.
        elapsed: Duration,
        /// Its longest length (`--settle`).
        length: Duration,
        /// Watchers connected.
        held: u64,
        /// Watchers holding the gateway's version.
        converged: u64,
    },
    /// Measuring is over; clients are being stopped.
    Done,
}
