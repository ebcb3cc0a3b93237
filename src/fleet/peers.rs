//! What this gateway knows of the others: whose lease it last saw held,
//! under which boot, the last message number it holds from each, the key
//! of each one's self row and how far each one's clock is from ours.
//! Pure: the fleet task feeds it lease polls, loads and messages, and does
//! what it answers.
//!
//! Invariants:
//! - a peer is `alive` exactly when its lease was seen held by the last
//!   poll or load; a message never makes a peer alive (a node without a
//!   lease is not heard: docs/protocol.md §8);
//! - a lapse is reported once per loss of the lease, and a lapsed peer
//!   whose lease is seen held again is reloaded;
//! - `seq` is the last message of `boot` whose rows the store holds: a
//!   message is applied only when it is the next one; older ones are
//!   skipped, a gap or a reset asks for a reload;
//! - a peer whose stamp, read by a poll, is ahead of `seq` once every
//!   message published before that poll has been read (the fleet task's
//!   own heartbeat, published after the poll, came back: [`Peers::caught_up`])
//!   lost messages: it is reloaded. A backlog of messages not read yet is
//!   never mistaken for a loss, however long it takes to read;
//! - only peers in the polled node set are kept.

use super::wire::Stamp;
use crate::presence::{Key, Millis};
use std::collections::HashMap;

#[derive(Debug, Default)]
struct Peer {
    /// The boot id its lease held when last seen held.
    boot: Option<String>,
    alive: bool,
    /// The last message number of `boot` the store holds.
    seq: u64,
    /// A stamp number seen ahead of `seq` by poll number `.0`.
    lagging: Option<(u64, u64)>,
    /// The key of its self row (the one row it may pin).
    self_key: Option<Key>,
    /// Its clock minus ours, from its last message's `at` (ms).
    skew: Option<Millis>,
}

/// One peer as one poll saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll {
    /// Its node id (from the node set).
    pub node: String,
    /// The boot id its lease holds, if it is held.
    pub lease: Option<String>,
    /// The stamp beside its hash, if any.
    pub stamp: Option<Stamp>,
}

/// What to do about one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read its whole hash again (new peer, restart, or missed messages).
    Reload(String),
    /// Its lease lapsed: mark its live rows disconnected.
    Lapse(String),
}

/// Whether to apply one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMessage {
    /// It follows the last one: apply its rows.
    Apply,
    /// The store already holds it (it was in a reload).
    Skip,
    /// Reload that peer's hash instead (a gap, or a reset).
    Reload,
    /// Not from a live lease holder as last seen: ignore it, and poll
    /// the leases soon (a new or returning peer gets reloaded then).
    Unheard,
}

/// The other gateways, as last seen.
#[derive(Debug, Default)]
pub struct Peers {
    known: HashMap<String, Peer>,
    /// Polls observed so far.
    polls: u64,
}

impl Peers {
    /// Forgets everything: after a reconnect, every peer is reloaded.
    pub fn clear(&mut self) {
        self.known.clear();
    }

    /// Peers whose lease is held.
    pub fn alive(&self) -> usize {
        self.known.values().filter(|p| p.alive).count()
    }

    /// The number of the last poll observed.
    pub fn generation(&self) -> u64 {
        self.polls
    }

    /// Every message published before poll `generation` has been read:
    /// a peer whose stamp that poll saw is still ahead of the messages
    /// applied lost some, and is reloaded.
    pub fn caught_up(&mut self, generation: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        for (node, peer) in &mut self.known {
            let Some((seen_by, stamp)) = peer.lagging else {
                continue;
            };
            if seen_by > generation {
                continue;
            }
            peer.lagging = None;
            if peer.alive && peer.seq < stamp {
                actions.push(Action::Reload(node.clone()));
            }
        }
        actions
    }

