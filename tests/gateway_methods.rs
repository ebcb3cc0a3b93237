//! The methods (docs/protocol.md §4) against the real server: scopes, payload
//! shapes and read-your-writes.

mod common;

use common::{Client, TestServer, connect_params, must_find, now_ms};
use serde_json::json;

const READ_SCOPES: [&str; 3] = ["operator.read", "operator.write", "operator.admin"];

#[tokio::test]
async fn system_presence_without_read_scope_is_forbidden_missing_scope() {
    let server = TestServer::start().await;
    let (mut client, _) = Client::connect(server.addr, connect_params("cli", &[])).await;
    let reply = client.request("system-presence", json!({})).await;
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["error"]["code"], "FORBIDDEN");
    assert_eq!(
        reply["error"]["details"],
        json!({
            "code": "MISSING_SCOPE",
            "missingScope": "operator.read",
            "requiredScopes": READ_SCOPES,
        })
    );
    // A scope the server does not know grants nothing.
    let (mut custom, _) = Client::connect(server.addr, connect_params("cli", &["custom"])).await;
    let reply = custom.request("system-presence", json!({})).await;
    assert_eq!(reply["error"]["code"], "FORBIDDEN", "{reply}");
}

#[tokio::test]
async fn system_presence_is_allowed_by_any_read_scope() {
    let server = TestServer::start().await;
    for scope in READ_SCOPES {
        let (mut client, _) = Client::connect(server.addr, connect_params("cli", &[scope])).await;
        let list = client.presence().await;
        assert_eq!(list.len(), 1, "{scope}: {list:?}");
    }
}

#[tokio::test]
async fn system_presence_is_a_bare_array_newest_first_with_a_fresh_self_entry() {
    let server = TestServer::start().await;
    let mut admin = Client::admin(server.addr).await;
    for host in ["first", "second", "third"] {
        admin
            .beacon(json!({"text": format!("beacon {host}"), "host": host}))
            .await;
        // Distinct `ts` values: equal ones would be ordered by key instead.
        let written = now_ms();
        common::eventually("the clock to tick", async || {
            (now_ms() > written).then_some(())
        })
        .await;
    }
    let before = now_ms();
    let reply = admin
        .request("system-presence", json!("params are ignored"))
        .await;
    let after = now_ms();
    assert_eq!(reply["ok"], true, "{reply}");
    let list = reply["payload"]
        .as_array()
        .expect("the payload is a bare array");
    assert_eq!(list.len(), 4, "{list:#?}");
    let hosts: Vec<&str> = list.iter().map(|e| e["host"].as_str().unwrap()).collect();
    assert_eq!(&hosts[1..], ["third", "second", "first"], "newest ts first");
    let ts: Vec<u64> = list.iter().map(|e| e["ts"].as_u64().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] >= w[1]), "sorted by ts: {ts:?}");
    let own = &list[0];
    assert_eq!(own["mode"], "gateway");
    assert_eq!(own["reason"], "self");
    let own_ts = own["ts"].as_u64().unwrap();
    assert!(
        before <= own_ts && own_ts <= after,
        "the self entry's ts is refreshed by the list: {before} <= {own_ts} <= {after}"
    );
    for entry in list {
        for (field, value) in entry.as_object().unwrap() {
            assert!(!value.is_null(), "{field} is written as null in {entry}");
        }
    }
}

