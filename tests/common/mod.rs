//! Shared helpers for the integration tests: the real server started
//! in-process on `127.0.0.1:0`, a real WebSocket client that speaks the
//! gateway protocol, and a small HTTP/1.1 client for the §9 routes.
//!
//! Every wait is bounded by [`TIMEOUT`]: a test that would hang fails with
//! a message naming what it was waiting for instead.

// Each test crate compiles this module and uses a different subset of it.
#![allow(dead_code)]

pub mod device;
pub mod doctor;
pub mod fleet;
pub mod long_list;
pub mod raw;

use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rollcall::clock::Clock;
use rollcall::config::ServeConfig;
use rollcall::gateway::{Server, State};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http;
use tokio_tungstenite::tungstenite::protocol::Message;

/// The longest any single wait may take. Generous for a loaded 2-core
/// machine; a passing test waits far less.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `fut` under [`TIMEOUT`], failing the test with `what` on expiry.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(TIMEOUT, fut).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {TIMEOUT:?} waiting for {what}"),
    }
}

/// Polls `check` every 10 ms until it yields a value, for at most
/// [`TIMEOUT`]. For state the server exposes no event for.
pub async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    within(what, async {
        loop {
            if let Some(value) = check().await {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// The real gateway, running in this test's runtime.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its shared state (writer counters, registry), for synchronising on
    /// things the wire does not announce.
    pub state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server with the defaults on `127.0.0.1:0`.
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    /// Starts a server on `127.0.0.1:0` after `edit` tweaks the defaults.
    pub async fn start_with(edit: impl FnOnce(&mut ServeConfig)) -> TestServer {
        let mut config = ServeConfig::defaults();
        config.bind = "127.0.0.1:0".parse().expect("a literal address");
        // Tests never wait out the production grace period.
        config.shutdown_grace = Duration::from_secs(3);
        edit(&mut config);
        // Tests pass TTLs by moving this clock (`TestServer::advance`).
        let server = Server::bind_with_clock(config, Clock::adjustable())
            .await
            .expect("the server binds");
        let addr = server.local_addr();
        let state = server.state();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            state,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    /// Starts graceful shutdown and returns a handle that completes when
    /// `run` returns.
    pub fn begin_shutdown(&mut self) -> JoinHandle<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.handle.take().expect("shutdown begins once")
    }

    /// Moves the server's clock `by` forward and wakes its presence writer,
    /// which then expires what the new time makes too old, without anyone
    /// waiting for the wall clock to get there.
    pub fn advance(&self, by: Duration) {
        self.state.advance_clock(by);
    }

    /// Events the presence writer has applied so far.
    pub fn writer_events(&self) -> u64 {
        self.state
            .writer_stats
            .events
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The `ws://` URL of a path on this server.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// `connect` params of a client in `mode` asking for `scopes`, protocol
/// range [3, 4].
pub fn connect_params(mode: &str, scopes: &[&str]) -> Value {
    json!({
        "minProtocol": 3,
        "maxProtocol": 4,
        "client": {"id": "it-client", "version": "1.2.3", "platform": "linux", "mode": mode},
        "scopes": scopes,
    })
}

/// A `connect` request frame.
pub fn connect_frame(id: &str, params: Value) -> String {
    json!({"type": "req", "id": id, "method": "connect", "params": params}).to_string()
}

/// How a connection ended, as the client saw it.
#[derive(Debug)]
pub struct Closed {
    /// The close code, when a close frame arrived.
    pub code: Option<u16>,
    /// The close reason.
    pub reason: String,
    /// Text frames received before the close, parsed.
    pub frames: Vec<Value>,
}

/// One WebSocket client speaking the gateway protocol.
pub struct Client {
    ws: WebSocketStream<TcpStream>,
    /// The `connect.challenge` event that opened the connection.
    pub challenge: Value,
    /// Frames read while waiting for something else, oldest first.
    pending: VecDeque<Value>,
    next_id: u64,
}

impl Client {
    /// Opens a WebSocket on `/` and reads the challenge.
    pub async fn open(addr: SocketAddr) -> Client {
        let request = format!("ws://{addr}/")
            .into_client_request()
            .expect("a ws URL is a request");
        Client::open_request(addr, request).await.0
    }

    /// Opens a WebSocket with a custom upgrade request (extra headers, another
    /// path) and reads the challenge. Returns the upgrade response too.
    pub async fn open_request(
        addr: SocketAddr,
        request: http::Request<()>,
    ) -> (Client, http::Response<Option<Vec<u8>>>) {
        let tcp = TcpStream::connect(addr).await.expect("TCP connect");
        Client::open_on(tcp, request).await
    }

    /// Like [`Client::open_request`] over a socket the caller prepared.
    pub async fn open_on(
        tcp: TcpStream,
        request: http::Request<()>,
    ) -> (Client, http::Response<Option<Vec<u8>>>) {
        let (ws, response) = within(
            "the WebSocket upgrade",
            tokio_tungstenite::client_async(request, tcp),
        )
        .await
        .expect("the upgrade succeeds");
        let mut client = Client {
            ws,
            challenge: Value::Null,
            pending: VecDeque::new(),
            next_id: 1,
        };
        client.challenge = client.next_frame().await;
        (client, response)
    }

    /// Opens a connection and completes the handshake with `params`;
    /// returns the client and the `hello-ok` payload.
    pub async fn connect(addr: SocketAddr, params: Value) -> (Client, Value) {
        let mut client = Client::open(addr).await;
        let hello = client.handshake(params).await;
        (client, hello)
    }

    /// Sends `connect` with `params` and returns the `hello-ok` payload.
    pub async fn handshake(&mut self, params: Value) -> Value {
        let reply = self.request("connect", params).await;
        assert_eq!(reply["ok"], true, "connect failed: {reply}");
        reply["payload"].clone()
    }

    /// A read-only observer that is not tracked in presence (mode `cli`).
    pub async fn observer(addr: SocketAddr) -> Client {
        Client::connect(addr, connect_params("cli", &["operator.read"]))
            .await
            .0
    }

    /// An untracked client allowed to post beacons (mode `cli`, admin).
    pub async fn admin(addr: SocketAddr) -> Client {
        Client::connect(
            addr,
            connect_params("cli", &["operator.read", "operator.admin"]),
        )
        .await
        .0
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.ws
            .send(Message::text(text.into()))
            .await
            .expect("send a text frame");
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, data: Vec<u8>) {
        self.ws
            .send(Message::binary(data))
            .await
            .expect("send a binary frame");
    }

    /// A fresh request id.
    pub fn fresh_id(&mut self) -> String {
        self.next_id += 1;
        format!("r{}", self.next_id)
    }

    /// Sends a request without waiting; returns its id.
    pub async fn send_request(&mut self, method: &str, params: Value) -> String {
        let id = self.fresh_id();
        let frame = json!({"type": "req", "id": id, "method": method, "params": params});
        self.send_text(frame.to_string()).await;
        id
    }

    /// Sends a request and returns its whole `res` frame; events that
    /// arrive first are kept for [`Client::next_event`].
    pub async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.send_request(method, params).await;
        self.reply(&id).await
    }

    /// Sends a request that must succeed and returns its payload.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let reply = self.request(method, params).await;
        assert_eq!(reply["ok"], true, "{method} failed: {reply}");
        reply["payload"].clone()
    }

    /// Posts a beacon (`system-event`) that must succeed.
    pub async fn beacon(&mut self, params: Value) {
        self.call("system-event", params).await;
    }

    /// The `system-presence` list.
    pub async fn presence(&mut self) -> Vec<Value> {
        match self.call("system-presence", json!({})).await {
            Value::Array(list) => list,
            other => panic!("system-presence is not an array: {other}"),
        }
    }

    /// The `res` frame answering `id`; frames before it are kept.
    pub async fn reply(&mut self, id: &str) -> Value {
        if let Some(at) = self
            .pending
            .iter()
            .position(|f| f["type"] == "res" && f["id"] == id)
        {
            return self.pending.remove(at).expect("the index was just found");
        }
        within(&format!("the reply to {id}"), async {
            loop {
                let frame = self.read_frame().await;
                if frame["type"] == "res" && frame["id"] == id {
                    return frame;
                }
                self.pending.push_back(frame);
            }
        })
        .await
    }

    /// The next event named `name`; other frames are kept, in order.
    pub async fn next_event(&mut self, name: &str) -> Value {
        if let Some(at) = self
            .pending
            .iter()
            .position(|f| f["type"] == "event" && f["event"] == name)
        {
            return self.pending.remove(at).expect("the index was just found");
        }
        within(&format!("a {name} event"), async {
            loop {
                let frame = self.read_frame().await;
                if frame["type"] == "event" && frame["event"] == name {
                    return frame;
                }
                self.pending.push_back(frame);
            }
        })
        .await
    }

    /// Reads `presence` events until one's list satisfies `done`; returns
    /// that list.
    pub async fn presence_until(&mut self, mut done: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
        within("a matching presence event", async {
            loop {
                let event = self.next_event("presence").await;
                let list = event["payload"]["presence"]
                    .as_array()
                    .unwrap_or_else(|| panic!("presence payload has no list: {event}"))
                    .clone();
                if done(&list) {
                    return list;
                }
            }
        })
        .await
    }

    /// The next frame: a kept one first, else one read from the socket.
    pub async fn next_frame(&mut self) -> Value {
        if let Some(frame) = self.pending.pop_front() {
            return frame;
        }
        within("a frame", self.read_frame()).await
    }

    /// Reads for `d` without sending anything of its own: pings are
    /// answered (as every WebSocket library does while reading), text
    /// frames are kept.
    pub async fn idle_for(&mut self, d: Duration) {
        let until = tokio::time::Instant::now() + d;
        while let Ok(frame) = tokio::time::timeout_at(until, self.read_frame()).await {
            self.pending.push_back(frame);
        }
    }

    /// Frames kept so far, removed from the client.
    pub fn take_pending(&mut self) -> Vec<Value> {
        self.pending.drain(..).collect()
    }

    /// Reads one text frame from the socket; panics on a close.
    async fn read_frame(&mut self) -> Value {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(text.as_str())
                        .unwrap_or_else(|e| panic!("frame is not JSON ({e}): {text}"));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(other)) => panic!("expected a text frame, got {other:?}"),
                Some(Err(e)) => panic!("the connection failed: {e}"),
                None => panic!("the connection ended"),
            }
        }
    }

    /// Reads until the server closes; returns the close and the text frames
    /// before it (kept frames included).
    pub async fn expect_close(&mut self) -> Closed {
        within("the server to close", self.read_until_close()).await
    }

    /// [`Client::expect_close`] without its timeout, for tests that bound
    /// the wait themselves (the paused-clock ones).
    pub async fn read_until_close(&mut self) -> Closed {
        let mut frames: Vec<Value> = self.pending.drain(..).collect();
        {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(text))) => frames.push(
                        serde_json::from_str(text.as_str())
                            .unwrap_or_else(|e| panic!("frame is not JSON ({e}): {text}")),
                    ),
                    Some(Ok(Message::Close(frame))) => {
                        let (code, reason) = match frame {
                            Some(f) => (Some(u16::from(f.code)), f.reason.to_string()),
                            None => (None, String::new()),
                        };
                        // Polling on flushes the client's close echo, which
                        // completes the closing handshake for the server.
                        while let Some(Ok(_)) = self.ws.next().await {}
                        return Closed {
                            code,
                            reason,
                            frames: std::mem::take(&mut frames),
                        };
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => panic!("the connection failed before a close frame: {e}"),
                    None => panic!("the connection ended without a close frame"),
                }
            }
        }
    }

    /// Closes the connection normally and waits for the server's echo.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        within("the close handshake", async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }
}

