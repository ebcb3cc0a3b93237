//! Raw DEFLATE (RFC 1951) pieces that can be joined: a shared stream
//! compressed once and ending at a sync flush, stored blocks written by
//! hand around it, and the permessage-deflate message end (RFC 7692
//! §7.2.1). And the other way: a client message inflated under a cap.
//!
//! Invariants: [`deflate_sync`] starts from an empty window, so its
//! back-references never reach before its own first byte and its output
//! can follow any byte-aligned, non-final blocks; it ends byte-aligned
//! after an empty stored block (`00 00 ff ff`). [`inflate_message`] never
//! holds more than `limit + 1` output bytes, whatever the input claims.

use bytes::Bytes;
use crc32fast::Hasher;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use thiserror::Error;

/// Compression level for what is shared. Compressed once per version or
/// event, so the level's CPU is paid once, not per watcher; level 1 keeps
/// a burst of hellos at new versions cheap.
pub const LEVEL: u32 = 1;

/// Longest stored block (RFC 1951 §3.2.4: `LEN` is 16 bits).
const MAX_STORED: usize = 0xffff;

/// The tail RFC 7692 §7.2.1 removes from a message and a receiver
/// appends before inflating.
pub const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Bytes compressed once, as a raw DEFLATE stream that ends at a sync
/// flush: non-final blocks, byte-aligned, so more blocks may follow.
#[derive(Debug)]
pub struct Deflated {
    /// The compressed blocks, ending with `00 00 ff ff`.
    pub bytes: Bytes,
    /// CRC-32 and length of the plain bytes, for gzip trailers.
    pub crc: Hasher,
}

impl Deflated {
    /// Bytes of the plain input.
    pub fn plain_len(&self) -> usize {
        self.crc.total_len() as usize
    }

    /// The stream `write` appends (non-final blocks, byte-aligned,
    /// returning the CRC-32 and length of their plain bytes, as
    /// [`write_around`] does), ended with an empty stored block, so at
    /// `00 00 ff ff` like [`deflate_sync`].
    pub fn written(write: impl FnOnce(&mut Vec<u8>) -> Hasher) -> Deflated {
        let mut bytes = Vec::new();
        let crc = write(&mut bytes);
        write_stored_block(&mut bytes, &[], false);
        Deflated {
            bytes: Bytes::from(bytes),
            crc,
        }
    }
}

/// Appends `before` as stored blocks, the `segments` (each a
/// [`deflate_segment`]) as they are, and `after` as stored blocks: non-final
/// blocks, byte-aligned. `crc` and `len` are the CRC-32 and length of the
/// segments' plain bytes together; returns those of all it appended.
pub fn write_around<'a>(
    out: &mut Vec<u8>,
    before: &[u8],
    segments: impl IntoIterator<Item = &'a Bytes>,
    crc: u32,
    len: usize,
    after: &[u8],
) -> Hasher {
    write_stored(out, before);
    segments
        .into_iter()
        .for_each(|segment| out.extend_from_slice(segment));
    write_stored(out, after);
    crc_around(before, crc, len, after)
}

/// The CRC-32 and length of `before`, then `len` bytes whose CRC-32 is
/// `crc`, then `after`.
pub fn crc_around(before: &[u8], crc: u32, len: usize, after: &[u8]) -> Hasher {
    let mut sum = Hasher::new();
    sum.update(before);
    sum.combine(&Hasher::new_with_initial_len(crc, len as u64));
    sum.update(after);
    sum
}

/// Compresses `data` on its own (an empty window) at [`LEVEL`], ending
/// with a sync flush.
pub fn deflate_sync(data: &[u8]) -> Deflated {
    let mut crc = Hasher::new();
    crc.update(data);
    Deflated {
        bytes: Bytes::from(sync_flushed(data)),
        crc,
    }
}

/// [`deflate_sync`]'s bytes alone, in a buffer no longer than they are: a
/// segment that is kept (one per chunk of a list, `presence/list.rs`) and
/// that any number of others may follow, each from its own empty window,
/// to make one stream.
pub fn deflate_segment(data: &[u8]) -> Bytes {
    let mut out = sync_flushed(data);
    out.shrink_to_fit();
    Bytes::from(out)
}

