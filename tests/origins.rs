//! Browser origins and `Host` (docs/protocol.md §3.6), over real sockets:
//! a page from a foreign origin cannot drive the gateway, a DNS-rebound
//! name is not served in open mode, and the gateway's own page, loopback
//! pages (the OpenClaw Control UI on its own port) and configured origins
//! keep working. A healthy client stays connected throughout.

mod common;

use common::{Client, TestServer, connect_params, entry_with, http_get, within};
use serde_json::{Value, json};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Opens a WebSocket whose upgrade carries `Origin: origin`.
async fn open_with_origin(addr: SocketAddr, origin: &str) -> Client {
    let mut request = format!("ws://{addr}/").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("origin", origin.parse().unwrap());
    Client::open_request(addr, request).await.0
}

fn tracked(instance: &str) -> Value {
    let mut params = connect_params("ui", &["operator.read", "operator.admin"]);
    params["client"]["instanceId"] = json!(instance);
    params
}

/// A raw `GET path` with exactly these headers; the status code.
async fn raw_get(addr: SocketAddr, path: &str, headers: &str) -> u16 {
    within("a raw GET", async {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let head = format!("GET {path} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n");
        tcp.write_all(head.as_bytes()).await.unwrap();
        let mut reply = Vec::new();
        tcp.read_to_end(&mut reply).await.unwrap();
        let text = String::from_utf8_lossy(&reply);
        text.split(' ').nth(1).unwrap().parse().unwrap()
    })
    .await
}

#[tokio::test]
async fn a_foreign_origin_connect_is_refused_and_writes_nothing() {
    let server = TestServer::start().await;
    let (mut healthy, _) = Client::connect(server.addr, tracked("healthy")).await;
    let mut page = open_with_origin(server.addr, "http://evil.example").await;
    let reply = page.request("connect", tracked("evil-page")).await;
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["error"]["code"], "INVALID_REQUEST");
    assert_eq!(
        reply["error"]["details"]["code"],
        "CONTROL_UI_ORIGIN_NOT_ALLOWED"
    );
    assert_eq!(reply["error"]["details"]["reason"], "origin not allowed");
    assert_eq!(page.expect_close().await.code, Some(1008));
    let list = healthy.presence().await;
    assert!(entry_with(&list, "instanceId", "evil-page").is_none());
    assert!(entry_with(&list, "instanceId", "healthy").is_some());
    assert_eq!(healthy.call("health", json!({})).await["ok"], true);
}

#[tokio::test]
async fn an_invalid_origin_is_refused_with_its_reason() {
    let server = TestServer::start().await;
    let mut page = open_with_origin(server.addr, "null").await;
    let reply = page.request("connect", tracked("sandboxed")).await;
    assert_eq!(
        reply["error"]["details"]["reason"],
        "origin missing or invalid"
    );
    assert_eq!(page.expect_close().await.code, Some(1008));
}

#[tokio::test]
async fn loopback_pages_and_the_gateway_own_page_connect() {
    let server = TestServer::start().await;
    let own = format!("http://{}", server.addr);
    for origin in [
        own.as_str(),
        "http://localhost:5173",
        "http://127.0.0.1:4173",
    ] {
        let mut page = open_with_origin(server.addr, origin).await;
        page.handshake(tracked(origin)).await;
        assert_eq!(page.call("health", json!({})).await["ok"], true);
    }
}

#[tokio::test]
async fn a_configured_origin_connects_and_others_do_not() {
    let server = TestServer::start_with(|c| {
        c.allowed_origins = vec!["https://dash.example.com".into()];
    })
    .await;
    let mut page = open_with_origin(server.addr, "https://dash.example.com").await;
    page.handshake(tracked("dash")).await;
    let mut other = open_with_origin(server.addr, "https://other.example.com").await;
    let reply = other.request("connect", tracked("other")).await;
    assert_eq!(
        reply["error"]["details"]["code"],
        "CONTROL_UI_ORIGIN_NOT_ALLOWED"
    );
}

#[tokio::test]
async fn http_from_a_foreign_origin_is_forbidden() {
    let server = TestServer::start().await;
    let foreign = http_get(
        server.addr,
        "/v1/presence",
        &[("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(foreign.status, 403, "{}", foreign.body);
    let own = format!("http://{}", server.addr);
    let same = http_get(server.addr, "/v1/presence", &[("origin", own.as_str())]).await;
    assert_eq!(same.status, 200);
    assert_eq!(http_get(server.addr, "/v1/presence", &[]).await.status, 200);
}

#[tokio::test]
async fn a_rebound_host_is_refused_in_open_mode_only() {
    let open = TestServer::start().await;
    let (mut healthy, _) = Client::connect(open.addr, tracked("healthy")).await;
    for path in ["/v1/presence", "/", "/v1/presence/stream"] {
        let status = raw_get(open.addr, path, "Host: evil.example:18789\r\n").await;
        assert_eq!(status, 403, "{path}");
    }
    let local = format!("Host: localhost:{}\r\n", open.addr.port());
    assert_eq!(raw_get(open.addr, "/v1/presence", &local).await, 200);
    assert_eq!(healthy.call("health", json!({})).await["ok"], true);

    let guarded = TestServer::start_with(|c| c.tokens = vec!["t:read".parse().unwrap()]).await;
    let rebound = "Host: evil.example\r\n";
    assert_eq!(raw_get(guarded.addr, "/v1/presence", rebound).await, 401);
    let with_token = "Host: evil.example\r\nAuthorization: Bearer t\r\n";
    assert_eq!(raw_get(guarded.addr, "/v1/presence", with_token).await, 200);
}
