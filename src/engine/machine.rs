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
}

/// The store plus what the writer reports about it.
pub struct PresenceMachine {
    store: Store,
}

impl PresenceMachine {
    /// Wraps a store.
    pub fn new(store: Store) -> Self {
        PresenceMachine { store }
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
        };
    }

    fn expire(&mut self, now: Millis) {
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
        self.store.next_expiry()
    }
}