/// `data` compressed from an empty window, ending at a sync flush.
fn sync_flushed(data: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(Compression::new(LEVEL), false);
    let mut out = Vec::with_capacity(data.len() / 3 + 64);
    let mut input = data;
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(1024));
        }
        let before = compress.total_in();
        compress
            .compress_vec(input, &mut out, FlushCompress::Sync)
            .expect("compressing into a buffer with room cannot fail");
        let used = usize::try_from(compress.total_in() - before).unwrap_or(input.len());
        input = &input[used..];
        // Done once all input is taken and the flush had room to finish.
        if input.is_empty() && out.len() < out.capacity() && out.ends_with(&SYNC_TAIL) {
            return out;
        }
    }
}

/// Appends `data` as non-final stored blocks (nothing for empty data).
/// The output so far must end byte-aligned after a non-final block.
pub fn write_stored(out: &mut Vec<u8>, data: &[u8]) {
    for chunk in data.chunks(MAX_STORED) {
        write_stored_block(out, chunk, false);
    }
}

/// Appends one stored block; `last` sets BFINAL.
pub fn write_stored_block(out: &mut Vec<u8>, data: &[u8], last: bool) {
    debug_assert!(data.len() <= MAX_STORED);
    let len = data.len() as u16;
    out.push(u8::from(last));
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
}

/// Ends a permessage-deflate message: an empty stored block with its
/// `00 00 ff ff` removed (RFC 7692 §7.2.1), i.e. one zero byte.
pub fn write_message_end(out: &mut Vec<u8>) {
    out.push(0x00);
}

/// Why a compressed client message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum InflateError {
    /// Inflated, it is longer than the limit.
    #[error("message too large once inflated (limit {limit} bytes)")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Not a valid DEFLATE stream.
    #[error("invalid compressed data")]
    Corrupt,
}

