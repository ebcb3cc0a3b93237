//! The one response body type every route returns, and the bodies that
//! build it: fixed bytes, empty, and a sequence of shared pieces.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use hyper::body::{Frame, SizeHint};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A boxed body: fixed bytes, empty, pieces, or a stream (SSE).
pub type Body = BoxBody<Bytes, Infallible>;

/// A body of fixed bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().boxed()
}

/// A body of `pieces` sent one after another, each as its own frame,
/// with its length known up front (`Content-Length`, also on `HEAD`).
/// The pieces are shared, not copied: a list's chunks go to the socket
/// as the snapshot holds them.
pub fn pieces(pieces: impl IntoIterator<Item = Bytes>) -> Body {
    let pieces: Vec<Bytes> = pieces.into_iter().filter(|p| !p.is_empty()).collect();
    let remaining = pieces.iter().map(|p| p.len() as u64).sum();
    Pieces {
        pieces: pieces.into_iter(),
        remaining,
    }
    .boxed()
}

/// [`pieces`]: what is left to send, and its length.
struct Pieces {
    pieces: std::vec::IntoIter<Bytes>,
    remaining: u64,
}

impl hyper::body::Body for Pieces {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = self.pieces.next();
        if let Some(piece) = &next {
            self.remaining -= piece.len() as u64;
        }
        Poll::Ready(next.map(|piece| Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
