//! Plain HTTP on the gateway's port (docs/protocol.md §9): health, the presence
//! REST routes with ETags, stats, Server-Sent Events, metrics, bearer auth
//! and unknown routes.

mod common;

use common::{
    Client, SseReader, TestServer, entry_with, http_get, http_open, long_list, metric, within,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn healthz_answers_200_ok() {
    let server = TestServer::start().await;
    let reply = http_get(server.addr, "/healthz", &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "ok");
}

#[tokio::test]
async fn unknown_route_answers_404() {
    let server = TestServer::start().await;
    for path in ["/nope", "/v1", "/v1/presence/extra", "/ws/x"] {
        assert_eq!(http_get(server.addr, path, &[]).await.status, 404, "{path}");
    }
}

#[tokio::test]
async fn dashboard_page_is_served_on_root() {
    let server = TestServer::start().await;
    let reply = http_get(server.addr, "/", &[]).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        reply.body.to_ascii_lowercase().contains("<html"),
        "an HTML page"
    );
}

#[tokio::test]
async fn presence_route_lists_entries_with_version_etag() {
    let server = TestServer::start().await;
    let reply = http_get(server.addr, "/v1/presence", &[]).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(reply.header("etag"), Some("\"1\""));
    let list = reply.json();
    let list = list.as_array().expect("a bare array");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["reason"], "self");
    let mut admin = Client::admin(server.addr).await;
    admin.beacon(json!({"text": "rest", "host": "rest"})).await;
    let reply = http_get(server.addr, "/v1/presence", &[]).await;
    assert_eq!(reply.header("etag"), Some("\"2\""));
    let list = reply.json();
    assert!(entry_with(list.as_array().unwrap(), "host", "rest").is_some());
}

/// A list of many chunks goes out as pieces with its length known: GET's
/// `Content-Length` is its body's length (every row, valid JSON), and
/// HEAD answers the same headers without a body.
#[tokio::test]
async fn a_long_list_has_its_length_on_get_and_head() {
    let server = TestServer::start_with(long_list::room).await;
    let _admin = long_list::fill(server.addr, 300).await;
    let get = http_get(server.addr, "/v1/presence", &[]).await;
    assert_eq!(get.status, 200);
    assert_eq!(get.json().as_array().map(Vec::len), Some(301));
    let length = get.header("content-length").expect("a known length");
    assert_eq!(length, get.body.len().to_string());

    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "HEAD /v1/presence HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n",
        server.addr
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    within("the HEAD answer", tcp.read_to_end(&mut answer))
        .await
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains(&format!("\r\ncontent-length: {length}\r\n")),
        "{answer}"
    );
    assert!(answer.ends_with("\r\n\r\n"), "no body: {answer}");
}

#[tokio::test]
async fn presence_route_answers_304_to_a_matching_if_none_match() {
    let server = TestServer::start().await;
    let first = http_get(server.addr, "/v1/presence", &[]).await;
    let etag = first.header("etag").unwrap().to_owned();
    let again = http_get(server.addr, "/v1/presence", &[("if-none-match", &etag)]).await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    // After a change the old tag no longer matches.
    Client::admin(server.addr)
        .await
        .beacon(json!({"text": "change"}))
        .await;
    let changed = http_get(server.addr, "/v1/presence", &[("if-none-match", &etag)]).await;
    assert_eq!(changed.status, 200);
    assert_ne!(changed.header("etag"), Some(etag.as_str()));
    // A list of tags matches if any does.
    let list = format!("\"999\", {}", changed.header("etag").unwrap());
    let again = http_get(server.addr, "/v1/presence", &[("if-none-match", &list)]).await;
    assert_eq!(again.status, 304);
}

#[tokio::test]
async fn stats_count_entries_by_mode_and_status() {
    let server = TestServer::start().await;
    let mut admin = Client::admin(server.addr).await;
    admin.beacon(json!({"text": "a", "mode": "ui"})).await;
    admin.beacon(json!({"text": "b", "mode": "ui"})).await;
    admin.beacon(json!({"text": "c"})).await;
    let reply = http_get(server.addr, "/v1/presence/stats", &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({
            "entries": 4,
            "version": 4,
            "byMode": {"gateway": 1, "ui": 2, "unknown": 1},
            "byStatus": {"active": 4, "idle": 0, "stale": 0},
        })
    );
}

#[tokio::test]
async fn stream_sends_the_current_list_then_each_change() {
    let server = TestServer::start().await;
    let response = http_open(server.addr, "/v1/presence/stream", &[]).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut events = SseReader::new(response.into_body());
    let first = events.next().await;
    assert_eq!(first.event, "presence");
    assert_eq!(first.data["version"], 1);
    assert_eq!(first.data["presence"].as_array().unwrap().len(), 1);
    assert!(first.data["serverTime"].is_u64());
    let mut admin = Client::admin(server.addr).await;
    admin
        .beacon(json!({"text": "streamed", "host": "sse"}))
        .await;
    let next = events.next().await;
    assert_eq!(next.event, "presence");
    assert!(next.data["version"].as_u64().unwrap() > 1);
    assert!(entry_with(next.data["presence"].as_array().unwrap(), "host", "sse").is_some());
}

const METRIC_NAMES: [&str; 14] = [
    "rollcall_connections",
    "rollcall_handshakes_total",
    "rollcall_requests_total",
    "rollcall_queue_depth",
    "rollcall_writer_batch_events",
    "rollcall_writer_apply_seconds",
    "rollcall_presence_version",
    "rollcall_presence_entries",
    "rollcall_events_conflated_total",
    "rollcall_fanout_bytes_total",
    "rollcall_fanout_full_interval_seconds",
    "rollcall_watchers",
    "rollcall_presence_expired_total",
    "rollcall_presence_evicted_total",
];

