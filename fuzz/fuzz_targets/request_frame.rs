//! Fuzzes the inbound read path: one text frame -> `parse_request` -> the response for it.
//!
//! Checks that no input panics, that only UTF-8 frames with a non-empty `id` and `method` parse,
//! and that the response written for any frame is valid JSON answering on the right id.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcall::protocol::{ErrorShape, parse_request, write_response_err, write_response_ok};

fuzz_target!(|data: &[u8]| {
    // The connection task parses a scratch copy, because simd-json unescapes in place.
    let mut scratch = data.to_vec();
    let mut out = Vec::new();
    let reply_id = match parse_request(&mut scratch) {
        Ok(request) => {
            assert!(
                std::str::from_utf8(data).is_ok(),
                "parsed a non-UTF-8 frame"
            );
            assert!(!request.id.is_empty() && !request.method.is_empty());
            write_response_ok(&mut out, &request.id, br#"{"ok":true}"#);
            request.id
        }
        Err(err) => {
            let shape = ErrorShape::invalid_request_frame(&err);
            write_response_err(&mut out, err.reply_id(), &shape);
            err.reply_id().to_owned()
        }
    };
    let response: serde_json::Value =
        serde_json::from_slice(&out).expect("responses are valid JSON");
    assert_eq!(response["type"], "res");
    assert_eq!(response["id"].as_str(), Some(reply_id.as_str()));
});
