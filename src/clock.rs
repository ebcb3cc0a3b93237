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
