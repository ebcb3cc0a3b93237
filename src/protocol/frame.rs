//! Frames on the wire: parsing inbound `req` frames and encoding outbound `res` and `event`
//! frames (§2).
//!
//! Invariants: `parse_request` returns a `Request` only when `type` is `"req"` and `id` and
//! `method` are non-empty strings; any other input is a `FrameError` that names the broken
//! rule, and never a panic. The encoders write exactly one JSON object per call, with every
//! string escaped by `serde_json` and every `payload` inserted verbatim, so the caller must
//! hand them a single, valid JSON value.
//!
//! # Which bad frames get an answer
//!
//! After the handshake every `FrameError` is answered with `INVALID_REQUEST`
//! `invalid request frame: WHY` on [`FrameError::reply_id`] (§3).
//!
//! During the handshake (§3.3) only a frame that is *request-shaped*
//! ([`FrameError::is_request_shaped`]) is answered, with `invalid request frame: WHY`, before the
//! 1008 close. Request-shaped means a JSON object that says `"type":"req"` and carries a
//! non-empty string `id`, so only its `method` is at fault: the client plainly speaks the
//! protocol and has given an id to answer on. Everything else (not JSON, not an object, another
//! `type`, no usable `id`) is "not a request at all" and is closed on without an answer; an
//! answer there could not be matched to anything the client sent.

use serde::{Deserialize, Serialize};
use simd_json::Buffers;
use simd_json::prelude::*;
use simd_json::value::tape::{Tape, Value};
use std::cell::RefCell;

/// The `id` to answer on when a bad frame has no usable id of its own (§3).
pub const INVALID_FRAME_ID: &str = "invalid";

/// A JSON value of a parsed frame (its `params`, or a field of them), read in
/// place: strings borrow from the frame's buffer and nothing is allocated per
/// field. Objects are read by key in the order sent; when a key repeats, the
/// first one counts.
pub type Params<'a> = Value<'a, 'a>;

/// A well-formed request frame: `{"type":"req","id":STR,"method":STR,"params":ANY?}`.
///
/// It holds the frame's parsed form (a simd-json tape) and borrows its
/// strings from the frame's buffer, so reading it allocates nothing beyond
/// the `id` and the tape.
#[derive(Debug)]
pub struct Request<'a> {
    /// Correlates the response with this request; never empty.
    pub id: String,
    /// The method to call; never empty. Not checked against the known methods here.
    pub method: &'a str,
    /// The whole frame, an object; `params` is read from it.
    tape: Tape<'a>,
}

impl<'a> Request<'a> {
    /// The params exactly as sent; `None` only when the field is absent (a
    /// JSON `null` is kept).
    pub fn params(&self) -> Option<Params<'_>> {
        self.tape.as_value().get("params")
    }
}

/// Why a frame is not a valid request. `Display` is the WHY of `invalid request frame: WHY`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame does not parse as JSON.
    #[error("frame is not valid JSON")]
    NotJson,
    /// The frame is JSON but not an object.
    #[error("frame must be a JSON object")]
    NotObject,
    /// `type` is absent or is not `"req"`.
    #[error("type must be \"req\"")]
    NotRequestType {
        /// The frame's `id`, if it had a non-empty string one.
        id: Option<String>,
    },
    /// `type` is `"req"` but `id` is absent or `null`.
    #[error("id is required")]
    MissingId,
    /// `id` is present but not a string.
    #[error("id must be a string")]
    IdNotString,
    /// `id` is the empty string.
    #[error("id must be non-empty")]
    EmptyId,
    /// `method` is absent or `null`.
    #[error("method is required")]
    MissingMethod {
        /// The frame's `id`.
        id: String,
    },
    /// `method` is present but not a string.
    #[error("method must be a string")]
    MethodNotString {
        /// The frame's `id`.
        id: String,
    },
    /// `method` is the empty string.
    #[error("method must be non-empty")]
    EmptyMethod {
        /// The frame's `id`.
        id: String,
    },
}

