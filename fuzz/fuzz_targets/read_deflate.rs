//! Fuzzes the gateway's read path with permessage-deflate negotiated:
//! raw client bytes -> WebSocket frames (RSV1 allowed on a message's first
//! frame) -> reassembly -> inflation under the limit -> `parse_request`,
//! as `gateway::FrameReader` runs it on a socket.
//!
//! The first byte picks the message limit (16 B to 32 KiB). Checks that no
//! input panics, that no inflated message passes the limit (no
//! decompression bomb gets through), that every message is valid UTF-8,
//! and that reading never waits on an in-memory reader.

#![no_main]

use futures_util::FutureExt;
use libfuzzer_sys::fuzz_target;
use rollcall::gateway::FrameReader;
use rollcall::protocol::parse_request;

/// Messages read per input at most; each needs at least two bytes.
const MAX_MESSAGES: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let limit = 16usize << (selector % 12);
    let mut reader = FrameReader::new(stream).with_deflate(true);
    for _ in 0..MAX_MESSAGES {
        let read = reader
            .read_message(limit, |_owed| Ok::<(), ()>(()))
            .now_or_never()
            .expect("an in-memory reader never waits");
        let Ok(message) = read else {
            return;
        };
        assert!(message.len() <= limit, "an inflated message over the limit");
        assert!(std::str::from_utf8(message).is_ok(), "a non-UTF-8 message");
        let _ = parse_request(message);
    }
});
