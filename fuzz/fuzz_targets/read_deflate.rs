//! Fuzzes the one WebSocket read path (`rollcall::frame_reader`) with
//! permessage-deflate negotiated, in both of its roles: raw bytes ->
//! WebSocket frames (RSV1 allowed on a message's first frame) ->
//! reassembly -> inflation under the limit -> `parse_request`, as the
//! gateway runs it on a client's socket and as rollcall's client runs it
//! on a server's.
//!
//! The first byte picks the role (its top bit: clear for the gateway
//! reading masked client frames, set for the client reading unmasked
//! server frames) and the message limit (16 B to 32 KiB). Checks that no
//! input panics, that no inflated message passes the limit (no
//! decompression bomb gets through), that every message is valid UTF-8,
//! and that reading never waits on an in-memory reader.

#![no_main]

use futures_util::FutureExt;
use libfuzzer_sys::fuzz_target;
use rollcall::frame_reader::{FrameReader, Message, ReadConfig, ReadError};
use rollcall::protocol::parse_request;

/// Messages read per input at most; each needs at least two bytes.
const MAX_MESSAGES: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let limit = 16usize << ((selector & 0x7f) % 12);
    let config = match selector & 0x80 {
        0 => ReadConfig::from_client(limit),
        _ => ReadConfig::from_server(limit),
    };
    let mut reader = FrameReader::new(stream, config.with_deflate(true));
    for _ in 0..MAX_MESSAGES {
        let read = reader
            .read_message()
            .now_or_never()
            .expect("an in-memory reader never waits");
        match read {
            Ok(Message::Text(message)) => {
                assert!(message.len() <= limit, "an inflated message over the limit");
                assert!(std::str::from_utf8(message).is_ok(), "a non-UTF-8 message");
                let _ = parse_request(message);
            }
            Ok(_) => {}
            // A refused message's frame is skipped: read on, through the
            // skip path, as a client may.
            Err(ReadError::Message(_)) => {}
            Err(_) => return,
        }
    }
});
