//! Token checks and grants (docs/protocol.md §3.9), shared by the WebSocket
//! handshake and the HTTP routes.
//!
//! Tokens are compared in constant time without revealing their length:
//! each side is first hashed to a fixed 32 bytes (SHA-256), and the digests
//! are compared with `subtle`. Every configured token is compared, so
//! timing tells neither which token matched nor how much of it.

use crate::clock::Millis;
use crate::config::TokenGrant;
use crate::protocol::Role;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use subtle::ConstantTimeEq;

/// The configured tokens; empty means open (loopback-only) mode.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    grants: Vec<(TokenGrant, [u8; 32])>,
}

/// Why a client was not let in. Each maps to the `details.code` OpenClaw
/// clients read to decide whether to stop retrying and ask for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Tokens are configured and none was sent.
    #[error("no token was sent")]
    Missing,
    /// The token matches none configured.
    #[error("the token is not accepted")]
    Mismatch,
    /// The token may not connect as role `node`.
    #[error("the token may not connect as a node")]
    RoleNotGranted,
}

impl AuthError {
    /// The `details.code` of the `unauthorized` answer.
    pub fn detail_code(self) -> &'static str {
        match self {
            AuthError::Missing => "AUTH_TOKEN_MISSING",
            AuthError::Mismatch => "AUTH_TOKEN_MISMATCH",
            AuthError::RoleNotGranted => "AUTH_SCOPE_MISMATCH",
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Grants {
    /// Tokens as configured.
    pub fn new(grants: Vec<TokenGrant>) -> Self {
        let grants = grants
            .into_iter()
            .map(|g| {
                let d = digest(&g.token);
                (g, d)
            })
            .collect();
        Grants { grants }
    }

    /// True when tokens are configured.
    pub fn required(&self) -> bool {
        !self.grants.is_empty()
    }

    /// The scopes granted to a client that presents `token`, asks for
    /// `requested` and connects as `role`: the requested ones in open mode,
    /// else the intersection with the token's grant, in the client's order.
    pub fn grant(
        &self,
        token: Option<&str>,
        requested: &[String],
        role: Role,
    ) -> Result<Vec<String>, AuthError> {
        if !self.required() {
            return Ok(dedup(requested.iter()));
        }
        let granted = self.lookup(token)?;
        if role == Role::Node && !granted.node {
            return Err(AuthError::RoleNotGranted);
        }
        Ok(dedup(
            requested
                .iter()
                .filter(|s| granted.scopes.iter().any(|g| g == s.trim())),
        ))
    }

    /// The scopes of `token` itself, for HTTP bearer auth.
    pub fn token_scopes(&self, token: Option<&str>) -> Result<Vec<String>, AuthError> {
        if !self.required() {
            return Ok(crate::protocol::KNOWN_SCOPES
                .iter()
                .map(|s| s.to_string())
                .collect());
        }
        Ok(self.lookup(token)?.scopes.clone())
    }

    fn lookup(&self, token: Option<&str>) -> Result<&TokenGrant, AuthError> {
        // A blank token is no token.
        let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
        let presented = digest(token);
        let mut found = None;
        for (grant, expected) in &self.grants {
            if bool::from(expected.ct_eq(&presented)) && found.is_none() {
                found = Some(grant);
            }
        }
        found.ok_or(AuthError::Mismatch)
    }
}

fn dedup<'a>(scopes: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for scope in scopes {
        let scope = scope.trim();
        if !scope.is_empty() && !out.iter().any(|s| s == scope) {
            out.push(scope.to_owned());
        }
    }
    out
}

/// Failed attempts per address within [`FAILURE_WINDOW_MS`] that lock it
/// out (OpenClaw's `DEFAULT_MAX_ATTEMPTS`): a person mistyping a token
/// never gets there, a guesser does within a minute.
pub const MAX_FAILURES: usize = 10;
/// The window failures are counted in (OpenClaw's).
pub const FAILURE_WINDOW_MS: Millis = 60_000;
/// How long a locked-out address is answered `AUTH_RATE_LIMITED` without
/// its secret being checked (OpenClaw's `DEFAULT_LOCKOUT_MS`).
pub const LOCKOUT_MS: Millis = 300_000;
/// Most addresses tracked at once (OpenClaw's `DEFAULT_MAX_ENTRIES`):
/// about 1 MB. Past it, the address that failed least recently is
/// forgotten, so memory stays bounded however many addresses an attacker
/// has; each of them still gets at most [`MAX_FAILURES`] guesses a window.
pub const MAX_TRACKED_ADDRESSES: usize = 10_000;

/// Failed authentication per client address (docs/protocol.md §3.8).
/// IPv6 addresses count per /64, the smallest block a host is given.
#[derive(Debug, Default)]
pub struct FailureLimiter {
    by_addr: Mutex<HashMap<IpAddr, Failures>>,
}

/// One address's recent failures.
#[derive(Debug, Default)]
struct Failures {
    /// Times of the failures inside the window, oldest first; at most
    /// [`MAX_FAILURES`].
    recent: VecDeque<Millis>,
    /// Refused without a check until then.
    locked_until: Millis,
}

impl FailureLimiter {
    /// `Err(retry_after_ms)` while `ip` is locked out at `now`.
    pub fn check(&self, ip: IpAddr, now: Millis) -> Result<(), u64> {
        let by_addr = self.by_addr.lock().unwrap_or_else(|e| e.into_inner());
        match by_addr.get(&block(ip)) {
            Some(f) if f.locked_until > now => {
                Err(u64::try_from(f.locked_until - now).unwrap_or(0))
            }
            _ => Ok(()),
        }
    }

