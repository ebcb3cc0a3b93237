//! Compression on the wire: permessage-deflate for WebSocket messages
//! (RFC 7692, docs/protocol.md §1) and gzip for HTTP answers (§9).
//!
//! What is shared is compressed once: a broadcast event's bytes, and the
//! rows of a list at a version ([`SharedRows`]), as a raw DEFLATE stream
//! ending at a sync flush. Each message or response then splices those
//! bytes between small per-connection stored blocks (its `seq`, its
//! request id, the self entry's fresh `ts`), so no connection runs a
//! compressor of its own and a thousand watchers cost one compression.
//! A WebSocket list goes further: each chunk of the published list is
//! compressed on its own ([`deflate_segment`]) and kept with the chunk, so
//! a new version compresses only the chunks it changed.

mod deflate;
mod extension;
mod gzip;
mod rows;

pub use deflate::{
    Deflated, InflateError, LEVEL, deflate_segment, deflate_sync, inflate_message,
    write_message_end, write_stored,
};
pub use extension::{Negotiated, negotiate};
pub use gzip::{Encoding, GzipStream, accepts, crc32, crc32_combine, gzip_parts, gzip_pieces};
pub use rows::{RowsCache, SharedRows};
