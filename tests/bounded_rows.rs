//! Bounded rows (docs/protocol.md §5.1), over real sockets: a node that
//! beacons new `roles` and `scopes` on every write cannot grow its row, the
//! list, or a fresh client's `hello-ok`. A healthy client stays connected.

mod common;

use common::{Client, TestServer, connect_params, http_get, must_find};
use rollcall::presence::MAX_ENCODED_BYTES;
use serde_json::{Value, json};

fn node_params(instance_id: &str) -> Value {
    let mut params = connect_params("node", &[]);
    params["role"] = json!("node");
    params["auth"] = json!({"token": "node"});
    params["client"]["instanceId"] = json!(instance_id);
    params
}

fn reader_params() -> Value {
    let mut params = connect_params("ui", &["operator.read"]);
    params["auth"] = json!({"token": "reader"});
    params["client"]["instanceId"] = json!("healthy");
    params
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_growing_beacons_leave_a_row_within_its_bound() {
    let server = TestServer::start_with(|c| {
        c.tokens = ["reader:read", "node:node"]
            .iter()
            .map(|t| t.parse().unwrap())
            .collect();
    })
    .await;
    let (mut healthy, _) = Client::connect(server.addr, reader_params()).await;
    let (mut node, _) = Client::connect(server.addr, node_params("grower")).await;
    for round in 0..2_000 {
        let fresh = |kind: &str| -> Vec<String> {
            (0..32).map(|i| format!("{kind}-{round}-{i}")).collect()
        };
        let reply = node
            .request(
                "system-event",
                json!({"text": "growing", "roles": fresh("role"), "scopes": fresh("scope")}),
            )
            .await;
        assert_eq!(reply["ok"], true, "{reply}");
        if round % 500 == 0 {
            assert_eq!(healthy.call("health", json!({})).await["ok"], true);
        }
    }
    let list = healthy.presence().await;
    let row = must_find(&list, "instanceId", "grower");
    let roles = row["roles"].as_array().unwrap();
    let scopes = row["scopes"].as_array().unwrap();
    assert!(roles.len() <= 16, "{} roles", roles.len());
    assert!(scopes.len() <= 16, "{} scopes", scopes.len());
    assert_eq!(roles.last().unwrap(), "role-1999-31", "the newest stay");
    let encoded = serde_json::to_vec(row).unwrap().len();
    assert!(encoded <= MAX_ENCODED_BYTES, "{encoded} bytes");
    // What a fresh client pays to connect does not depend on the history:
    // the whole list (self entry, healthy, grower) stays a few KiB.
    let body = http_get(
        server.addr,
        "/v1/presence",
        &[("authorization", "Bearer reader")],
    )
    .await;
    assert!(body.body.len() < 8 * 1024, "{} bytes", body.body.len());
    let (_, hello) = Client::connect(server.addr, reader_params()).await;
    let hello_bytes = hello["snapshot"]["presence"].to_string().len();
    assert!(hello_bytes < 8 * 1024, "{hello_bytes} bytes");
    assert_eq!(healthy.call("health", json!({})).await["ok"], true);
}
