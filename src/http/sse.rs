//! Server-Sent Events (`GET /v1/presence/stream`, docs/protocol.md §9): the
//! feed the broadcaster publishes into, and the stream each reader gets.
//!
//! Invariants: the feed holds only the latest list (a `watch` channel), so a
//! slow reader skips to the newest one instead of queueing old ones; every
//! stream starts with the current list, stamped when that stream starts (a
//! page derives the server's clock from `serverTime`, and the last publish
//! may be minutes old on a quiet gateway); a comment keeps idle proxies
//! open.

use super::body::Body;
use crate::clock::now_millis;
use crate::presence::{Millis, Snapshot};
use crate::protocol::write_sse_presence;
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::Response;
use hyper::body::Frame;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Proxies commonly drop connections idle for 30-60 s.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The latest coalesced list, as every SSE stream sends it: the bytes of a
/// whole `event: presence` block, and the snapshot they were made from.
pub struct SseFeed {
    latest: watch::Sender<Option<Latest>>,
}

/// One published list.
#[derive(Clone)]
struct Latest {
    /// The `event: presence` block, shared by every stream.
    event: Bytes,
    /// Its snapshot, for a stream's first block, stamped afresh.
    snapshot: Arc<Snapshot>,
}

/// The `event: presence` block of `snapshot` as of `now`.
fn render(snapshot: &Snapshot, now: Millis) -> Bytes {
    let mut data = Vec::with_capacity(snapshot.list_json().len() + 96);
    write_sse_presence(&mut data, snapshot.version(), now, |out| {
        snapshot.write_list(now, out)
    });
    event(&data)
}

impl Default for SseFeed {
    fn default() -> Self {
        SseFeed {
            latest: watch::channel(None).0,
        }
    }
}

impl SseFeed {
    /// Makes `snapshot` the list every stream sends next.
    pub fn publish(&self, snapshot: &Arc<Snapshot>) {
        self.latest.send_replace(Some(Latest {
            event: render(snapshot, now_millis()),
            snapshot: Arc::clone(snapshot),
        }));
    }

    fn subscribe(&self) -> watch::Receiver<Option<Latest>> {
        self.latest.subscribe()
    }
}

struct Stream {
    updates: watch::Receiver<Option<Latest>>,
    shutdown: watch::Receiver<bool>,
    keep_alive: tokio::time::Interval,
    first: bool,
}

impl Stream {
    /// The next chunk of the body; `None` ends the stream.
    async fn next(&mut self) -> Option<Bytes> {
        if std::mem::take(&mut self.first) {
            let current = self.updates.borrow_and_update().clone();
            if let Some(current) = current {
                return Some(render(&current.snapshot, now_millis()));
            }
        }
        if *self.shutdown.borrow() {
            return None;
        }
        tokio::select! {
            changed = self.updates.changed() => {
                changed.ok()?;
                let current = self.updates.borrow_and_update().as_ref().map(|l| l.event.clone());
                Some(current.unwrap_or_else(|| Bytes::from_static(b": waiting\n\n")))
            }
            _ = self.keep_alive.tick() => Some(Bytes::from_static(b": keep-alive\n\n")),
            _ = self.shutdown.changed() => None,
        }
    }
}

/// The SSE response for one reader.
pub fn stream(feed: &SseFeed, shutdown: watch::Receiver<bool>) -> Response<Body> {
    let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
    keep_alive.reset();
    let stream = Stream {
        updates: feed.subscribe(),
        shutdown,
        keep_alive,
        first: true,
    };
    let events = futures_util::stream::unfold(stream, |mut s| async move {
        let chunk = s.next().await?;
        Some((Ok::<_, Infallible>(Frame::data(chunk)), s))
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
