//! permessage-deflate (RFC 7692, docs/protocol.md §1) on real sockets, with a
//! raw client that inflates with its own decoder (flate2, not rollcall's):
//! negotiation, compressed events and lists equal byte for byte to what an
//! uncompressed client gets, compressed requests, and the limits (1009 past
//! `maxPayload` after inflation, 1007 for data that does not inflate, 1002
//! for RSV1 without the extension).

mod common;

use common::raw::{parse_server_frame, read_head};
use common::{Client, TestServer, connect_frame, connect_params, long_list, within};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use serde_json::{Value, json};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What Node's `ws` and Chrome offer.
const NODE_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// A raw WebSocket client that may offer permessage-deflate.
struct DeflateWs {
    tcp: TcpStream,
    buf: Vec<u8>,
    /// The server's `Sec-WebSocket-Extensions` answer, if any.
    agreed: Option<String>,
    /// Wire bytes of data frames received, headers included.
    wire: usize,
}

/// One text message: its text and whether it came compressed.
struct Received {
    text: String,
    compressed: bool,
}

impl DeflateWs {
    async fn open(addr: SocketAddr, offer: Option<&str>) -> DeflateWs {
        let mut tcp = TcpStream::connect(addr).await.expect("TCP connect");
        let offer = offer.map_or(String::new(), |o| {
            format!("Sec-WebSocket-Extensions: {o}\r\n")
        });
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
        );
        tcp.write_all(request.as_bytes())
            .await
            .expect("send the upgrade");
        let (head, buf) = within("the 101", read_head(&mut tcp)).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let agreed = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-extensions")
                .then(|| value.trim().to_owned())
        });
        DeflateWs {
            tcp,
            buf,
            agreed,
            wire: 0,
        }
    }

    /// The next text message, inflated with a fresh window when RSV1 is
    /// set (the server promised `server_no_context_takeover`).
    async fn next(&mut self) -> Received {
        within("a server message", async {
            loop {
                if let Some((_, payload, used)) = parse_server_frame(&self.buf) {
                    let b0 = self.buf[0];
                    self.buf.drain(..used);
                    assert_eq!(b0 & 0x80, 0x80, "rollcall sends whole messages");
                    assert_ne!(b0 & 0x0f, 0x8, "closed: {payload:?}");
                    self.wire += used;
                    let compressed = b0 & 0x40 != 0;
                    let bytes = if compressed {
                        inflate(&payload)
                    } else {
                        payload
                    };
                    let text = String::from_utf8(bytes).expect("UTF-8");
                    return Received { text, compressed };
                }
                let mut chunk = vec![0u8; 65536];
                let n = self.tcp.read(&mut chunk).await.expect("read");
                assert!(n > 0, "the server closed");
                self.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
    }

    /// The next message that is not a `tick`.
    async fn next_not_tick(&mut self) -> Received {
        loop {
            let message = self.next().await;
            if !message.text.contains(r#""event":"tick""#) {
                return message;
            }
        }
    }

    /// Sends `text` as one masked text frame, compressed (RSV1) if asked.
    async fn send(&mut self, text: &str, compressed: bool) {
        let payload = if compressed {
            deflate(text.as_bytes())
        } else {
            text.as_bytes().to_vec()
        };
        self.send_raw(0x81 | if compressed { 0x40 } else { 0 }, &payload)
            .await;
    }

    async fn send_raw(&mut self, b0: u8, payload: &[u8]) {
        let mut frame = common::raw::frame(0x1, payload, true);
        frame[0] = b0;
        self.tcp.write_all(&frame).await.expect("send");
    }

    /// Reads until the server's close frame; its code.
    async fn close_code(self) -> Option<u16> {
        let mut raw = common::raw::RawWs {
            tcp: self.tcp,
            pending: self.buf,
        };
        raw.close_code().await
    }
}

/// RFC 7692 §7.2.2: append `00 00 ff ff` and inflate.
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut inflate = Decompress::new(false);
    let mut out = Vec::with_capacity(input.len() * 8 + 1024);
    loop {
        let consumed = inflate.total_in() as usize;
        inflate
            .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            .expect("the server's data inflates");
        if inflate.total_in() as usize == input.len() && out.len() < out.capacity() {
            return out;
        }
        out.reserve(out.capacity());
    }
}

/// RFC 7692 §7.2.1: compress, sync flush, drop `00 00 ff ff`.
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 1024);
    compress
        .compress_vec(data, &mut out, FlushCompress::Sync)
        .expect("compress");
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn parse(message: &Received) -> Value {
    serde_json::from_str(&message.text).expect("JSON")
}

