//! Server-Sent Events (`GET /v1/presence/stream`, docs/protocol.md §9): the
//! feed the broadcaster publishes into, and the stream each reader gets.
//!
//! Invariants: the feed holds only the latest list (a `watch` channel), so a
//! slow reader skips to the newest one instead of queueing old ones; every
//! stream starts with the current list, stamped when that stream starts (a
//! page derives the server's clock from `serverTime`, and the last publish
//! may be minutes old on a quiet gateway); a comment keeps idle proxies
//! open.
//!
//! gzip (when `Accept-Encoding` allows it): the body is one gzip member
//! written a block at a time, each chunk flushed so the reader gets every
//! event at once. A stream holds a running CRC, not a compressor: a block's
//! rows are the snapshot's chunks compressed one by one, each once for
//! every version that shares it (as on WebSocket), between stored blocks,
//! so a new version compresses only the chunks it changed; each published
//! block is assembled once, by the first gzip stream to send it.

//! Bounded like WebSocket watchers (docs/protocol.md §9): a block handed to
//! the connection is *unsent* until the connection asks for the next one,
//! and all streams' unsent bytes count against [`SSE_UNSENT_BUDGET`]; a
//! stream whose block stays unsent past its stall deadline (it does not
//! read), or that would exceed the budget, has its connection closed, which
//! frees the kernel's buffers too. A reading stream always has nothing
//! unsent between two changes, so it never meets either bound.

use super::body::Body;
use super::encoding;
use crate::clock::Clock;
use crate::compress::{
    Deflated, Encoding, GzipStream, crc32, crc32_combine, deflate_segment, write_around,
};
use crate::presence::{Millis, Snapshot};
use crate::protocol::write_sse_presence;
use bytes::Bytes;
use crc32fast::Hasher;
use http_body_util::{BodyExt, StreamBody};
use hyper::Response;
use hyper::body::Frame;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// Unsent SSE bytes all streams may hold together: a few hundred lists of
/// 200 rows. Streams that read hold none between changes.
pub const SSE_UNSENT_BUDGET: usize = 64 * 1024 * 1024;
/// How long a block may stay unsent before its stream is closed as not
/// reading: far longer than a slow link needs for a large list.
pub const DEFAULT_SSE_STALL: Duration = Duration::from_secs(10);

/// Closes the HTTP connection a request came on: the server puts one in
/// every request's extensions, and a stream that stopped reading uses it.
#[derive(Clone, Default)]
pub struct CloseConnection(pub Arc<Notify>);

/// One stream's unsent block: since when, and how large.
#[derive(Default)]
struct Unsent {
    since: Mutex<Option<Instant>>,
    bytes: AtomicUsize,
}

/// Proxies commonly drop connections idle for 30-60 s.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The latest coalesced list, as every SSE stream sends it: the bytes of a
/// whole `event: presence` block, and the snapshot they were made from.
pub struct SseFeed {
    latest: watch::Sender<Option<Latest>>,
    /// The gateway's clock, which the stamps read.
    clock: Clock,
    /// Every stream's unsent bytes together.
    unsent: Arc<AtomicUsize>,
    /// How long a block may stay unsent.
    stall: Duration,
}

/// One published list.
#[derive(Clone)]
struct Latest {
    /// The `event: presence` block as of `stamp`, shared by every stream;
    /// rendered (O(list)) by the first stream that sends it, so a gateway
    /// nobody streams from never renders one.
    event: Arc<OnceLock<Bytes>>,
    /// When the block was published: the time its list is stamped with.
    stamp: Millis,
    /// Its snapshot, for a stream's first block, stamped afresh.
    snapshot: Arc<Snapshot>,
    /// `event` compressed, made by the first gzip stream that sends it.
    deflated: Arc<OnceLock<Deflated>>,
}

impl Latest {
    fn deflated(&self) -> &Deflated {
        self.deflated
            .get_or_init(|| render_deflated(&self.snapshot, self.stamp))
    }

    fn event(&self) -> &Bytes {
        self.event
            .get_or_init(|| render(&self.snapshot, self.stamp))
    }
}

/// The `event: presence` block of `snapshot` as of `now`.
fn render(snapshot: &Snapshot, now: Millis) -> Bytes {
    let mut data = Vec::with_capacity(snapshot.list_len() + 96);
    write_sse_presence(&mut data, snapshot.version(), now, |out| {
        snapshot.write_list(now, out)
    });
    event(&data)
}

