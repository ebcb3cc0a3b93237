//! Presence entries through the real server (docs/protocol.md §5): the connect
//! upsert, keys, merges, beacons and their limits, the `Node:` text, the
//! loopback and trusted-proxy rules, disconnects, TTL and the cap.

mod common;

use common::{Client, TestServer, connect_params, device, entry_with, must_find, now_ms};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A tracked `ui` client with the given extra `client` fields (a proven
/// device, when there is one, is added by `common::device::connect`).
fn ui_params(client: Value) -> Value {
    let mut params = connect_params("ui", &["operator.read", "operator.admin"]);
    for (k, v) in client.as_object().unwrap() {
        params["client"][k] = v.clone();
    }
    params
}

#[tokio::test]
async fn connect_upserts_the_documented_fields() {
    let server = TestServer::start().await;
    let before = now_ms();
    let params = json!({
        "minProtocol": 3, "maxProtocol": 4,
        "client": {
            "id": "openclaw-macos", "version": "2026.1.5", "platform": "macos 15.2",
            "mode": "ui", "displayName": "Studio Mac", "deviceFamily": "Mac",
            "modelIdentifier": "Mac15,8", "instanceId": "inst-1",
        },
        "scopes": ["operator.read", "operator.write"],
    });
    let key = device::key(1);
    let (_, hello) = device::connect(server.addr, &key, params).await;
    let list = hello["snapshot"]["presence"].as_array().unwrap();
    let own = must_find(list, "clientId", "openclaw-macos");
    let ts = own["ts"].as_u64().unwrap();
    assert!(ts >= before && ts <= now_ms());
    let mut expected = json!({
        "host": "Studio Mac",
        "clientId": "openclaw-macos",
        "version": "2026.1.5",
        "platform": "macos 15.2",
        "deviceFamily": "Mac",
        "modelIdentifier": "Mac15,8",
        "mode": "ui",
        "deviceId": device::id(&key),
        "instanceId": device::id(&key),
        "roles": ["operator"],
        "scopes": ["operator.read", "operator.write"],
        "reason": "connect",
        "text": "Node: Studio Mac · mode ui",
    });
    expected["ts"] = json!(ts);
    // No `ip`: the connection comes from loopback (§5.3).
    assert_eq!(*own, expected);
}

#[tokio::test]
async fn connect_host_falls_back_to_client_id_and_instance_id_to_client_instance() {
    let server = TestServer::start().await;
    let (_, hello) = Client::connect(
        server.addr,
        ui_params(json!({"instanceId": "Inst-7", "displayName": "  "})),
    )
    .await;
    let list = hello["snapshot"]["presence"].as_array().unwrap();
    let own = must_find(list, "clientId", "it-client");
    assert_eq!(own["host"], "it-client");
    assert_eq!(own["instanceId"], "Inst-7");
    assert!(own.get("deviceId").is_none(), "{own}");
}

#[tokio::test]
async fn connect_key_prefers_device_id_then_instance_id_case_insensitively() {
    let server = TestServer::start().await;
    let mut admin = Client::admin(server.addr).await;
    // device.id wins over client.instanceId: a beacon on the device id
    // (in another case, padded) lands on the same entry.
    let key = device::key(2);
    device::connect(
        server.addr,
        &key,
        ui_params(json!({"instanceId": "inst-a", "displayName": "A"})),
    )
    .await;
    let padded = format!("  {} ", device::id(&key).to_uppercase());
    admin
        .beacon(json!({"text": "a beacon", "deviceId": padded}))
        .await;
    // client.instanceId is the key when there is no device.id.
    Client::connect(
        server.addr,
        ui_params(json!({"instanceId": "Inst-B", "displayName": "B"})),
    )
    .await;
    admin
        .beacon(json!({"text": "b beacon", "instanceId": "inst-b"}))
        .await;
    let list = admin.presence().await;
    assert_eq!(list.len(), 3, "two client entries and self: {list:#?}");
    assert_eq!(must_find(&list, "host", "A")["text"], "a beacon");
    assert_eq!(must_find(&list, "host", "B")["text"], "b beacon");
}

#[tokio::test]
async fn connect_without_ids_is_keyed_by_the_connection_id() {
    let server = TestServer::start().await;
    let (_client, hello) =
        Client::connect(server.addr, ui_params(json!({"displayName": "anon"}))).await;
    let conn_id = hello["server"]["connId"].as_str().unwrap().to_owned();
    let own = must_find(
        hello["snapshot"]["presence"].as_array().unwrap(),
        "host",
        "anon",
    );
    assert!(own.get("instanceId").is_none(), "{own}");
    let mut admin = Client::admin(server.addr).await;
    admin
        .beacon(json!({"text": "by conn id", "instanceId": conn_id.to_uppercase()}))
        .await;
    let list = admin.presence().await;
    assert_eq!(list.len(), 2, "{list:#?}");
    assert_eq!(must_find(&list, "host", "anon")["text"], "by conn id");
}

#[tokio::test]
async fn connect_and_beacon_merge_and_reconnect_keeps_beacon_only_fields() {
    let server = TestServer::start().await;
    let params = ui_params(json!({"instanceId": "merge-1", "displayName": "Merge"}));
    let (first, _) = Client::connect(server.addr, params.clone()).await;
    let mut admin = Client::admin(server.addr).await;
    admin
        .beacon(json!({
            "text": "merge beacon",
            "instanceId": "MERGE-1",
            "roles": ["node", " operator ", ""],
            "scopes": ["operator.write", "operator.read"],
            "lastInputSeconds": 12,
            "ip": "192.0.2.10",
            "tags": ["ignored"],
        }))
        .await;
    let list = admin.presence().await;
    let entry = must_find(&list, "host", "Merge");
    assert_eq!(entry["roles"], json!(["operator", "node"]));
    assert_eq!(
        entry["scopes"],
        json!(["operator.read", "operator.admin", "operator.write"])
    );
    assert_eq!(entry["clientId"], "it-client", "connect fields are kept");
    assert_eq!(entry["lastInputSeconds"], 12);
    assert!(entry.get("tags").is_none(), "tags are not stored: {entry}");
    first.close().await;
    // Reconnect: the connect overlays its fields, the beacon's stay.
    let (_second, hello) = Client::connect(server.addr, params).await;
    let entry = must_find(
        hello["snapshot"]["presence"].as_array().unwrap(),
        "host",
        "Merge",
    );
    assert_eq!(entry["reason"], "connect");
    assert_eq!(entry["text"], "merge beacon");
    assert_eq!(entry["lastInputSeconds"], 12);
    assert_eq!(entry["ip"], "192.0.2.10");
    assert_eq!(entry["roles"], json!(["operator", "node"]));
}

#[tokio::test]
async fn beacon_params_of_wrong_type_name_the_field_and_write_nothing() {
    let server = TestServer::start().await;
    let mut admin = Client::admin(server.addr).await;
    let cases = [
        (json!({"text": "t", "host": 5}), "host must be a string"),
        (
            json!({"text": "t", "deviceId": []}),
            "deviceId must be a string",
        ),
        (
            json!({"text": "t", "lastInputSeconds": "12"}),
            "lastInputSeconds must be a number >= 0 or null",
        ),
        (
            json!({"text": "t", "lastInputSeconds": -1}),
            "lastInputSeconds must be a number >= 0 or null",
        ),
        (
            json!({"text": "t", "roles": "operator"}),
            "roles must be an array of strings",
        ),
        (
            json!({"text": "t", "tags": [1]}),
            "tags[0] must be a string",
        ),
        (json!({"text": 1}), "text must be a string"),
        (json!({"text": "   "}), "text must be non-empty"),
        (json!({"host": "h"}), "text is required"),
    ];
    for (params, why) in cases {
        let reply = admin.request("system-event", params.clone()).await;
        assert_eq!(reply["ok"], false, "{params}: {reply}");
        assert_eq!(reply["error"]["code"], "INVALID_REQUEST");
        assert_eq!(
            reply["error"]["message"],
            format!("invalid system-event params: {why}")
        );
    }
    let health = admin.call("health", json!({})).await;
    assert_eq!(health["presence"], json!({"entries": 1, "version": 1}));
}

#[tokio::test]
async fn beacon_over_limits_is_refused_and_writes_nothing() {
    let server = TestServer::start().await;
    let mut admin = Client::admin(server.addr).await;
    let long = "x".repeat(257);
    let cases = [
        (
            json!({"text": "x".repeat(4097), "deviceId": "lim"}),
            "text exceeds 4096 bytes",
        ),
        (
            json!({"text": "é".repeat(2049), "deviceId": "lim"}),
            "text exceeds 4096 bytes",
        ),
        (
            json!({"text": "t", "deviceId": "lim", "host": long}),
            "host exceeds 256 bytes",
        ),
        (
            json!({"text": "t", "deviceId": long}),
            "deviceId exceeds 256 bytes",
        ),
        (
            json!({"text": "t", "deviceId": "lim", "roles": vec!["r"; 33]}),
            "roles exceeds 32 items",
        ),
        (
            json!({"text": "t", "deviceId": "lim", "scopes": vec!["s"; 33]}),
            "scopes exceeds 32 items",
        ),
        (
            json!({"text": "t", "deviceId": "lim", "tags": vec!["t"; 33]}),
            "tags exceeds 32 items",
        ),
        (
            json!({"text": "t", "deviceId": "lim", "scopes": [long]}),
            "scopes[0] exceeds 256 bytes",
        ),
    ];
    for (params, why) in cases {
        let reply = admin.request("system-event", params).await;
        assert_eq!(reply["error"]["code"], "INVALID_REQUEST", "{why}: {reply}");
        assert_eq!(
            reply["error"]["message"],
            format!("invalid system-event params: {why}")
        );
    }
    let health = admin.call("health", json!({})).await;
    assert_eq!(health["presence"], json!({"entries": 1, "version": 1}));
    // At the limits is fine.
    admin
        .beacon(json!({
            "text": "y".repeat(4096),
            "deviceId": "lim",
            "host": "h".repeat(256),
            "roles": vec!["r"; 32],
        }))
        .await;
    assert_eq!(admin.presence().await.len(), 2);
}

const NODE_LINE: &str =
    "Node: studio (10.1.2.3) · app 2.1.0 · last input 42 s ago · mode ui · reason periodic";

#[tokio::test]
async fn node_text_is_parsed_into_fields() {
    let server = TestServer::start().await;
    let mut admin = Client::admin(server.addr).await;
    admin.beacon(json!({"text": NODE_LINE})).await;
    // Case-insensitive literals, surrounding whitespace trimmed.
    let shouting =
        "  NODE: Mini (10.0.0.9) · APP 3.0 · LAST INPUT 0 S AGO · MODE node · REASON launch  ";
    admin.beacon(json!({"text": shouting})).await;
    let list = admin.presence().await;
    let studio = must_find(&list, "host", "studio");
    assert_eq!(studio["ip"], "10.1.2.3");
    assert_eq!(studio["version"], "2.1.0");
    assert_eq!(studio["lastInputSeconds"], 42);
    assert_eq!(studio["mode"], "ui");
    assert_eq!(studio["reason"], "periodic");
    assert_eq!(studio["text"], NODE_LINE);
    let mini = must_find(&list, "host", "Mini");
    assert_eq!(mini["ip"], "10.0.0.9");
    assert_eq!(mini["version"], "3.0");
    assert_eq!(mini["lastInputSeconds"], 0);
    assert_eq!(mini["mode"], "node");
    assert_eq!(mini["reason"], "launch");
    assert_eq!(mini["text"], shouting.trim());
}

#[tokio::test]
async fn explicit_beacon_params_win_over_parsed_text() {
    let server = TestServer::start().await;
    let mut admin = Client::admin(server.addr).await;
    admin
        .beacon(json!({
            "text": NODE_LINE,
            "instanceId": "studio-1",
            "host": "explicit-host",
            "mode": "backend",
            "lastInputSeconds": 7,
        }))
        .await;
    let list = admin.presence().await;
    let entry = must_find(&list, "instanceId", "studio-1");
    assert_eq!(entry["host"], "explicit-host");
    assert_eq!(entry["mode"], "backend");
    assert_eq!(entry["lastInputSeconds"], 7);
    // What the params leave out still comes from the text.
    assert_eq!(entry["ip"], "10.1.2.3");
    assert_eq!(entry["version"], "2.1.0");
    assert_eq!(entry["reason"], "periodic");
}

#[tokio::test]
async fn beacon_key_falls_back_to_parsed_host_then_text() {
    let server = TestServer::start().await;
    let mut admin = Client::admin(server.addr).await;
    admin.beacon(json!({"text": NODE_LINE})).await;
    // Same parsed host in another case: same entry.
    admin
        .beacon(json!({"text": NODE_LINE.replace("studio", "STUDIO").replace("42", "43")}))
        .await;
    // Plain text: the text itself is the key.
    admin.beacon(json!({"text": "Plain Words"})).await;
    admin
        .beacon(json!({"text": "  plain words ", "host": "pw"}))
        .await;
    let list = admin.presence().await;
    assert_eq!(list.len(), 3, "{list:#?}");
    assert_eq!(must_find(&list, "host", "STUDIO")["lastInputSeconds"], 43);
    assert_eq!(must_find(&list, "host", "pw")["text"], "plain words");
}

#[tokio::test]
async fn last_input_seconds_null_clears_it() {
    let server = TestServer::start().await;
    let mut admin = Client::admin(server.addr).await;
    admin
        .beacon(json!({"text": NODE_LINE, "instanceId": "studio-1"}))
        .await;
    assert_eq!(
        must_find(&admin.presence().await, "host", "studio")["lastInputSeconds"],
        42
    );
    admin
        .beacon(json!({"text": "still here", "instanceId": "studio-1", "lastInputSeconds": null}))
        .await;
    let list = admin.presence().await;
    assert_eq!(list.len(), 2, "{list:#?}");
    let entry = must_find(&list, "host", "studio");
    assert!(entry.get("lastInputSeconds").is_none(), "{entry}");
    assert_eq!(entry["ip"], "10.1.2.3", "other fields are kept");
    assert_eq!(entry["text"], "still here");
    // A float is floored.
    admin
        .beacon(json!({"text": "again", "instanceId": "studio-1", "lastInputSeconds": 9.9}))
        .await;
    assert_eq!(
        must_find(&admin.presence().await, "host", "studio")["lastInputSeconds"],
        9
    );
}

#[tokio::test]
async fn explicit_host_is_not_a_beacon_key() {
    let server = TestServer::start().await;
    let mut admin = Client::admin(server.addr).await;
    // Keys come from deviceId, instanceId, the parsed text, then the
    // text itself: an explicit `host` alone does not merge two beacons.
    admin.beacon(json!({"text": "one", "host": "same"})).await;
    admin.beacon(json!({"text": "two", "host": "same"})).await;
    assert_eq!(admin.presence().await.len(), 3);
}

#[tokio::test]
async fn loopback_connection_records_no_ip_and_keeps_a_beacon_ip() {
    let server = TestServer::start().await;
    let params = ui_params(json!({"instanceId": "lb-1", "displayName": "lb"}));
    let (first, hello) = Client::connect(server.addr, params.clone()).await;
    let own = must_find(
        hello["snapshot"]["presence"].as_array().unwrap(),
        "host",
        "lb",
    );
    assert!(own.get("ip").is_none(), "loopback is not recorded: {own}");
    let mut admin = Client::admin(server.addr).await;
    admin
        .beacon(json!({"text": "tunnel", "instanceId": "lb-1", "ip": "198.51.100.7"}))
        .await;
    // A beacon's own loopback ip is not recorded either, and keeps the old one.
    admin
        .beacon(json!({"text": "tunnel", "instanceId": "lb-1", "ip": "127.0.0.1"}))
        .await;
    admin
        .beacon(json!({"text": "tunnel", "instanceId": "lb-1", "ip": "::1"}))
        .await;
    assert_eq!(
        must_find(&admin.presence().await, "host", "lb")["ip"],
        "198.51.100.7"
    );
    first.close().await;
    let (_second, hello) = Client::connect(server.addr, params).await;
    let own = must_find(
        hello["snapshot"]["presence"].as_array().unwrap(),
        "host",
        "lb",
    );
    assert_eq!(own["reason"], "connect");
    assert_eq!(own["ip"], "198.51.100.7", "a loopback reconnect keeps it");
}

/// Connects a tracked client whose upgrade carries `X-Forwarded-For: xff`
/// and returns its entry from the hello snapshot.
async fn entry_via_proxy(server: &TestServer, xff: &str, name: &str) -> Value {
    let mut request = server.ws_url("/").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("x-forwarded-for", xff.parse().unwrap());
    let (mut client, _) = Client::open_request(server.addr, request).await;
    let hello = client
        .handshake(ui_params(json!({"instanceId": name, "displayName": name})))
        .await;
    must_find(
        hello["snapshot"]["presence"].as_array().unwrap(),
        "host",
        name,
    )
    .clone()
}

#[tokio::test]
async fn trusted_proxy_forwarded_for_is_recorded() {
    let server =
        TestServer::start_with(|c| c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let entry = entry_via_proxy(&server, "203.0.113.5", "proxied").await;
    assert_eq!(entry["ip"], "203.0.113.5");
    // Right to left, skipping trusted hops.
    let entry = entry_via_proxy(&server, "198.51.100.1, 203.0.113.7, 127.0.0.1", "chain").await;
    assert_eq!(entry["ip"], "203.0.113.7");
}

#[tokio::test]
async fn forwarded_for_from_untrusted_peer_is_ignored() {
    let server = TestServer::start().await;
    let entry = entry_via_proxy(&server, "203.0.113.5", "direct").await;
    assert!(entry.get("ip").is_none(), "the header is ignored: {entry}");
}

#[tokio::test]
async fn cli_mode_is_not_tracked() {
    let server = TestServer::start().await;
    for mode in ["cli", " CLI "] {
        let mut params = connect_params(mode, &["operator.read"]);
        params["client"]["instanceId"] = json!("cli-inst");
        let (mut client, hello) = Client::connect(server.addr, params).await;
        assert_eq!(hello["snapshot"]["presence"].as_array().unwrap().len(), 1);
        assert_eq!(client.presence().await.len(), 1, "{mode:?}");
        client.close().await;
    }
    let health = Client::observer(server.addr)
        .await
        .call("health", json!({}))
        .await;
    assert_eq!(health["presence"]["version"], 1, "nothing was ever written");
}

#[tokio::test]
async fn untracked_modes_are_configurable() {
    let server = TestServer::start_with(|c| c.untracked_modes = vec!["probe".into()]).await;
    let (_, hello) =
        Client::connect(server.addr, connect_params("probe", &["operator.read"])).await;
    assert_eq!(hello["snapshot"]["presence"].as_array().unwrap().len(), 1);
    let (_, hello) = Client::connect(server.addr, connect_params("cli", &["operator.read"])).await;
    assert_eq!(hello["snapshot"]["presence"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn node_connect_and_disconnect_reasons() {
    let server = TestServer::start().await;
    let mut observer = Client::observer(server.addr).await;
    let mut params =
        ui_params(json!({"instanceId": "node-1", "displayName": "n1", "mode": "node"}));
    params["role"] = json!("node");
    let (node, hello) = Client::connect(server.addr, params).await;
    // A node may not read presence, so its hello carries no list (§3.10).
    assert_eq!(hello["snapshot"]["presence"], json!([]), "{hello}");
    let list = observer
        .presence_until(|list| entry_with(list, "host", "n1").is_some())
        .await;
    let own = must_find(&list, "host", "n1");
    assert_eq!(own["reason"], "node-connected");
    assert_eq!(own["roles"], json!(["node"]));
    node.close().await;
    let list = observer
        .presence_until(|list| {
            entry_with(list, "host", "n1").is_some_and(|e| e["reason"] == "node-disconnected")
        })
        .await;
    assert_eq!(must_find(&list, "host", "n1")["mode"], "node");
}

#[tokio::test]
async fn disconnect_keeps_the_row_with_reason_disconnect() {
    let server = TestServer::start().await;
    let mut observer = Client::observer(server.addr).await;
    let (client, hello) = Client::connect(
        server.addr,
        ui_params(json!({"instanceId": "dc-1", "displayName": "dc"})),
    )
    .await;
    let connected_ts = must_find(
        hello["snapshot"]["presence"].as_array().unwrap(),
        "host",
        "dc",
    )["ts"]
        .as_u64()
        .unwrap();
    client.close().await;
    let list = observer
        .presence_until(|list| {
            entry_with(list, "host", "dc").is_some_and(|e| e["reason"] == "disconnect")
        })
        .await;
    let entry = must_find(&list, "host", "dc");
    assert!(entry["ts"].as_u64().unwrap() >= connected_ts);
    assert_eq!(entry["clientId"], "it-client", "the row is kept whole");
    assert_eq!(observer.presence().await.len(), 2);
}

#[tokio::test]
async fn dropped_socket_without_close_frame_marks_disconnect() {
    let server = TestServer::start().await;
    let mut observer = Client::observer(server.addr).await;
    let (client, _) = Client::connect(
        server.addr,
        ui_params(json!({"instanceId": "drop-1", "displayName": "dropper"})),
    )
    .await;
    drop(client);
    observer
        .presence_until(|list| {
            entry_with(list, "host", "dropper").is_some_and(|e| e["reason"] == "disconnect")
        })
        .await;
}

#[tokio::test]
async fn superseded_socket_close_writes_nothing() {
    let server = TestServer::start().await;
    let params = ui_params(json!({"instanceId": "dup-1", "displayName": "dup"}));
    let (first, _) = Client::connect(server.addr, params.clone()).await;
    let (mut second, hello) = Client::connect(server.addr, params).await;
    let before = must_find(
        hello["snapshot"]["presence"].as_array().unwrap(),
        "host",
        "dup",
    )
    .clone();
    let version = hello["snapshot"]["stateVersion"]["presence"]
        .as_u64()
        .unwrap();
    let applied = server.writer_events();
    first.close().await;
    // The first connection's close reaches the writer as one event.
    common::eventually("the close to be applied", async || {
        (server.writer_events() > applied).then_some(())
    })
    .await;
    let health = second.call("health", json!({})).await;
    assert_eq!(
        health["presence"]["version"], version,
        "nothing was published"
    );
    let list = second.presence().await;
    let after = must_find(&list, "host", "dup");
    assert_eq!(after["reason"], "connect");
    assert_eq!(after["ts"], before["ts"]);
    // The last owner's close does mark it.
    let mut observer = Client::observer(server.addr).await;
    second.close().await;
    observer
        .presence_until(|list| {
            entry_with(list, "host", "dup").is_some_and(|e| e["reason"] == "disconnect")
        })
        .await;
}

#[tokio::test]
async fn client_cannot_claim_the_self_entry_key() {
    let server = TestServer::start().await;
    let mut admin = Client::admin(server.addr).await;
    let own = must_find(&admin.presence().await, "reason", "self").clone();
    let self_id = own["instanceId"].as_str().unwrap().to_owned();
    let reply = admin
        .request(
            "system-event",
            json!({"text": "hijack", "instanceId": self_id.to_uppercase()}),
        )
        .await;
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["error"]["code"], "INVALID_REQUEST");
    // A connection claiming it is served but not tracked.
    let (_, hello) = Client::connect(server.addr, ui_params(json!({"instanceId": self_id}))).await;
    let list = hello["snapshot"]["presence"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["reason"], "self");
    assert_eq!(list[0]["text"], own["text"]);
}

#[tokio::test]
async fn entries_older_than_the_ttl_are_removed_and_announced() {
    // A TTL the wall clock never reaches in a test: only the server's
    // clock, moved by the test, takes the row past it.
    const TTL: Duration = Duration::from_secs(600);
    let server = TestServer::start_with(|c| c.presence_ttl = TTL).await;
    let mut admin = Client::admin(server.addr).await;
    admin
        .beacon(json!({"text": "short-lived", "host": "ttl"}))
        .await;
    must_find(&admin.presence().await, "host", "ttl");
    // Just short of the TTL: still listed once the writer has applied a
    // later beacon (its reply comes after that batch's expiry ran).
    server.advance(TTL - Duration::from_secs(1));
    admin
        .beacon(json!({"text": "later", "host": "later"}))
        .await;
    let list = admin.presence().await;
    must_find(&list, "host", "ttl");
    server.advance(Duration::from_secs(2));
    let list = admin
        .presence_until(|list| entry_with(list, "host", "ttl").is_none())
        .await;
    assert_eq!(list.len(), 2, "the self entry is exempt: {list:#?}");
    assert_eq!(list[0]["reason"], "self");
    must_find(&list, "host", "later");
    assert_eq!(admin.presence().await.len(), 2);
    let metrics = common::http_get(server.addr, "/metrics", &[]).await.body;
    assert_eq!(
        common::metric(&metrics, "rollcall_presence_expired_total"),
        Some(1.0)
    );
}

#[tokio::test]
async fn every_list_stamps_the_self_entry_on_the_servers_clock() {
    let server = TestServer::start().await;
    server.advance(Duration::from_secs(3_600));
    let moved = now_ms() + 3_600_000;
    let (mut admin, hello) = Client::connect(
        server.addr,
        connect_params("cli", &["operator.read", "operator.admin"]),
    )
    .await;
    let stamped = |list: &Value| list[0]["ts"].as_u64().expect("a ts");
    let hello_list = &hello["snapshot"]["presence"];
    assert_eq!(hello_list[0]["reason"], "self");
    assert!(stamped(hello_list) >= moved, "hello-ok: {hello_list}");
    let list = Value::from(admin.presence().await);
    assert!(stamped(&list) >= moved, "system-presence: {list}");
    let rest = common::http_get(server.addr, "/v1/presence", &[])
        .await
        .json();
    assert!(stamped(&rest) >= moved, "/v1/presence: {rest}");
}

#[tokio::test]
async fn the_cap_evicts_the_oldest_and_keeps_self() {
    let server = TestServer::start_with(|c| c.max_entries = 2).await;
    let mut admin = Client::admin(server.addr).await;
    for host in ["oldest", "middle", "newest"] {
        admin.beacon(json!({"text": host, "host": host})).await;
    }
    let list = admin.presence().await;
    let hosts: Vec<&str> = list.iter().filter_map(|e| e["host"].as_str()).collect();
    assert_eq!(list.len(), 3, "{hosts:?}");
    assert_eq!(list[0]["reason"], "self");
    assert!(entry_with(&list, "host", "oldest").is_none(), "{hosts:?}");
    must_find(&list, "host", "middle");
    must_find(&list, "host", "newest");
    // Refreshing an entry makes it the newest: the other one goes next.
    admin
        .beacon(json!({"text": "middle", "host": "middle"}))
        .await;
    admin
        .beacon(json!({"text": "fresh", "host": "fresh"}))
        .await;
    let list = admin.presence().await;
    assert!(entry_with(&list, "host", "newest").is_none(), "{list:#?}");
    must_find(&list, "host", "middle");
    let metrics = common::http_get(server.addr, "/metrics", &[]).await.body;
    assert_eq!(
        common::metric(&metrics, "rollcall_presence_evicted_total"),
        Some(2.0)
    );
}
