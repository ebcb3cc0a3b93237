//! permessage-deflate negotiation (RFC 7692 §5, §7.1): reads the
//! client's offers from `Sec-WebSocket-Extensions` and picks the first one
//! rollcall can honor.
//!
//! Invariants: an offer with an unknown parameter, a repeated one or a bad
//! value is declined (§7.1) and the next offer is tried; declining every
//! offer is not an error, the upgrade completes without the extension.
//! The answer always carries `server_no_context_takeover` (each server
//! message is compressed on its own, so a broadcast is compressed once for
//! everyone) and `client_no_context_takeover` (§7.1.1.2 lets a server ask
//! for it even when not offered): a client message is inflated with a
//! fresh window, so no connection holds an inflate window between
//! messages.

/// The extension's name.
pub const NAME: &str = "permessage-deflate";

/// The window rollcall compresses with: 2^15 bytes.
const WINDOW_BITS: u8 = 15;

/// An accepted offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The `Sec-WebSocket-Extensions` value of the 101 response.
    pub response: String,
}

/// Negotiates permessage-deflate from the values of every
/// `Sec-WebSocket-Extensions` header of a request; `None` declines.
pub fn negotiate<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<Negotiated> {
    headers
        .into_iter()
        .flat_map(split_list)
        .find_map(|offer| accept(offer.trim()))
}

/// Splits a header value at the commas that separate extensions (not
/// those inside a quoted string).
fn split_list(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

/// The parameters of one permessage-deflate offer that matter to the answer.
#[derive(Default)]
struct Offer {
    seen: [bool; 4],
    /// `server_max_window_bits=N`, if offered.
    server_max_window_bits: Option<u8>,
}

/// The answer to one offer, or `None` to decline it.
fn accept(offer: &str) -> Option<Negotiated> {
    let mut params = offer.split(';').map(str::trim);
    if !params.next()?.eq_ignore_ascii_case(NAME) {
        return None;
    }
    let mut parsed = Offer::default();
    for param in params {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(unquote(value.trim())?)),
            None => (param, None),
        };
        let slot = match name {
            "server_no_context_takeover" => 0,
            "client_no_context_takeover" => 1,
            "server_max_window_bits" => 2,
            "client_max_window_bits" => 3,
            _ => return None,
        };
        if std::mem::replace(&mut parsed.seen[slot], true) {
            return None;
        }
        match (slot, value) {
            (0 | 1, None) => {}
            (2, Some(bits)) => parsed.server_max_window_bits = Some(window_bits(bits)?),
            (3, None) => {}
            (3, Some(bits)) => {
                window_bits(bits)?;
            }
            _ => return None,
        }
    }
    // A smaller window than 2^15 cannot be honored: what is shared was
    // compressed with the full window.
    let mut response = format!("{NAME}; server_no_context_takeover; client_no_context_takeover");
    match parsed.server_max_window_bits {
        Some(WINDOW_BITS) => response.push_str("; server_max_window_bits=15"),
        Some(_) => return None,
        None => {}
    }
    Some(Negotiated { response })
}

/// A value as a token or a quoted string (RFC 7692 §7.1: both are allowed).
fn unquote(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"'),
        None => Some(value),
    }
}

/// A window size parameter: 1*DIGIT from 8 to 15, no leading zero (§7.1.2).
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str =
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    fn answer(headers: &[&str]) -> Option<String> {
        negotiate(headers.iter().copied()).map(|n| n.response)
    }

    #[test]
    fn what_browsers_and_node_ws_offer_is_accepted() {
        // Chrome and Node's ws.
        assert_eq!(
            answer(&["permessage-deflate; client_max_window_bits"]).as_deref(),
            Some(ANSWER)
        );
        // Firefox.
        assert_eq!(answer(&["permessage-deflate"]).as_deref(), Some(ANSWER));
        assert_eq!(
            answer(&["permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=\"10\""]).as_deref(),
            Some(ANSWER)
        );
    }

    #[test]
    fn the_first_offer_that_can_be_honored_wins() {
        let offers = "permessage-deflate; server_max_window_bits=10, permessage-deflate; server_max_window_bits=15, permessage-deflate";
        assert_eq!(
            answer(&["x-webkit-deflate-frame", offers]),
            Some(format!("{ANSWER}; server_max_window_bits=15"))
        );
    }

    #[test]
    fn broken_offers_are_declined_and_the_next_tried() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=010",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; level=9",
            "permessage-deflate; client_max_window_bits=\"10",
            "deflate-stream",
            "",
        ] {
            assert_eq!(answer(&[bad]), None, "{bad}");
            assert_eq!(
                answer(&[bad, "permessage-deflate"]).as_deref(),
                Some(ANSWER),
                "{bad}"
            );
        }
        assert_eq!(answer(&[]), None);
    }
}
