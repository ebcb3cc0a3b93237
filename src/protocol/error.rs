//! Errors on the wire: the `ErrorCode`s and the `ErrorShape` a failed response carries (§2).
//!
//! Invariants: an `ErrorShape` serializes as `{"code","message","details"?,"retryable"?,
//! "retryAfterMs"?}` with `None` fields left out, never written as `null`. Every message the
//! contract spells out (`unknown method: NAME`, `protocol mismatch`, `unauthorized`, ...) is built
//! here and only here, so the wording cannot drift between call sites.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::connect::{PROTOCOL_VERSION, SUPPORTED_PROTOCOLS};

/// The `code` of an error shape. The set is closed: clients switch on these strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// `INVALID_REQUEST`: bad frame, bad params, unknown method, protocol mismatch, auth failure.
    InvalidRequest,
    /// `FORBIDDEN`: the connection lacks a scope the method needs.
    Forbidden,
    /// `UNAVAILABLE`: server-side failure or overload; the client may retry.
    Unavailable,
    /// `NOT_PAIRED`: the device is not paired with this gateway.
    NotPaired,
}

impl ErrorCode {
    /// The code as written on the wire, e.g. `"INVALID_REQUEST"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::Forbidden => "FORBIDDEN",
            Self::Unavailable => "UNAVAILABLE",
            Self::NotPaired => "NOT_PAIRED",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `error` object of a failed response (§2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorShape {
    /// What kind of failure this is; clients branch on it.
    pub code: ErrorCode,
    /// Human-readable reason. For the cases §2 and §3 name, the exact text they give.
    pub message: String,
    /// Structured detail, e.g. the missing scope. Left out when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// Whether retrying the same request can succeed. Left out when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// How long to wait before retrying, in milliseconds. Left out when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ErrorShape {
    /// An error with just a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
            retryable: None,
            retry_after_ms: None,
        }
    }

    /// The same error with `details` set.
    #[must_use]
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// `INVALID_REQUEST` with the given message.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    /// `INVALID_REQUEST` `unknown method: NAME` (§2).
    pub fn unknown_method(name: &str) -> Self {
        Self::invalid_request(format!("unknown method: {name}"))
    }

    /// `FORBIDDEN` `missing scope: SCOPE`, with the `MISSING_SCOPE` details of §2.
    ///
    /// `scope` is the scope reported as missing; `required` lists every scope that would have
    /// been enough (any one of them grants the method).
    pub fn missing_scope(scope: &str, required: &[&str]) -> Self {
        Self::new(ErrorCode::Forbidden, format!("missing scope: {scope}")).with_details(json!({
            "code": "MISSING_SCOPE",
            "missingScope": scope,
            "requiredScopes": required,
        }))
    }

    /// `FORBIDDEN` `a node may only write its own entry` (§5.2, rollcall):
    /// a node's beacon named another key.
    pub fn not_own_entry(key: &str) -> Self {
        Self::new(
            ErrorCode::Forbidden,
            format!("a node may only write its own entry, not {key:?}"),
        )
        .with_details(json!({ "code": "NOT_OWN_ENTRY", "key": key }))
    }

    /// `FORBIDDEN`: a beacon named a row another principal holds (§5.1,
    /// rollcall): a live connection with another token, or a proven device.
    pub fn not_owner(key: &str) -> Self {
        Self::new(
            ErrorCode::Forbidden,
            format!("{key:?} is held by another client (another token, or a proven device)"),
        )
        .with_details(json!({ "code": "NOT_OWNER", "key": key }))
    }

