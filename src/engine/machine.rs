//! The presence store as the writer's [`Machine`]: the events producers send
//! and how each one maps onto a store operation.

use super::writer::{Machine, Millis};
use crate::presence::{ConnId, ConnTag, Key, Patch, RemoteOp, Snapshot, Store, StoreStats};

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
}

impl PresenceMachine {
    /// Wraps a store; live rows are renewed only when the TTL reaches them.
    pub fn new(store: Store) -> Self {
        PresenceMachine {
            store,
            renew_every: 0,
            next_renewal: Millis::MAX,
        }
    }

    /// Renews live rows every `every` (a zero duration: never), so a row
    /// whose connection is alive keeps a `ts` less than two periods old.
    /// One pass per period, whatever the number of connections.
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
        if now >= self.next_renewal {
            self.store.renew_live(now, self.renew_every);
            self.next_renewal = now.saturating_add(self.renew_every);
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
        let renewal = (self.next_renewal < Millis::MAX).then_some(self.next_renewal);
        match (self.store.next_expiry(), renewal) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
