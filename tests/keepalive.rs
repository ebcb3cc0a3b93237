//! Keepalive and the renewal of live rows (docs/protocol.md §1, §5.4), over real
//! sockets: pings find a peer that stopped answering within two intervals,
//! a peer that answers stays, and a connected client that never beacons
//! keeps a fresh row past the TTL. The keepalive tests run on a paused
//! clock (the timers are the server's); the renewals on the
//! server's clock, moved by the test (`TestServer::advance`).

mod common;

use common::raw::{RawWs, frame, parse_server_frame};
use common::{
    Client, TestServer, connect_frame, connect_params, entry_with, eventually, http_get, must_find,
};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::AsyncReadExt;

const KEEPALIVE: Duration = Duration::from_secs(2);

fn ui(instance: &str) -> Value {
    let mut params = connect_params("ui", &[]);
    params["client"]["instanceId"] = json!(instance);
    params
}

async fn list(server: &TestServer) -> Vec<Value> {
    match http_get(server.addr, "/v1/presence", &[]).await.json() {
        Value::Array(list) => list,
        other => panic!("not a list: {other}"),
    }
}

/// The server frames on `raw` until it closes: (opcode, payload) each.
async fn frames_until_close(raw: &mut RawWs) -> Vec<(u8, Vec<u8>)> {
    let mut buf = std::mem::take(&mut raw.pending);
    let mut frames = Vec::new();
    loop {
        while let Some((opcode, payload, used)) = parse_server_frame(&buf) {
            buf.drain(..used);
            frames.push((opcode, payload));
            if opcode == 0x8 {
                return frames;
            }
        }
        let mut chunk = [0u8; 4096];
        match raw.tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return frames,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A raw client completes `connect`, then reads nothing and answers no
/// ping. Its row says `disconnect` once the server gave up on it, and what
/// the server had sent by then is one ping and a 1011 close: closed at the
/// second interval, whatever the clock did meanwhile.
#[tokio::test(start_paused = true)]
async fn a_client_that_never_answers_is_closed_at_the_second_ping_and_its_row_says_disconnect() {
    let server = TestServer::start_with(|c| c.keepalive = KEEPALIVE).await;
    // The connect waits for the presence writer, a real thread: while it
    // works, the paused clock may only creep, not jump to the next ping.
    let creep = tokio::spawn(async {
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let mut raw = RawWs::open(server.addr).await;
    let connect = connect_frame("c1", ui("mute-1"));
    raw.send(&frame(0x1, connect.as_bytes(), true))
        .await
        .unwrap();
    // The challenge and hello-ok, then it reads no more.
    while !raw.pending.windows(8).any(|w| w == b"hello-ok") {
        let mut chunk = [0u8; 4096];
        let n = raw.tcp.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before hello-ok");
        raw.pending.extend_from_slice(&chunk[..n]);
    }
    let row = eventually("the mute row to say disconnect", async || {
        let list = list(&server).await;
        entry_with(&list, "instanceId", "mute-1")
            .filter(|row| row["reason"] == "disconnect")
            .cloned()
    })
    .await;
    assert_eq!(row["reason"], "disconnect");
    let frames = tokio::time::timeout(Duration::from_secs(60), frames_until_close(&mut raw))
        .await
        .expect("the server closed");
    let opcodes: Vec<u8> = frames.iter().map(|(op, _)| *op).collect();
    // challenge, hello-ok, one ping, then the close.
    assert_eq!(opcodes, [0x1, 0x1, 0x9, 0x8], "{frames:?}");
    let close = &frames[3].1;
    assert_eq!(u16::from_be_bytes([close[0], close[1]]), 1011);
    assert_eq!(&close[2..], b"keepalive timeout");
    creep.abort();
}

/// A raw client that answers every ping with a pong and sends nothing
/// else stays connected through ten intervals of virtual time, and is
/// served after. The clock is paused but creeps a millisecond at a time,
/// so a pong still in the kernel's loopback queue is read long before the
/// clock reaches the next ping.
#[tokio::test(start_paused = true)]
async fn a_client_that_only_answers_pings_stays() {
    const KEEPALIVE: Duration = Duration::from_millis(500);
    let server = TestServer::start_with(|c| c.keepalive = KEEPALIVE).await;
    let creep = tokio::spawn(async {
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let mut raw = RawWs::open(server.addr).await;
    let connect = connect_frame("c1", ui("quiet-1"));
    raw.send(&frame(0x1, connect.as_bytes(), true))
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut buf = std::mem::take(&mut raw.pending);
    let mut pings = 0;
    while started.elapsed() < 10 * KEEPALIVE {
        while let Some((opcode, payload, used)) = parse_server_frame(&buf) {
            buf.drain(..used);
            assert_ne!(opcode, 0x8, "closed after {pings} pings");
            if opcode == 0x9 {
                pings += 1;
                raw.send(&frame(0xA, &payload, true)).await.unwrap();
            }
        }
        let mut chunk = [0u8; 4096];
        let n = common::within("a ping", raw.tcp.read(&mut chunk))
            .await
            .expect("the socket reads");
        assert!(n > 0, "the server closed after {pings} pings");
        buf.extend_from_slice(&chunk[..n]);
    }
    assert!(pings >= 9, "{pings} pings in ten intervals");
    let health = json!({"type": "req", "id": "h1", "method": "health"}).to_string();
    raw.send(&frame(0x1, health.as_bytes(), true))
        .await
        .unwrap();
    let reply = loop {
        if let Some((opcode, payload, used)) = parse_server_frame(&buf) {
            buf.drain(..used);
            if opcode == 0x1 {
                let frame: Value = serde_json::from_slice(&payload).unwrap();
                if frame["id"] == "h1" {
                    break frame;
                }
            }
            continue;
        }
        let mut chunk = [0u8; 4096];
        let n = raw.tcp.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before the health reply");
        buf.extend_from_slice(&chunk[..n]);
    };
    assert_eq!(reply["ok"], true, "{reply}");
    let list = list(&server).await;
    assert_eq!(
        must_find(&list, "instanceId", "quiet-1")["reason"],
        "connect"
    );
    creep.abort();
}

/// A WebSocket library's client that only reads (answering pings) and
/// never beacons stays listed for three TTLs of the server's clock, its
/// `ts` renewed at each step; once it closes, its row ages and goes.
#[tokio::test]
async fn a_connected_client_that_never_beacons_stays_listed_past_the_ttl_with_a_fresh_ts() {
    // A TTL the wall clock never reaches in a test: the server's clock,
    // moved by the test, takes the row past it.
    let ttl = Duration::from_secs(600);
    let server = TestServer::start_with(|c| {
        c.presence_ttl = ttl;
        c.keepalive = Duration::from_millis(400);
    })
    .await;
    let (mut client, _) = Client::connect(server.addr, ui("silent-1")).await;
    let connected = must_find(&list(&server).await, "instanceId", "silent-1")["ts"]
        .as_u64()
        .unwrap();
    // Half a TTL at a time, three TTLs in all: the writer renews the live
    // row before it expires anything, so it is listed as connected at
    // every step with a `ts` at least the moved clock's.
    let step = ttl / 2;
    for n in 1..=6u32 {
        server.advance(step);
        let renewed_past = connected + (step * n).as_millis() as u64;
        eventually("the row renewed at the moved clock", async || {
            client.idle_for(Duration::from_millis(20)).await;
            let list = list(&server).await;
            let row = must_find(&list, "instanceId", "silent-1");
            assert_eq!(row["reason"], "connect", "{row}");
            (row["ts"].as_u64()? >= renewed_past).then_some(())
        })
        .await;
    }
    client.close().await;
    eventually("the row to say disconnect", async || {
        let list = list(&server).await;
        (must_find(&list, "instanceId", "silent-1")["reason"] == "disconnect").then_some(())
    })
    .await;
    server.advance(ttl + Duration::from_secs(1));
    eventually("the row to expire after its disconnect", async || {
        entry_with(&list_of(&server).await, "instanceId", "silent-1")
            .is_none()
            .then_some(())
    })
    .await;
}

async fn list_of(server: &TestServer) -> Vec<Value> {
    list(server).await
}

/// Renewals raise the version but wake no watcher: a watcher's next
/// `presence` event after them is the next change's, numbered right after
/// the last one it had, and it carries the renewed `ts`.
#[tokio::test]
async fn renewals_wake_no_watcher_but_the_next_change_carries_them() {
    let server = TestServer::start_with(|c| {
        // Renewals every half keepalive on the server's clock, which the
        // test moves; on the wall clock no ping falls due during the test.
        c.presence_ttl = Duration::from_secs(600);
        c.keepalive = Duration::from_secs(120);
        c.tick_interval = Duration::from_secs(3600);
    })
    .await;
    let mut watcher = Client::connect(server.addr, connect_params("cli", &["operator.read"]))
        .await
        .0;
    let (mut quiet, _) = Client::connect(server.addr, ui("renewed-1")).await;
    let first = loop {
        let event = watcher.next_event("presence").await;
        let list = event["payload"]["presence"].as_array().unwrap();
        if entry_with(list, "instanceId", "renewed-1").is_some() {
            break event;
        }
    };
    let seq = first["seq"].as_u64().unwrap();
    let list = first["payload"]["presence"].as_array().unwrap();
    let connect_ts = must_find(list, "instanceId", "renewed-1")["ts"]
        .as_u64()
        .unwrap();
    let version = first["stateVersion"]["presence"].as_u64().unwrap();
    // Three renewals: each step of the server's clock is past the renewal
    // interval (60 s), so each one renews the live row and raises the
    // version, with no other change made.
    let mut renewed = version;
    for _ in 0..3 {
        server.advance(Duration::from_secs(61));
        renewed = eventually("a renewal", async || {
            quiet.idle_for(Duration::from_millis(20)).await;
            watcher.idle_for(Duration::from_millis(20)).await;
            let reply = http_get(server.addr, "/v1/presence", &[]).await;
            let etag: u64 = reply.header("etag")?.trim_matches('"').parse().ok()?;
            (etag > renewed).then_some(etag)
        })
        .await;
    }
    let events: Vec<Value> = watcher
        .take_pending()
        .into_iter()
        .filter(|f| f["event"] == "presence")
        .collect();
    assert!(events.is_empty(), "renewals woke the watcher: {events:?}");
    let mut admin = Client::admin(server.addr).await;
    admin
        .beacon(json!({"text": "a change", "instanceId": "changed-1"}))
        .await;
    let next = watcher.next_event("presence").await;
    assert_eq!(next["seq"].as_u64(), Some(seq + 1), "{next}");
    let list = next["payload"]["presence"].as_array().unwrap();
    let ts = must_find(list, "instanceId", "renewed-1")["ts"]
        .as_u64()
        .unwrap();
    assert!(ts > connect_ts, "the renewed ts {ts} came with the change");
}

/// Rows of connections that are gone are evicted before any live row:
/// thirty connect-and-close clients with fresh ids leave every connected
/// client listed.
#[tokio::test]
async fn the_cap_spares_live_rows() {
    let server = TestServer::start_with(|c| c.max_entries = 5).await;
    let mut live = Vec::new();
    for i in 0..3 {
        live.push(
            Client::connect(server.addr, ui(&format!("live-{i}")))
                .await
                .0,
        );
    }
    for i in 0..30 {
        let (client, _) = Client::connect(server.addr, ui(&format!("drive-by-{i}"))).await;
        client.close().await;
    }
    let list = eventually("the last drive-by to be listed", async || {
        let list = list(&server).await;
        entry_with(&list, "instanceId", "drive-by-29")
            .is_some()
            .then_some(list)
    })
    .await;
    assert_eq!(list.len(), 6, "self + the cap");
    for i in 0..3 {
        must_find(&list, "instanceId", &format!("live-{i}"));
    }
    let evicted = common::metric(
        &http_get(server.addr, "/metrics", &[]).await.body,
        "rollcall_presence_evicted_total",
    );
    assert!(evicted.is_some_and(|n| n >= 28.0), "{evicted:?}");
}

/// One connection beacons at most `--max-beacon-rows` keys besides its own
/// per TTL: the next is refused, naming the limit, and the admitted keys
/// stay writable.
#[tokio::test]
async fn a_connection_beacons_a_bounded_number_of_rows() {
    let server = TestServer::start_with(|c| c.max_beacon_rows = 3).await;
    let mut admin = Client::admin(server.addr).await;
    for i in 0..3 {
        admin
            .beacon(json!({"text": "relay", "instanceId": format!("host-{i}")}))
            .await;
    }
    let refused = admin
        .request(
            "system-event",
            json!({"text": "relay", "instanceId": "host-3"}),
        )
        .await;
    assert_eq!(refused["ok"], false, "{refused}");
    assert_eq!(refused["error"]["code"], "UNAVAILABLE");
    assert_eq!(refused["error"]["details"]["code"], "BEACON_ROWS_LIMIT");
    assert_eq!(refused["error"]["details"]["limit"], 3);
    assert!(refused["error"]["retryAfterMs"].as_u64().unwrap() > 0);
    admin
        .beacon(json!({"text": "again", "instanceId": "host-1"}))
        .await;
    let list = list(&server).await;
    assert!(entry_with(&list, "instanceId", "host-3").is_none());
    // Another connection has its own bound.
    let mut other = Client::admin(server.addr).await;
    other
        .beacon(json!({"text": "relay", "instanceId": "host-3"}))
        .await;
}