    /// `UNAVAILABLE` `beacon row limit` (§5.4, rollcall): this connection
    /// already beaconed `limit` keys besides its own in the current TTL
    /// window; retryable once the window restarts.
    pub fn beacon_rows_limit(limit: usize, retry_after: std::time::Duration) -> Self {
        let retry_after_ms = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX);
        Self::unavailable(
            format!(
                "beacon row limit: this connection already wrote {limit} keys besides its own \
                 within the presence TTL (--max-beacon-rows)"
            ),
            retry_after_ms.max(1),
        )
        .with_details(json!({ "code": "BEACON_ROWS_LIMIT", "limit": limit }))
    }

    /// `UNAVAILABLE`, retryable, asking the client to wait `retry_after_ms` first.
    pub fn unavailable(message: impl Into<String>, retry_after_ms: u64) -> Self {
        Self {
            retryable: Some(true),
            retry_after_ms: Some(retry_after_ms),
            ..Self::new(ErrorCode::Unavailable, message)
        }
    }

    /// `INVALID_REQUEST` `protocol mismatch` with
    /// `{"code":"PROTOCOL_MISMATCH","expectedProtocol":4,"supported":[3,4]}` (§3.5).
    pub fn protocol_mismatch() -> Self {
        Self::invalid_request("protocol mismatch").with_details(json!({
            "code": "PROTOCOL_MISMATCH",
            "expectedProtocol": PROTOCOL_VERSION,
            "supported": SUPPORTED_PROTOCOLS,
        }))
    }

    /// `INVALID_REQUEST` `unauthorized` with `{"code": CODE}`: a missing or
    /// wrong token, or a role the token does not grant (§3.9). OpenClaw
    /// clients read the code to stop retrying and ask for a token.
    pub fn unauthorized(code: &str) -> Self {
        Self::invalid_request("unauthorized").with_details(json!({ "code": code }))
    }

    /// `INVALID_REQUEST` refusing a browser page's connect, with
    /// `{"code":"CONTROL_UI_ORIGIN_NOT_ALLOWED","reason":REASON}` (§3.6);
    /// the message is OpenClaw's, naming rollcall's flag.
    pub fn origin_not_allowed(reason: &str) -> Self {
        Self::invalid_request(
            "origin not allowed (open the page from the gateway host or allow it with --allowed-origin)",
        )
        .with_details(json!({ "code": "CONTROL_UI_ORIGIN_NOT_ALLOWED", "reason": reason }))
    }

    /// `INVALID_REQUEST` refusing a `device` block (§3.7): the check's
    /// message, with `{"code":DEVICE_AUTH_…,"reason":…}`.
    pub fn device_auth(error: super::DeviceAuthError) -> Self {
        Self::invalid_request(error.to_string())
            .with_details(json!({ "code": error.detail_code(), "reason": error.reason() }))
    }

    /// `INVALID_REQUEST` `unauthorized`, retryable after `retry_after_ms`,
    /// with `{"code":"AUTH_RATE_LIMITED","retryAfterMs":N}`: too many failed
    /// attempts from this address; the secret was not checked (§3.8).
    pub fn auth_rate_limited(retry_after_ms: u64) -> Self {
        let mut error = Self::invalid_request("unauthorized: too many failed attempts")
            .with_details(json!({ "code": "AUTH_RATE_LIMITED", "retryAfterMs": retry_after_ms }));
        error.retryable = Some(true);
        error.retry_after_ms = Some(retry_after_ms);
        error
    }

    /// `INVALID_REQUEST` `first request must be connect` (§3.3).
    pub fn first_request_must_be_connect() -> Self {
        Self::invalid_request("first request must be connect")
    }

    /// `INVALID_REQUEST` `invalid METHOD params: WHY`, e.g. `invalid connect params: WHY` (§3.3).
    pub fn invalid_params(method: &str, why: impl fmt::Display) -> Self {
        Self::invalid_request(format!("invalid {method} params: {why}"))
    }

    /// `INVALID_REQUEST` `invalid request frame: WHY` (§3, after the handshake).
    pub fn invalid_request_frame(why: impl fmt::Display) -> Self {
        Self::invalid_request(format!("invalid request frame: {why}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_json(shape: &ErrorShape) -> Value {
        serde_json::to_value(shape).expect("an ErrorShape always serializes")
    }

    #[test]
    fn codes_serialize_in_screaming_snake_case() {
        for code in [
            ErrorCode::InvalidRequest,
            ErrorCode::Forbidden,
            ErrorCode::Unavailable,
            ErrorCode::NotPaired,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), json!(code.as_str()));
            assert_eq!(code.to_string(), code.as_str());
        }
        assert_eq!(ErrorCode::NotPaired.as_str(), "NOT_PAIRED");
    }

    #[test]
    fn none_fields_are_omitted_not_null() {
        let shape = ErrorShape::invalid_request("bad");
        assert_eq!(
            serde_json::to_string(&shape).unwrap(),
            r#"{"code":"INVALID_REQUEST","message":"bad"}"#
        );
    }

    #[test]
    fn unknown_method_names_the_method() {
        let shape = ErrorShape::unknown_method("nodes.list");
        assert_eq!(shape.code, ErrorCode::InvalidRequest);
        assert_eq!(shape.message, "unknown method: nodes.list");
    }

    #[test]
    fn missing_scope_carries_missing_scope_details() {
        let shape =
            ErrorShape::missing_scope("operator.read", &["operator.read", "operator.admin"]);
        assert_eq!(
            to_json(&shape),
            json!({
                "code": "FORBIDDEN",
                "message": "missing scope: operator.read",
                "details": {
                    "code": "MISSING_SCOPE",
                    "missingScope": "operator.read",
                    "requiredScopes": ["operator.read", "operator.admin"],
                },
            })
        );
    }

    #[test]
    fn unavailable_is_retryable_with_retry_after_in_camel_case() {
        let shape = ErrorShape::unavailable("overloaded", 250);
        assert_eq!(
            to_json(&shape),
            json!({"code":"UNAVAILABLE","message":"overloaded","retryable":true,"retryAfterMs":250})
        );
    }

    #[test]
    fn protocol_mismatch_lists_supported_versions() {
        assert_eq!(
            to_json(&ErrorShape::protocol_mismatch()),
            json!({
                "code": "INVALID_REQUEST",
                "message": "protocol mismatch",
                "details": {"code": "PROTOCOL_MISMATCH", "expectedProtocol": 4, "supported": [3, 4]},
            })
        );
    }

    #[test]
    fn handshake_messages_match_the_contract() {
        assert_eq!(
            ErrorShape::unauthorized("AUTH_TOKEN_MISSING").message,
            "unauthorized"
        );
        assert_eq!(
            ErrorShape::first_request_must_be_connect().message,
            "first request must be connect"
        );
        assert_eq!(
            ErrorShape::invalid_params("connect", "client is required").message,
            "invalid connect params: client is required"
        );
        assert_eq!(
            ErrorShape::invalid_request_frame("method is required").message,
            "invalid request frame: method is required"
        );
    }

    #[test]
    fn error_shape_round_trips_through_json() {
        let shape = ErrorShape::unavailable("busy", 7).with_details(json!({"queue": 3}));
        let back: ErrorShape = serde_json::from_value(to_json(&shape)).unwrap();
        assert_eq!(back, shape);
    }
}
