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
    /// The wall clock the stamps read (injected by tests).
    clock: fn() -> Millis,
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
        SseFeed::with_clock(now_millis)
    }
}

impl SseFeed {
    /// A feed whose stamps read `clock` instead of the wall clock.
    pub fn with_clock(clock: fn() -> Millis) -> SseFeed {
        SseFeed {
            latest: watch::channel(None).0,
            clock,
        }
    }

    /// Makes `snapshot` the list every stream sends next.
    pub fn publish(&self, snapshot: &Arc<Snapshot>) {
        self.latest.send_replace(Some(Latest {
            event: render(snapshot, (self.clock)()),
            snapshot: Arc::clone(snapshot),
        }));
    }

    fn subscribe(&self) -> watch::Receiver<Option<Latest>> {
        self.latest.subscribe()
    }
}

struct Stream {
    updates: watch::Receiver<Option<Latest>>,
    clock: fn() -> Millis,
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
                return Some(render(&current.snapshot, (self.clock)()));
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
        clock: feed.clock,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::{Entry, Store, StoreConfig};
    use serde_json::Value;
    use std::sync::atomic::{AtomicI64, Ordering};

    /// The injected clock of `a_stream_opened_later_is_stamped_when_it_opens`.
    static NOW: AtomicI64 = AtomicI64::new(0);

    fn fake_now() -> Millis {
        // SeqCst: a test's stores happen before the reads it causes.
        NOW.load(Ordering::SeqCst)
    }

    /// The JSON of an `event: presence` block.
    fn data(block: &[u8]) -> Value {
        let text = std::str::from_utf8(block).expect("UTF-8");
        let json = text
            .strip_prefix("event: presence\ndata: ")
            .and_then(|rest| rest.strip_suffix("\n\n"))
            .unwrap_or_else(|| panic!("not a presence block: {text}"));
        serde_json::from_str(json).expect("JSON")
    }

    #[tokio::test]
    async fn a_stream_opened_later_is_stamped_when_it_opens() {
        const PUBLISHED: Millis = 1_000_000;
        const OPENED: Millis = PUBLISHED + 90_000;
        NOW.store(PUBLISHED, Ordering::SeqCst);
        let feed = SseFeed::with_clock(fake_now);
        let gateway = Entry {
            instance_id: Some("gw".into()),
            text: "Gateway".into(),
            ..Entry::default()
        };
        let snapshot = Store::new(StoreConfig::default(), gateway).publish(PUBLISHED);
        feed.publish(&Arc::new(snapshot));

        // A quiet gateway: nothing is published for 90 s, then a page opens.
        NOW.store(OPENED, Ordering::SeqCst);
        let (_stop, shutdown) = watch::channel(false);
        let mut body = stream(&feed, shutdown).into_body();
        let frame = body
            .frame()
            .await
            .expect("a first block")
            .expect("no error");
        let first = data(frame.data_ref().expect("a data frame"));
        // A page derives the server's clock from this stamp: the publish's
        // would make every age on it look 90 s younger.
        assert_eq!(first["serverTime"], OPENED);
        assert_eq!(
            first["presence"][0]["ts"], OPENED,
            "the self entry's ts too"
        );
    }
}
