//! Gateway names as small numbers: a slot names its row's `gatewayId` by
//! a 4-byte [`GatewayId`] instead of a pointer to the name (issue 19), and
//! the publish maps it back to the one shared name.
//!
//! Invariants: [`NO_GATEWAY`] stands for no name and is never counted; a
//! live id names exactly one name and `ids` maps that name back to it;
//! `uses` of an id is the number of holders (slots, and the store for
//! its own name) that acquired it and have not released it; an id whose
//! uses fall to zero is freed and its name forgotten, so the table holds
//! only names some row still has, however many a fleet ever sent.

use arcstr::ArcStr;
use std::collections::HashMap;

/// A gateway name's number; [`NO_GATEWAY`] for none.
pub(super) type GatewayId = u32;

/// The number of "no gateway" (a row outside a fleet).
pub(super) const NO_GATEWAY: GatewayId = 0;

/// One numbered name.
#[derive(Debug)]
struct Named {
    name: ArcStr,
    uses: usize,
}

/// The names the store's slots hold; see the module docs.
#[derive(Debug, Default)]
pub(super) struct Gateways {
    /// `named[id - 1]`; `None` for a freed id.
    named: Vec<Option<Named>>,
    ids: HashMap<ArcStr, GatewayId>,
    /// Freed ids, reused before `named` grows.
    free: Vec<GatewayId>,
}

impl Gateways {
    /// The number of `name`, counting one more use of it.
    pub(super) fn acquire(&mut self, name: Option<&str>) -> GatewayId {
        let Some(name) = name else {
            return NO_GATEWAY;
        };
        if let Some(&id) = self.ids.get(name) {
            self.named_mut(id).uses += 1;
            return id;
        }
        let named = Named {
            name: ArcStr::from(name),
            uses: 1,
        };
        let key = named.name.clone();
        let id = match self.free.pop() {
            Some(id) => {
                self.named[id as usize - 1] = Some(named);
                id
            }
            None => {
                self.named.push(Some(named));
                GatewayId::try_from(self.named.len()).expect("fewer than 2^32 gateway names")
            }
        };
        self.ids.insert(key, id);
        id
    }

    /// One more use of `id`, which is in use.
    pub(super) fn add_use(&mut self, id: GatewayId) {
        if id != NO_GATEWAY {
            self.named_mut(id).uses += 1;
        }
    }

    /// One use of `id` fewer; frees it at the last.
    pub(super) fn release(&mut self, id: GatewayId) {
        if id == NO_GATEWAY {
            return;
        }
        let named = self.named_mut(id);
        named.uses -= 1;
        if named.uses == 0 {
            let named = self.named[id as usize - 1].take().expect("a live id");
            self.ids.remove(&named.name);
            self.free.push(id);
        }
    }

    /// The shared name numbered `id`.
    pub(super) fn name(&self, id: GatewayId) -> Option<&ArcStr> {
        if id == NO_GATEWAY {
            return None;
        }
        let named = self.named[id as usize - 1].as_ref();
        Some(&named.expect("a live id").name)
    }

    /// [`Gateways::name`], as text.
    pub(super) fn name_str(&self, id: GatewayId) -> Option<&str> {
        self.name(id).map(ArcStr::as_str)
    }

    /// The number of `name`, if a slot holds it; no use is counted.
    pub(super) fn find(&self, name: &str) -> Option<GatewayId> {
        self.ids.get(name).copied()
    }

    fn named_mut(&mut self, id: GatewayId) -> &mut Named {
        let named = self.named[id as usize - 1].as_mut();
        named.expect("a live id")
    }

    /// Names with a number, for tests.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_keeps_its_number_while_used_and_is_forgotten_after() {
        let mut g = Gateways::default();
        assert_eq!(g.acquire(None), NO_GATEWAY);
        assert_eq!(g.name(NO_GATEWAY), None);
        let a = g.acquire(Some("a"));
        let b = g.acquire(Some("b"));
        assert_ne!(a, b);
        assert_eq!(g.acquire(Some("a")), a);
        assert_eq!(g.name_str(a), Some("a"));
        assert_eq!(g.find("b"), Some(b));
        g.release(a);
        assert_eq!(g.find("a"), Some(a), "one use left");
        g.release(a);
        g.release(NO_GATEWAY);
        assert_eq!(g.find("a"), None);
        assert_eq!(g.len(), 1);
        let c = g.acquire(Some("c"));
        assert_eq!(c, a, "a freed number is reused");
        assert_eq!(g.name_str(c), Some("c"));
        assert_eq!(g.name_str(b), Some("b"));
    }
}