/// The `event: presence` block of `snapshot` as of `now`, compressed: its
/// rows are the snapshot's chunks' segments, the rest stored blocks.
fn render_deflated(snapshot: &Snapshot, now: Millis) -> Deflated {
    Deflated::written(|out| write_deflated(snapshot, now, out))
}

/// Appends [`render_deflated`]'s block without its end (non-final blocks,
/// byte-aligned) to `out`; returns the CRC-32 and length of its text.
fn write_deflated(snapshot: &Snapshot, now: Millis, out: &mut Vec<u8>) -> Hasher {
    let mut text = Vec::with_capacity(1024);
    text.extend_from_slice(EVENT_START);
    let mut split = 0;
    write_sse_presence(&mut text, snapshot.version(), now, |out| {
        snapshot.write_list_head(now, out);
        split = out.len();
        out.push(b']');
    });
    text.extend_from_slice(EVENT_END);
    let (before, after) = text.split_at(split);
    let crc = snapshot.rest_checksum(crc32, crc32_combine);
    let segments = snapshot.rest_deflated(deflate_segment);
    let compressed: usize = segments.clone().map(Bytes::len).sum();
    out.reserve(text.len() + compressed + 32);
    write_around(out, before, segments, crc, snapshot.rest_len(), after)
}

impl Default for SseFeed {
    fn default() -> Self {
        SseFeed::with_clock(Clock::system())
    }
}

impl SseFeed {
    /// A feed whose stamps read `clock` (the gateway's).
    pub fn with_clock(clock: Clock) -> SseFeed {
        SseFeed {
            latest: watch::channel(None).0,
            clock,
            unsent: Arc::default(),
            stall: DEFAULT_SSE_STALL,
        }
    }

    /// This feed with streams closed after `stall` without reading.
    pub fn with_stall(mut self, stall: Duration) -> SseFeed {
        self.stall = stall;
        self
    }

    /// Bytes handed to streams' connections and not yet taken.
    pub fn unsent_bytes(&self) -> usize {
        self.unsent.load(Ordering::Relaxed)
    }

