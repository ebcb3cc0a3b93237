//! gzip for HTTP answers (docs/protocol.md §9): which coding a request's
//! `Accept-Encoding` allows (RFC 9110 §12.5.3, q-values included), and
//! gzip members (RFC 1952) assembled from a shared compressed part and
//! per-answer stored blocks, so a list is compressed once per version and
//! not once per request, and an SSE stream holds no compressor.

use super::deflate::{Deflated, crc_around, write_stored, write_stored_block};
use bytes::Bytes;
use crc32fast::Hasher;

/// A response coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// No coding.
    Identity,
    /// `gzip`.
    Gzip,
}

impl Encoding {
    /// The `Content-Encoding` value, if any.
    pub fn header(self) -> Option<&'static str> {
        match self {
            Encoding::Identity => None,
            Encoding::Gzip => Some("gzip"),
        }
    }
}

/// The coding to answer with, given every `Accept-Encoding` value of the
/// request; `None` when neither gzip nor identity is acceptable (406).
/// Without the header, identity.
pub fn accepts<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<Encoding> {
    let (mut gzip, mut identity, mut star) = (None, None, None);
    for item in headers.into_iter().flat_map(|v| v.split(',')) {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or_default().to_ascii_lowercase();
        let q = parts
            .find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim().eq_ignore_ascii_case("q").then(|| v.trim())
            })
            .map_or(Some(1.0), parse_q);
        // A malformed weight ignores the item.
        let Some(q) = q else { continue };
        match coding.as_str() {
            "gzip" | "x-gzip" => gzip = Some(q),
            "identity" => identity = Some(q),
            "*" => star = Some(q),
            _ => {}
        }
    }
    let gzip = gzip.or(star).unwrap_or(0.0);
    let identity = identity.or(star).unwrap_or(1.0);
    if gzip > 0.0 && gzip >= identity {
        Some(Encoding::Gzip)
    } else if identity > 0.0 {
        Some(Encoding::Identity)
    } else if gzip > 0.0 {
        Some(Encoding::Gzip)
    } else {
        None
    }
}

/// A weight: 0 to 1 with at most three decimals (RFC 9110 §12.4.2).
fn parse_q(value: &str) -> Option<f32> {
    let ok = value.len() <= 5
        && value.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && (value.starts_with('0') || value.starts_with('1'));
    ok.then(|| value.parse::<f32>().ok())
        .flatten()
        .filter(|q| (0.0..=1.0).contains(q))
}

/// The fixed gzip header: deflate, no name, no time, unknown OS.
const HEADER: [u8; 10] = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];

/// CRC-32 of `data`: gzip's checksum.
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// The CRC-32 of two byte strings joined, from the first one's, the
/// second one's and the second one's length.
pub fn crc32_combine(first: u32, second: u32, second_len: usize) -> u32 {
    let mut joined = Hasher::new_with_initial(first);
    joined.combine(&Hasher::new_with_initial_len(second, second_len as u64));
    joined.finalize()
}

/// One gzip member of `before`, then bytes compressed as `segments`, then
/// `after`, as pieces to send in order: the segments are shared, not
/// copied or compressed again. Each segment is a raw DEFLATE stream from
/// an empty window ending at a sync flush ([`super::deflate_segment`]);
/// `crc` and `len` are the CRC-32 and length of the plain bytes they hold
/// together. `before` and `after` go as stored blocks.
pub fn gzip_pieces<'a>(
    before: &[u8],
    segments: impl IntoIterator<Item = &'a Bytes> + 'a,
    crc: u32,
    len: usize,
    after: &[u8],
) -> impl Iterator<Item = Bytes> + 'a {
    let mut head = Vec::with_capacity(HEADER.len() + before.len() + 8);
    head.extend_from_slice(&HEADER);
    write_stored(&mut head, before);
    let mut tail = Vec::with_capacity(after.len() + 24);
    write_stored(&mut tail, after);
    write_trailer(&mut tail, &crc_around(before, crc, len, after));
    std::iter::once(Bytes::from(head))
        .chain(segments.into_iter().cloned())
        .chain(std::iter::once(Bytes::from(tail)))
}

/// The end of a gzip member whose plain bytes `sum` counted: a final
/// empty block, their CRC-32 and length.
fn write_trailer(out: &mut Vec<u8>, sum: &Hasher) {
    write_stored_block(out, &[], true);
    out.extend_from_slice(&sum.clone().finalize().to_le_bytes());
    // ISIZE: the length modulo 2^32 (RFC 1952 §2.3.1).
    out.extend_from_slice(&(sum.total_len() as u32).to_le_bytes());
}

/// One gzip member made of `before`, the shared compressed part (if any)
/// and `after`.
pub fn gzip_parts(before: &[u8], shared: Option<&Deflated>, after: &[u8]) -> Bytes {
    let mut stream = GzipStream::default();
    let mut out = stream.chunk(before, shared, after);
    stream.finish_into(&mut out);
    Bytes::from(out)
}

/// A gzip member written a chunk at a time, each chunk ending on a byte
/// boundary after a sync point so the reader gets it at once (SSE). Holds
/// only a running CRC, no compressor.
#[derive(Debug, Default)]
pub struct GzipStream {
    crc: Hasher,
    started: bool,
}