/// The first entry of `list` whose `field` equals `value`.
pub fn entry_with<'a>(list: &'a [Value], field: &str, value: &str) -> Option<&'a Value> {
    list.iter().find(|e| e[field] == value)
}

/// Like [`entry_with`], failing the test when there is none.
pub fn must_find<'a>(list: &'a [Value], field: &str, value: &str) -> &'a Value {
    entry_with(list, field, value)
        .unwrap_or_else(|| panic!("no entry with {field} = {value:?} in {list:#?}"))
}

/// Wall-clock milliseconds since the epoch, as the server stamps `ts`.
pub fn now_ms() -> u64 {
    rollcall::clock::now_millis() as u64
}

/// A plain HTTP response.
#[derive(Debug)]
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: hyper::HeaderMap,
    /// The whole body as text.
    pub body: String,
}

impl HttpReply {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// Sends `GET path` with `headers` and returns the head and the body
/// stream.
pub async fn http_open(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> hyper::Response<Incoming> {
    within(&format!("GET {path}"), async {
        let tcp = TcpStream::connect(addr).await.expect("TCP connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .expect("HTTP/1 handshake");
        tokio::spawn(conn);
        let mut request = hyper::Request::get(path).header("host", addr.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Empty::<bytes::Bytes>::new())
            .expect("a valid request");
        sender.send_request(request).await.expect("a response")
    })
    .await
}

/// `GET path` with `headers`, body read whole.
pub async fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> HttpReply {
    let response = http_open(addr, path, headers).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = within(
        &format!("the body of GET {path}"),
        response.into_body().collect(),
    )
    .await
    .expect("the body reads")
    .to_bytes();
    HttpReply {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).expect("the body is UTF-8"),
    }
}

/// Reads Server-Sent Events from a streaming body.
pub struct SseReader {
    body: Incoming,
    buf: Vec<u8>,
    /// Inflates a gzipped stream as its chunks arrive.
    gzip: Option<flate2::write::GzDecoder<Vec<u8>>>,
}

/// One Server-Sent Event.
#[derive(Debug)]
pub struct SseEvent {
    /// Its `event:` field.
    pub event: String,
    /// Its `data:` field, parsed as JSON.
    pub data: Value,
}

impl SseReader {
    /// Wraps a response body.
    pub fn new(body: Incoming) -> SseReader {
        SseReader {
            body,
            buf: Vec::new(),
            gzip: None,
        }
    }

    /// Wraps a gzipped response body: each chunk must inflate on arrival.
    pub fn gzipped(body: Incoming) -> SseReader {
        SseReader {
            gzip: Some(flate2::write::GzDecoder::new(Vec::new())),
            ..SseReader::new(body)
        }
    }

    /// The next event with data; comments (keep-alives) are skipped.
    pub async fn next(&mut self) -> SseEvent {
        within("a server-sent event", async {
            loop {
                if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                    let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                    let block = String::from_utf8(block).expect("SSE is UTF-8");
                    let mut event = String::new();
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            event = v.trim().to_owned();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim_start());
                        }
                    }
                    if data.is_empty() {
                        continue;
                    }
                    let data = serde_json::from_str(&data)
                        .unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {data}"));
                    return SseEvent { event, data };
                }
                let frame = self
                    .body
                    .frame()
                    .await
                    .expect("the stream stays open")
                    .expect("the stream reads");
                if let Ok(data) = frame.into_data() {
                    match &mut self.gzip {
                        None => self.buf.extend_from_slice(&data),
                        Some(gz) => {
                            use std::io::Write;
                            gz.write_all(&data).expect("the stream is valid gzip");
                            gz.flush().expect("the chunk inflates");
                            self.buf.append(gz.get_mut());
                        }
                    }
                }
            }
        })
        .await
    }
}

/// The value of the first sample in Prometheus `text` whose line starts
/// with `series` (a name, optionally with labels) followed by a space.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}
