//! A toy [`Machine`] for the models: it records the events it applied, in
//! order, and publishes that record with a version.
//!
//! Invariants: `version` rises by one per publish that had changes; a
//! published [`Applied`] is never changed afterwards, and its `count` is the
//! length of its `events` (a reader that found them different would have
//! seen a torn snapshot).

use crate::engine::{Machine, Millis};

/// The events applied so far, as the writer published them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Applied {
    pub(crate) version: u64,
    pub(crate) events: Vec<u32>,
    /// Written apart from `events`, checked against it by readers.
    pub(crate) count: usize,
}

impl Applied {
    /// True if every event of `older` is here too, in the same order.
    pub(crate) fn extends(&self, older: &Applied) -> bool {
        self.version >= older.version && self.events.starts_with(&older.events)
    }

    pub(crate) fn is_whole(&self) -> bool {
        self.count == self.events.len()
    }
}

/// The writer's state.
#[derive(Debug)]
pub(crate) struct Log {
    state: Applied,
    changed: bool,
    /// When set, `next_deadline` reports a deadline until `expire` runs,
    /// so a model can drive the writer's timeout path once.
    expiry_due: bool,
}

impl Log {
    /// A log at version 1 with nothing applied, and its first snapshot.
    pub(crate) fn new(expiry_due: bool) -> (Log, Applied) {
        let state = Applied {
            version: 1,
            ..Applied::default()
        };
        let log = Log {
            state: state.clone(),
            changed: false,
            expiry_due,
        };
        (log, state)
    }
}

impl Machine for Log {
    type Event = u32;
    type Snapshot = Applied;

    fn apply(&mut self, event: u32, _now: Millis) {
        self.state.events.push(event);
        self.changed = true;
    }

    fn expire(&mut self, _now: Millis) {
        self.expiry_due = false;
    }

    fn has_changes(&self) -> bool {
        self.changed
    }

    fn publish(&mut self, _now: Millis) -> (u64, Applied) {
        self.state.version += 1;
        self.state.count = self.state.events.len();
        self.changed = false;
        (self.state.version, self.state.clone())
    }

    fn next_deadline(&self) -> Option<Millis> {
        self.expiry_due.then_some(0)
    }
}
