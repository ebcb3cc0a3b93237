//! The presence store as the writer's [`Machine`]: the events producers send
//! and how each one maps onto a store operation.

use super::writer::{Machine, Millis};
use crate::presence::{
    ConnId, ConnTag, Key, Patch, RemoteOp, RenewalPass, Snapshot, Store, StoreStats,
};

/// Most live rows one writer turn's step of a renewal pass renews (the
/// TTL's renewals in the same turn are bounded apart, by
/// [`RENEWALS_PER_EXPIRY`](crate::presence::RENEWALS_PER_EXPIRY)): a pass
/// over a million rows runs as about a thousand turns of a few
/// milliseconds each, with the events queued meanwhile applied and
/// published between them, so a beacon waits for one step, not for the
/// whole pass (issue 19).
pub const RENEWALS_PER_TURN: usize = 1024;

/// One thing that happened to presence. Keys and patches are computed by
/// the producer (see `presence::connect` and `presence::beacon`), so the
/// writer only merges.
///
/// Rows from other fleet gateways and from a previous run arrive as
/// [`Event::Remote`], through the same queue and writer as everything else,
/// so readers stay wait-free and every change stays ordered.
#[derive(Debug, Clone)]
pub enum Event {
    /// A tracked connection completed its handshake.
    Connect {
        /// The connection.
        conn: ConnId,
        /// Its presence key.
        key: Key,
        /// The connect upsert.
        patch: Patch,
    },
    /// A tracked connection closed.
    Disconnect {
        /// The connection.
        conn: ConnId,
        /// The key it connected under.
        key: Key,
        /// Role `node` writes `node-disconnected`.
        is_node: bool,
        /// The connection as its `hello-ok` named it, for provenance.
        tag: Option<ConnTag>,
    },
    /// A `system-event` beacon.
    Beacon {
        /// The beacon's key.
        key: Key,
        /// What it reported.
        patch: Patch,
    },
    /// A change from another fleet gateway, or rows of a previous run.
    Remote(RemoteOp),
    /// A live connection said it is alive (`node.event`): its row's `ts`
    /// moves to now, nothing else (docs/protocol.md §5.4).
    Renew {
        /// The key the connection is tracked under.
        key: Key,
    },
}

/// The store plus what the writer reports about it.
pub struct PresenceMachine {
    store: Store,
    /// How often live rows are renewed, in ms; 0 never (docs/protocol.md §5.4).
    renew_every: Millis,
    /// When the next renewal is due.
    next_renewal: Millis,
    /// The renewal under way, done a step per writer turn.
    renewal: Option<RenewalPass>,
}

impl PresenceMachine {
    /// Wraps a store; live rows are renewed only when the TTL reaches them.
    pub fn new(store: Store) -> Self {
        PresenceMachine {
            store,
            renew_every: 0,
            next_renewal: Millis::MAX,
            renewal: None,
        }
    }

    /// Renews live rows every `every` (a zero duration: never), so a row
    /// whose connection is alive keeps a `ts` less than two periods old.
    /// One pass per period, whatever the number of connections, made of
    /// steps of at most [`RENEWALS_PER_TURN`] rows.
    pub fn renewing(mut self, every: std::time::Duration) -> Self {
        self.renew_every = Millis::try_from(every.as_millis()).unwrap_or(Millis::MAX);
        self.next_renewal = if self.renew_every > 0 { 0 } else { Millis::MAX };
        self
    }

    /// Running totals of expirations and evictions.
    pub fn stats(&self) -> StoreStats {
        self.store.stats()
    }
}

impl Machine for PresenceMachine {
    type Event = Event;
    type Snapshot = Snapshot;

    fn apply(&mut self, event: Event, now: Millis) {
        // Outcomes other than Applied write nothing, by design: a reserved
        // key is refused before it is queued, and a superseded close is a
        // no-op (docs/protocol.md §5.1).
        let _ = match event {
            Event::Connect { conn, key, patch } => self.store.connect(conn, key, patch, now),
            Event::Disconnect {
                conn,
                key,
                is_node,
                tag,
            } => self.store.disconnect(conn, key, is_node, tag, now),
            Event::Beacon { key, patch } => self.store.upsert(key, patch, now),
            Event::Remote(op) => {
                self.store.apply_remote(op);
                return;
            }
            Event::Renew { key } => {
                self.store.renew_key(&key, now);
                return;
            }
        };
    }

    fn expire(&mut self, now: Millis) {
        if self.renewal.is_none() && now >= self.next_renewal {
            self.renewal = RenewalPass::new(now, self.renew_every);
            self.next_renewal = now.saturating_add(self.renew_every);
        }
        if let Some(pass) = &mut self.renewal {
            let (_, finished) = self.store.renew_some(now, pass, RENEWALS_PER_TURN);
            if finished {
                self.renewal = None;
            }
        }
        self.store.expire(now);
    }

    fn has_changes(&self) -> bool {
        self.store.has_changes()
    }

    fn publish(&mut self, now: Millis) -> (u64, Snapshot) {
        let snapshot = self.store.publish(now);
        (snapshot.version(), snapshot)
    }

    fn next_deadline(&self) -> Option<Millis> {
        // A pass under way goes on at once, after what is queued.
        let renewal = if self.renewal.is_some() {
            Some(0)
        } else {
            (self.next_renewal < Millis::MAX).then_some(self.next_renewal)
        };
        match (self.store.next_expiry(), renewal) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::{Entry, StoreConfig};
    use std::time::Duration;

    fn key(i: usize) -> Key {
        Key::parse(&format!("node-{i}")).unwrap()
    }

    #[test]
    fn a_renewal_pass_runs_a_bounded_step_per_turn_until_done() {
        let config = StoreConfig {
            ttl: Duration::from_secs(300),
            max_entries: 5_000,
        };
        let me = Entry {
            instance_id: Some("me".into()),
            ..Entry::default()
        };
        let store = Store::new(config, me);
        let mut m = PresenceMachine::new(store).renewing(Duration::from_secs(10));
        let n = 2 * RENEWALS_PER_TURN + 100;
        for i in 0..n {
            let (conn, key, patch) = (i as u64, key(i), Patch::default());
            m.apply(Event::Connect { conn, key, patch }, 1_000);
        }
        m.expire(1_000);
        m.publish(1_000);
        assert_eq!(m.next_deadline(), Some(11_000), "the next pass is due");
        let renewed = |m: &PresenceMachine| {
            let ts = |i| m.store.get(&key(i)).unwrap().ts;
            (0..n).filter(|&i| ts(i) > 1_000).count()
        };
        let mut steps = Vec::new();
        for now in 11_000.. {
            m.expire(now);
            steps.push(renewed(&m));
            if m.next_deadline() != Some(0) {
                break;
            }
        }
        let per_turn = RENEWALS_PER_TURN;
        assert_eq!(
            steps,
            [per_turn, 2 * per_turn, n],
            "one bounded step a turn"
        );
        assert_eq!(
            m.next_deadline(),
            Some(21_000),
            "then the next pass, a period after this one began"
        );
    }
}
