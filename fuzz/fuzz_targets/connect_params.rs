//! Fuzzes the params parsers: one text frame -> `parse_request` -> `parse_connect` and
//! `parse_system_event` on its params.
//!
//! Checks that no input panics and that whatever parses keeps the documented invariants:
//! negotiated versions are supported and inside the client's range, limits hold, and every
//! rejection turns into an error answer.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcall::protocol::{
    ErrorShape, SUPPORTED_PROTOCOLS, connect, parse_connect, parse_request, parse_system_event,
    system_event_params, write_response_err,
};

fuzz_target!(|data: &[u8]| {
    let mut scratch = data.to_vec();
    let Ok(request) = parse_request(&mut scratch) else {
        return;
    };
    let params = request.params();
    let mut out = Vec::new();

    match parse_connect(params) {
        Ok(connect) => {
            assert!(connect.min_protocol >= 1 && connect.max_protocol >= 1);
            if let Some(version) = connect.negotiate() {
                assert!(SUPPORTED_PROTOCOLS.contains(&version));
                assert!(
                    (connect.min_protocol..=connect.max_protocol).contains(&u64::from(version))
                );
            }
            assert!(
                !connect.client.id.is_empty() && connect.client.id.len() <= connect::MAX_NAME_LEN
            );
            assert!(connect.scopes.len() <= connect::MAX_LIST_ITEMS);
            assert!(connect.caps.len() <= connect::MAX_LIST_ITEMS);
            let _ = format!("{connect:?}");
        }
        Err(err) => {
            write_response_err(&mut out, &request.id, &err.to_error_shape());
            assert!(serde_json::from_slice::<serde_json::Value>(&out).is_ok());
        }
    }

    out.clear();
    match parse_system_event(params) {
        Ok(params) => {
            let event = &params.beacon;
            assert!(!event.text.is_empty() && event.text.trim() == event.text);
            assert!(event.text.len() <= system_event_params::MAX_TEXT_LEN);
            assert!(event.roles.len() <= system_event_params::MAX_ITEMS);
            assert!(params.tags.len() <= system_event_params::MAX_ITEMS);
            // What the gateway does next must not panic either.
            let _ = rollcall::presence::beacon(&params.beacon, "gateway-host");
            assert!(
                event
                    .host
                    .iter()
                    .all(|h| h.len() <= system_event_params::MAX_FIELD_LEN)
            );
        }
        Err(err) => {
            let shape = ErrorShape::invalid_params("system-event", &err);
            write_response_err(&mut out, &request.id, &shape);
            assert!(serde_json::from_slice::<serde_json::Value>(&out).is_ok());
        }
    }
});