    /// Takes one poll of the whole node set. Returns what changed.
    pub fn observe(&mut self, polls: Vec<Poll>) -> Vec<Action> {
        self.polls += 1;
        let mut actions = Vec::new();
        let polled: std::collections::HashSet<&str> =
            polls.iter().map(|p| p.node.as_str()).collect();
        // A peer gone from the set (FLUSHALL, pruned) has no lease either.
        for (node, peer) in &mut self.known {
            if !polled.contains(node.as_str()) && std::mem::take(&mut peer.alive) {
                actions.push(Action::Lapse(node.clone()));
            }
        }
        self.known
            .retain(|node, peer| peer.alive || polled.contains(node.as_str()));
        for Poll { node, lease, stamp } in polls {
            let known = self.known.contains_key(&node);
            let peer = self.known.entry(node.clone()).or_default();
            match lease {
                Some(boot) if !peer.alive || peer.boot.as_deref() != Some(&boot) => {
                    peer.alive = true;
                    peer.boot = Some(boot);
                    actions.push(Action::Reload(node));
                }
                Some(_) => peer.note_stamp(stamp.as_ref(), self.polls),
                None if !known => actions.push(Action::Reload(node)),
                None if peer.alive => {
                    peer.alive = false;
                    actions.push(Action::Lapse(node));
                }
                None => {}
            }
        }
        actions
    }

    /// Records what one reload read: the lease held at that moment and
    /// the stamp of the hash it read (in the same transaction).
    pub fn loaded(&mut self, node: &str, lease: Option<&str>, stamp: Option<&Stamp>) {
        let peer = self.known.entry(node.to_owned()).or_default();
        peer.alive = lease.is_some();
        peer.boot = lease.map(str::to_owned);
        peer.seq = stamp
            .filter(|s| Some(s.boot.as_str()) == lease)
            .map_or(0, |s| s.seq);
        peer.lagging = None;
        peer.self_key = None;
    }

    /// Takes one message's header (`beat`: a heartbeat, whose `seq` is
    /// the origin's last message number).
    pub fn message(
        &mut self,
        node: &str,
        boot: &str,
        seq: u64,
        reset: bool,
        beat: bool,
    ) -> OnMessage {
        let Some(peer) = self.known.get_mut(node) else {
            return OnMessage::Unheard;
        };
        if !peer.alive || peer.boot.as_deref() != Some(boot) {
            return OnMessage::Unheard;
        }
        if beat {
            return if seq > peer.seq {
                OnMessage::Reload
            } else {
                OnMessage::Skip
            };
        }
        if reset || seq > peer.seq + 1 {
            return OnMessage::Reload;
        }
        if seq <= peer.seq {
            return OnMessage::Skip;
        }
        peer.seq = seq;
        OnMessage::Apply
    }

    /// May `key` be `node`'s pinned self row? The first pinned key seen
    /// since its last reload is; any other is not.
    pub fn may_pin(&mut self, node: &str, key: &Key) -> bool {
        let Some(peer) = self.known.get_mut(node) else {
            return false;
        };
        peer.self_key.get_or_insert_with(|| key.clone()) == key
    }

    /// Records `node`'s clock skew: its message's `at` minus our `now`.
    pub fn clock(&mut self, node: &str, at: Millis, now: Millis) {
        if let Some(peer) = self.known.get_mut(node) {
            peer.skew = Some(at.saturating_sub(now));
        }
    }

    /// Each live peer's last measured clock skew (ms, positive: ahead).
    pub fn skews(&self) -> Vec<(String, Millis)> {
        let mut skews: Vec<(String, Millis)> = self
            .known
            .iter()
            .filter(|(_, peer)| peer.alive)
            .filter_map(|(node, peer)| Some((node.clone(), peer.skew?)))
            .collect();
        skews.sort();
        skews
    }
}

