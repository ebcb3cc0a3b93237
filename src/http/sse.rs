//! `GET /v1/presence/stream`: Server-Sent Events, one `presence` event per
//! coalesced change, the current list first, and a keep-alive comment.
//!
//! Each stream follows a `watch` channel the broadcaster updates, so a slow
//! reader skips to the latest list instead of queueing old ones.

use super::body::Body;
use crate::gateway::State;
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::Response;
use hyper::body::Frame;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// Proxies commonly drop connections idle for 30-60 s.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

struct Stream {
    updates: tokio::sync::watch::Receiver<Option<(u64, Bytes)>>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    keep_alive: tokio::time::Interval,
    first: bool,
}

/// The SSE response.
pub fn stream(state: Arc<State>) -> Response<Body> {
    let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
    keep_alive.reset();
    let stream = Stream {
        updates: state.sse.subscribe(),
        shutdown: state.shutdown.subscribe(),
        keep_alive,
        first: true,
    };
    let events = futures_util::stream::unfold(stream, |mut s| async move {
        if s.first {
            s.first = false;
            let current = s.updates.borrow_and_update().clone();
            if let Some((_, data)) = current {
                return Some((Ok::<_, Infallible>(Frame::data(event(&data))), s));
            }
        }
        if *s.shutdown.borrow() {
            return None;
        }
        tokio::select! {
            changed = s.updates.changed() => {
                changed.ok()?;
                let current = s.updates.borrow_and_update().clone();
                let data = current.map(|(_, d)| event(&d)).unwrap_or_else(|| Bytes::from_static(b": waiting\n\n"));
                Some((Ok(Frame::data(data)), s))
            }
            _ = s.keep_alive.tick() => Some((Ok(Frame::data(Bytes::from_static(b": keep-alive\n\n"))), s)),
            _ = s.shutdown.changed() => None,
        }
    });
    let mut response = Response::new(StreamBody::new(events).boxed());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

fn event(data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + 24);
    out.extend_from_slice(b"event: presence\ndata: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}
