//! What this gateway knows of the others: whose lease it last saw held,
//! under which boot, and the last message number from each. Pure: the
//! fleet task feeds it lease polls and messages and does what it answers.
//!
//! Invariants: a peer is `alive` exactly when its last polled lease was
//! held (or a message from it arrived since); a lapse is reported once per
//! loss of the lease; a message is applied only when it is the next one of
//! the boot we hold, anything else asks for a reload of that peer's rows.

use std::collections::HashMap;

#[derive(Debug, Default)]
struct Peer {
    /// The boot id of its lease or last message.
    boot: Option<String>,
    alive: bool,
    /// The last message number applied from `boot`.
    seq: u64,
}

/// What to do about one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read its whole hash again (new peer, restart, or a missed message).
    Reload(String),
    /// Its lease lapsed: mark its live rows disconnected.
    Lapse(String),
}

/// Whether to apply one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMessage {
    /// It follows the last one: apply its rows.
    Apply,
    /// Reload that peer's hash instead (it already holds this message).
    Reload,
}

/// The other gateways, as last seen.
#[derive(Debug, Default)]
pub struct Peers {
    known: HashMap<String, Peer>,
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

    /// Takes one poll: each node id with the boot id its lease holds, if
    /// any. Returns what changed.
    pub fn observe(&mut self, leases: Vec<(String, Option<String>)>) -> Vec<Action> {
        let mut actions = Vec::new();
        for (node, lease) in leases {
            let known = self.known.contains_key(&node);
            let peer = self.known.entry(node.clone()).or_default();
            match lease {
                Some(boot) if !peer.alive || peer.boot.as_deref() != Some(&boot) => {
                    peer.boot = Some(boot);
                    peer.alive = true;
                    peer.seq = 0;
                    actions.push(Action::Reload(node));
                }
                Some(_) => {}
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

    /// Takes one message's header.
    pub fn message(&mut self, node: &str, boot: &str, seq: u64, reset: bool) -> OnMessage {
        let peer = self.known.entry(node.to_owned()).or_default();
        // Right after a lease-triggered reload (`seq` 0) any message of
        // that boot follows: the reload holds everything published before.
        let follows = peer.boot.as_deref() == Some(boot) && (peer.seq == 0 || seq == peer.seq + 1);
        peer.alive = true;
        peer.seq = seq;
        if follows && !reset {
            return OnMessage::Apply;
        }
        peer.boot = Some(boot.to_owned());
        OnMessage::Reload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(node: &str, boot: Option<&str>) -> Vec<(String, Option<String>)> {
        vec![(node.into(), boot.map(Into::into))]
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
        assert_eq!(peers.message("b", "1", 40, false), OnMessage::Apply);
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
    fn messages_apply_in_sequence_and_a_gap_reloads() {
        let mut peers = Peers::default();
        assert_eq!(peers.message("b", "1", 5, false), OnMessage::Reload);
        assert_eq!(peers.message("b", "1", 6, false), OnMessage::Apply);
        assert_eq!(peers.message("b", "1", 8, false), OnMessage::Reload);
        assert_eq!(peers.message("b", "1", 9, false), OnMessage::Apply);
        assert_eq!(peers.message("b", "1", 10, true), OnMessage::Reload);
        assert_eq!(peers.message("b", "2", 1, false), OnMessage::Reload);
    }
}