impl FrameError {
    /// The frame's own `id`, when it had a non-empty string one.
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::NotRequestType { id } => id.as_deref(),
            Self::MissingMethod { id }
            | Self::MethodNotString { id }
            | Self::EmptyMethod { id } => Some(id),
            Self::NotJson
            | Self::NotObject
            | Self::MissingId
            | Self::IdNotString
            | Self::EmptyId => None,
        }
    }

    /// The `id` to answer on: the frame's own, else [`INVALID_FRAME_ID`].
    pub fn reply_id(&self) -> &str {
        self.id().unwrap_or(INVALID_FRAME_ID)
    }

    /// Whether the frame is request-shaped: an object with `"type":"req"` and a usable `id`,
    /// faulty only in its `method`. See the module docs for how the handshake uses this.
    pub fn is_request_shaped(&self) -> bool {
        matches!(
            self,
            Self::MissingMethod { .. } | Self::MethodNotString { .. } | Self::EmptyMethod { .. }
        )
    }
}

/// Frames longer than this are parsed with buffers of their own, so one
/// large frame does not leave a large scratch buffer on a worker thread.
const KEPT_BUFFER_BYTES: usize = 16 * 1024;

thread_local! {
    /// simd-json's scratch buffers, reused by every frame parsed on this
    /// thread (parsing never yields, so one set per thread suffices).
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers::new(KEPT_BUFFER_BYTES));
}

/// Parses `buf` into a tape, with this thread's scratch buffers when the
/// frame is small enough to keep them at their size.
fn to_tape(buf: &mut [u8]) -> Option<Tape<'_>> {
    if buf.len() > KEPT_BUFFER_BYTES {
        return simd_json::to_tape(buf).ok();
    }
    BUFFERS.with(|buffers| match buffers.try_borrow_mut() {
        Ok(mut buffers) => simd_json::to_tape_with_buffers(buf, &mut buffers).ok(),
        // Unreachable (nothing parses re-entrantly), but never a panic.
        Err(_) => simd_json::to_tape(buf).ok(),
    })
}

/// Parses one inbound text frame as a request.
///
/// simd-json unescapes strings in place, so `buf` is left scrambled: pass a scratch copy if the
/// original bytes are still needed. Unknown top-level fields are ignored; when a field repeats,
/// the first one counts.
///
/// # Errors
///
/// A [`FrameError`] naming the first rule the frame breaks, checked in this order: JSON,
/// object, `type`, `id`, `method`.
pub fn parse_request(buf: &mut [u8]) -> Result<Request<'_>, FrameError> {
    let tape = to_tape(buf).ok_or(FrameError::NotJson)?;
    let frame = tape.as_value();
    if !frame.is_object() {
        return Err(FrameError::NotObject);
    }
    // Read `id` first so that a frame with the wrong `type` can still be answered on its id.
    let id = frame.get("id");
    if frame.get("type").and_then(|kind| kind.into_string()) != Some("req") {
        let id = id
            .and_then(|id| id.into_string())
            .filter(|id| !id.is_empty())
            .map(str::to_owned);
        return Err(FrameError::NotRequestType { id });
    }
    let id = match id {
        None => return Err(FrameError::MissingId),
        Some(id) if id.is_null() => return Err(FrameError::MissingId),
        Some(id) => match id.into_string() {
            None => return Err(FrameError::IdNotString),
            Some("") => return Err(FrameError::EmptyId),
            Some(id) => id.to_owned(),
        },
    };
    let method = match frame.get("method") {
        None => return Err(FrameError::MissingMethod { id }),
        Some(method) if method.is_null() => return Err(FrameError::MissingMethod { id }),
        Some(method) => match method.into_string() {
            None => return Err(FrameError::MethodNotString { id }),
            Some("") => return Err(FrameError::EmptyMethod { id }),
            Some(method) => method,
        },
    };
    Ok(Request { id, method, tape })
}