impl Peer {
    /// Remembers a stamp ahead of the messages applied, to be checked
    /// once the messages published before poll `generation` are read.
    /// A stamp still waiting for its check is kept: a later one would
    /// wait for a later check, forever while messages keep a backlog.
    fn note_stamp(&mut self, stamp: Option<&Stamp>, generation: u64) {
        if self.lagging.is_none() {
            self.lagging = stamp
                .filter(|s| self.boot.as_deref() == Some(s.boot.as_str()) && s.seq > self.seq)
                .map(|s| (generation, s.seq));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll(node: &str, boot: Option<&str>, seq: Option<u64>) -> Vec<Poll> {
        vec![Poll {
            node: node.into(),
            lease: boot.map(Into::into),
            stamp: seq.map(|seq| Stamp {
                boot: boot.unwrap_or("x").into(),
                seq,
                rows: 1,
            }),
        }]
    }

    fn lease(node: &str, boot: Option<&str>) -> Vec<Poll> {
        poll(node, boot, None)
    }

    #[test]
    fn a_new_peer_is_reloaded_and_its_lapse_reported_once() {
        let mut peers = Peers::default();
        assert_eq!(
            peers.observe(lease("b", Some("1"))),
            [Action::Reload("b".into())]
        );
        assert!(peers.observe(lease("b", Some("1"))).is_empty());
        assert_eq!(peers.alive(), 1);
        assert_eq!(peers.observe(lease("b", None)), [Action::Lapse("b".into())]);
        assert!(peers.observe(lease("b", None)).is_empty());
        assert_eq!(peers.alive(), 0);
    }

    #[test]
    fn a_restarted_peer_is_reloaded() {
        let mut peers = Peers::default();
        peers.observe(lease("b", Some("1")));
        peers.loaded("b", Some("1"), None);
        assert_eq!(peers.message("b", "1", 1, false, false), OnMessage::Apply);
        assert_eq!(
            peers.observe(lease("b", Some("2"))),
            [Action::Reload("b".into())]
        );
    }

    #[test]
    fn a_dead_peer_seen_first_is_loaded_not_lapsed() {
        let mut peers = Peers::default();
        assert_eq!(
            peers.observe(lease("b", None)),
            [Action::Reload("b".into())]
        );
        assert!(peers.observe(lease("b", None)).is_empty());
    }

    #[test]
    fn messages_apply_in_sequence_skip_old_ones_and_a_gap_reloads() {
        let mut peers = Peers::default();
        peers.observe(lease("b", Some("1")));
        let stamp = Stamp {
            boot: "1".into(),
            seq: 5,
            rows: 0,
        };
        peers.loaded("b", Some("1"), Some(&stamp));
        assert_eq!(peers.message("b", "1", 4, false, false), OnMessage::Skip);
        assert_eq!(peers.message("b", "1", 5, false, false), OnMessage::Skip);
        assert_eq!(peers.message("b", "1", 6, false, false), OnMessage::Apply);
        assert_eq!(peers.message("b", "1", 8, false, false), OnMessage::Reload);
        assert_eq!(peers.message("b", "1", 7, true, false), OnMessage::Reload);
    }

    #[test]
    fn a_beat_is_skipped_unless_it_shows_a_missed_message() {
        let mut peers = Peers::default();
        peers.observe(lease("b", Some("1")));
        peers.loaded("b", Some("1"), None);
        assert_eq!(peers.message("b", "1", 1, false, false), OnMessage::Apply);
        assert_eq!(peers.message("b", "1", 1, false, true), OnMessage::Skip);
        assert_eq!(peers.message("b", "1", 2, false, true), OnMessage::Reload);
        assert_eq!(
            peers.message("ghost", "1", 2, false, true),
            OnMessage::Unheard
        );
    }

    #[test]
    fn messages_from_a_node_without_a_live_lease_are_unheard() {
        let mut peers = Peers::default();
        assert_eq!(
            peers.message("ghost", "1", 1, false, false),
            OnMessage::Unheard
        );
        peers.observe(lease("b", Some("1")));
        peers.loaded("b", Some("1"), None);
        assert_eq!(
            peers.message("b", "other", 1, false, false),
            OnMessage::Unheard
        );
        peers.observe(lease("b", None));
        assert_eq!(peers.message("b", "1", 1, false, false), OnMessage::Unheard);
        assert_eq!(peers.alive(), 0, "a message never makes a peer alive");
    }

    #[test]
    fn a_lapsed_peer_whose_lease_returns_is_reloaded() {
        let mut peers = Peers::default();
        peers.observe(lease("b", Some("1")));
        peers.loaded("b", Some("1"), None);
        for _ in 0..3 {
            assert_eq!(peers.observe(lease("b", None)), [Action::Lapse("b".into())]);
            assert_eq!(
                peers.observe(lease("b", Some("1"))),
                [Action::Reload("b".into())]
            );
            peers.loaded("b", Some("1"), None);
        }
    }

    #[test]
    fn a_reload_that_finds_no_lease_leaves_the_peer_lapsed_until_it_returns() {
        let mut peers = Peers::default();
        peers.observe(lease("b", Some("1")));
        // The lease was deleted between the poll and the load.
        peers.loaded("b", None, None);
        assert_eq!(peers.alive(), 0);
        assert_eq!(
            peers.observe(lease("b", Some("1"))),
            [Action::Reload("b".into())]
        );
    }

    fn stamp(seq: u64) -> Stamp {
        Stamp {
            boot: "1".into(),
            seq,
            rows: 0,
        }
    }

    #[test]
    fn a_backlog_never_reloads_and_a_stamp_still_ahead_once_read_up_to_its_poll_does() {
        let mut peers = Peers::default();
        peers.observe(poll("b", Some("1"), Some(3)));
        peers.loaded("b", Some("1"), Some(&stamp(3)));
        // Messages 4.. are published faster than they are read: however
        // many polls see the stamp ahead, none of them reloads.
        for seq in [5, 9, 12] {
            assert!(peers.observe(poll("b", Some("1"), Some(seq))).is_empty());
        }
        let first = peers.generation() - 2;
        assert_eq!(peers.message("b", "1", 4, false, false), OnMessage::Apply);
        assert_eq!(peers.message("b", "1", 5, false, false), OnMessage::Apply);
        // Everything published before the poll that saw 5 is read: fine.
        assert!(peers.caught_up(first).is_empty());
        let noted = peers.generation() + 1;
        assert!(peers.observe(poll("b", Some("1"), Some(12))).is_empty());
        assert_eq!(peers.message("b", "1", 6, false, false), OnMessage::Apply);
        assert!(
            peers.caught_up(noted - 1).is_empty(),
            "an earlier check covers nothing a later poll saw"
        );
        // Read up to that poll and still at 6 of 12: 7..12 were lost.
        assert_eq!(peers.caught_up(noted), [Action::Reload("b".into())]);
        assert!(peers.caught_up(noted).is_empty(), "checked once");
        peers.loaded("b", Some("1"), Some(&stamp(12)));
        assert!(peers.observe(poll("b", Some("1"), Some(12))).is_empty());
        assert!(peers.caught_up(peers.generation()).is_empty());
    }

    #[test]
    fn a_peer_gone_from_the_node_set_lapses() {
        let mut peers = Peers::default();
        peers.observe(lease("b", Some("1")));
        assert_eq!(peers.observe(Vec::new()), [Action::Lapse("b".into())]);
        assert!(peers.observe(Vec::new()).is_empty());
    }

    #[test]
    fn one_self_row_per_peer_and_skews_of_live_peers() {
        let mut peers = Peers::default();
        let (a, b) = (Key::parse("a").unwrap(), Key::parse("b").unwrap());
        assert!(!peers.may_pin("b", &a), "unknown nodes pin nothing");
        peers.observe(lease("n", Some("1")));
        assert!(peers.may_pin("n", &a));
        assert!(peers.may_pin("n", &a));
        assert!(!peers.may_pin("n", &b));
        peers.clock("n", 10_000, 4_000);
        assert_eq!(peers.skews(), [("n".to_string(), 6_000)]);
    }
}
