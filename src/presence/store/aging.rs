//! Aging: the TTL, the renewal of live rows and the cap (docs/protocol.md
//! §5.4). A row whose connection is live (here, or at the fleet gateway
//! holding it) is renewed, never expired, and evicted only when every
//! unpinned row is live; the rest age from their last write.

use super::{SlotId, Store, millis};
use crate::presence::entry::Millis;
use crate::presence::key::Key;

impl Store {
    /// Removes entries older than the TTL; returns how many. A live row
    /// past the TTL is renewed instead: the TTL never removes a row whose
    /// connection is alive (docs/protocol.md §5.4).
    pub fn expire(&mut self, now: Millis) -> usize {
        self.clock = self.clock.max(now);
        let ttl = millis(self.config.ttl);
        let mut removed = 0;
        while let Some((age, id)) = self.by_age.first() {
            if now.saturating_sub(age.0) <= ttl {
                break;
            }
            let slot = self.slot(id);
            if slot.live && !slot.pinned {
                self.renew_slot(id, now);
                continue;
            }
            self.by_age.remove(&age);
            self.remove_slot(id);
            removed += 1;
        }
        if removed > 0 {
            self.stats.expired += removed as u64;
            self.removals.expired(now, removed as u64);
            self.changed = true;
        }
        removed
    }

    /// Sets `ts = now` on every live row (pinned ones aside) whose `ts` is
    /// at least `min_age` old; returns how many. A renewal changes only
    /// `ts`: it records no write in the row's provenance, and a publish
    /// after nothing but renewals raises the version without raising
    /// [`Snapshot::change_version`](crate::presence::Snapshot::change_version),
    /// so watchers are not woken for it (docs/protocol.md §5.4).
    pub fn renew_live(&mut self, now: Millis, min_age: Millis) -> usize {
        self.clock = self.clock.max(now);
        let Some(upto) = now.checked_sub(min_age) else {
            return 0;
        };
        let due: Vec<SlotId> = self
            .by_age
            .upto(upto)
            .filter(|&id| {
                let slot = self.slot(id);
                slot.live && !slot.pinned && slot.age.0 < now
            })
            .collect();
        for &id in &due {
            self.renew_slot(id, now);
        }
        due.len()
    }

    /// Renews the live row under `key` at `now` (a `node.event` from its
    /// connection); false if there is no such live row.
    pub fn renew_key(&mut self, key: &Key, now: Millis) -> bool {
        self.clock = self.clock.max(now);
        match self.find(key) {
            Some(id) if self.slot(id).live && !self.slot(id).pinned => {
                self.renew_slot(id, now);
                true
            }
            _ => false,
        }
    }

    /// Moves slot `id`'s `ts` to `now`, keeping everything else.
    fn renew_slot(&mut self, id: SlotId, now: Millis) {
        self.write_seq += 1;
        let age = (now.max(self.slot(id).age.0), self.write_seq);
        self.entry_mut(id).ts = age.0;
        let old = std::mem::replace(&mut self.slot_mut(id).age, age);
        self.by_age.moved(&old, age, id);
        self.renewed = true;
    }

    /// When the oldest entry will be past the TTL, if there is one.
    pub fn next_expiry(&self) -> Option<Millis> {
        let ((ts, _), _) = self.by_age.first()?;
        Some(ts.saturating_add(millis(self.config.ttl)).saturating_add(1))
    }

    /// Evicts rows that are not pinned while the unpinned ones exceed the
    /// cap: rows without a live connection first, oldest `ts` first; a
    /// live row only when nothing else is left (docs/protocol.md §5.4).
    pub(super) fn enforce_cap(&mut self) {
        while self.index.len() - self.pinned > self.config.max_entries {
            let mut oldest_live = None;
            let mut victim = None;
            for (age, id) in self.by_age.iter() {
                let slot = self.slot(id);
                if slot.pinned {
                    continue;
                }
                if !slot.live {
                    victim = Some(age);
                    break;
                }
                oldest_live.get_or_insert(age);
            }
            let Some(id) = victim
                .or(oldest_live)
                .and_then(|age| self.by_age.remove(&age))
            else {
                break;
            };
            self.remove_slot(id);
            self.stats.evicted += 1;
            self.removals.evicted(self.clock, 1);
        }
    }
}
