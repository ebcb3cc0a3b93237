//! Whole messages out of WebSocket frames: fragment reassembly and the
//! message size limit (RFC 6455 §5.4). The one socket reader
//! (`crate::frame_reader`), used by the gateway and the CLI/load client,
//! reads through a [`Reassembler`], so the rules live in one place.
//!
//! Invariants: control frames may arrive between the fragments of a message
//! and never disturb it; a message is never longer than the limit the caller
//! passes; a completed text message is valid UTF-8; after
//! [`Reassembler::release`] it holds no buffer, so an idle reader's memory
//! does not depend on the largest message it ever read. A compressed message
//! (RSV1 on its first frame, permessage-deflate, RFC 7692) is held
//! compressed within a bound close to the limit, then inflated with the
//! limit counted on the inflated bytes, never growing past it.

use crate::compress::{InflateError, inflate_message};
use thiserror::Error;

/// A frame's opcode, as far as reassembly cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// The next fragment of a message.
    Continuation,
    /// The first (or only) frame of a text message.
    Text,
    /// The first (or only) frame of a binary message.
    Binary,
    /// A close frame.
    Close,
    /// A ping.
    Ping,
    /// A pong.
    Pong,
}

impl From<fastwebsockets::OpCode> for Opcode {
    fn from(op: fastwebsockets::OpCode) -> Self {
        use fastwebsockets::OpCode as Ws;
        match op {
            Ws::Continuation => Opcode::Continuation,
            Ws::Text => Opcode::Text,
            Ws::Binary => Opcode::Binary,
            Ws::Close => Opcode::Close,
            Ws::Ping => Opcode::Ping,
            Ws::Pong => Opcode::Pong,
        }
    }
}

/// Why a sequence of frames is not a valid message. Each variant names the
/// rule that was broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MessageError {
    /// The message (all its fragments together) is over the limit.
    #[error("a message of at least {size} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// Bytes of the message up to and including the refused frame.
        size: u64,
        /// The limit that was exceeded.
        limit: usize,
    },
    /// A compressed message whose frames together exceed what any message
    /// under the limit compresses to ([`compressed_limit`]).
    #[error(
        "a compressed message of at least {size} bytes exceeds the {bound}-byte bound for the {limit}-byte limit"
    )]
    CompressedTooLarge {
        /// Compressed bytes up to and including the refused frame.
        size: u64,
        /// [`compressed_limit`] of the limit.
        bound: usize,
        /// The message limit.
        limit: usize,
    },
    /// A compressed message that inflates past the limit.
    #[error("a compressed message inflates past the {limit}-byte limit")]
    InflatedTooLarge {
        /// The limit that was exceeded, counted after inflation.
        limit: usize,
    },
    /// A binary message; the protocol is text only.
    #[error("binary frames are not supported")]
    Binary,
    /// The text is not UTF-8.
    #[error("invalid UTF-8 in a text message")]
    InvalidUtf8,
    /// A continuation frame with no message to continue.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A new text frame while a fragmented message is unfinished.
    #[error("new message inside a fragmented one")]
    UnfinishedMessage,
    /// A compressed message that does not inflate (RFC 7692 §6.2).
    #[error("invalid compressed data in a permessage-deflate message")]
    Corrupt,
}

impl From<InflateError> for MessageError {
    fn from(e: InflateError) -> Self {
        match e {
            InflateError::TooLarge { limit } => MessageError::InflatedTooLarge { limit },
            InflateError::Corrupt => MessageError::Corrupt,
        }
    }
}

/// How many compressed bytes a message under `limit` may take: stored
/// blocks add 5 bytes per 64 KiB, so incompressible text near the limit
/// still fits.
pub fn compressed_limit(limit: usize) -> usize {
    limit.saturating_add(limit / 64 + 64)
}

/// What one frame did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A whole text message is ready: see [`Reassembler::message_mut`].
    Complete,
    /// A fragment was taken; the message is not finished.
    Partial,
    /// A control frame (close, ping or pong): the caller decides.
    Control(Opcode),
}

