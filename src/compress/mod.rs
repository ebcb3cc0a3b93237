//! Compression on the wire: permessage-deflate for WebSocket messages
//! (RFC 7692, docs/protocol.md §1) and gzip for HTTP answers (§9).
//!
//! What is shared is compressed once: a broadcast event's bytes as a raw
//! DEFLATE stream ending at a sync flush, and each chunk of the published
//! list on its own ([`deflate_segment`]), kept with the chunk, so a new
//! version compresses only the chunks it changed. Each message or response
//! then splices those bytes between small per-connection stored blocks
//! (its `seq`, its request id, the self entry's fresh `ts`), so no
//! connection runs a compressor of its own and a thousand watchers cost
//! one compression. A gzip answer's CRC-32 is combined from the chunks'
//! ([`crc32_combine`]), not computed over the list again.

mod deflate;
mod extension;
mod gzip;

pub use deflate::{
    Deflated, InflateError, LEVEL, deflate_segment, deflate_sync, inflate_message, write_around,
    write_message_end, write_stored,
};
pub use extension::{Negotiated, negotiate};
pub use gzip::{Encoding, GzipStream, accepts, crc32, crc32_combine, gzip_parts, gzip_pieces};
