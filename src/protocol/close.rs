//! WebSocket close codes (RFC 6455 §7.4.1) and the closes rollcall sends,
//! each with the reason text the peer sees.

/// A close code rollcall sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum CloseCode {
    /// 1001: the gateway is going away (graceful shutdown).
    GoingAway = 1001,
    /// 1002: a protocol error (here: no common protocol version).
    ProtocolError = 1002,
    /// 1003: a data type the endpoint does not accept (binary frames).
    Unsupported = 1003,
    /// 1007: data inconsistent with the message type (invalid UTF-8).
    InvalidPayload = 1007,
    /// 1008: a policy violation (bad handshake, auth, slow consumer).
    PolicyViolation = 1008,
    /// 1009: a message too big to process.
    TooBig = 1009,
    /// 1011: an unexpected condition (here: no answer to keepalive pings,
    /// as OpenClaw closes a connection that misses a pong).
    InternalError = 1011,
    /// 1013: try again later (the presence queue is full).
    TryAgainLater = 1013,
}

impl CloseCode {
    /// The numeric code on the wire.
    pub const fn code(self) -> u16 {
        self as u16
    }
}

/// A close frame: its code and its reason text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close {
    /// The close code.
    pub code: CloseCode,
    /// The reason, at most 123 bytes (RFC 6455 §5.5: control payloads are
    /// at most 125 bytes, two of which are the code).
    pub reason: &'static str,
}

impl Close {
    /// Graceful shutdown (§7).
    pub const SHUTDOWN: Close = Close::new(CloseCode::GoingAway, "gateway shutting down");
    /// No valid `connect` in time (§3.4).
    pub const HANDSHAKE_TIMEOUT: Close =
        Close::new(CloseCode::PolicyViolation, "handshake timeout");
    /// A connection that fell behind on its own replies (§7).
    pub const SLOW_CONSUMER: Close = Close::new(CloseCode::PolicyViolation, "slow consumer");
    /// A message over the size limit (§3.2).
    pub const TOO_LARGE: Close = Close::new(CloseCode::TooBig, "message too large");
    /// A binary frame (§1).
    pub const BINARY: Close = Close::new(CloseCode::Unsupported, "binary frames are not supported");
    /// A frame that breaks RFC 6455 (unmasked, reserved bits, bad fragments).
    pub const PROTOCOL_ERROR: Close = Close::new(CloseCode::ProtocolError, "protocol error");
    /// Nothing came back between two keepalive pings (§1).
    pub const KEEPALIVE_TIMEOUT: Close = Close::new(CloseCode::InternalError, "keepalive timeout");
    /// A text message that is not UTF-8.
    pub const INVALID_UTF8: Close = Close::new(CloseCode::InvalidPayload, "invalid UTF-8");
    /// A permessage-deflate message that does not inflate (RFC 7692 §6.2).
    pub const INVALID_DEFLATE: Close =
        Close::new(CloseCode::InvalidPayload, "invalid compressed data");

    /// A close with `code` and `reason`.
    pub const fn new(code: CloseCode, reason: &'static str) -> Close {
        Close { code, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_rfc_numbers() {
        assert_eq!(CloseCode::GoingAway.code(), 1001);
        assert_eq!(CloseCode::ProtocolError.code(), 1002);
        assert_eq!(CloseCode::Unsupported.code(), 1003);
        assert_eq!(CloseCode::InvalidPayload.code(), 1007);
        assert_eq!(CloseCode::PolicyViolation.code(), 1008);
        assert_eq!(CloseCode::TooBig.code(), 1009);
        assert_eq!(CloseCode::InternalError.code(), 1011);
        assert_eq!(CloseCode::TryAgainLater.code(), 1013);
    }

    #[test]
    fn reasons_fit_a_control_frame() {
        for close in [
            Close::SHUTDOWN,
            Close::HANDSHAKE_TIMEOUT,
            Close::SLOW_CONSUMER,
            Close::TOO_LARGE,
            Close::BINARY,
            Close::INVALID_UTF8,
            Close::PROTOCOL_ERROR,
            Close::KEEPALIVE_TIMEOUT,
        ] {
            assert!(close.reason.len() <= 123, "{close:?}");
        }
    }
}
