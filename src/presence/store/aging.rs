//! Aging: the TTL, the renewal of live rows and the cap (docs/protocol.md
//! §5.4). A row whose connection is live (here, or at the fleet gateway
//! holding it) is renewed, never expired, and evicted only when every
//! unpinned row is live; the rest age from their last write.

use super::index::Age;
use super::{SlotId, Store, millis};
use crate::presence::entry::Millis;
use crate::presence::key::Key;

/// Most live rows one [`Store::expire`] renews for reaching the TTL
/// (without keepalive renewals, rows that arrived together reach it
/// together): a million of them would hold the writer for seconds.
pub const RENEWALS_PER_EXPIRY: usize = 1024;

/// How many rows of the expiry order a step of a renewal pass may visit
/// per row it may renew: rows without a live connection are passed over,
/// and a step stays short even when most rows are such.
pub const SCAN_PER_RENEWAL: usize = 8;

/// A renewal of the live rows due at one moment, done in steps
/// ([`Store::renew_some`]): the rows whose `ts` was at most `upto` when it
/// began, resumed after the last row of the expiry order it visited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewalPass {
    upto: Millis,
    after: Option<Age>,
    /// The store's `numbering` when `after` was taken: once the rows are
    /// numbered again (`Store::next_seq`), the pass starts over from the
    /// oldest (rows it renewed are past `upto` by then).
    numbering: u32,
}

impl RenewalPass {
    /// A pass at `now` over the rows at least `min_age` old; `None` if
    /// that moment is not a time (an overflow).
    pub fn new(now: Millis, min_age: Millis) -> Option<RenewalPass> {
        let upto = now.checked_sub(min_age)?;
        Some(RenewalPass {
            upto,
            after: None,
            numbering: 0,
        })
    }
}