    /// Records a wrong token or signature from `ip` at `now`.
    pub fn record(&self, ip: IpAddr, now: Millis) {
        let mut by_addr = self.by_addr.lock().unwrap_or_else(|e| e.into_inner());
        let key = block(ip);
        if !by_addr.contains_key(&key) && by_addr.len() >= MAX_TRACKED_ADDRESSES {
            forget_one(&mut by_addr, now);
        }
        let failures = by_addr.entry(key).or_default();
        while failures
            .recent
            .front()
            .is_some_and(|&at| at <= now - FAILURE_WINDOW_MS)
        {
            failures.recent.pop_front();
        }
        failures.recent.push_back(now);
        if failures.recent.len() >= MAX_FAILURES {
            failures.locked_until = now + LOCKOUT_MS;
            failures.recent.clear();
        }
    }

    /// Addresses tracked.
    pub fn len(&self) -> usize {
        self.by_addr.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when no address is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Makes room for one address: every entry with nothing left to count
/// goes; if none had, the one that failed least recently.
fn forget_one(by_addr: &mut HashMap<IpAddr, Failures>, now: Millis) {
    let before = by_addr.len();
    by_addr.retain(|_, f| {
        f.locked_until > now
            || f.recent
                .back()
                .is_some_and(|&at| at > now - FAILURE_WINDOW_MS)
    });
    if by_addr.len() < before {
        return;
    }
    let last = |f: &Failures| {
        f.recent
            .back()
            .copied()
            .unwrap_or(f.locked_until - LOCKOUT_MS)
    };
    if let Some(oldest) = by_addr
        .iter()
        .min_by_key(|(_, f)| last(f))
        .map(|(ip, _)| *ip)
    {
        by_addr.remove(&oldest);
    }
}

/// The block an address counts in: itself for IPv4, its /64 for IPv6.
fn block(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(bits))
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(tokens: &[&str]) -> Grants {
        Grants::new(tokens.iter().map(|t| t.parse().unwrap()).collect())
    }

    fn scopes(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn missing_and_wrong_tokens_are_told_apart() {
        let auth = auth(&["secret"]);
        let asked = scopes(&["operator.read"]);
        assert_eq!(
            auth.grant(None, &asked, Role::Operator),
            Err(AuthError::Missing)
        );
        assert_eq!(
            auth.grant(Some("secreT"), &asked, Role::Operator),
            Err(AuthError::Mismatch)
        );
        assert_eq!(
            auth.grant(Some("secret-and-more"), &asked, Role::Operator),
            Err(AuthError::Mismatch),
            "a longer token with the right prefix does not match"
        );
        assert_eq!(
            auth.grant(Some("secret"), &asked, Role::Operator),
            Ok(asked)
        );
    }

    #[test]
    fn a_read_token_may_not_connect_as_a_node() {
        let auth = auth(&["r:read", "n:node"]);
        assert_eq!(
            auth.grant(Some("r"), &[], Role::Node),
            Err(AuthError::RoleNotGranted)
        );
        assert_eq!(auth.grant(Some("n"), &[], Role::Node), Ok(vec![]));
    }

    #[test]
    fn scopes_are_intersected_with_the_grant() {
        let auth = auth(&["r:read"]);
        let asked = scopes(&["operator.admin", "operator.read", "operator.read"]);
        assert_eq!(
            auth.grant(Some("r"), &asked, Role::Operator),
            Ok(scopes(&["operator.read"]))
        );
    }

    #[test]
    fn ten_failures_lock_an_address_out_and_others_stay_free() {
        let limiter = FailureLimiter::default();
        let (guesser, other) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for i in 0..MAX_FAILURES - 1 {
            limiter.record(guesser, 1_000 + i as Millis);
            assert_eq!(limiter.check(guesser, 1_000 + i as Millis), Ok(()));
        }
        limiter.record(guesser, 2_000);
        assert_eq!(limiter.check(guesser, 2_000), Err(LOCKOUT_MS as u64));
        assert_eq!(limiter.check(guesser, 2_000 + LOCKOUT_MS - 1), Err(1));
        assert_eq!(limiter.check(guesser, 2_000 + LOCKOUT_MS), Ok(()));
        assert_eq!(limiter.check(other, 2_000), Ok(()));
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let limiter = FailureLimiter::default();
        let ip = "10.0.0.1".parse().unwrap();
        for i in 0..(MAX_FAILURES as Millis) * 3 {
            limiter.record(ip, i * FAILURE_WINDOW_MS / 5);
        }
        assert_eq!(limiter.check(ip, FAILURE_WINDOW_MS * 10), Ok(()));
    }

    #[test]
    fn an_ipv6_host_counts_per_64() {
        let limiter = FailureLimiter::default();
        for i in 0..MAX_FAILURES {
            limiter.record(format!("2001:db8::{i:x}").parse().unwrap(), 0);
        }
        assert!(limiter.check("2001:db8::ffff".parse().unwrap(), 0).is_err());
        assert!(limiter.check("2001:db8:0:1::1".parse().unwrap(), 0).is_ok());
    }

    #[test]
    fn many_addresses_cannot_grow_the_table_past_its_bound() {
        let limiter = FailureLimiter::default();
        for i in 0..(MAX_TRACKED_ADDRESSES as u32 + 300) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            limiter.record(ip, Millis::from(i));
        }
        assert_eq!(limiter.len(), MAX_TRACKED_ADDRESSES);
    }

    #[test]
    fn open_mode_grants_what_is_asked() {
        let asked = scopes(&["operator.admin"]);
        assert_eq!(Grants::default().grant(None, &asked, Role::Node), Ok(asked));
    }
}