/// Joins fragments into whole text messages.
#[derive(Debug, Default)]
pub struct Reassembler {
    /// The message being joined, or the last complete one.
    buf: Vec<u8>,
    /// True between a non-final text frame and the final continuation.
    assembling: bool,
    /// The message being joined is compressed: `buf` holds DEFLATE data.
    compressed: bool,
    /// The limit of the message being joined.
    limit: usize,
    /// Where the frame begun last starts in `buf`.
    frame_start: usize,
}

impl Reassembler {
    /// A reassembler with no buffer yet.
    pub fn new() -> Self {
        Reassembler::default()
    }

    /// Takes one frame. `limit` bounds the whole message. On
    /// [`Progress::Complete`] the message stays in the buffer until the
    /// next call to [`Reassembler::push`] or [`Reassembler::release`].
    pub fn push(
        &mut self,
        opcode: Opcode,
        fin: bool,
        payload: &[u8],
        limit: usize,
    ) -> Result<Progress, MessageError> {
        if opcode.is_control() {
            return Ok(Progress::Control(opcode));
        }
        self.begin_frame(opcode, false, payload.len(), limit)?
            .copy_from_slice(payload);
        self.end_frame(fin)
    }

    /// Starts a data frame of `len` bytes: checks it against the message in
    /// progress and the limit, and returns the space its payload goes in.
    /// Nothing is allocated for a frame that would break the limit, so a
    /// header alone cannot make the reader reserve memory. `compressed` is
    /// the first frame's RSV1 (the caller checks it is allowed): the
    /// message is inflated when complete, and its compressed bytes are
    /// bounded by [`compressed_limit`].
    pub fn begin_frame(
        &mut self,
        opcode: Opcode,
        compressed: bool,
        len: usize,
        limit: usize,
    ) -> Result<&mut [u8], MessageError> {
        match opcode {
            Opcode::Binary => return Err(MessageError::Binary),
            Opcode::Text if self.assembling => return Err(MessageError::UnfinishedMessage),
            Opcode::Continuation if !self.assembling => {
                return Err(MessageError::UnexpectedContinuation);
            }
            Opcode::Text => {
                self.buf.clear();
                self.compressed = compressed;
                self.limit = limit;
            }
            _ => {}
        }
        let start = self.buf.len();
        let bound = if self.compressed {
            compressed_limit(limit)
        } else {
            limit
        };
        if len > bound.saturating_sub(start) {
            let size = (start as u64).saturating_add(len as u64);
            let error = match self.compressed {
                true => MessageError::CompressedTooLarge { size, bound, limit },
                false => MessageError::TooLarge { size, limit },
            };
            self.assembling = false;
            self.compressed = false;
            self.release();
            return Err(error);
        }
        self.buf.resize(start + len, 0);
        self.frame_start = start;
        Ok(&mut self.buf[start..])
    }

    /// The space of the data frame begun last, as [`Reassembler::begin_frame`]
    /// returned it, for a reader that fills it over several reads. Empty
    /// once the frame has ended or the buffer was released.
    pub fn frame_mut(&mut self) -> &mut [u8] {
        self.buf.get_mut(self.frame_start..).unwrap_or_default()
    }

    /// Ends the data frame begun last: the message is complete when `fin`.
    pub fn end_frame(&mut self, fin: bool) -> Result<Progress, MessageError> {
        self.frame_start = self.buf.len();
        if !fin {
            self.assembling = true;
            return Ok(Progress::Partial);
        }
        self.assembling = false;
        if std::mem::take(&mut self.compressed) {
            let mut inflated = Vec::new();
            let inflate = inflate_message(&self.buf, self.limit, &mut inflated);
            self.buf = inflated;
            inflate?;
        }
        if std::str::from_utf8(&self.buf).is_err() {
            return Err(MessageError::InvalidUtf8);
        }
        Ok(Progress::Complete)
    }

