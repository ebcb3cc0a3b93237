//! The `system-event` request: validated beacon params (§5.2).
//!
//! Invariants: a `SystemEventParams` only exists for params that passed every rule, so the
//! caller can write it without further checks: `text` is trimmed and non-empty, at most
//! `MAX_TEXT_LEN` bytes as sent; every optional string is at most `MAX_FIELD_LEN` bytes and
//! `None` when absent or blank; each array has at most `MAX_ITEMS` strings of at most
//! `MAX_FIELD_LEN` bytes. Unknown fields are ignored. Parsing the `Node: …` text form is the
//! presence layer's job, not this one's.

use super::frame::Params;
use simd_json::prelude::*;

use super::params::{Fields, ParamError};
use crate::presence::BeaconInput;

/// Longest accepted `text`, in bytes as sent (§5.2: 4 KiB).
pub const MAX_TEXT_LEN: usize = 4096;
/// Longest accepted optional string or array item, in bytes (§5.2).
pub const MAX_FIELD_LEN: usize = 256;
/// Most items accepted in `roles`, `scopes` or `tags` (§5.2).
pub const MAX_ITEMS: usize = 32;

/// Validated params of a `system-event` beacon, borrowed from the request
/// frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemEventParams<'a> {
    /// What presence stores: `text` (trimmed, never empty), the optional
    /// strings (`None` when absent or blank; `ip` and `mode` as sent),
    /// `lastInputSeconds` (`None` absent, `Some(None)` for `null`, floats
    /// floored), and `roles` / `scopes` as sent.
    pub beacon: BeaconInput<'a>,
    /// `tags`: validated, accepted, and not stored in presence.
    pub tags: Vec<&'a str>,
}