impl GzipStream {
    /// The next chunk of the body: `before`, the shared part, `after`.
    pub fn chunk(&mut self, before: &[u8], shared: Option<&Deflated>, after: &[u8]) -> Vec<u8> {
        let shared_len = shared.map_or(0, |s| s.bytes.len());
        let mut out = Vec::with_capacity(before.len() + shared_len + after.len() + 32);
        if !std::mem::replace(&mut self.started, true) {
            out.extend_from_slice(&HEADER);
        }
        self.stored(&mut out, before);
        if let Some(shared) = shared {
            out.extend_from_slice(&shared.bytes);
            self.crc.combine(&shared.crc);
        }
        self.stored(&mut out, after);
        out
    }

    /// The next chunk of the body, appended by `write` (non-final blocks
    /// ending byte-aligned, returning the CRC-32 and length of their
    /// plain bytes, as [`super::write_around`] does).
    pub fn chunk_with(&mut self, write: impl FnOnce(&mut Vec<u8>) -> Hasher) -> Vec<u8> {
        let mut out = Vec::new();
        if !std::mem::replace(&mut self.started, true) {
            out.extend_from_slice(&HEADER);
        }
        self.crc.combine(&write(&mut out));
        out
    }

    /// The end of the member: a final empty block, CRC-32 and length.
    pub fn finish(&mut self) -> Bytes {
        let mut out = Vec::with_capacity(24);
        if !std::mem::replace(&mut self.started, true) {
            out.extend_from_slice(&HEADER);
        }
        self.finish_into(&mut out);
        Bytes::from(out)
    }

    fn finish_into(&mut self, out: &mut Vec<u8>) {
        write_trailer(out, &self.crc);
    }

    fn stored(&mut self, out: &mut Vec<u8>, data: &[u8]) {
        write_stored(out, data);
        self.crc.update(data);
    }
}

#[cfg(test)]
mod tests {
    use super::super::deflate::{deflate_segment, deflate_sync};
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read;

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        GzDecoder::new(data).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn a_member_from_parts_is_valid_gzip() {
        let rows = b",{\"host\":\"mac\"}".repeat(100);
        let shared = deflate_sync(&rows);
        let body = gzip_parts(b"[{\"self\":1}", Some(&shared), b"]");
        let mut expected = b"[{\"self\":1}".to_vec();
        expected.extend_from_slice(&rows);
        expected.push(b']');
        assert_eq!(gunzip(&body), expected);
        assert_eq!(gunzip(&gzip_parts(b"", None, b"")), b"");
    }

    #[test]
    fn a_member_from_shared_segments_is_valid_gzip() {
        let parts: Vec<Vec<u8>> = (0..5)
            .map(|i| {
                format!(",{{\"host\":\"mac-{i}\"}}")
                    .repeat(40 + i)
                    .into_bytes()
            })
            .collect();
        let segments: Vec<Bytes> = parts.iter().map(|p| deflate_segment(p)).collect();
        let plain = parts.concat();
        let crc = parts
            .iter()
            .fold(crc32(b""), |sum, p| crc32_combine(sum, crc32(p), p.len()));
        assert_eq!(crc, crc32(&plain));
        let body: Vec<u8> = gzip_pieces(b"[{\"self\":1}", &segments, crc, plain.len(), b"]")
            .flat_map(|piece| piece.to_vec())
            .collect();
        let mut expected = b"[{\"self\":1}".to_vec();
        expected.extend_from_slice(&plain);
        expected.push(b']');
        assert_eq!(gunzip(&body), expected);
        let none: Vec<u8> = gzip_pieces(b"[", &[], crc32(b""), 0, b"]")
            .flat_map(|piece| piece.to_vec())
            .collect();
        assert_eq!(gunzip(&none), b"[]");
    }

    #[test]
    fn a_stream_of_chunks_is_one_member() {
        let shared = deflate_sync(b"event: presence\ndata: {}\n\n");
        let mut stream = GzipStream::default();
        let mut body = stream.chunk(b"", Some(&shared), b"");
        body.extend(stream.chunk(b": keep-alive\n\n", None, b""));
        body.extend(stream.chunk(b"", Some(&shared), b""));
        body.extend_from_slice(&stream.finish());
        assert_eq!(
            gunzip(&body),
            b"event: presence\ndata: {}\n\n: keep-alive\n\nevent: presence\ndata: {}\n\n"
        );
    }

    #[test]
    fn accept_encoding_weights_decide() {
        let pick = |v: &str| accepts([v]);
        assert_eq!(accepts([]), Some(Encoding::Identity));
        assert_eq!(pick("gzip, deflate, br"), Some(Encoding::Gzip));
        assert_eq!(pick("br;q=1.0, gzip;q=0.8, *;q=0.1"), Some(Encoding::Gzip));
        assert_eq!(pick("gzip;q=0"), Some(Encoding::Identity));
        assert_eq!(pick("identity;q=1, gzip;q=0.5"), Some(Encoding::Identity));
        assert_eq!(pick("*"), Some(Encoding::Gzip));
        assert_eq!(pick("br"), Some(Encoding::Identity));
        assert_eq!(pick("identity;q=0, gzip"), Some(Encoding::Gzip));
        assert_eq!(pick("*;q=0"), None);
        assert_eq!(pick("identity;q=0"), None);
        assert_eq!(
            pick("gzip;q=2, identity;q=0"),
            None,
            "a bad weight is ignored"
        );
        assert_eq!(pick(""), Some(Encoding::Identity));
    }
}