    /// The last complete message, mutable because simd-json parses in place.
    pub fn message_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Forgets the last message and gives back memory a large one grew.
    pub fn release(&mut self) {
        // Nothing is kept: an idle reader holds no buffer, and the
        // allocator makes the next one cheap.
        self.buf = Vec::new();
        self.frame_start = 0;
    }

    /// Bytes the buffer holds allocated (for tests and memory accounting).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 16;

    #[test]
    fn single_text_frame_is_a_message() {
        let mut r = Reassembler::new();
        assert_eq!(
            r.push(Opcode::Text, true, b"hi", LIMIT),
            Ok(Progress::Complete)
        );
        assert_eq!(r.message_mut().as_slice(), b"hi");
    }

    #[test]
    fn fragments_join_around_control_frames() {
        let mut r = Reassembler::new();
        assert_eq!(
            r.push(Opcode::Text, false, b"ab", LIMIT),
            Ok(Progress::Partial)
        );
        assert_eq!(
            r.push(Opcode::Ping, true, b"", LIMIT),
            Ok(Progress::Control(Opcode::Ping))
        );
        assert_eq!(
            r.push(Opcode::Continuation, false, b"cd", LIMIT),
            Ok(Progress::Partial)
        );
        assert_eq!(
            r.push(Opcode::Continuation, true, b"e", LIMIT),
            Ok(Progress::Complete)
        );
        assert_eq!(r.message_mut().as_slice(), b"abcde");
    }

    #[test]
    fn limit_counts_every_fragment() {
        let mut r = Reassembler::new();
        assert_eq!(
            r.push(Opcode::Text, false, &[b'a'; 10], LIMIT),
            Ok(Progress::Partial)
        );
        assert_eq!(
            r.push(Opcode::Continuation, true, &[b'a'; 7], LIMIT),
            Err(MessageError::TooLarge {
                size: 17,
                limit: LIMIT
            })
        );
        assert_eq!(
            r.push(Opcode::Text, true, &[b'a'; LIMIT], LIMIT),
            Ok(Progress::Complete),
            "exactly the limit is allowed, and the reader is usable again"
        );
    }

    #[test]
    fn binary_is_refused() {
        let mut r = Reassembler::new();
        assert_eq!(
            r.push(Opcode::Binary, true, b"x", LIMIT),
            Err(MessageError::Binary)
        );
    }

    #[test]
    fn continuation_without_start_is_refused() {
        let mut r = Reassembler::new();
        assert_eq!(
            r.push(Opcode::Continuation, true, b"x", LIMIT),
            Err(MessageError::UnexpectedContinuation)
        );
    }

    #[test]
    fn text_inside_a_fragmented_message_is_refused() {
        let mut r = Reassembler::new();
        r.push(Opcode::Text, false, b"a", LIMIT).unwrap();
        assert_eq!(
            r.push(Opcode::Text, true, b"b", LIMIT),
            Err(MessageError::UnfinishedMessage)
        );
    }

    #[test]
    fn utf8_split_across_fragments_is_accepted_and_invalid_utf8_refused() {
        let mut r = Reassembler::new();
        let snowman = "☃".as_bytes();
        r.push(Opcode::Text, false, &snowman[..1], LIMIT).unwrap();
        assert_eq!(
            r.push(Opcode::Continuation, true, &snowman[1..], LIMIT),
            Ok(Progress::Complete)
        );
        assert_eq!(
            r.push(Opcode::Text, true, &[0xff, 0xfe], LIMIT),
            Err(MessageError::InvalidUtf8)
        );
    }

    #[test]
    fn release_frees_a_large_buffer() {
        let mut r = Reassembler::new();
        let big = vec![b'a'; 16 * 1024];
        r.push(Opcode::Text, true, &big, usize::MAX).unwrap();
        assert!(r.capacity() >= big.len());
        r.release();
        assert_eq!(r.capacity(), 0);
    }
}