/// Connects as an observer; the `hello-ok` message.
async fn observe(ws: &mut DeflateWs) -> Received {
    let challenge = ws.next().await;
    assert!(challenge.text.contains("connect.challenge"));
    let params = connect_params("cli", &["operator.read"]);
    ws.send(&connect_frame("c1", params), false).await;
    ws.next_not_tick().await
}

/// Fills the list with `n` rows of a realistic size.
async fn fill(addr: SocketAddr, n: usize) -> Client {
    let mut admin = Client::admin(addr).await;
    for i in 0..n {
        admin
            .beacon(json!({
                "text": format!("Node: mac-{i} · app 2026.11.2 · mode ui"),
                "host": format!("mac-{i}"),
                "instanceId": format!("5d0f3c2e-7a41-4b8e-9c1d-{i:012}"),
                "deviceFamily": "Mac",
                "modelIdentifier": "Mac15,6",
            }))
            .await;
    }
    admin
}

/// The text with its `,"seq":N` replaced by `,"seq":0`.
fn without_seq(message: &Received) -> String {
    let seq = parse(message)["seq"]
        .as_u64()
        .expect("a broadcast has a seq");
    message
        .text
        .replacen(&format!(r#","seq":{seq}"#), r#","seq":0"#, 1)
}

#[tokio::test]
async fn an_offer_is_answered_and_a_bad_one_declined_without_failing_the_upgrade() {
    // One admin connection fills the list (`fill`).
    let server = TestServer::start_with(|c| c.max_beacon_rows = 1000).await;
    let ws = DeflateWs::open(server.addr, Some(NODE_OFFER)).await;
    assert_eq!(
        ws.agreed.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    let mut declined = DeflateWs::open(
        server.addr,
        Some("permessage-deflate; server_max_window_bits=9"),
    )
    .await;
    assert_eq!(declined.agreed, None);
    let hello = observe(&mut declined).await;
    assert!(!hello.compressed);
    assert_eq!(parse(&hello)["ok"], true);
}

#[tokio::test]
async fn compressed_lists_and_events_inflate_to_what_a_plain_client_gets() {
    // One admin connection fills the list (`fill`).
    let server = TestServer::start_with(|c| c.max_beacon_rows = 1000).await;
    let mut admin = fill(server.addr, 200).await;
    let mut zipped = DeflateWs::open(server.addr, Some(NODE_OFFER)).await;
    let mut plain = DeflateWs::open(server.addr, None).await;
    let hello_z = observe(&mut zipped).await;
    let hello_p = observe(&mut plain).await;
    assert!(hello_z.compressed && !hello_p.compressed);
    let (list_z, list_p) = (parse(&hello_z), parse(&hello_p));
    let rows =
        |hello: &Value| hello["payload"]["snapshot"]["presence"].as_array().unwrap()[1..].to_vec();
    assert_eq!(rows(&list_z).len(), 200);
    assert_eq!(rows(&list_z), rows(&list_p));
    let (wire_z, wire_p) = (zipped.wire, plain.wire);
    assert!(
        wire_z * 4 < wire_p,
        "hello: {wire_z} vs {wire_p} wire bytes"
    );

    // A change: both get the same full-list event, byte for byte but `seq`.
    admin
        .beacon(json!({"text": "one more", "host": "late", "instanceId": "late-1"}))
        .await;
    let event_z = zipped.next_not_tick().await;
    let event_p = plain.next_not_tick().await;
    assert!(event_z.compressed && !event_p.compressed);
    assert_eq!(parse(&event_z)["event"], "presence");
    assert_eq!(without_seq(&event_z), without_seq(&event_p));
    let listed = parse(&event_z)["payload"]["presence"]
        .as_array()
        .unwrap()
        .len();

    // A reply carrying the list, asked for compressed.
    let request = json!({"type": "req", "id": "p1", "method": "system-presence", "params": {}});
    zipped.send(&request.to_string(), true).await;
    let reply = zipped.next_not_tick().await;
    assert!(reply.compressed);
    let reply = parse(&reply);
    assert_eq!(reply["id"], "p1");
    assert_eq!(reply["payload"].as_array().unwrap().len(), listed);
    // A small reply goes uncompressed: it would not get smaller.
    zipped
        .send(
            &json!({"type": "req", "id": "h1", "method": "health", "params": {}}).to_string(),
            true,
        )
        .await;
    let health = zipped.next_not_tick().await;
    assert!(!health.compressed);
    assert_eq!(parse(&health)["id"], "h1");
}

#[tokio::test]
async fn a_compressed_message_over_max_payload_after_inflation_closes_1009() {
    let server = TestServer::start_with(|c| c.max_payload = 4096).await;
    let mut ws = DeflateWs::open(server.addr, Some(NODE_OFFER)).await;
    observe(&mut ws).await;
    // 1 MiB of spaces inside a request: a few KiB compressed.
    let bomb = format!(
        r#"{{"type":"req","id":"b","method":"health","params":{{"pad":"{}"}}}}"#,
        " ".repeat(1 << 20)
    );
    let compressed = deflate(bomb.as_bytes());
    assert!(compressed.len() < 4096, "{}", compressed.len());
    ws.send_raw(0xc1, &compressed).await;
    assert_eq!(ws.close_code().await, Some(1009));
}

#[tokio::test]
async fn data_that_does_not_inflate_closes_1007_and_rsv1_unnegotiated_1002() {
    // One admin connection fills the list (`fill`).
    let server = TestServer::start_with(|c| c.max_beacon_rows = 1000).await;
    let mut ws = DeflateWs::open(server.addr, Some(NODE_OFFER)).await;
    observe(&mut ws).await;
    ws.send_raw(0xc1, &[0xff; 32]).await;
    assert_eq!(ws.close_code().await, Some(1007));

    let mut ws = DeflateWs::open(server.addr, None).await;
    observe(&mut ws).await;
    ws.send_raw(0xc1, &deflate(b"{}")).await;
    assert_eq!(ws.close_code().await, Some(1002));
}

#[tokio::test]
async fn a_compressed_connect_completes_the_handshake() {
    // One admin connection fills the list (`fill`).
    let server = TestServer::start_with(|c| c.max_beacon_rows = 1000).await;
    let mut ws = DeflateWs::open(server.addr, Some(NODE_OFFER)).await;
    ws.next().await;
    let connect = connect_frame("c1", connect_params("ui", &["operator.read"]));
    ws.send(&connect, true).await;
    let hello = parse(&ws.next_not_tick().await);
    assert_eq!(hello["ok"], true, "{hello}");
    assert_eq!(hello["payload"]["type"], "hello-ok");
}

#[tokio::test]
async fn a_list_compressed_chunk_by_chunk_inflates_the_same_across_versions() {
    // One admin connection fills the list (`fill`): a few dozen chunks.
    let server = TestServer::start_with(long_list::room).await;
    let mut admin = fill(server.addr, 700).await;
    let rows =
        |hello: &Value| hello["payload"]["snapshot"]["presence"].as_array().unwrap()[1..].to_vec();
    for round in 0..4 {
        // Each version shares every chunk but those its two changes
        // edited with the version before: a new row at the front, and an
        // old one moved there from the middle. Every round after the first
        // makes its two changes first, so each one is checked.
        if round > 0 {
            let step = round - 1;
            admin
                .beacon(json!({"text": "new", "host": format!("new-{step}"), "instanceId": format!("new-{step}")}))
                .await;
            let moved = 300 + 100 * step;
            admin
                .beacon(json!({
                    "text": format!("Node: mac-{moved} · moved"),
                    "host": format!("mac-{moved}"),
                    "instanceId": format!("5d0f3c2e-7a41-4b8e-9c1d-{moved:012}"),
                }))
                .await;
        }
        let mut zipped = DeflateWs::open(server.addr, Some(NODE_OFFER)).await;
        let mut plain = DeflateWs::open(server.addr, None).await;
        let (hello_z, hello_p) = (observe(&mut zipped).await, observe(&mut plain).await);
        assert!(hello_z.compressed && !hello_p.compressed);
        let (list_z, list_p) = (rows(&parse(&hello_z)), rows(&parse(&hello_p)));
        assert_eq!(list_z.len(), 700 + round, "round {round}");
        assert_eq!(list_z, list_p, "round {round}");
        let (wire_z, wire_p) = (zipped.wire, plain.wire);
        assert!(wire_z * 4 < wire_p, "{wire_z} vs {wire_p} wire bytes");
    }
}
