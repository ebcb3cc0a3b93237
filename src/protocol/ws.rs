//! WebSocket framing (RFC 6455 §5): frame headers, read by the gateway from
//! clients and by rollcall's client from servers, and written by the
//! gateway. Pure; the socket sides are `frame_reader` (both ends' reads)
//! and `gateway::frames` (the gateway's writes).
//!
//! Invariants: [`parse_header`] accepts only what §5 allows the given
//! sender: no reserved bits but RSV1 on the first frame of a data message
//! when permessage-deflate is negotiated (RFC 7692 §6), a known opcode,
//! the mask bit set on a client's frames and clear on a server's (§5.1: the
//! receiver must fail the connection otherwise), control frames final and
//! at most 125 bytes, and a 64-bit length with its top bit clear.
//! [`write_header`] writes the minimal-length header of an unmasked server
//! frame.

use super::message::Opcode;
use thiserror::Error;

/// Longest frame header: 2 bytes, an 8-byte length, a 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// Longest control frame payload (§5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The final fragment of its message.
    pub fin: bool,
    /// What the frame is.
    pub opcode: Opcode,
    /// The masking key: always present on a client's frame, never on a
    /// server's.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub len: u64,
    /// RSV1: the message is compressed (permessage-deflate). Set only on a
    /// text or binary frame, and only when the caller allowed it.
    pub compressed: bool,
}

/// A header that breaks a rule of RFC 6455 §5; each names the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HeaderError {
    /// RSV1-3 set with no extension negotiated (§5.2), or RSV1 on a
    /// control or continuation frame (RFC 7692 §6.1).
    #[error("reserved bits set")]
    ReservedBits,
    /// An opcode §5.2 reserves.
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    /// A client frame without a mask (§5.1).
    #[error("client frame not masked")]
    Unmasked,
    /// A server frame with a mask (§5.1).
    #[error("server frame masked")]
    Masked,
    /// A fragmented control frame (§5.5).
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A control frame over 125 bytes (§5.5).
    #[error("control frame over 125 bytes")]
    ControlTooLong,
    /// A 64-bit length with its most significant bit set (§5.2).
    #[error("payload length out of range")]
    LengthOutOfRange,
}

/// Who sent the frame being parsed: it decides the masking rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// A client: every frame is masked.
    Client,
    /// A server: no frame is masked.
    Server,
}

/// What [`parse_header`] found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// The header is this long in all; the buffer holds fewer bytes.
    Incomplete(usize),
    /// A whole header, and how many bytes it took.
    Header(FrameHeader, usize),
}