impl Store {
    /// Removes entries older than the TTL; returns how many. A live row
    /// past the TTL is renewed instead: the TTL never removes a row whose
    /// connection is alive (docs/protocol.md §5.4). At most
    /// [`RENEWALS_PER_EXPIRY`] are renewed per call: the rest stay due,
    /// so [`Store::next_expiry`] is already past and the writer calls
    /// again after the writes queued meanwhile.
    pub fn expire(&mut self, now: Millis) -> usize {
        self.clock = self.clock.max(now);
        let ttl = millis(self.config.ttl);
        let (mut removed, mut renewed) = (0, 0);
        while let Some((age, id)) = self.by_age.first() {
            if now.saturating_sub(age.0) <= ttl || renewed >= RENEWALS_PER_EXPIRY {
                break;
            }
            let slot = self.slot(id);
            if slot.live && !slot.pinned {
                self.renew_slot(id, now);
                renewed += 1;
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
    /// so watchers are not woken for it (docs/protocol.md §5.4). One pass
    /// at once; the writer spreads its passes with [`Store::renew_some`].
    pub fn renew_live(&mut self, now: Millis, min_age: Millis) -> usize {
        let Some(mut pass) = RenewalPass::new(now, min_age) else {
            return 0;
        };
        self.renew_some(now, &mut pass, usize::MAX).0
    }

    /// Goes on with a renewal `pass`: renews at `now` at most `budget` of
    /// the live rows it is due to renew (see [`Store::renew_live`]), oldest
    /// first, and visits at most [`SCAN_PER_RENEWAL`] times `budget` rows
    /// of the expiry order; returns how many it renewed and whether the
    /// pass is finished. A pass over a million rows thus runs as many
    /// short steps, and writes queued meanwhile go in between
    /// (`engine/machine.rs`). A row written behind the pass's place after
    /// it began waits for the next pass, or the TTL renews it.
    pub fn renew_some(
        &mut self,
        now: Millis,
        pass: &mut RenewalPass,
        budget: usize,
    ) -> (usize, bool) {
        self.clock = self.clock.max(now);
        if pass.numbering != self.numbering {
            (pass.after, pass.numbering) = (None, self.numbering);
        }
        let scan = budget.saturating_mul(SCAN_PER_RENEWAL);
        let (mut due, mut visited, mut finished) = (Vec::new(), 0usize, true);
        for (age, id) in self.by_age.after(pass.after, pass.upto) {
            if due.len() >= budget || visited >= scan {
                finished = false;
                break;
            }
            visited += 1;
            pass.after = Some(age);
            let slot = self.slot(id);
            if slot.live && !slot.pinned && slot.age.0 < now {
                due.push(id);
            }
        }
        for &id in &due {
            self.renew_slot(id, now);
        }
        (due.len(), finished)
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
        let seq = self.next_seq();
        let age = (now.max(self.slot(id).age.0), seq);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::{Entry, Patch, StoreConfig};
    use std::time::Duration;

    const MIN: Millis = 60_000;

    fn store(max_entries: usize) -> Store {
        let me = Entry {
            instance_id: Some("me".into()),
            ..Entry::default()
        };
        let config = StoreConfig {
            ttl: Duration::from_secs(300),
            max_entries,
        };
        Store::new(config, me)
    }

    fn key(i: usize) -> Key {
        Key::parse(&format!("row-{i:03}")).unwrap()
    }

    fn host() -> Patch {
        Patch {
            host: Some("h".into()),
            ..Patch::default()
        }
    }

    fn ts(s: &Store, i: usize) -> Millis {
        s.get(&key(i)).unwrap().ts
    }

    #[test]
    fn a_pass_renews_every_due_live_row_in_steps_oldest_first() {
        let mut s = store(100);
        for i in 0..10 {
            s.connect(i as u64, key(i), host(), i as Millis);
        }
        s.upsert(key(50), host(), 0);
        s.publish(20);
        let mut pass = RenewalPass::new(1_000, 100).unwrap();
        assert_eq!(s.renew_some(1_000, &mut pass, 4), (4, false));
        assert_eq!(
            (0..10).map(|i| ts(&s, i) == 1_000).collect::<Vec<_>>(),
            [
                true, true, true, true, false, false, false, false, false, false
            ],
            "the four oldest first"
        );
        // Writes between steps: a row renewed by then is not renewed twice.
        s.upsert(key(7), host(), 1_001);
        assert_eq!(s.renew_some(1_002, &mut pass, 4), (4, false));
        assert_eq!(s.renew_some(1_003, &mut pass, 4), (1, true));
        assert_eq!(ts(&s, 5), 1_002);
        assert_eq!(ts(&s, 7), 1_001, "written since, not due any more");
        assert_eq!(ts(&s, 9), 1_003);
        assert_eq!(ts(&s, 50), 0, "no connection: never renewed");
        assert_eq!(s.renew_some(1_004, &mut pass, 4), (0, true), "done");
    }

    #[test]
    fn a_step_visits_a_bounded_number_of_rows_without_a_connection() {
        let mut s = store(1_000);
        for i in 0..100 {
            s.upsert(key(i), host(), 0);
        }
        s.connect(1, key(500), host(), 1);
        let mut pass = RenewalPass::new(1_000, 100).unwrap();
        let mut steps = 1;
        while s.renew_some(1_000, &mut pass, 2) == (0, false) {
            steps += 1;
        }
        // 100 rows without a connection, 16 visited per step.
        assert_eq!(steps, 7);
        assert_eq!(ts(&s, 500), 1_000);
    }

    #[test]
    fn a_full_pass_is_one_step_without_a_budget() {
        let mut s = store(100);
        for i in 0..10 {
            s.connect(i as u64, key(i), host(), 0);
        }
        assert_eq!(s.renew_live(10, 10), 10);
        assert_eq!(s.renew_live(10, 10), 0, "renewed rows are not due");
    }

    #[test]
    fn the_ttl_renews_a_bounded_number_of_live_rows_per_call() {
        let n = RENEWALS_PER_EXPIRY + 10;
        let mut s = store(n + 10);
        for i in 0..n {
            s.connect(i as u64, key(i), host(), 0);
        }
        s.upsert(key(n + 1), host(), 0);
        let now = 5 * MIN + 1;
        assert_eq!(s.expire(now), 0, "stops after the budget of renewals");
        assert!(s.next_expiry().unwrap() <= now, "still due: called again");
        assert_eq!(
            s.expire(now),
            1,
            "the rest renewed, the row without one gone"
        );
        assert!(s.next_expiry().unwrap() > now);
        assert!((0..n).all(|i| ts(&s, i) == now));
    }
}