#[tokio::test]
async fn metrics_expose_the_documented_names() {
    let server = TestServer::start().await;
    let mut admin = Client::admin(server.addr).await;
    admin.beacon(json!({"text": "m"})).await;
    admin.call("health", json!({})).await;
    let reply = http_get(server.addr, "/metrics", &[]).await;
    assert_eq!(reply.status, 200);
    let text = &reply.body;
    for name in METRIC_NAMES {
        let family = name.strip_suffix("_total").unwrap_or(name);
        assert!(
            text.lines()
                .any(|l| { l.starts_with(name) || l.starts_with(&format!("# TYPE {family} ")) }),
            "{name} in\n{text}"
        );
    }
    assert_eq!(metric(text, "rollcall_presence_version"), Some(2.0));
    assert_eq!(metric(text, "rollcall_presence_entries"), Some(2.0));
    assert_eq!(
        metric(text, "rollcall_connections{mode=\"cli\"}"),
        Some(1.0),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("rollcall_handshakes_total{") && l.contains("ok")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("rollcall_requests_total{") && l.contains("system-event")),
        "{text}"
    );
    // Nothing was conflated, and the counter says so rather than being absent.
    assert_eq!(
        metric(text, "rollcall_events_conflated_total{event=\"presence\"}"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(metric(text, "rollcall_presence_expired_total"), Some(0.0));
    assert_eq!(metric(text, "rollcall_presence_evicted_total"), Some(0.0));
    assert_eq!(metric(text, "rollcall_queue_depth"), Some(0.0));
    assert!(
        text.contains("rollcall_writer_apply_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains("rollcall_writer_batch_events_bucket"),
        "{text}"
    );
}

fn with_tokens(c: &mut rollcall::config::ServeConfig) {
    c.tokens = vec!["dash:read".parse().unwrap(), "root".parse().unwrap()];
}

#[tokio::test]
async fn protected_routes_answer_401_without_a_bearer_token() {
    let server = TestServer::start_with(with_tokens).await;
    for path in [
        "/v1/presence",
        "/v1/presence/stats",
        "/v1/presence/stream",
        "/metrics",
    ] {
        let reply = http_get(server.addr, path, &[]).await;
        assert_eq!(reply.status, 401, "{path}");
        let reply = http_get(server.addr, path, &[("authorization", "Bearer wrong")]).await;
        assert_eq!(reply.status, 401, "{path} with a wrong token");
        let reply = http_get(server.addr, path, &[("authorization", "Basic ZGFzaDo=")]).await;
        assert_eq!(reply.status, 401, "{path} with another scheme");
    }
    // The page and the health check need no token.
    assert_eq!(http_get(server.addr, "/", &[]).await.status, 200);
    assert_eq!(http_get(server.addr, "/healthz", &[]).await.status, 200);
}

#[tokio::test]
async fn protected_routes_answer_200_with_a_read_token() {
    let server = TestServer::start_with(with_tokens).await;
    for token in ["dash", "root"] {
        let auth = format!("Bearer {token}");
        for path in ["/v1/presence", "/v1/presence/stats", "/metrics"] {
            let reply = http_get(server.addr, path, &[("authorization", &auth)]).await;
            assert_eq!(reply.status, 200, "{path} with {token}");
        }
        let response = http_open(
            server.addr,
            "/v1/presence/stream",
            &[("authorization", &auth)],
        )
        .await;
        assert_eq!(response.status(), 200);
        let first = SseReader::new(response.into_body()).next().await;
        assert_eq!(first.event, "presence");
    }
}

#[tokio::test]
async fn query_token_is_accepted_on_the_stream_only() {
    let server = TestServer::start_with(with_tokens).await;
    let response = http_open(server.addr, "/v1/presence/stream?token=dash", &[]).await;
    assert_eq!(response.status(), 200);
    let first = SseReader::new(response.into_body()).next().await;
    assert_eq!(first.event, "presence");
    let response = http_open(server.addr, "/v1/presence/stream?token=nope", &[]).await;
    assert_eq!(response.status(), 401);
    for path in [
        "/v1/presence?token=dash",
        "/v1/presence/stats?token=dash",
        "/metrics?token=dash",
    ] {
        assert_eq!(http_get(server.addr, path, &[]).await.status, 401, "{path}");
    }
}

#[tokio::test]
async fn token_without_a_read_scope_answers_401() {
    // `SECRET:` with an empty list grants no scope at all.
    let server = TestServer::start_with(|c| c.tokens = vec!["noscope:".parse().unwrap()]).await;
    for path in ["/v1/presence", "/v1/presence/stats", "/metrics"] {
        let reply = http_get(server.addr, path, &[("authorization", "Bearer noscope")]).await;
        assert_eq!(reply.status, 401, "{path}");
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains("error=\"insufficient_scope\"")
                && challenge.contains("scope=\"operator.read\""),
            "{path}: {challenge}"
        );
    }
    let response = http_open(server.addr, "/v1/presence/stream?token=noscope", &[]).await;
    assert_eq!(response.status(), 401);
    // A wrong token and no token are told apart the same way (RFC 6750).
    let wrong = http_get(
        server.addr,
        "/v1/presence",
        &[("authorization", "Bearer nope")],
    )
    .await;
    let challenge = wrong.header("www-authenticate").unwrap_or_default();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    let none = http_get(server.addr, "/v1/presence", &[]).await;
    assert_eq!(
        none.header("www-authenticate"),
        Some("Bearer realm=\"rollcall\"")
    );
}