/// Validates `system-event` params (§5.2).
///
/// # Errors
///
/// A [`ParamError`] naming the first field that is missing, mistyped or over its limit; then
/// nothing may be written (§5.2).
pub fn parse_system_event(params: Option<Params<'_>>) -> Result<SystemEventParams<'_>, ParamError> {
    let fields = Fields::params(params)?;
    let text = fields
        .optional_str("text", MAX_TEXT_LEN)?
        .ok_or(ParamError::Required { field: "text" })?
        .trim();
    if text.is_empty() {
        return Err(ParamError::Empty { field: "text" });
    }
    let optional = |path| fields.optional_text_ref(path, MAX_FIELD_LEN);
    let list = |path| fields.string_array_ref(path, MAX_ITEMS, MAX_FIELD_LEN);
    Ok(SystemEventParams {
        beacon: BeaconInput {
            text,
            device_id: optional("deviceId")?,
            instance_id: optional("instanceId")?,
            host: optional("host")?,
            ip: optional("ip")?,
            mode: optional("mode")?,
            version: optional("version")?,
            platform: optional("platform")?,
            device_family: optional("deviceFamily")?,
            model_identifier: optional("modelIdentifier")?,
            reason: optional("reason")?,
            last_input_seconds: last_input_seconds(fields)?,
            roles: list("roles")?,
            scopes: list("scopes")?,
        },
        tags: list("tags")?,
    })
}

/// Reads `lastInputSeconds`: absent, `null` (clear), or a number >= 0, floored.
fn last_input_seconds(fields: Fields<'_>) -> Result<Option<Option<u64>>, ParamError> {
    let Some(value) = fields.raw("lastInputSeconds") else {
        return Ok(None);
    };
    if value.is_null() {
        return Ok(Some(None));
    }
    if let Some(seconds) = value.as_u64() {
        return Ok(Some(Some(seconds)));
    }
    match value.as_f64() {
        // `as` saturates, so a huge float becomes u64::MAX rather than wrapping.
        Some(seconds) if seconds >= 0.0 => Ok(Some(Some(seconds.floor() as u64))),
        // Negative numbers, NaN (which fails `>=`), strings, booleans and containers.
        _ => Err(ParamError::WrongType {
            field: "lastInputSeconds",
            expected: "a number >= 0 or null",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn as_params(value: &Value) -> Params<'static> {
        let bytes = serde_json::to_vec(value).expect("test JSON serializes");
        crate::protocol::frame::test_params(&bytes)
    }

    fn parse(value: Value) -> Result<SystemEventParams<'static>, ParamError> {
        parse_system_event(Some(as_params(&value)))
    }

    fn why(value: Value) -> String {
        parse(value)
            .expect_err("params should be rejected")
            .to_string()
    }

    #[test]
    fn parses_macos_node_beacon() {
        let text = "Node: studio (192.168.1.20) · app 2026.1.5 · last input 12 s ago · mode ui · reason periodic";
        let params = parse(json!({
            "text": text,
            "deviceId": "dev-1",
            "instanceId": "F1A2",
            "host": "studio",
            "ip": "192.168.1.20",
            "mode": "ui",
            "version": "2026.1.5",
            "platform": "macos 15.2",
            "deviceFamily": "Mac",
            "modelIdentifier": "Mac15,8",
            "reason": "periodic",
            "lastInputSeconds": 12,
            "roles": ["operator"],
            "scopes": ["operator.read"],
            "tags": ["beacon"],
        }))
        .unwrap();
        assert_eq!(params.beacon.text, text);
        assert_eq!(params.beacon.device_id, Some("dev-1"));
        assert_eq!(params.beacon.host, Some("studio"));
        assert_eq!(params.beacon.ip, Some("192.168.1.20"));
        assert_eq!(params.beacon.model_identifier, Some("Mac15,8"));
        assert_eq!(params.beacon.reason, Some("periodic"));
        assert_eq!(params.beacon.last_input_seconds, Some(Some(12)));
        assert_eq!(params.beacon.roles, ["operator"]);
        assert_eq!(params.beacon.scopes, ["operator.read"]);
        assert_eq!(params.tags, ["beacon"]);
    }

    #[test]
    fn text_only_beacon_leaves_everything_else_absent() {
        let params = parse(json!({"text": "hello"})).unwrap();
        assert_eq!(
            params,
            SystemEventParams {
                beacon: BeaconInput {
                    text: "hello",
                    ..BeaconInput::default()
                },
                tags: Vec::new(),
            }
        );
    }

    #[test]
    fn text_is_trimmed() {
        let params = parse(json!({"text": "  Node: a · mode ui \n"})).unwrap();
        assert_eq!(params.beacon.text, "Node: a · mode ui");
    }

    #[test]
    fn text_is_required_and_must_not_be_blank() {
        assert_eq!(why(json!({})), "text is required");
        assert_eq!(why(json!({"text": null})), "text is required");
        assert_eq!(why(json!({"text": ""})), "text must be non-empty");
        assert_eq!(why(json!({"text": " \t\n "})), "text must be non-empty");
        assert_eq!(why(json!({"text": 5})), "text must be a string");
    }

    #[test]
    fn text_exceeding_4096_bytes_is_rejected() {
        assert_eq!(
            why(json!({"text": "x".repeat(MAX_TEXT_LEN + 1)})),
            "text exceeds 4096 bytes"
        );
        let params = parse(json!({"text": "x".repeat(MAX_TEXT_LEN)})).unwrap();
        assert_eq!(params.beacon.text.len(), MAX_TEXT_LEN);
        // The limit counts bytes: 2049 two-byte characters are 4098 bytes.
        assert_eq!(
            why(json!({"text": "é".repeat(2049)})),
            "text exceeds 4096 bytes"
        );
    }

    #[test]
    fn params_must_be_an_object() {
        let expected = "params must be an object";
        assert_eq!(parse_system_event(None).unwrap_err().to_string(), expected);
        assert_eq!(why(json!("text")), expected);
        assert_eq!(why(json!(null)), expected);
        assert_eq!(why(json!([{"text": "x"}])), expected);
    }

    #[test]
    fn optional_strings_of_wrong_type_name_the_field() {
        for field in [
            "deviceId",
            "instanceId",
            "host",
            "ip",
            "mode",
            "version",
            "platform",
            "deviceFamily",
            "modelIdentifier",
            "reason",
        ] {
            let mut params = json!({"text": "t"});
            params[field] = json!(1);
            assert_eq!(why(params), format!("{field} must be a string"));
            let mut params = json!({"text": "t"});
            params[field] = json!("x".repeat(MAX_FIELD_LEN + 1));
            assert_eq!(why(params), format!("{field} exceeds 256 bytes"));
        }
    }

    #[test]
    fn blank_optional_strings_read_as_absent() {
        let params = parse(json!({"text": "t", "deviceId": "  ", "host": "", "ip": null})).unwrap();
        assert_eq!(
            (
                params.beacon.device_id,
                params.beacon.host,
                params.beacon.ip
            ),
            (None, None, None)
        );
    }

    #[test]
    fn last_input_seconds_null_means_clear() {
        let params = parse(json!({"text": "t", "lastInputSeconds": null})).unwrap();
        assert_eq!(params.beacon.last_input_seconds, Some(None));
        let params = parse(json!({"text": "t"})).unwrap();
        assert_eq!(params.beacon.last_input_seconds, None);
    }

    #[test]
    fn last_input_seconds_floors_floats() {
        let params = parse(json!({"text": "t", "lastInputSeconds": 12.9})).unwrap();
        assert_eq!(params.beacon.last_input_seconds, Some(Some(12)));
        let params = parse(json!({"text": "t", "lastInputSeconds": 0.0})).unwrap();
        assert_eq!(params.beacon.last_input_seconds, Some(Some(0)));
        let params = parse(json!({"text": "t", "lastInputSeconds": 1e300})).unwrap();
        assert_eq!(params.beacon.last_input_seconds, Some(Some(u64::MAX)));
        let params = parse(json!({"text": "t", "lastInputSeconds": u64::MAX})).unwrap();
        assert_eq!(params.beacon.last_input_seconds, Some(Some(u64::MAX)));
    }

    #[test]
    fn last_input_seconds_rejects_negatives_and_non_numbers() {
        let expected = "lastInputSeconds must be a number >= 0 or null";
        for bad in [
            json!(-1),
            json!(-0.5),
            json!("12"),
            json!(true),
            json!([1]),
            json!({}),
        ] {
            assert_eq!(
                why(json!({"text": "t", "lastInputSeconds": bad})),
                expected,
                "{bad}"
            );
        }
    }

    #[test]
    fn arrays_are_limited_to_32_strings() {
        for field in ["roles", "scopes", "tags"] {
            let mut params = json!({"text": "t"});
            params[field] = json!(vec!["r"; MAX_ITEMS + 1]);
            assert_eq!(why(params), format!("{field} exceeds 32 items"));
            let mut params = json!({"text": "t"});
            params[field] = json!("operator");
            assert_eq!(why(params), format!("{field} must be an array of strings"));
            let mut params = json!({"text": "t"});
            params[field] = json!(["ok", {}]);
            assert_eq!(why(params), format!("{field}[1] must be a string"));
            let mut params = json!({"text": "t"});
            params[field] = json!(["x".repeat(MAX_FIELD_LEN + 1)]);
            assert_eq!(why(params), format!("{field}[0] exceeds 256 bytes"));
        }
        let params = parse(json!({"text": "t", "tags": vec!["a"; MAX_ITEMS]})).unwrap();
        assert_eq!(params.tags.len(), MAX_ITEMS);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let params = parse(json!({"text": "t", "ts": 123, "extra": {"a": [1]}})).unwrap();
        assert_eq!(params.beacon.text, "t");
    }

    proptest! {
        #[test]
        fn parse_system_event_never_panics(
            text in proptest::option::of(".{0,40}"),
            seconds in prop_oneof![
                Just(Value::Null),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                ".{0,4}".prop_map(Value::from),
            ],
            roles in proptest::collection::vec(".{0,8}", 0..40),
        ) {
            let mut params = json!({"lastInputSeconds": seconds, "roles": roles});
            if let Some(text) = text {
                params["text"] = json!(text);
            }
            let _ = parse(params);
        }

        #[test]
        fn accepted_last_input_is_the_floor_of_a_non_negative_number(seconds in 0.0f64..1e12) {
            let params = parse(json!({"text": "t", "lastInputSeconds": seconds})).unwrap();
            prop_assert_eq!(params.beacon.last_input_seconds, Some(Some(seconds.floor() as u64)));
        }
    }
}