    /// Makes `snapshot` the list every stream sends next.
    pub fn publish(&self, snapshot: &Arc<Snapshot>) {
        self.latest.send_replace(Some(Latest {
            event: Arc::default(),
            stamp: self.clock.now(),
            snapshot: Arc::clone(snapshot),
            deflated: Arc::default(),
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
    clock: Clock,
    /// The gzip member being written, when the body is gzipped.
    gzip: Option<GzipStream>,
    /// This stream's unsent block.
    mine: Arc<Unsent>,
    /// All streams' unsent bytes.
    unsent: Arc<AtomicUsize>,
    /// Closes the connection when the budget would overflow.
    close: CloseConnection,
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.taken();
    }
}

/// What a stream sends next.
enum Next {
    /// A stream's first list, stamped now.
    First(Latest),
    /// A published list.
    Published(Latest),
    /// A comment.
    Comment(&'static [u8]),
    /// The end of the body.
    End,
}

impl Stream {
    /// The connection asked for more: the last block was taken.
    fn taken(&self) {
        let bytes = self.mine.bytes.swap(0, Ordering::Relaxed);
        self.unsent.fetch_sub(bytes, Ordering::Relaxed);
        *self.mine.since.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Hands `chunk` over, counted as unsent; `None` (and the connection
    /// closed) when it would overflow the budget.
    fn hand(&self, chunk: Bytes) -> Option<Bytes> {
        let size = chunk.len();
        let before = self.unsent.fetch_add(size, Ordering::Relaxed);
        if before + size > SSE_UNSENT_BUDGET {
            self.unsent.fetch_sub(size, Ordering::Relaxed);
            self.close.0.notify_one();
            return None;
        }
        self.mine.bytes.store(size, Ordering::Relaxed);
        *self.mine.since.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        Some(chunk)
    }

    /// The next chunk of the body, counted as unsent until the next call;
    /// `None` ends the stream.
    async fn next(&mut self) -> Option<Bytes> {
        self.taken();
        let chunk = self.produce().await?;
        self.hand(chunk)
    }

    async fn produce(&mut self) -> Option<Bytes> {
        let next = self.next_block().await;
        let Some(gzip) = self.gzip.as_mut() else {
            return match next {
                Next::First(latest) => Some(render(&latest.snapshot, self.clock.now())),
                Next::Published(latest) => Some(latest.event().clone()),
                Next::Comment(text) => Some(Bytes::from_static(text)),
                Next::End => None,
            };
        };
        let chunk = match next {
            Next::First(latest) => {
                let now = self.clock.now();
                Bytes::from(gzip.chunk_with(|out| write_deflated(&latest.snapshot, now, out)))
            }
            Next::Published(latest) => Bytes::from(gzip.chunk(b"", Some(latest.deflated()), b"")),
            Next::Comment(text) => Bytes::from(gzip.chunk(text, None, b"")),
            // The member's end, then the body's.
            Next::End => return Some(self.gzip.take()?.finish()),
        };
        Some(chunk)
    }

    async fn next_block(&mut self) -> Next {
        if std::mem::take(&mut self.first) {
            let current = self.updates.borrow_and_update().clone();
            if let Some(current) = current {
                return Next::First(current);
            }
        }
        if *self.shutdown.borrow() {
            return Next::End;
        }
        tokio::select! {
            changed = self.updates.changed() => {
                if changed.is_err() {
                    return Next::End;
                }
                let current = self.updates.borrow_and_update().clone();
                current.map_or(Next::Comment(b": waiting\n\n"), Next::Published)
            }
            _ = self.keep_alive.tick() => Next::Comment(b": keep-alive\n\n"),
            _ = self.shutdown.changed() => Next::End,
        }
    }
}

/// Closes the connection once `unsent`'s block has waited `stall`; ends
/// with the stream.
async fn watch_stall(unsent: Weak<Unsent>, stall: Duration, close: CloseConnection) {
    loop {
        tokio::time::sleep(stall / 4).await;
        let Some(unsent) = unsent.upgrade() else {
            return;
        };
        let since = *unsent.since.lock().unwrap_or_else(|e| e.into_inner());
        if since.is_some_and(|since| since.elapsed() >= stall) {
            tracing::debug!("closing an SSE stream that does not read");
            close.0.notify_one();
            return;
        }
    }
}

/// The SSE response for one reader, in `coding`; `close` closes its
/// connection.
pub fn stream(
    feed: &SseFeed,
    shutdown: watch::Receiver<bool>,
    coding: Encoding,
    close: CloseConnection,
) -> Response<Body> {
    let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
    keep_alive.reset();
    let mine = Arc::new(Unsent::default());
    tokio::spawn(watch_stall(
        Arc::downgrade(&mine),
        feed.stall,
        close.clone(),
    ));
    let stream = Stream {
        mine,
        unsent: Arc::clone(&feed.unsent),
        close,
        updates: feed.subscribe(),
        shutdown,
        keep_alive,
        first: true,
        clock: feed.clock.clone(),
        gzip: (coding == Encoding::Gzip).then(GzipStream::default),
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
    encoding::mark(headers, coding);
    response
}

const EVENT_START: &[u8] = b"event: presence\ndata: ";
const EVENT_END: &[u8] = b"\n\n";

fn event(data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + 24);
    out.extend_from_slice(EVENT_START);
    out.extend_from_slice(data);
    out.extend_from_slice(EVENT_END);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::{Entry, Store, StoreConfig};
    use serde_json::Value;

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
        let clock = Clock::adjustable();
        let feed = SseFeed::with_clock(clock.clone());
        let published = clock.now();
        let gateway = Entry {
            instance_id: Some("gw".into()),
            text: "Gateway".into(),
            ..Entry::default()
        };
        let snapshot = Store::new(StoreConfig::default(), gateway).publish(published);
        feed.publish(&Arc::new(snapshot));

        // A quiet gateway: nothing is published for 90 s, then a page opens.
        clock.advance(90_000);
        let (_stop, shutdown) = watch::channel(false);
        let close = CloseConnection::default();
        let mut body = stream(&feed, shutdown, Encoding::Identity, close).into_body();
        let frame = body
            .frame()
            .await
            .expect("a first block")
            .expect("no error");
        let first = data(frame.data_ref().expect("a data frame"));
        // A page derives the server's clock from this stamp: the publish's
        // would make every age on it look 90 s younger.
        let stamp = first["serverTime"].as_i64().expect("a stamp");
        assert!(stamp >= published + 90_000, "{stamp} is the opening time");
        assert_eq!(first["presence"][0]["ts"], stamp, "the self entry's ts too");
    }
}
