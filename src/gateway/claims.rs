//! Row ownership (docs/protocol.md §5.1): which principal holds each key
//! that a live connection connected under, so no other principal can
//! write that row while its holder is connected.
//!
//! A principal is a proven device (§3.7), else the token a connection
//! presented (all clients of one token are one principal, as in
//! OpenClaw), else, with no token configured, everyone (open mode trusts
//! loopback). A proven device always takes the key of its own id back.
//!
//! Invariants: a claim exists exactly while it lists a connection; each
//! connection is listed under at most one key (the one it is tracked
//! under), so the table is bounded by the number of live connections.

use crate::presence::Key;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// Who a connection acts for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// A device that proved its key; its id.
    Device(String),
    /// The SHA-256 of the token the connection presented.
    Token([u8; 32]),
    /// No token configured: every client is the same principal.
    Open,
}

impl Principal {
    /// The principal of a connection that proved `device` (if any) and
    /// presented `token`, when tokens are `required`.
    pub fn of(device: Option<&str>, token: Option<&str>, required: bool) -> Principal {
        match (device, token) {
            (Some(id), _) => Principal::Device(id.to_owned()),
            (None, Some(token)) if required => Principal::Token(Sha256::digest(token).into()),
            _ => Principal::Open,
        }
    }

    /// True when this principal is the device whose id `key` is.
    fn is_device_of(&self, key: &Key) -> bool {
        matches!(self, Principal::Device(id) if Key::parse(id).as_ref() == Some(key))
    }
}

/// One key's holder.
struct Claim {
    principal: Principal,
    /// The live connections holding it, all of that principal.
    conns: Vec<u64>,
}

/// The keys live connections hold.
#[derive(Default)]
pub struct Claims {
    held: Mutex<HashMap<Key, Claim>>,
}

impl Claims {
    /// Claims `key` for connection `conn` acting for `principal`: true when
    /// the key is free, already that principal's, or the principal is the
    /// device the key names (which takes it back); false when another
    /// principal holds it.
    pub fn claim(&self, key: &Key, principal: &Principal, conn: u64) -> bool {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        match held.get_mut(key) {
            Some(claim) if claim.principal == *principal => {
                claim.conns.push(conn);
                true
            }
            Some(_) if !principal.is_device_of(key) => false,
            _ => {
                let claim = Claim {
                    principal: principal.clone(),
                    conns: vec![conn],
                };
                held.insert(key.clone(), claim);
                true
            }
        }
    }

    /// Connection `conn`, tracked under `key`, closed.
    pub fn release(&self, key: &Key, conn: u64) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(claim) = held.get_mut(key) {
            claim.conns.retain(|&c| c != conn);
            if claim.conns.is_empty() {
                held.remove(key);
            }
        }
    }

    /// True when `principal` may write `key`: nobody holds it, or it does,
    /// or it is the device the key names.
    pub fn may_write(&self, key: &Key, principal: &Principal) -> bool {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        match held.get(key) {
            Some(claim) => claim.principal == *principal || principal.is_device_of(key),
            None => true,
        }
    }

    /// Keys held, for tests and metrics.
    pub fn len(&self) -> usize {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        Key::parse(s).unwrap()
    }

    #[test]
    fn another_token_cannot_claim_a_held_key() {
        let claims = Claims::default();
        let owner = Principal::of(None, Some("node"), true);
        let reader = Principal::of(None, Some("read"), true);
        assert!(claims.claim(&key("studio-mac"), &owner, 1));
        assert!(!claims.claim(&key("Studio-Mac"), &reader, 2));
        assert!(!claims.may_write(&key("studio-mac"), &reader));
        assert!(
            claims.claim(&key("studio-mac"), &owner, 3),
            "same token, same principal"
        );
        claims.release(&key("studio-mac"), 1);
        assert!(
            !claims.may_write(&key("studio-mac"), &reader),
            "conn 3 still holds it"
        );
        claims.release(&key("studio-mac"), 3);
        assert!(claims.may_write(&key("studio-mac"), &reader));
        assert!(claims.is_empty());
    }

    #[test]
    fn a_proven_device_takes_its_own_key_back() {
        let claims = Claims::default();
        let id = "ab".repeat(32);
        let impostor = Principal::of(None, Some("read"), true);
        let device = Principal::of(Some(&id), Some("read"), true);
        assert!(claims.claim(&key(&id), &impostor, 1));
        assert!(claims.claim(&key(&id), &device, 2));
        assert!(!claims.may_write(&key(&id), &impostor));
        claims.release(&key(&id), 1);
        assert!(
            !claims.may_write(&key(&id), &impostor),
            "the impostor's close frees nothing"
        );
        let other_device = Principal::of(Some(&"cd".repeat(32)), None, true);
        assert!(!claims.claim(&key(&id), &other_device, 3));
    }

    #[test]
    fn in_open_mode_everyone_is_one_principal() {
        let claims = Claims::default();
        let a = Principal::of(None, Some("whatever"), false);
        let b = Principal::of(None, None, false);
        assert!(claims.claim(&key("k"), &a, 1));
        assert!(claims.may_write(&key("k"), &b));
    }
}
