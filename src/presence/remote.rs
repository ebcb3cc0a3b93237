//! Rows that come from elsewhere than this gateway's own connections: other
//! gateways of a fleet (docs/protocol.md §8) and a previous run of this one (warm
//! restart). Pure: the types the engine carries to the store, and the rule
//! that decides which gateway's row a key shows.
//!
//! Invariants of the rule ([`arbitrate`]):
//! - a live connection on this gateway always wins here: nothing from
//!   elsewhere overwrites it, and it is never shown as disconnected while
//!   it is open;
//! - a gateway is the single writer of its own rows: its later writes
//!   always replace its earlier ones;
//! - between two gateways, a live row beats one that is not live, and
//!   among equals the newer `ts` wins (ties go to the incoming row, so
//!   replays are idempotent).

use super::entry::{Entry, Millis};
use super::key::Key;
use super::source::disconnect_reason;
use std::sync::Arc;

/// A fleet gateway's node id.
pub type NodeId = Arc<str>;

/// One row as another gateway (or a previous run) holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRow {
    /// The row's key.
    pub key: Key,
    /// The entry, with its own `ts`; `gateway_id` names its origin.
    pub entry: Entry,
    /// Whether its origin holds a live connection for it.
    pub live: bool,
    /// The origin gateway's own entry: exempt from the cap.
    pub pinned: bool,
}

/// A change from elsewhere, applied by the single writer in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteOp {
    /// `node` wrote `row`.
    Upsert {
        /// The origin.
        node: NodeId,
        /// What it holds now (boxed: events stay small in the queue).
        row: Box<RemoteRow>,
    },
    /// `node` no longer holds `key` (expired, evicted or handed over).
    Remove {
        /// The origin.
        node: NodeId,
        /// The key it dropped.
        key: Key,
    },
    /// `node`'s lease lapsed: its live rows become disconnected, `ts` kept.
    Lapse {
        /// The gateway that died.
        node: NodeId,
    },
    /// The whole current set of `node`'s rows (a resync): rows of `node`
    /// not in `rows` are dropped.
    Reset {
        /// The origin.
        node: NodeId,
        /// Every row it holds.
        rows: Vec<RemoteRow>,
    },
    /// Rows this gateway held before a restart. Their connections are gone:
    /// they come back disconnected, `ts` kept, under keys not written since.
    Restore {
        /// The rows of the previous run.
        rows: Vec<RemoteRow>,
    },
}

/// Who holds a key now, as [`arbitrate`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder<'a> {
    /// A row written on this gateway.
    Local {
        /// A connection on this gateway owns the key.
        live: bool,
    },
    /// A row from another gateway.
    Remote {
        /// Its origin.
        node: &'a str,
        /// Its origin says its connection is live.
        live: bool,
    },
}

/// What to do with an incoming remote row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Show it.
    Apply,
    /// Keep it aside: it is live, and shows once the current row stops
    /// being live.
    Shadow,
    /// Drop it.
    Ignore,
}

/// Decides whether a row from `node` (`live`, written at `ts`) replaces
/// the current holder of its key, written at `current_ts`.
pub fn arbitrate(
    current: Option<(Holder<'_>, Millis)>,
    node: &str,
    live: bool,
    ts: Millis,
) -> Verdict {
    let Some((holder, current_ts)) = current else {
        return Verdict::Apply;
    };
    let newer = ts >= current_ts;
    match holder {
        Holder::Local { live: true } | Holder::Remote { live: true, .. } if !live => match holder {
            Holder::Remote { node: origin, .. } if origin == node => Verdict::Apply,
            _ => Verdict::Ignore,
        },
        Holder::Local { live: true } => Verdict::Shadow,
        Holder::Remote { node: origin, .. } if origin == node => Verdict::Apply,
        Holder::Remote { live: true, .. } if !newer => Verdict::Shadow,
        Holder::Local { live: false } | Holder::Remote { live: false, .. } if live => {
            Verdict::Apply
        }
        _ if newer => Verdict::Apply,
        _ => Verdict::Ignore,
    }
}

/// Marks an entry whose connection is gone as disconnected, keeping its
/// `ts` so it expires when it would have.
pub fn mark_disconnected(entry: &mut Entry) {
    let is_node = entry.roles.iter().any(|role| role == "node");
    entry.reason = Some(disconnect_reason(is_node).to_owned());
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL_LIVE: Holder<'static> = Holder::Local { live: true };
    const LOCAL_GONE: Holder<'static> = Holder::Local { live: false };

    fn remote(node: &'static str, live: bool) -> Holder<'static> {
        Holder::Remote { node, live }
    }

    #[test]
    fn an_unknown_key_takes_any_row() {
        assert_eq!(arbitrate(None, "b", false, 1), Verdict::Apply);
    }

    #[test]
    fn a_live_local_connection_is_never_overwritten() {
        assert_eq!(
            arbitrate(Some((LOCAL_LIVE, 5)), "b", true, 9),
            Verdict::Shadow
        );
        assert_eq!(
            arbitrate(Some((LOCAL_LIVE, 5)), "b", false, 9),
            Verdict::Ignore
        );
    }

    #[test]
    fn a_live_row_beats_a_late_disconnect_from_another_gateway() {
        // The client moved from A to B; A's disconnect is newer but not live.
        assert_eq!(
            arbitrate(Some((remote("b", true), 5)), "a", false, 9),
            Verdict::Ignore
        );
        assert_eq!(
            arbitrate(Some((remote("a", false), 9)), "b", true, 5),
            Verdict::Apply
        );
        assert_eq!(
            arbitrate(Some((LOCAL_GONE, 9)), "b", true, 5),
            Verdict::Apply
        );
    }

    #[test]
    fn the_origin_always_replaces_its_own_row() {
        assert_eq!(
            arbitrate(Some((remote("a", true), 9)), "a", false, 5),
            Verdict::Apply
        );
        assert_eq!(
            arbitrate(Some((remote("a", false), 9)), "a", true, 5),
            Verdict::Apply
        );
    }

    #[test]
    fn between_equals_the_newer_ts_wins() {
        assert_eq!(
            arbitrate(Some((remote("a", false), 5)), "b", false, 6),
            Verdict::Apply
        );
        assert_eq!(
            arbitrate(Some((remote("a", false), 7)), "b", false, 6),
            Verdict::Ignore
        );
        assert_eq!(
            arbitrate(Some((LOCAL_GONE, 7)), "b", false, 6),
            Verdict::Ignore
        );
        assert_eq!(
            arbitrate(Some((remote("a", true), 5)), "b", true, 6),
            Verdict::Apply
        );
        assert_eq!(
            arbitrate(Some((remote("a", true), 7)), "b", true, 6),
            Verdict::Shadow
        );
    }

    #[test]
    fn marking_keeps_ts_and_picks_the_node_reason() {
        let mut entry = Entry {
            roles: vec!["node".into()],
            reason: Some("node-connected".into()),
            ts: 42,
            ..Entry::default()
        };
        mark_disconnected(&mut entry);
        assert_eq!(entry.reason.as_deref(), Some("node-disconnected"));
        assert_eq!(entry.ts, 42);
        let mut entry = Entry {
            roles: vec!["operator".into()],
            ..Entry::default()
        };
        mark_disconnected(&mut entry);
        assert_eq!(entry.reason.as_deref(), Some("disconnect"));
    }
}
