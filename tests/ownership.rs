//! Row ownership (docs/protocol.md §5.1) over real sockets: while a proven
//! device or a token's live connection holds a row, another principal can
//! neither connect into it (it is tracked under its connection id, and the
//! doctor says why) nor beacon it (`FORBIDDEN`); a proven device always
//! takes its own row back; clients of one shared token are one principal.
//! A healthy client stays connected throughout.

mod common;

use common::{Client, TestServer, connect_params, device, http_get, must_find};
use serde_json::{Value, json};

const TOKENS: [&str; 4] = [
    "reader:read",
    "owner:read,node",
    "nodes:node",
    "admin:read,admin",
];

async fn server() -> TestServer {
    TestServer::start_with(|c| c.tokens = TOKENS.iter().map(|t| t.parse().unwrap()).collect()).await
}

/// A tracked `ui` client of `token` naming `instance`, shown as `host`.
fn ui(token: &str, instance: &str, host: &str) -> Value {
    let mut params = connect_params("ui", &["operator.read", "operator.admin"]);
    params["auth"] = json!({"token": token});
    params["client"]["instanceId"] = json!(instance);
    params["client"]["displayName"] = json!(host);
    params
}

fn node(token: &str, instance: &str, host: &str) -> Value {
    let mut params = ui(token, instance, host);
    params["role"] = json!("node");
    params["client"]["mode"] = json!("node");
    params["scopes"] = json!([]);
    params
}

/// The doctor's report, read with the admin token.
async fn doctor(server: &TestServer) -> Value {
    let reply = http_get(
        server.addr,
        "/v1/presence/doctor",
        &[("authorization", "Bearer admin")],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

fn conn_id(hello: &Value) -> String {
    hello["server"]["connId"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn other_principals_cannot_write_a_proven_device_row_and_it_takes_it_back() {
    let server = server().await;
    let (mut healthy, _) = Client::connect(server.addr, ui("reader", "healthy", "healthy")).await;
    let key = device::key(7);
    let id = device::id(&key);
    let (studio, _) =
        device::connect(server.addr, &key, node("owner", "studio", "studio-mac")).await;

    // A read token naming the device's id is tracked under its own
    // connection id; the device's row is untouched.
    let (_reader, hello) = Client::connect(server.addr, ui("reader", &id, "impostor")).await;
    let reader_conn = conn_id(&hello);
    // A node token naming it, and beaconing it, cannot write it either.
    let (mut nodes, _) = Client::connect(server.addr, node("nodes", &id, "impostor-node")).await;
    let reply = nodes
        .request(
            "system-event",
            json!({"text": "x", "deviceId": id, "host": "owned"}),
        )
        .await;
    assert_eq!(reply["error"]["code"], "FORBIDDEN", "{reply}");
    // Nor can an admin of another token.
    let (mut admin, _) = Client::connect(server.addr, ui("admin", "admin-1", "admin")).await;
    let reply = admin
        .request(
            "system-event",
            json!({"text": "x", "deviceId": id, "host": "owned"}),
        )
        .await;
    assert_eq!(reply["error"]["code"], "FORBIDDEN", "{reply}");
    assert_eq!(reply["error"]["details"]["code"], "NOT_OWNER", "{reply}");

    let list = healthy.presence().await;
    let row = must_find(&list, "deviceId", &id);
    assert_eq!(row["host"], "studio-mac");
    assert_eq!(row["instanceId"], id.as_str());
    let impostor = must_find(&list, "host", "impostor");
    assert!(impostor.get("instanceId").is_none(), "{impostor}");
    let report = doctor(&server).await;
    assert_eq!(
        report["rows"][&reader_conn]["keySource"], "not-owner",
        "{report:#}"
    );

    // While the device is away its id is free; its reconnect takes it back.
    studio.close().await;
    let (_squatter, _) = Client::connect(server.addr, ui("reader", &id, "squatter")).await;
    let list = healthy.presence().await;
    assert_eq!(must_find(&list, "instanceId", &id)["host"], "squatter");
    let (_studio, _) =
        device::connect(server.addr, &key, node("owner", "studio", "studio-mac")).await;
    let reply = admin
        .request(
            "system-event",
            json!({"text": "x", "deviceId": id, "host": "owned"}),
        )
        .await;
    assert_eq!(reply["error"]["code"], "FORBIDDEN", "{reply}");
    let list = healthy.presence().await;
    assert_eq!(must_find(&list, "instanceId", &id)["host"], "studio-mac");
    assert_eq!(healthy.call("health", json!({})).await["ok"], true);
}

#[tokio::test]
async fn a_token_live_row_is_not_another_token_to_write() {
    let server = server().await;
    let (mut healthy, _) = Client::connect(server.addr, ui("reader", "healthy", "healthy")).await;
    let (_owner, _) = Client::connect(server.addr, ui("admin", "studio-mac", "studio")).await;
    // Another token connecting with the same instanceId gets its own row.
    let (_other, hello) =
        Client::connect(server.addr, ui("reader", "Studio-Mac", "rewritten")).await;
    let list = healthy.presence().await;
    assert_eq!(
        must_find(&list, "instanceId", "studio-mac")["host"],
        "studio"
    );
    let report = doctor(&server).await;
    assert_eq!(report["rows"][conn_id(&hello)]["keySource"], "not-owner");
    let text = report.to_string();
    assert!(
        text.contains("a client may not write another"),
        "{report:#}"
    );
}

#[tokio::test]
async fn clients_of_one_shared_token_are_one_principal() {
    let server = server().await;
    let (mut first, _) = Client::connect(server.addr, ui("admin", "shared", "first")).await;
    let (_second, _) = Client::connect(server.addr, ui("admin", "shared", "second")).await;
    first
        .beacon(json!({"text": "from first", "instanceId": "shared"}))
        .await;
    let list = first.presence().await;
    let row = must_find(&list, "instanceId", "shared");
    assert_eq!(
        (&row["host"], &row["text"]),
        (&json!("second"), &json!("from first"))
    );
}
