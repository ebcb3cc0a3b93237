//! `node.event` over real sockets (docs/protocol.md §4): the three events a node
//! host sends renew its row, host stats are kept next to the row (not in
//! the list) and served by `/v1/presence/hosts` until the row expires; bad
//! and oversized payloads and unknown events are answered, not errors; any
//! other role is refused as OpenClaw refuses it.

mod common;

use common::{Client, TestServer, connect_params, eventually, http_get, must_find};
use serde_json::{Value, json};
use std::time::Duration;

fn node(instance: &str) -> Value {
    let mut params = connect_params("node", &[]);
    params["role"] = json!("node");
    params["client"]["instanceId"] = json!(instance);
    params
}

fn stats() -> Value {
    json!({
        "cpuCount": 8,
        "loadAverage": [0.5, 0.25, 0.125],
        "memoryTotalBytes": 16_000_000_000u64,
        "memoryFreeBytes": 4_000_000_000u64,
    })
}

async fn event(client: &mut Client, event: &str, payload_json: Value) -> Value {
    let reply = client
        .request(
            "node.event",
            json!({"event": event, "payloadJSON": payload_json}),
        )
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    reply["payload"].clone()
}

async fn list(server: &TestServer) -> Vec<Value> {
    match http_get(server.addr, "/v1/presence", &[]).await.json() {
        Value::Array(list) => list,
        other => panic!("not a list: {other}"),
    }
}

async fn hosts(server: &TestServer) -> Value {
    http_get(server.addr, "/v1/presence/hosts", &[])
        .await
        .json()["hosts"]
        .clone()
}

#[tokio::test]
async fn each_renewing_event_is_handled_and_moves_the_rows_ts() {
    let server = TestServer::start().await;
    let (mut node, _) = Client::connect(server.addr, node("n1")).await;
    let mut last = must_find(&list(&server).await, "instanceId", "n1")["ts"]
        .as_u64()
        .unwrap();
    let payloads = [
        ("node.host.stats", stats()),
        ("node.presence.alive", json!({"reason": "periodic"})),
        ("node.presence.activity", json!({"source": "app"})),
    ];
    for (name, payload) in payloads {
        // A renewal stamps the writer's clock: move it past the last `ts`
        // so a renewed one is a larger one.
        server.advance(Duration::from_millis(1));
        let answer = event(&mut node, name, json!(payload.to_string())).await;
        assert_eq!(
            answer,
            json!({"ok": true, "event": name, "handled": true, "reason": "updated"})
        );
        let ts = eventually("the renewed ts", async || {
            let ts = must_find(&list(&server).await, "instanceId", "n1")["ts"].as_u64()?;
            (ts > last).then_some(ts)
        })
        .await;
        last = ts;
    }
    let row = must_find(&list(&server).await, "instanceId", "n1").clone();
    assert_eq!(row["reason"], "node-connected");
    assert!(row.get("cpuCount").is_none() && row.get("hostStats").is_none());
}

#[tokio::test]
async fn host_stats_are_served_next_to_the_row_and_outlive_the_connection() {
    // A TTL the wall clock never reaches in a test: the server's clock,
    // moved by the test, takes the row past it.
    const TTL: Duration = Duration::from_secs(600);
    let server = TestServer::start_with(|c| c.presence_ttl = TTL).await;
    let (mut node, _) = Client::connect(server.addr, node("n1")).await;
    event(&mut node, "node.host.stats", json!(stats().to_string())).await;
    let hosts_now = hosts(&server).await;
    let n1 = &hosts_now["n1"];
    assert_eq!(n1["cpuCount"], 8);
    assert_eq!(n1["memoryFreeBytes"], 4_000_000_000u64);
    assert_eq!(n1["loadAverage"], json!([0.5, 0.25, 0.125]));
    assert!(n1["receivedAt"].as_u64().unwrap() > 0);
    node.close().await;
    let row = eventually("the row to say node-disconnected", async || {
        let list = list(&server).await;
        let row = must_find(&list, "instanceId", "n1");
        (row["reason"] == "node-disconnected").then(|| row.clone())
    })
    .await;
    assert_eq!(row["reason"], "node-disconnected");
    assert_eq!(
        hosts(&server).await["n1"]["cpuCount"],
        8,
        "kept after disconnect"
    );
    server.advance(TTL + Duration::from_secs(1));
    eventually("the row and its stats to expire", async || {
        hosts(&server).await.get("n1").is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn bad_oversized_and_unknown_payloads_are_answered_not_stored() {
    let server = TestServer::start().await;
    let (mut node, _) = Client::connect(server.addr, node("n1")).await;
    let oversized = json!({"pad": "x".repeat(20 * 1024)}).to_string();
    let schema_broken = json!({"cpuCount": "eight"}).to_string();
    for (name, payload) in [
        ("node.host.stats", json!("{not json")),
        ("node.host.stats", json!("[1,2,3]")),
        ("node.host.stats", json!(schema_broken)),
        ("node.host.stats", json!(oversized)),
        ("node.presence.alive", json!(7)),
        ("node.presence.activity", Value::Null),
    ] {
        let answer = event(&mut node, name, payload.clone()).await;
        assert_eq!(
            answer,
            json!({"ok": true, "event": name, "handled": false, "reason": "invalid_payload"}),
            "{name} {payload}"
        );
    }
    let answer = event(&mut node, "exec.finished", json!("{}")).await;
    assert_eq!(answer["handled"], false);
    assert_eq!(answer["reason"], "unsupported_event");
    assert_eq!(hosts(&server).await, json!({}));
    let missing = node
        .request("node.event", json!({"payloadJSON": "{}"}))
        .await;
    assert_eq!(missing["ok"], false);
    assert_eq!(missing["error"]["code"], "INVALID_REQUEST");
    assert!(
        missing["error"]["message"]
            .as_str()
            .unwrap()
            .contains("event is required"),
        "{missing}"
    );
}

#[tokio::test]
async fn a_non_node_connection_is_refused_as_openclaw_refuses_it() {
    let server = TestServer::start().await;
    let mut admin = Client::admin(server.addr).await;
    let reply = admin
        .request(
            "node.event",
            json!({"event": "node.host.stats", "payloadJSON": stats().to_string()}),
        )
        .await;
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["error"]["code"], "INVALID_REQUEST");
    assert_eq!(reply["error"]["message"], "unauthorized role: operator");
    assert_eq!(hosts(&server).await, json!({}));
}