/// Parses `json` into a value that lives for the rest of the test
/// process (tests only: the frame and its tape are leaked).
#[cfg(test)]
pub(crate) fn test_params(json: &[u8]) -> Params<'static> {
    let bytes = Box::leak(json.to_vec().into_boxed_slice());
    let tape = simd_json::to_tape(bytes).expect("test JSON is valid");
    Box::leak(Box::new(tape)).as_value()
}

/// The `stateVersion` an event carries: one counter per published state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StateVersion {
    /// Rises by one for every published presence change; starts at 1 (§7).
    pub presence: u64,
    /// Rises by one for every published health change.
    pub health: u64,
}

/// Appends `{"type":"res","id":ID,"ok":true,"payload":PAYLOAD}` to `out`.
///
/// `payload_json` must be one serialized JSON value and is inserted verbatim. An empty
/// `payload_json` leaves the optional `payload` field out.
pub fn write_response_ok(out: &mut Vec<u8>, id: &str, payload_json: &[u8]) {
    out.extend_from_slice(br#"{"type":"res","id":"#);
    write_json_str(out, id);
    out.extend_from_slice(br#","ok":true"#);
    write_payload(out, payload_json);
    out.push(b'}');
}

/// Like [`write_response_ok`], with the payload written in place by
/// `payload`, which must append exactly one JSON value. Saves a copy when
/// the payload is large (a presence list).
pub fn write_response_ok_with(out: &mut Vec<u8>, id: &str, payload: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(br#"{"type":"res","id":"#);
    write_json_str(out, id);
    out.extend_from_slice(br#","ok":true,"payload":"#);
    payload(out);
    out.push(b'}');
}

/// Appends `{"type":"res","id":ID,"ok":false,"error":ERROR}` to `out`.
///
/// # Panics
///
/// Never: an `ErrorShape` always serializes and writing to a `Vec` cannot fail.
pub fn write_response_err(out: &mut Vec<u8>, id: &str, error: &super::ErrorShape) {
    out.extend_from_slice(br#"{"type":"res","id":"#);
    write_json_str(out, id);
    out.extend_from_slice(br#","ok":false,"error":"#);
    // Cannot fail: writing to a Vec is infallible and ErrorShape holds only strings, numbers,
    // booleans and a serde_json::Value, whose keys are always strings.
    serde_json::to_writer(&mut *out, error).expect("an ErrorShape always serializes");
    out.push(b'}');
}

/// Appends `{"type":"event","event":NAME,"payload":PAYLOAD,"seq":N,"stateVersion":{..}}`
/// to `out`, the payload written in place by `payload`, which must append
/// exactly one JSON value. `seq` is for broadcast events only (§2); `None`
/// leaves `seq` out, as does `None` for `state_version`. Broadcasts are
/// encoded by `SharedEvent` instead, which leaves the `seq` to each
/// connection.
pub fn write_event_with(
    out: &mut Vec<u8>,
    event: &str,
    payload: impl FnOnce(&mut Vec<u8>),
    seq: Option<u64>,
    state_version: Option<StateVersion>,
) {
    out.extend_from_slice(br#"{"type":"event","event":"#);
    write_json_str(out, event);
    out.extend_from_slice(br#","payload":"#);
    payload(out);
    write_event_tail(out, seq, state_version);
}

/// Appends `,"seq":N,"stateVersion":{..}}`, each part only when given.
fn write_event_tail(out: &mut Vec<u8>, seq: Option<u64>, state_version: Option<StateVersion>) {
    if let Some(seq) = seq {
        out.extend_from_slice(br#","seq":"#);
        write_json(out, &seq);
    }
    if let Some(version) = state_version {
        out.extend_from_slice(br#","stateVersion":"#);
        write_json(out, &version);
    }
    out.push(b'}');
}

/// Appends `,"payload":PAYLOAD` unless the payload is empty.
fn write_payload(out: &mut Vec<u8>, payload_json: &[u8]) {
    if !payload_json.is_empty() {
        out.extend_from_slice(br#","payload":"#);
        out.extend_from_slice(payload_json);
    }
}

/// Appends `text` as a quoted, escaped JSON string.
pub(super) fn write_json_str(out: &mut Vec<u8>, text: &str) {
    write_json(out, text);
}

/// Appends `value` serialized as JSON.
pub(super) fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Cannot fail: only strings, integers and `StateVersion` pass through here, which always
    // serialize, and writing to a Vec is infallible.
    serde_json::to_writer(&mut *out, value).expect("strings and integers always serialize");
}

#[cfg(test)]
mod tests {
    use super::super::ErrorShape;
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    /// An event whose payload is already JSON.
    fn write_event(
        out: &mut Vec<u8>,
        event: &str,
        payload: &[u8],
        seq: Option<u64>,
        state_version: Option<StateVersion>,
    ) {
        write_event_with(
            out,
            event,
            |o| o.extend_from_slice(payload),
            seq,
            state_version,
        );
    }

    /// Parses `frame` from a buffer leaked for the test's lifetime.
    fn parse(frame: &str) -> Result<Request<'static>, FrameError> {
        parse_request(Box::leak(frame.as_bytes().to_vec().into_boxed_slice()))
    }

    fn as_json(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).expect("encoders write valid JSON")
    }

    #[test]
    fn response_with_inline_payload_matches_copied_payload() {
        let mut copied = Vec::new();
        write_response_ok(&mut copied, "7", b"[1,2]");
        let mut inline = Vec::new();
        write_response_ok_with(&mut inline, "7", |out| out.extend_from_slice(b"[1,2]"));
        assert_eq!(copied, inline);
    }

    #[test]
    fn parses_cli_connect_frame() {
        let req = parse(
            r#"{"type":"req","id":"1","method":"connect","params":{"minProtocol":3,"maxProtocol":4,"client":{"id":"cli","displayName":"openclaw","version":"2026.1.0","platform":"darwin","mode":"cli","instanceId":"abc"},"role":"operator","scopes":["operator.read","operator.write","operator.admin"],"caps":[],"auth":{"token":"t"},"locale":"en-US","userAgent":"openclaw-cli/2026.1.0","device":{"id":"dev1","publicKey":"...","signature":"...","signedAt":1,"nonce":"n"}}}"#,
        )
        .unwrap();
        assert_eq!(req.id, "1");
        assert_eq!(req.method, "connect");
        let params = req.params().expect("params present");
        assert_eq!(params.get("minProtocol").and_then(|v| v.as_u64()), Some(3));
    }

    #[test]
    fn params_are_optional() {
        let req = parse(r#"{"type":"req","id":"a-b","method":"system-presence"}"#).unwrap();
        assert_eq!(req.method, "system-presence");
        assert!(req.params().is_none());
    }

    #[test]
    fn null_params_are_kept_as_null() {
        let req = parse(r#"{"type":"req","id":"1","method":"health","params":null}"#).unwrap();
        assert!(req.params().is_some_and(|p| p.is_null()));
    }

    #[test]
    fn unknown_frame_fields_are_ignored() {
        let req = parse(r#"{"id":"9","extra":[1,2],"method":"health","type":"req"}"#).unwrap();
        assert_eq!((req.id.as_str(), req.method), ("9", "health"));
    }

    #[test]
    fn a_repeated_field_counts_once_as_first_sent() {
        let req =
            parse(r#"{"type":"req","id":"1","method":"health","id":"2","method":"x"}"#).unwrap();
        assert_eq!((req.id.as_str(), req.method), ("1", "health"));
        let req =
            parse(r#"{"type":"req","id":"1","method":"m","params":{"a":1},"params":2}"#).unwrap();
        assert!(req.params().is_some_and(|p| p.is_object()));
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let req = parse(r#"{"type":"req","id":"a\"b\u00e9","method":"x\\y"}"#).unwrap();
        assert_eq!(req.id, "a\"bé");
        assert_eq!(req.method, "x\\y");
    }

    #[test]
    fn non_json_is_not_a_request() {
        for frame in ["", "   ", "{", "hello", r#"{"type":"req""#, "\u{0}"] {
            let err = parse(frame).unwrap_err();
            assert_eq!(err, FrameError::NotJson, "{frame:?}");
            assert!(!err.is_request_shaped());
            assert_eq!(err.reply_id(), "invalid");
        }
    }

    #[test]
    fn non_object_json_is_not_a_request() {
        for frame in ["[]", "1", "\"req\"", "null", "true"] {
            let err = parse(frame).unwrap_err();
            assert_eq!(err, FrameError::NotObject, "{frame:?}");
            assert!(!err.is_request_shaped());
        }
    }

    #[test]
    fn frame_with_other_type_is_not_a_request_but_keeps_its_id() {
        let err = parse(r#"{"type":"res","id":"7","method":"health"}"#).unwrap_err();
        assert_eq!(
            err,
            FrameError::NotRequestType {
                id: Some("7".into())
            }
        );
        assert_eq!(err.reply_id(), "7");
        assert!(!err.is_request_shaped());
        assert_eq!(err.to_string(), "type must be \"req\"");
    }

    #[test]
    fn frame_without_type_is_not_a_request() {
        let err = parse(r#"{"id":"7","method":"health"}"#).unwrap_err();
        assert!(matches!(err, FrameError::NotRequestType { .. }));
        let err = parse(r#"{"type":1,"id":"","method":"health"}"#).unwrap_err();
        assert_eq!(err, FrameError::NotRequestType { id: None });
    }

    #[test]
    fn frame_with_bad_id_answers_on_invalid() {
        let cases = [
            (r#"{"type":"req","method":"health"}"#, FrameError::MissingId),
            (
                r#"{"type":"req","id":null,"method":"health"}"#,
                FrameError::MissingId,
            ),
            (
                r#"{"type":"req","id":"","method":"health"}"#,
                FrameError::EmptyId,
            ),
            (
                r#"{"type":"req","id":5,"method":"health"}"#,
                FrameError::IdNotString,
            ),
        ];
        for (frame, expected) in cases {
            let err = parse(frame).unwrap_err();
            assert_eq!(err, expected, "{frame}");
            assert_eq!(err.reply_id(), INVALID_FRAME_ID);
            assert!(!err.is_request_shaped());
        }
    }

    #[test]
    fn frame_with_empty_method_is_invalid_request() {
        let err = parse(r#"{"type":"req","id":"42","method":""}"#).unwrap_err();
        assert_eq!(err, FrameError::EmptyMethod { id: "42".into() });
        assert_eq!(err.reply_id(), "42");
        assert!(err.is_request_shaped());
        assert_eq!(
            ErrorShape::invalid_request_frame(&err).message,
            "invalid request frame: method must be non-empty"
        );
    }

    #[test]
    fn frame_with_missing_or_non_string_method_is_request_shaped() {
        let err = parse(r#"{"type":"req","id":"1"}"#).unwrap_err();
        assert_eq!(err, FrameError::MissingMethod { id: "1".into() });
        assert_eq!(err.to_string(), "method is required");
        let err = parse(r#"{"type":"req","id":"1","method":["connect"]}"#).unwrap_err();
        assert_eq!(err, FrameError::MethodNotString { id: "1".into() });
        assert!(err.is_request_shaped());
        assert_eq!(err.id(), Some("1"));
    }

    #[test]
    fn ok_response_inserts_payload_verbatim() {
        let mut out = Vec::new();
        write_response_ok(&mut out, "1", br#"{"ok":true}"#);
        assert_eq!(
            out,
            br#"{"type":"res","id":"1","ok":true,"payload":{"ok":true}}"#
        );
    }

    #[test]
    fn ok_response_without_payload_omits_it() {
        let mut out = Vec::new();
        write_response_ok(&mut out, "1", b"");
        assert_eq!(out, br#"{"type":"res","id":"1","ok":true}"#);
    }

    #[test]
    fn escapes_ids_in_responses() {
        let id = "a\"b\\c\n\u{1}</script>é";
        let mut out = Vec::new();
        write_response_ok(&mut out, id, b"[]");
        assert_eq!(as_json(&out)["id"], json!(id));
        out.clear();
        write_response_err(
            &mut out,
            id,
            &ErrorShape::unauthorized("AUTH_TOKEN_MISMATCH"),
        );
        assert_eq!(as_json(&out)["id"], json!(id));
    }

    #[test]
    fn error_response_has_error_object() {
        let mut out = Vec::new();
        write_response_err(&mut out, "3", &ErrorShape::unknown_method("nope"));
        assert_eq!(
            as_json(&out),
            json!({"type":"res","id":"3","ok":false,
                   "error":{"code":"INVALID_REQUEST","message":"unknown method: nope"}})
        );
    }

    #[test]
    fn broadcast_event_carries_seq_and_state_version() {
        let mut out = Vec::new();
        let version = StateVersion {
            presence: 5,
            health: 1,
        };
        write_event(
            &mut out,
            "presence",
            br#"{"presence":[]}"#,
            Some(12),
            Some(version),
        );
        assert_eq!(
            out,
            br#"{"type":"event","event":"presence","payload":{"presence":[]},"seq":12,"stateVersion":{"presence":5,"health":1}}"#
        );
        assert_eq!(
            as_json(&out)["stateVersion"],
            serde_json::to_value(version).unwrap()
        );
    }

    #[test]
    fn unicast_event_has_no_seq() {
        let mut out = Vec::new();
        write_event(
            &mut out,
            "connect.challenge",
            br#"{"nonce":"n","ts":1}"#,
            None,
            None,
        );
        assert_eq!(
            as_json(&out),
            json!({"type":"event","event":"connect.challenge","payload":{"nonce":"n","ts":1}})
        );
    }

    #[test]
    fn encoders_append_without_clearing() {
        let mut out = b"x".to_vec();
        write_event(&mut out, "tick", br#"{"ts":1}"#, None, None);
        assert_eq!(out.first(), Some(&b'x'));
        assert_eq!(as_json(&out[1..])["event"], json!("tick"));
    }

    proptest! {
        #[test]
        fn parse_request_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_request(&mut bytes.clone());
        }

        #[test]
        fn parse_request_never_panics_on_json_like_text(text in r#"[{}\[\]":,a-z0-9 \\.-]{0,200}"#) {
            let _ = parse_request(&mut text.into_bytes());
        }

        #[test]
        fn parsed_ids_round_trip_through_responses(id in ".{1,40}", method in "[a-z.-]{1,20}") {
            let frame = json!({"type":"req","id":id,"method":method}).to_string();
            let mut frame = frame.into_bytes();
            let req = parse_request(&mut frame).unwrap();
            prop_assert_eq!(&req.id, &id);
            let mut out = Vec::new();
            write_response_ok(&mut out, &req.id, b"null");
            let back = as_json(&out);
            prop_assert_eq!(back["id"].as_str(), Some(id.as_str()));
        }

        #[test]
        fn event_frames_are_valid_json(
            event in ".{0,20}",
            seq in proptest::option::of(any::<u64>()),
            presence in any::<u64>(),
            health in any::<u64>(),
        ) {
            let mut out = Vec::new();
            write_event(&mut out, &event, b"{}", seq, Some(StateVersion { presence, health }));
            let back = as_json(&out);
            prop_assert_eq!(back["event"].as_str(), Some(event.as_str()));
            prop_assert_eq!(back["seq"].as_u64(), seq);
            prop_assert_eq!(back["stateVersion"]["presence"].as_u64(), Some(presence));
        }
    }
}
