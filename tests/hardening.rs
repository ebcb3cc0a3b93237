//! Hostile clients: each test is a regression test for one hole an
//! adversarial run found (ping floods, silent and slowloris sockets,
//! node impersonation, unmasked frames, auth detail codes), over real
//! sockets, with a raw TCP client where a WebSocket library would refuse
//! to misbehave. A healthy client keeps answering throughout.

mod common;

use common::raw::{RawWs, closed_by_server, frame, read_head, upgrade_request};
use common::{Client, TestServer, connect_frame, connect_params, entry_with, must_find, within};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Resident memory of this process (server included), in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// A healthy client's `health` round trip, within the common deadline.
async fn health_round_trip(client: &mut Client) {
    assert_eq!(client.call("health", json!({})).await["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_flood_from_a_client_that_never_reads_stays_within_budget() {
    let server = TestServer::start().await;
    let mut healthy = Client::admin(server.addr).await;
    let before = rss_kib();
    let mut flooders = Vec::new();
    for _ in 0..4 {
        // Upgraded, challenged, no token, never reads.
        flooders.push(RawWs::open(server.addr).await);
    }
    // 4 × 1,000,000 empty masked pings: 24 MB on the wire. Before the fix
    // each queued a pong (about 40 bytes) outside the budget: 160 MB and
    // more. Now each connection holds one pending pong.
    let burst: Vec<u8> = frame(0x9, b"", true).repeat(10_000);
    for _ in 0..100 {
        for flooder in &mut flooders {
            if flooder.send(&burst).await.is_err() {
                break;
            }
        }
        // A healthy client keeps answering during the flood.
        health_round_trip(&mut healthy).await;
    }
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    assert!(
        grown_mib < 32,
        "RSS grew by {grown_mib} MiB during the flood"
    );
}

/// The clock is paused: the timeout fires once every task is idle, and the
/// virtual time shows it was the configured one.
#[tokio::test(start_paused = true)]
async fn silent_socket_is_closed_after_the_http_timeout() {
    let server = TestServer::start_with(|c| c.http_timeout = Duration::from_millis(300)).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let opened = tokio::time::Instant::now();
    assert!(
        closed_by_server(&mut silent).await,
        "a silent socket is closed"
    );
    let waited = opened.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(1000),
        "closed after {waited:?}, expected the 300 ms timeout"
    );
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed_after_the_http_timeout() {
    let server = TestServer::start_with(|c| c.http_timeout = Duration::from_millis(300)).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    tcp.write_all(request.as_bytes()).await.unwrap();
    let (head, _) = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        closed_by_server(&mut tcp).await,
        "an idle keep-alive is closed"
    );
}

#[tokio::test]
async fn slowloris_sockets_cannot_lock_out_websocket_clients() {
    // Half of 40 slots may wait for a request; the timeout is long, so only
    // the waiting pool can make room.
    let server = TestServer::start_with(|c| {
        c.max_connections = 40;
        c.http_timeout = Duration::from_secs(30);
    })
    .await;
    let mut lorises = Vec::new();
    for _ in 0..60 {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        lorises.push(tcp);
    }
    // Within the common deadline (10 s), long before the 30 s timeout
    // could free a slot: only the waiting pool's eviction makes room.
    let mut observer = within("a WebSocket client among the slowloris sockets", async {
        Client::observer(server.addr).await
    })
    .await;
    assert!(!observer.presence().await.is_empty());
    let mut closed = 0;
    for tcp in &mut lorises {
        let mut byte = [0u8; 1];
        let probe = tokio::time::timeout(Duration::from_millis(50), async {
            use tokio::io::AsyncReadExt;
            tcp.read(&mut byte).await
        });
        if matches!(probe.await, Ok(Ok(0) | Err(_))) {
            closed += 1;
        }
    }
    assert!(
        closed >= 30,
        "the oldest waiting sockets were closed: {closed}"
    );
}

fn tokens(c: &mut rollcall::config::ServeConfig) {
    c.tokens = ["reader:read", "node:node", "admin:admin"]
        .iter()
        .map(|t| t.parse().unwrap())
        .collect();
}

fn node_params(token: &str, instance_id: &str) -> Value {
    let mut params = connect_params("node", &[]);
    params["role"] = json!("node");
    params["client"]["instanceId"] = json!(instance_id);
    params["client"]["displayName"] = json!(instance_id);
    params["auth"] = json!({"token": token});
    params
}

#[tokio::test]
async fn read_token_can_neither_connect_as_a_node_nor_beacon() {
    let server = TestServer::start_with(tokens).await;
    let mut client = Client::open(server.addr).await;
    client
        .send_text(connect_frame("c1", node_params("reader", "sneaky")))
        .await;
    let closed = client.expect_close().await;
    assert_eq!(closed.code, Some(1008));
    let reply = &closed.frames[0];
    assert_eq!(reply["error"]["message"], "unauthorized", "{reply}");
    assert_eq!(reply["error"]["details"]["code"], "AUTH_SCOPE_MISMATCH");

    let mut params = connect_params("cli", &["operator.read", "operator.admin"]);
    params["auth"] = json!({"token": "reader"});
    let (mut reader, _) = Client::connect(server.addr, params).await;
    let reply = reader
        .request(
            "system-event",
            json!({"text": "x", "instanceId": "STUDIO-MAC"}),
        )
        .await;
    assert_eq!(reply["error"]["code"], "FORBIDDEN", "{reply}");
}

#[tokio::test]
async fn node_beacon_for_another_key_is_refused_and_its_own_is_applied() {
    let server = TestServer::start_with(tokens).await;
    let mut admin_params = connect_params("cli", &["operator.admin", "operator.read"]);
    admin_params["auth"] = json!({"token": "admin"});
    let (mut admin, _) = Client::connect(server.addr, admin_params).await;
    admin
        .beacon(json!({"text": "studio", "instanceId": "STUDIO-MAC", "host": "studio"}))
        .await;
    let (mut node, hello) = Client::connect(server.addr, node_params("node", "node-1")).await;
    assert_eq!(
        hello["snapshot"]["presence"],
        json!([]),
        "a node reads no list"
    );
    for other in [
        json!({"instanceId": "studio-mac"}),
        json!({"deviceId": "STUDIO-MAC"}),
    ] {
        let mut params = json!({"text": "Node: attacker (6.6.6.6) · mode ui", "host": "attacker"});
        params
            .as_object_mut()
            .unwrap()
            .extend(other.as_object().unwrap().clone());
        let reply = node.request("system-event", params).await;
        assert_eq!(reply["error"]["code"], "FORBIDDEN", "{reply}");
    }
    // Its own entry, even when the text parses to another host.
    let reply = node
        .request(
            "system-event",
            json!({
                "text": "Node: elsewhere (10.0.0.9) · app 1.0 · last input 5 s ago · mode node · reason periodic",
                "instanceId": "NODE-1",
            }),
        )
        .await;
    assert_eq!(reply["payload"], json!({"ok": true}), "{reply}");
    let list = admin.presence().await;
    let studio = must_find(&list, "instanceId", "STUDIO-MAC");
    assert_eq!(studio["host"], "studio", "untouched: {studio}");
    // One row for the node, under its own key: the parsed host did not
    // start a second one.
    let own = must_find(&list, "instanceId", "NODE-1");
    assert_eq!(own["ip"], "10.0.0.9", "{own}");
    assert_eq!(own["reason"], "periodic", "{own}");
    let hosts = list.iter().filter(|e| e["host"] == "elsewhere").count();
    assert_eq!(hosts, 1, "{list:?}");
    assert!(entry_with(&list, "host", "attacker").is_none());
}

#[tokio::test]
async fn hello_of_a_connection_without_a_read_scope_has_an_empty_list() {
    let server = TestServer::start().await;
    let (_client, hello) = Client::connect(server.addr, connect_params("ui", &[])).await;
    assert_eq!(hello["snapshot"]["presence"], json!([]), "{hello}");
    let (_reader, hello) =
        Client::connect(server.addr, connect_params("ui", &["operator.read"])).await;
    assert!(!hello["snapshot"]["presence"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn unmasked_client_frame_fails_the_connection_with_1002() {
    let server = TestServer::start().await;
    let mut raw = RawWs::open(server.addr).await;
    let connect = connect_frame("c1", connect_params("cli", &[]));
    raw.send(&frame(0x1, connect.as_bytes(), false))
        .await
        .unwrap();
    assert_eq!(raw.close_code().await, Some(1002));
}

#[tokio::test]
async fn refused_upgrade_names_the_supported_websocket_version() {
    let server = TestServer::start().await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(upgrade_request(server.addr, "8").as_bytes())
        .await
        .unwrap();
    let (head, _) = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{head}"
    );
}
