//! The `node.event` request (docs/protocol.md §4): an event a node host reports,
//! `{event, payloadJSON}` (or `payload`, as OpenClaw also accepts).
//!
//! Invariants: a [`NodeEventParams`] has a non-empty `event` of at most
//! [`MAX_EVENT_LEN`] bytes. Its payload is kept as sent; whether it is a
//! JSON object within [`MAX_PAYLOAD_JSON`] bytes is asked of
//! [`NodeEventParams::object`], because a bad payload is not a bad request:
//! it answers `handled:false`, `reason:"invalid_payload"`.

use super::frame::Params;
use super::params::{Fields, ParamError};
use serde_json::{Map, Value};
use simd_json::prelude::*;

/// Longest accepted `event` name, in bytes.
pub const MAX_EVENT_LEN: usize = 256;
/// Longest accepted `payloadJSON`, in bytes: OpenClaw's schema bound.
pub const MAX_PAYLOAD_JSON: usize = 16 * 1024;

/// The events that renew the node's row (docs/protocol.md §4).
pub const NODE_HOST_STATS: &str = "node.host.stats";
/// See [`NODE_HOST_STATS`].
pub const NODE_PRESENCE_ALIVE: &str = "node.presence.alive";
/// See [`NODE_HOST_STATS`].
pub const NODE_PRESENCE_ACTIVITY: &str = "node.presence.activity";

/// What a `node.event` carried as its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Neither `payloadJSON` nor `payload` (or `null`).
    Absent,
    /// `payloadJSON` as sent, or `payload` encoded.
    Json(String),
    /// Something that cannot be a payload: a `payloadJSON` that is not a
    /// string.
    Invalid,
}

/// Validated `node.event` params.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEventParams {
    /// The event name, as sent.
    pub event: String,
    /// The payload.
    pub payload: Payload,
}

impl NodeEventParams {
    /// The payload as a JSON object, if it is one of at most
    /// [`MAX_PAYLOAD_JSON`] bytes.
    pub fn object(&self) -> Option<Map<String, Value>> {
        match &self.payload {
            Payload::Json(json) if json.len() <= MAX_PAYLOAD_JSON => {
                match serde_json::from_str(json) {
                    Ok(Value::Object(map)) => Some(map),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// Validates `node.event` params.
///
/// # Errors
///
/// A [`ParamError`] naming `event` when it is missing, not a string, blank
/// or too long. The payload is never an error here.
pub fn parse_node_event(params: Option<Params<'_>>) -> Result<NodeEventParams, ParamError> {
    let fields = Fields::params(params)?;
    let event = fields
        .optional_str("event", MAX_EVENT_LEN)?
        .ok_or(ParamError::Required { field: "event" })?;
    if event.trim().is_empty() {
        return Err(ParamError::Empty { field: "event" });
    }
    let payload = match (fields.raw("payloadJSON"), fields.raw("payload")) {
        (Some(json), _) if !json.is_null() => match json.as_str() {
            Some(json) => Payload::Json(json.to_owned()),
            None => Payload::Invalid,
        },
        (_, Some(value)) if !value.is_null() => Payload::Json(value.encode()),
        _ => Payload::Absent,
    };
    Ok(NodeEventParams {
        event: event.to_owned(),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<NodeEventParams, ParamError> {
        parse_node_event(Some(crate::protocol::frame::test_params(json.as_bytes())))
    }

    #[test]
    fn payload_json_holding_an_object_is_one() {
        let p = parse(r#"{"event":"node.host.stats","payloadJSON":"{\"cpuCount\":4}"}"#).unwrap();
        assert_eq!(p.event, NODE_HOST_STATS);
        assert_eq!(p.object().unwrap()["cpuCount"], 4);
        let p = parse(r#"{"event":"x","payload":{"a":1}}"#).unwrap();
        assert_eq!(p.object().unwrap()["a"], 1);
    }

    #[test]
    fn a_bad_payload_is_no_object_but_no_error() {
        for json in [
            r#"{"event":"e","payloadJSON":"[1,2]"}"#,
            r#"{"event":"e","payloadJSON":"{not json"}"#,
            r#"{"event":"e","payloadJSON":7}"#,
            r#"{"event":"e","payloadJSON":null}"#,
            r#"{"event":"e"}"#,
        ] {
            assert_eq!(parse(json).unwrap().object(), None, "{json}");
        }
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_PAYLOAD_JSON));
        let params = NodeEventParams {
            event: "e".into(),
            payload: Payload::Json(big),
        };
        assert_eq!(params.object(), None, "over the bound");
    }

    #[test]
    fn the_event_name_is_required_and_bounded() {
        assert_eq!(parse(r#"{}"#), Err(ParamError::Required { field: "event" }));
        assert_eq!(
            parse(r#"{"event":"  "}"#),
            Err(ParamError::Empty { field: "event" })
        );
        assert_eq!(parse(r#"{"event":5}"#).unwrap_err().field(), "event");
        let long = format!(r#"{{"event":"{}"}}"#, "e".repeat(MAX_EVENT_LEN + 1));
        assert_eq!(parse(&long).unwrap_err().field(), "event");
    }
}