#[tokio::test]
async fn self_entry_describes_the_gateway() {
    let server = TestServer::start().await;
    let mut client = Client::observer(server.addr).await;
    let list = client.presence().await;
    let own = must_find(&list, "reason", "self");
    let host = own["host"].as_str().expect("host");
    assert!(!host.is_empty());
    assert_eq!(own["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(own["modelIdentifier"], std::env::consts::ARCH);
    assert!(
        own["platform"]
            .as_str()
            .unwrap()
            .starts_with(std::env::consts::OS)
    );
    let instance = own["instanceId"].as_str().expect("instanceId");
    assert!(uuid::Uuid::parse_str(instance).is_ok(), "{instance}");
    let text = own["text"].as_str().unwrap();
    assert!(text.starts_with(&format!("Gateway: {host}")), "{text}");
    assert!(
        text.ends_with(&format!(
            "· app {} · mode gateway · reason self",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    if let Some(ip) = own.get("ip") {
        let ip: std::net::Ipv4Addr = ip.as_str().unwrap().parse().expect("an IPv4 address");
        assert!(!ip.is_loopback());
    }
}

#[tokio::test]
async fn system_event_needs_operator_admin() {
    let server = TestServer::start().await;
    for scopes in [
        vec![],
        vec!["operator.read"],
        vec!["operator.read", "operator.write"],
    ] {
        let (mut client, _) = Client::connect(server.addr, connect_params("cli", &scopes)).await;
        let reply = client
            .request("system-event", json!({"text": "not allowed"}))
            .await;
        assert_eq!(reply["ok"], false, "{scopes:?}: {reply}");
        assert_eq!(reply["error"]["code"], "FORBIDDEN");
        assert_eq!(
            reply["error"]["details"],
            json!({
                "code": "MISSING_SCOPE",
                "missingScope": "operator.admin",
                "requiredScopes": ["operator.admin"],
            })
        );
    }
    let mut admin = Client::admin(server.addr).await;
    let reply = admin
        .request("system-event", json!({"text": "allowed"}))
        .await;
    assert_eq!(reply["payload"], json!({"ok": true}), "{reply}");
    assert!(must_find(&admin.presence().await, "text", "allowed")["ts"].is_u64());
}

#[tokio::test]
async fn system_event_is_allowed_for_role_node_without_scopes() {
    let server = TestServer::start().await;
    let mut params = connect_params("node", &[]);
    params["role"] = json!("node");
    let (mut node, hello) = Client::connect(server.addr, params).await;
    assert_eq!(hello["auth"]["role"], "node");
    let reply = node
        .request("system-event", json!({"text": "node beacon", "host": "n1"}))
        .await;
    assert_eq!(reply["payload"], json!({"ok": true}), "{reply}");
    let mut observer = Client::observer(server.addr).await;
    must_find(&observer.presence().await, "host", "n1");
}

#[tokio::test]
async fn health_reports_uptime_and_presence_counts() {
    let server = TestServer::start().await;
    // Any connected client may call it, even without scopes.
    let (mut client, _) = Client::connect(server.addr, connect_params("cli", &[])).await;
    let health = client.call("health", json!(null)).await;
    let keys: Vec<&String> = health.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 4, "{health}");
    assert_eq!(health["ok"], true);
    // Fan-out pacing: the coalescing interval while nobody watches.
    assert_eq!(
        health["fanout"],
        json!({"intervalMs": 100, "watchers": {"full": 0, "delta": 0}})
    );
    assert!(health["uptimeMs"].is_u64(), "{health}");
    assert_eq!(health["presence"], json!({"entries": 1, "version": 1}));
    let mut admin = Client::admin(server.addr).await;
    admin.beacon(json!({"text": "one"})).await;
    admin.beacon(json!({"text": "two"})).await;
    let health = client.call("health", json!({})).await;
    assert_eq!(health["presence"], json!({"entries": 3, "version": 3}));
}

#[tokio::test]
async fn system_presence_right_after_own_system_event_includes_it() {
    let server = TestServer::start().await;
    let mut admin = Client::admin(server.addr).await;
    for round in 0..20 {
        let host = format!("ryw-{round}");
        // Pipelined: the read goes out before the write's reply arrives.
        let write = admin
            .send_request(
                "system-event",
                json!({"text": "ryw", "host": host, "instanceId": host}),
            )
            .await;
        let read = admin.send_request("system-presence", json!({})).await;
        let write_reply = admin.reply(&write).await;
        assert_eq!(write_reply["ok"], true, "{write_reply}");
        let read_reply = admin.reply(&read).await;
        let list = read_reply["payload"].as_array().expect("a list").clone();
        must_find(&list, "host", &host);
    }
}

#[tokio::test]
async fn replies_come_in_request_order() {
    let server = TestServer::start().await;
    let mut admin = Client::admin(server.addr).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        let (method, params) = match i % 3 {
            0 => ("system-event", json!({"text": format!("order {i}")})),
            1 => ("system-presence", json!({})),
            _ => ("health", json!({})),
        };
        ids.push(admin.send_request(method, params).await);
    }
    for id in ids {
        let frame = loop {
            let frame = admin.next_frame().await;
            // Presence events may interleave; only replies are ordered.
            if frame["type"] == "res" {
                break frame;
            }
        };
        assert_eq!(frame["id"], id.as_str(), "{frame}");
        assert_eq!(frame["ok"], true, "{frame}");
    }
}

#[tokio::test]
async fn entries_with_equal_ts_are_ordered_by_key() {
    let server = TestServer::start().await;
    let mut admin = Client::admin(server.addr).await;
    // Pipelined beacons usually land in one writer batch, which stamps
    // them with one `ts`; the order must not depend on arrival.
    let mut ids = Vec::new();
    for key in ["m", "c", "x", "a", "q", "b"] {
        let params = json!({"text": "tie", "instanceId": key});
        ids.push(admin.send_request("system-event", params).await);
    }
    for id in ids {
        assert_eq!(admin.reply(&id).await["ok"], true);
    }
    let list = admin.presence().await;
    assert_eq!(list.len(), 7);
    for pair in list[1..].windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let (ta, tb) = (a["ts"].as_u64().unwrap(), b["ts"].as_u64().unwrap());
        assert!(ta >= tb, "newest first: {list:#?}");
        if ta == tb {
            let (ka, kb) = (
                a["instanceId"].as_str().unwrap(),
                b["instanceId"].as_str().unwrap(),
            );
            assert!(ka < kb, "equal ts ordered by key: {list:#?}");
        }
    }
}

#[tokio::test]
async fn second_connect_after_the_handshake_is_refused_and_the_connection_stays() {
    let server = TestServer::start().await;
    let (mut client, _) = Client::connect(server.addr, connect_params("cli", &[])).await;
    let reply = client.request("connect", connect_params("cli", &[])).await;
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["error"]["code"], "INVALID_REQUEST");
    assert_eq!(client.call("health", json!({})).await["ok"], true);
}

#[tokio::test]
async fn full_queue_answers_unavailable_and_loses_no_accepted_beacon() {
    let server = TestServer::start_with(|c| {
        c.queue_capacity = 1;
        c.max_entries = 10_000;
    })
    .await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(Client::admin(server.addr).await);
    }
    // Pipeline bursts from several connections into a one-slot queue.
    let mut sent = Vec::new();
    for (c, client) in clients.iter_mut().enumerate() {
        for i in 0..250 {
            let instance = format!("burst-{c}-{i}");
            let id = client
                .send_request(
                    "system-event",
                    json!({"text": "burst", "instanceId": instance}),
                )
                .await;
            sent.push((c, id, instance));
        }
    }
    let mut accepted = Vec::new();
    let mut unavailable = 0;
    for (c, id, instance) in sent {
        let reply = clients[c].reply(&id).await;
        if reply["ok"] == true {
            accepted.push(instance);
            continue;
        }
        let error = &reply["error"];
        assert_eq!(error["code"], "UNAVAILABLE", "{reply}");
        assert_eq!(error["retryable"], true, "{reply}");
        assert!(
            error["retryAfterMs"].as_u64().is_some_and(|ms| ms > 0),
            "{reply}"
        );
        unavailable += 1;
    }
    assert!(
        unavailable > 0,
        "a one-slot queue must refuse some of 1000 pipelined beacons"
    );
    assert!(!accepted.is_empty());
    let list = clients[0].presence().await;
    for instance in &accepted {
        assert!(
            list.iter().any(|e| e["instanceId"] == instance.as_str()),
            "accepted beacon {instance} is missing"
        );
    }
}