/// Inflates one permessage-deflate message (its `00 00 ff ff` removed)
/// into `out`, with a fresh window (no client context takeover). Stops as
/// soon as the output passes `limit`: a small bomb never grows `out` past
/// `limit + 1` bytes.
pub fn inflate_message(
    compressed: &[u8],
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), InflateError> {
    out.clear();
    let cap = limit.saturating_add(1);
    let mut inflate = Decompress::new(false);
    let mut inputs = [compressed, &SYNC_TAIL[..]];
    let mut part = 0;
    loop {
        if out.len() == out.capacity() {
            let grow = out.capacity().max(compressed.len() * 2).max(1024);
            out.reserve_exact(grow.min(cap - out.len()));
        }
        let (in_before, out_before) = (inflate.total_in(), out.len());
        let status = inflate
            .decompress_vec(inputs[part], out, FlushDecompress::Sync)
            .map_err(|_| InflateError::Corrupt)?;
        let used = usize::try_from(inflate.total_in() - in_before).unwrap_or(usize::MAX);
        inputs[part] = &inputs[part][used.min(inputs[part].len())..];
        if out.len() > limit {
            return Err(InflateError::TooLarge { limit });
        }
        if status == Status::StreamEnd {
            // A final block: whatever follows it is not part of the data.
            return Ok(());
        }
        let progressed = used > 0 || out.len() > out_before;
        if inputs[part].is_empty() && part + 1 < inputs.len() {
            part += 1;
        } else if !progressed && out.len() < out.capacity() {
            // All input taken and nothing more comes out: done. (A full
            // buffer is grown above and tried again.)
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::DeflateDecoder;
    use std::io::Read;

    /// What a receiver does (RFC 7692 §7.2.2): append `00 00 ff ff`, inflate.
    fn receive(message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        inflate_message(message, 1 << 24, &mut out).unwrap();
        out
    }

    #[test]
    fn a_shared_stream_joins_stored_blocks_on_both_sides() {
        let rows = br#",{"host":"a","ip":"10.0.0.1"},{"host":"b","ip":"10.0.0.2"}"#.repeat(50);
        let shared = deflate_sync(&rows);
        assert!(shared.bytes.ends_with(&SYNC_TAIL));
        assert!(
            shared.bytes.len() < rows.len() / 4,
            "{}",
            shared.bytes.len()
        );
        let mut message = Vec::new();
        write_stored(&mut message, b"[{\"self\":1}");
        message.extend_from_slice(&shared.bytes);
        write_stored(&mut message, b"],\"seq\":7}");
        write_message_end(&mut message);
        let mut expected = b"[{\"self\":1}".to_vec();
        expected.extend_from_slice(&rows);
        expected.extend_from_slice(b"],\"seq\":7}");
        assert_eq!(receive(&message), expected);
        // A standard raw-deflate decoder reads the same (with the tail back).
        message.extend_from_slice(&SYNC_TAIL);
        let mut plain = Vec::new();
        let _ = DeflateDecoder::new(&message[..]).read_to_end(&mut plain);
        assert_eq!(plain, expected);
    }

    #[test]
    fn segments_around_stored_blocks_are_one_stream_with_its_crc() {
        let parts: Vec<String> = (0..4)
            .map(|n| format!(r#",{{"host":"mac-{n}"}}"#).repeat(30))
            .collect();
        let segments: Vec<Bytes> = parts
            .iter()
            .map(|p| deflate_segment(p.as_bytes()))
            .collect();
        let plain = parts.concat();
        let crc = crc32fast::hash(plain.as_bytes());
        let joined = Deflated::written(|out| {
            write_around(out, b"data: [", &segments, crc, plain.len(), b"]\n\n")
        });
        assert!(joined.bytes.ends_with(&SYNC_TAIL));
        let expected = format!("data: [{plain}]\n\n");
        assert_eq!(joined.plain_len(), expected.len());
        assert_eq!(joined.crc.finalize(), crc32fast::hash(expected.as_bytes()));
        let mut message = joined.bytes.to_vec();
        message.truncate(message.len() - SYNC_TAIL.len());
        assert_eq!(receive(&message), expected.as_bytes());
    }

    #[test]
    fn segments_compressed_apart_join_into_one_stream() {
        let rows = |n: usize| format!(r#",{{"host":"mac-{n}","ip":"10.0.0.{n}"}}"#).repeat(40);
        let (a, b, c) = (rows(1), rows(2), rows(3));
        let mut message = Vec::new();
        write_stored(&mut message, b"[{\"self\":1}");
        for part in [&a, &b, &c] {
            let segment = deflate_segment(part.as_bytes());
            assert_eq!(segment.len(), deflate_sync(part.as_bytes()).bytes.len());
            message.extend_from_slice(&segment);
        }
        write_stored(&mut message, b"]}");
        write_message_end(&mut message);
        let expected = format!("[{{\"self\":1}}{a}{b}{c}]}}");
        assert_eq!(receive(&message), expected.as_bytes());
        assert!(message.len() * 4 < expected.len(), "{}", message.len());
    }

    #[test]
    fn stored_blocks_split_at_64_kib() {
        let data = vec![b'x'; 3 * MAX_STORED + 10];
        let mut message = Vec::new();
        write_stored(&mut message, &data);
        write_message_end(&mut message);
        assert_eq!(receive(&message), data);
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let bomb = deflate_sync(&vec![b'a'; 10 << 20]);
        let body = &bomb.bytes[..bomb.bytes.len() - 4];
        assert!(body.len() < 100_000, "{}", body.len());
        let mut out = Vec::new();
        assert_eq!(
            inflate_message(body, 4096, &mut out),
            Err(InflateError::TooLarge { limit: 4096 })
        );
        assert!(out.capacity() <= 4097, "{}", out.capacity());
        assert_eq!(inflate_message(body, 10 << 20, &mut out), Ok(()));
        assert_eq!(out.len(), 10 << 20);
    }

    #[test]
    fn garbage_is_corrupt_and_a_final_block_ends_the_message() {
        let mut out = Vec::new();
        assert_eq!(
            inflate_message(&[0xff; 16], 100, &mut out),
            Err(InflateError::Corrupt)
        );
        // BFINAL set (RFC 7692 §7.2.3.3): what follows is ignored.
        let mut message = Vec::new();
        write_stored_block(&mut message, b"hi", true);
        assert_eq!(receive(&message), b"hi");
        assert_eq!(receive(&[]), b"");
    }
}
