//! gzip on the JSON and SSE routes (docs/protocol.md §9), read with flate2's
//! own decoder: `Accept-Encoding` with q-values, `Vary`, a 406 when
//! nothing acceptable is left, per-coding ETags, and an SSE stream whose
//! every event inflates as it arrives.

mod common;

use common::{SseReader, TestServer, http_open, long_list, within};
use flate2::read::GzDecoder;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::io::Read;
use std::net::SocketAddr;

/// `GET path` with `headers`: status, headers and the raw body.
async fn get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, hyper::HeaderMap, Vec<u8>) {
    let response = http_open(addr, path, headers).await;
    let (status, head) = (response.status().as_u16(), response.headers().clone());
    let body = within("the body", response.into_body().collect())
        .await
        .expect("the body reads")
        .to_bytes();
    (status, head, body.to_vec())
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

fn header<'a>(headers: &'a hyper::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The list without the self entry, whose `ts` every answer refreshes.
fn rows(list: &[u8]) -> Vec<Value> {
    let list: Vec<Value> = serde_json::from_slice(list).expect("a JSON list");
    list[1..].to_vec()
}

#[tokio::test]
async fn the_list_is_gzipped_when_accepted_and_equal_to_the_plain_one() {
    let server = TestServer::start().await;
    let _admin = long_list::fill(server.addr, 60).await;
    let (status, plain_head, plain) = get(server.addr, "/v1/presence", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(header(&plain_head, "content-encoding"), None);
    assert_eq!(header(&plain_head, "vary"), Some("accept-encoding"));
    let gz_headers = [("accept-encoding", "br;q=1.0, gzip;q=0.8, *;q=0.1")];
    let (status, head, body) = get(server.addr, "/v1/presence", &gz_headers).await;
    assert_eq!(status, 200);
    assert_eq!(header(&head, "content-encoding"), Some("gzip"));
    assert_eq!(header(&head, "vary"), Some("accept-encoding"));
    assert!(
        body.len() * 3 < plain.len(),
        "{} vs {}",
        body.len(),
        plain.len()
    );
    assert_eq!(rows(&gunzip(&body)), rows(&plain));

    // Each coding has its own ETag; either one validates.
    let etag = header(&head, "etag").unwrap().to_owned();
    let plain_etag = header(&plain_head, "etag").unwrap().to_owned();
    assert_ne!(etag, plain_etag);
    for tag in [&etag, &plain_etag] {
        let (status, _, _) = get(
            server.addr,
            "/v1/presence",
            &[("accept-encoding", "gzip"), ("if-none-match", tag)],
        )
        .await;
        assert_eq!(status, 304, "{tag}");
    }
}

#[tokio::test]
async fn weights_decide_and_refusing_everything_is_406() {
    let server = TestServer::start().await;
    for (accept, coding) in [
        ("gzip;q=0", None),
        ("identity;q=1, gzip;q=0.5", None),
        ("identity;q=0, gzip", Some("gzip")),
        ("*", Some("gzip")),
    ] {
        let (status, head, _) =
            get(server.addr, "/v1/presence", &[("accept-encoding", accept)]).await;
        assert_eq!(status, 200, "{accept}");
        assert_eq!(header(&head, "content-encoding"), coding, "{accept}");
    }
    for path in ["/v1/presence", "/v1/presence/doctor", "/v1/presence/stream"] {
        let (status, head, body) = get(
            server.addr,
            path,
            &[("accept-encoding", "identity;q=0, *;q=0")],
        )
        .await;
        assert_eq!(status, 406, "{path}");
        assert_eq!(header(&head, "vary"), Some("accept-encoding"));
        let error: Value = serde_json::from_slice(&body).unwrap();
        assert!(
            error["error"].as_str().unwrap().contains("Accept-Encoding"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn the_doctor_report_is_gzipped() {
    let server = TestServer::start().await;
    let (_, _, plain) = get(server.addr, "/v1/presence/doctor", &[]).await;
    let (status, head, body) = get(
        server.addr,
        "/v1/presence/doctor",
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&head, "content-encoding"), Some("gzip"));
    let report: Value = serde_json::from_slice(&gunzip(&body)).unwrap();
    let plain: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(report["rows"], plain["rows"]);
}

#[tokio::test]
async fn a_gzipped_stream_delivers_each_event_as_it_happens() {
    // Rows over several chunks of the list, each compressed on its own.
    let server = TestServer::start_with(long_list::room).await;
    let mut admin = long_list::fill(server.addr, 200).await;
    let response = http_open(
        server.addr,
        "/v1/presence/stream",
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(header(response.headers(), "content-encoding"), Some("gzip"));
    assert_eq!(header(response.headers(), "vary"), Some("accept-encoding"));
    let mut events = SseReader::gzipped(response.into_body());
    let first = events.next().await;
    assert_eq!(first.event, "presence");
    admin
        .beacon(json!({"text": "streamed", "host": "sse", "instanceId": "sse-1"}))
        .await;
    // Coalescing may deliver the fill's last lists first; the stream is
    // open, so the change must arrive without the body ending.
    loop {
        let next = events.next().await;
        let list = next.data["presence"].as_array().unwrap();
        if list.iter().any(|row| row["host"] == "sse") {
            assert_eq!(list.len(), 202);
            let mut hosts: Vec<&str> = list[1..]
                .iter()
                .filter_map(|r| r["host"].as_str())
                .collect();
            hosts.sort_unstable();
            let mut want: Vec<String> = (0..200).map(|i| format!("mac-{i}")).collect();
            want.push("sse".into());
            want.sort_unstable();
            assert_eq!(hosts, want);
            break;
        }
    }
}
