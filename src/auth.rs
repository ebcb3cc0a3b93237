//! Token checks and grants (docs/protocol.md §3.9), shared by the WebSocket
//! handshake and the HTTP routes.
//!
//! Tokens are compared in constant time without revealing their length:
//! each side is first hashed to a fixed 32 bytes (SHA-256), and the digests
//! are compared with `subtle`. Every configured token is compared, so
//! timing tells neither which token matched nor how much of it.

use crate::config::TokenGrant;
use crate::protocol::Role;
use sha2::{Digest, Sha256};
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
    fn open_mode_grants_what_is_asked() {
        let asked = scopes(&["operator.admin"]);
        assert_eq!(Grants::default().grant(None, &asked, Role::Node), Ok(asked));
    }
}