impl Opcode {
    /// The opcode with this 4-bit code, if §5.2 defines it.
    pub fn from_code(code: u8) -> Option<Opcode> {
        Some(match code {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    /// The 4-bit code on the wire.
    pub fn code(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// Close, ping or pong.
    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// Parses the header of a frame from `sender` at the start of `buf`, with
/// no extension negotiated.
pub fn parse_header(buf: &[u8], sender: Sender) -> Result<Parsed, HeaderError> {
    parse_header_with(buf, sender, false)
}

/// Parses the header of a frame from `sender` at the start of `buf`;
/// `deflate` allows RSV1 on the first frame of a data message.
pub fn parse_header_with(buf: &[u8], sender: Sender, deflate: bool) -> Result<Parsed, HeaderError> {
    let [b0, b1, ..] = *buf else {
        return Ok(Parsed::Incomplete(2));
    };
    let opcode = Opcode::from_code(b0 & 0x0f).ok_or(HeaderError::UnknownOpcode(b0 & 0x0f))?;
    let compressed = b0 & 0x40 != 0;
    let starts_message = matches!(opcode, Opcode::Text | Opcode::Binary);
    if b0 & 0x30 != 0 || (compressed && !(deflate && starts_message)) {
        return Err(HeaderError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let masked = b1 & 0x80 != 0;
    match sender {
        Sender::Client if !masked => return Err(HeaderError::Unmasked),
        Sender::Server if masked => return Err(HeaderError::Masked),
        _ => {}
    }
    let short = b1 & 0x7f;
    let ext = match short {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    if opcode.is_control() {
        if !fin {
            return Err(HeaderError::FragmentedControl);
        }
        if ext != 0 || usize::from(short) > MAX_CONTROL_PAYLOAD {
            return Err(HeaderError::ControlTooLong);
        }
    }
    let total = 2 + ext + if masked { 4 } else { 0 };
    if buf.len() < total {
        return Ok(Parsed::Incomplete(total));
    }
    let len = match ext {
        0 => u64::from(short),
        2 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
        _ => {
            let mut be = [0u8; 8];
            be.copy_from_slice(&buf[2..10]);
            u64::from_be_bytes(be)
        }
    };
    if len >> 63 != 0 {
        return Err(HeaderError::LengthOutOfRange);
    }
    let mask = masked.then(|| {
        let mut key = [0u8; 4];
        key.copy_from_slice(&buf[2 + ext..total]);
        key
    });
    Ok(Parsed::Header(
        FrameHeader {
            fin,
            opcode,
            mask,
            len,
            compressed,
        },
        total,
    ))
}

/// Unmasks `payload` in place; `offset` is how many payload bytes came
/// before it in the same frame (the key rotates through the payload).
pub fn unmask(payload: &mut [u8], mask: [u8; 4], offset: usize) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[(offset + i) & 3];
    }
}

/// Writes the header of an unmasked, final server frame of `len` bytes
/// into `out`; returns how many bytes it took (2, 4 or 10).
pub fn write_header(out: &mut [u8; MAX_HEADER_LEN], opcode: Opcode, len: usize) -> usize {
    write_header_with(out, opcode, false, len)
}

/// [`write_header`], with RSV1 set when `compressed` (permessage-deflate).
pub fn write_header_with(
    out: &mut [u8; MAX_HEADER_LEN],
    opcode: Opcode,
    compressed: bool,
    len: usize,
) -> usize {
    out[0] = 0x80 | (u8::from(compressed) << 6) | opcode.code();
    if len < 126 {
        out[1] = len as u8;
        2
    } else if let Ok(len) = u16::try_from(len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn masked(b0: u8, len_byte: u8, ext: &[u8]) -> Vec<u8> {
        let mut v = vec![b0, 0x80 | len_byte];
        v.extend_from_slice(ext);
        v.extend_from_slice(&[1, 2, 3, 4]);
        v
    }

    #[test]
    fn short_masked_text_frame_parses() {
        let buf = masked(0x81, 5, &[]);
        assert_eq!(
            parse_header(&buf, Sender::Client),
            Ok(Parsed::Header(
                FrameHeader {
                    fin: true,
                    opcode: Opcode::Text,
                    mask: Some([1, 2, 3, 4]),
                    len: 5,
                    compressed: false,
                },
                6
            ))
        );
    }

    #[test]
    fn partial_headers_ask_for_the_whole_header() {
        let buf = masked(0x81, 126, &[1, 0]);
        assert_eq!(
            parse_header(&buf[..1], Sender::Client),
            Ok(Parsed::Incomplete(2))
        );
        assert_eq!(
            parse_header(&buf[..5], Sender::Client),
            Ok(Parsed::Incomplete(8))
        );
        assert!(
            matches!(parse_header(&buf, Sender::Client), Ok(Parsed::Header(h, 8)) if h.len == 256)
        );
    }

    #[test]
    fn unmasked_client_frame_is_refused() {
        assert_eq!(
            parse_header(&[0x81, 0x05], Sender::Client),
            Err(HeaderError::Unmasked)
        );
    }

    #[test]
    fn masked_server_frame_is_refused_and_unmasked_one_parses() {
        assert_eq!(
            parse_header(&masked(0x81, 2, &[]), Sender::Server),
            Err(HeaderError::Masked)
        );
        let parsed = parse_header(&[0x81, 0x02], Sender::Server).unwrap();
        assert!(matches!(parsed, Parsed::Header(h, 2) if h.mask.is_none() && h.len == 2));
    }

    #[test]
    fn reserved_bits_and_opcodes_are_refused() {
        assert_eq!(
            parse_header(&masked(0xC1, 1, &[]), Sender::Client),
            Err(HeaderError::ReservedBits)
        );
        assert_eq!(
            parse_header(&masked(0x83, 1, &[]), Sender::Client),
            Err(HeaderError::UnknownOpcode(3))
        );
    }

    #[test]
    fn control_frames_must_be_final_and_short() {
        assert_eq!(
            parse_header(&masked(0x09, 0, &[]), Sender::Client),
            Err(HeaderError::FragmentedControl)
        );
        assert_eq!(
            parse_header(&masked(0x89, 126, &[0, 126]), Sender::Client),
            Err(HeaderError::ControlTooLong)
        );
    }

    #[test]
    fn huge_length_is_refused() {
        let buf = masked(0x82, 127, &[0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            parse_header(&buf, Sender::Client),
            Err(HeaderError::LengthOutOfRange)
        );
    }

    #[test]
    fn unmask_rotates_the_key_across_chunks() {
        let mask = [9, 8, 7, 6];
        let data: Vec<u8> = (0..11).collect();
        let mut whole = data.clone();
        unmask(&mut whole, mask, 0);
        let mut split = data.clone();
        let (a, b) = split.split_at_mut(5);
        unmask(a, mask, 0);
        unmask(b, mask, 5);
        assert_eq!(whole, split);
    }

    #[test]
    fn rsv1_only_starts_a_message_and_only_when_negotiated() {
        let parsed = parse_header_with(&masked(0xC1, 1, &[]), Sender::Client, true);
        assert!(
            matches!(parsed, Ok(Parsed::Header(h, 6)) if h.compressed && h.opcode == Opcode::Text)
        );
        // RFC 7692 §6.1: not on a continuation or a control frame.
        for b0 in [0xC0, 0xC9, 0xA1, 0x91] {
            assert_eq!(
                parse_header_with(&masked(b0, 1, &[]), Sender::Client, true),
                Err(HeaderError::ReservedBits),
                "{b0:#x}"
            );
        }
        let mut out = [0u8; MAX_HEADER_LEN];
        let n = write_header_with(&mut out, Opcode::Text, true, 300);
        let parsed = parse_header_with(&out[..n], Sender::Server, true);
        assert!(matches!(parsed, Ok(Parsed::Header(h, 4)) if h.compressed && h.len == 300));
    }

    proptest! {
        #[test]
        fn written_headers_read_back(len in 0usize..200_000, op in prop::sample::select(vec![Opcode::Text, Opcode::Pong, Opcode::Close])) {
            let len = if op.is_control() { len % 126 } else { len };
            let mut out = [0u8; MAX_HEADER_LEN];
            let n = write_header(&mut out, op, len);
            let parsed = parse_header(&out[..n], Sender::Server).unwrap();
            prop_assert_eq!(parsed, Parsed::Header(FrameHeader { fin: true, opcode: op, mask: None, len: len as u64, compressed: false }, n));
        }
    }
}
