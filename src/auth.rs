//! Token checks and scope grants (PROTOCOL.md §3.6), shared by the
//! WebSocket handshake and the HTTP routes.
//!
//! Tokens are compared in constant time, and every configured token is
//! compared, so timing tells neither which token matched nor how much of it.

use crate::config::TokenGrant;
use subtle::ConstantTimeEq;

/// The configured tokens; empty means open (loopback-only) mode.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    grants: Vec<TokenGrant>,
}

/// Why a client was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// Tokens are configured and none was given, or it matched none.
    Unauthorized,
}

impl Auth {
    /// Tokens as configured.
    pub fn new(grants: Vec<TokenGrant>) -> Self {
        Auth { grants }
    }

    /// True when tokens are configured.
    pub fn required(&self) -> bool {
        !self.grants.is_empty()
    }

    /// The scopes granted to a client that presents `token` and asks for
    /// `requested`: the requested ones in open mode, else the intersection
    /// with the token's grant, in the client's order.
    pub fn grant(
        &self,
        token: Option<&str>,
        requested: &[String],
    ) -> Result<Vec<String>, AuthError> {
        if !self.required() {
            return Ok(dedup(requested.iter()));
        }
        let granted = self.lookup(token.ok_or(AuthError::Unauthorized)?)?;
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
        Ok(self
            .lookup(token.ok_or(AuthError::Unauthorized)?)?
            .scopes
            .clone())
    }

    fn lookup(&self, token: &str) -> Result<&TokenGrant, AuthError> {
        let mut found = None;
        for grant in &self.grants {
            if bool::from(grant.token.as_bytes().ct_eq(token.as_bytes())) && found.is_none() {
                found = Some(grant);
            }
        }
        found.ok_or(AuthError::Unauthorized)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn open_mode_grants_what_is_asked() {
        let auth = Auth::default();
        assert_eq!(
            auth.grant(None, &scopes(&["operator.admin", "operator.admin"])),
            Ok(scopes(&["operator.admin"]))
        );
    }

    #[test]
    fn token_grants_the_intersection() {
        let auth = Auth::new(vec!["dash:read".parse().unwrap(), "root".parse().unwrap()]);
        let asked = scopes(&["operator.read", "operator.admin"]);
        assert_eq!(
            auth.grant(Some("dash"), &asked),
            Ok(scopes(&["operator.read"]))
        );
        assert_eq!(auth.grant(Some("root"), &asked), Ok(asked.clone()));
    }

    #[test]
    fn missing_or_wrong_token_is_unauthorized() {
        let auth = Auth::new(vec!["root".parse().unwrap()]);
        assert_eq!(auth.grant(None, &[]), Err(AuthError::Unauthorized));
        assert_eq!(auth.grant(Some("roo"), &[]), Err(AuthError::Unauthorized));
        assert_eq!(auth.grant(Some("rootx"), &[]), Err(AuthError::Unauthorized));
    }
}
