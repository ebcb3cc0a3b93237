//! SSE streams under a budget (docs/protocol.md §9), over real sockets: a
//! raw TCP client that opens `/v1/presence/stream` and never reads has its
//! connection closed once its list stays unsent past the stall deadline,
//! and gives its unsent bytes back; a reading SSE client and a WebSocket
//! client keep getting every change meanwhile.

mod common;

use common::{Client, SseReader, TestServer, http_open, within};
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_never_reads_is_closed_and_readers_are_unhurt() {
    let server = TestServer::start_with(|c| {
        c.coalesce = Duration::from_millis(10);
        c.sse_stall_timeout = Duration::from_millis(500);
        // One admin connection writes the 200 rows: past --max-beacon-rows.
        c.max_beacon_rows = 1000;
    })
    .await;
    let mut admin = Client::admin(server.addr).await;
    // 200 rows of about 1 KB: every list is about 250 KB.
    let filler = "x".repeat(1_000);
    for i in 0..200 {
        admin
            .beacon(json!({"text": format!("{filler} {i}"), "instanceId": format!("row-{i}")}))
            .await;
    }
    let mut reader = SseReader::new(
        http_open(server.addr, "/v1/presence/stream", &[])
            .await
            .into_body(),
    );
    reader.next().await;
    // The healthy reader reads all along, and stops at the last change
    // (latest wins: it may skip some).
    let healthy = tokio::spawn(async move {
        loop {
            let event = reader.next().await;
            let rows = event.data["presence"].as_array().unwrap().clone();
            if rows.iter().any(|r| r["text"] == "change 59") {
                return;
            }
        }
    });

    // The hostile client: a tiny receive buffer, and it never reads.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(server.addr).await.unwrap();
    let head = format!(
        "GET /v1/presence/stream HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.addr
    );
    stalled.write_all(head.as_bytes()).await.unwrap();

    // 60 changes: about 15 MB of lists, far past what the sockets buffer.
    for round in 0..60 {
        admin
            .beacon(json!({"text": format!("change {round}"), "instanceId": "row-0"}))
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last = admin.presence().await.len();
    assert_eq!(last, 201);
    within("the reader to see the last change", healthy)
        .await
        .expect("the reader was never cut off");
    // The stalled stream was closed: draining what the kernel still holds
    // ends at EOF instead of waiting for more.
    let mut drained = Vec::new();
    within(
        "the stalled stream to be closed",
        stalled.read_to_end(&mut drained),
    )
    .await
    .ok();
    let unsent = server.state.http.sse.unsent_bytes();
    assert!(unsent < 1024 * 1024, "{unsent} unsent bytes left behind");
    assert_eq!(admin.call("health", json!({})).await["ok"], true);
}
