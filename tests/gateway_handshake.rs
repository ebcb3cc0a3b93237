//! The handshake and frame rules (docs/protocol.md §1–§3) against the real
//! server: the challenge, the first-frame rules, size and type limits,
//! protocol negotiation, params validation, tokens and scopes, the
//! `hello-ok` shape, and bad frames after the handshake.

mod common;

use common::{Client, TestServer, connect_frame, connect_params, within};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Sends `frame` as the first frame and expects an answer then a close.
async fn refused(server: &TestServer, frame: String) -> (Value, u16) {
    let mut client = Client::open(server.addr).await;
    client.send_text(frame).await;
    let closed = client.expect_close().await;
    assert_eq!(
        closed.frames.len(),
        1,
        "exactly one answer before the close: {closed:?}"
    );
    let code = closed.code.expect("a close code");
    (closed.frames[0].clone(), code)
}

/// The `connect` params of [`connect_params`] with `edit` applied.
fn edited(edit: impl FnOnce(&mut Value)) -> Value {
    let mut params = connect_params("ui", &["operator.read"]);
    edit(&mut params);
    params
}

/// Asserts `reply` is an `INVALID_REQUEST` error with `message`.
fn assert_invalid(reply: &Value, id: &str, message: &str) {
    assert_eq!(reply["type"], "res", "{reply}");
    assert_eq!(reply["id"], id, "{reply}");
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["error"]["code"], "INVALID_REQUEST", "{reply}");
    assert_eq!(reply["error"]["message"], message, "{reply}");
}

#[tokio::test]
async fn challenge_is_the_first_frame_with_uuid_nonce_and_ts() {
    let server = TestServer::start().await;
    let before = common::now_ms();
    let client = Client::open(server.addr).await;
    let after = common::now_ms();
    let challenge = &client.challenge;
    assert_eq!(challenge["type"], "event");
    assert_eq!(challenge["event"], "connect.challenge");
    let nonce = challenge["payload"]["nonce"]
        .as_str()
        .expect("nonce is a string");
    assert!(
        uuid::Uuid::parse_str(nonce).is_ok(),
        "nonce {nonce:?} is a UUID"
    );
    let ts = challenge["payload"]["ts"]
        .as_u64()
        .expect("ts is an integer");
    assert!(before <= ts && ts <= after, "{before} <= {ts} <= {after}");
    // A reply to one connection carries no `seq` (§2).
    assert!(challenge.get("seq").is_none(), "{challenge}");
    let other = Client::open(server.addr).await;
    assert_ne!(
        other.challenge["payload"]["nonce"],
        challenge["payload"]["nonce"]
    );
}

#[tokio::test]
async fn websocket_upgrade_is_accepted_on_ws_path() {
    let server = TestServer::start().await;
    let request = server.ws_url("/ws").into_client_request().unwrap();
    let (mut client, _) = Client::open_request(server.addr, request).await;
    assert_eq!(client.challenge["event"], "connect.challenge");
    let hello = client.handshake(connect_params("cli", &[])).await;
    assert_eq!(hello["type"], "hello-ok");
}

#[tokio::test]
async fn a_permessage_deflate_offer_that_cannot_be_honored_is_declined_and_upgrade_succeeds() {
    let server = TestServer::start().await;
    let mut request = server.ws_url("/").into_client_request().unwrap();
    // A 2^10 window: rollcall compresses shared bytes with 2^15 (the
    // accepted offers are tested in tests/deflate.rs).
    request.headers_mut().insert(
        "sec-websocket-extensions",
        "permessage-deflate; server_max_window_bits=10"
            .parse()
            .unwrap(),
    );
    let (mut client, response) = Client::open_request(server.addr, request).await;
    assert_eq!(response.status(), 101);
    assert!(
        response.headers().get("sec-websocket-extensions").is_none(),
        "no extension is negotiated: {:?}",
        response.headers()
    );
    let hello = client.handshake(connect_params("cli", &[])).await;
    assert_eq!(hello["type"], "hello-ok");
    assert_eq!(client.call("health", json!({})).await["ok"], true);
}

#[tokio::test]
async fn first_frame_other_method_answers_then_closes_1008() {
    let server = TestServer::start().await;
    let frame = json!({"type":"req","id":"h1","method":"health"}).to_string();
    let (reply, code) = refused(&server, frame).await;
    assert_invalid(&reply, "h1", "first request must be connect");
    assert_eq!(code, 1008);
}

#[tokio::test]
async fn first_frame_not_json_closes_1008_without_answer() {
    let server = TestServer::start().await;
    let mut client = Client::open(server.addr).await;
    client.send_text("hello, gateway").await;
    let closed = client.expect_close().await;
    assert_eq!(closed.code, Some(1008));
    assert!(closed.frames.is_empty(), "no answer: {:?}", closed.frames);
}

#[tokio::test]
async fn first_frame_not_a_request_closes_1008_without_answer() {
    let server = TestServer::start().await;
    for frame in [
        json!({"type":"event","event":"connect","id":"e1"}),
        json!([1, 2, 3]),
        json!({"id":"x","method":"connect"}),
    ] {
        let mut client = Client::open(server.addr).await;
        client.send_text(frame.to_string()).await;
        let closed = client.expect_close().await;
        assert_eq!(closed.code, Some(1008), "{frame}");
        assert!(closed.frames.is_empty(), "{frame}: {:?}", closed.frames);
    }
}

#[tokio::test]
async fn pre_handshake_frame_over_64_kib_closes_1009() {
    let server = TestServer::start().await;
    let mut client = Client::open(server.addr).await;
    let mut params = connect_params("cli", &[]);
    params["pad"] = json!("x".repeat(70 * 1024));
    client.send_text(connect_frame("c1", params)).await;
    let closed = client.expect_close().await;
    assert_eq!(closed.code, Some(1009));
    assert!(closed.frames.is_empty(), "{:?}", closed.frames);
}

#[tokio::test]
async fn pre_handshake_frame_of_exactly_64_kib_is_accepted() {
    let server = TestServer::start().await;
    let mut client = Client::open(server.addr).await;
    // An unknown top-level field pads the frame to exactly 64 KiB.
    let mut params = connect_params("cli", &[]);
    params["pad"] = json!("");
    let base = connect_frame("c1", params.clone()).len();
    params["pad"] = json!("x".repeat(64 * 1024 - base));
    let frame = connect_frame("c1", params);
    assert_eq!(frame.len(), 64 * 1024);
    client.send_text(frame).await;
    let reply = client.reply("c1").await;
    assert_eq!(reply["ok"], true, "{reply}");
}

#[tokio::test]
async fn binary_frame_before_handshake_closes_1003() {
    let server = TestServer::start().await;
    let mut client = Client::open(server.addr).await;
    client
        .send_binary(connect_frame("c1", connect_params("cli", &[])).into_bytes())
        .await;
    let closed = client.expect_close().await;
    assert_eq!(closed.code, Some(1003));
}

#[tokio::test]
async fn binary_frame_after_handshake_closes_1003() {
    let server = TestServer::start().await;
    let (mut client, _) = Client::connect(server.addr, connect_params("cli", &[])).await;
    client.send_binary(b"{}".to_vec()).await;
    let closed = client.expect_close().await;
    assert_eq!(closed.code, Some(1003));
}

/// The clock is paused: the server's 10 s handshake timer fires as soon as
/// every task is idle, and the virtual time shows it was the configured one.
#[tokio::test(start_paused = true)]
async fn silent_connection_is_closed_after_handshake_timeout() {
    let server = TestServer::start().await;
    let mut client = Client::open(server.addr).await;
    let opened = tokio::time::Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(60), client.read_until_close())
        .await
        .expect("closed before the 60 s guard");
    let waited = opened.elapsed();
    assert_eq!(closed.code, Some(1008));
    assert!(closed.frames.is_empty(), "{:?}", closed.frames);
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
        "closed after {waited:?}, expected the 10 s default"
    );
}

/// Paused clock again: virtual time runs past the handshake timeout, and
/// a connection that completed `connect` (untracked, so no engine round
/// trip is in flight) is still served.
#[tokio::test(start_paused = true)]
async fn connected_client_outlives_the_handshake_timeout() {
    let server = TestServer::start_with(|c| c.handshake_timeout = Duration::from_secs(2)).await;
    let (mut client, _) = Client::connect(server.addr, connect_params("cli", &[])).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let reply = tokio::time::timeout(Duration::from_secs(60), client.request("health", json!({})))
        .await
        .expect("answered before the 60 s guard");
    assert_eq!(reply["ok"], true, "{reply}");
}

#[tokio::test]
async fn protocol_range_3_3_negotiates_3() {
    let server = TestServer::start().await;
    let params = edited(|p| {
        p["minProtocol"] = json!(3);
        p["maxProtocol"] = json!(3);
    });
    let (_, hello) = Client::connect(server.addr, params).await;
    assert_eq!(hello["protocol"], 3);
}

#[tokio::test]
async fn protocol_range_picks_the_highest_supported() {
    let server = TestServer::start().await;
    for (min, max, expected) in [(3, 4, 4), (1, 9, 4), (4, 4, 4), (2, 3, 3)] {
        let params = edited(|p| {
            p["minProtocol"] = json!(min);
            p["maxProtocol"] = json!(max);
        });
        let (_, hello) = Client::connect(server.addr, params).await;
        assert_eq!(hello["protocol"], expected, "[{min}, {max}]");
    }
}

#[tokio::test]
async fn protocol_range_without_supported_version_answers_mismatch_and_closes_1002() {
    let server = TestServer::start().await;
    for (min, max) in [(1, 2), (5, 9), (4, 3)] {
        let params = edited(|p| {
            p["minProtocol"] = json!(min);
            p["maxProtocol"] = json!(max);
        });
        let (reply, code) = refused(&server, connect_frame("c1", params)).await;
        assert_invalid(&reply, "c1", "protocol mismatch");
        assert_eq!(
            reply["error"]["details"],
            json!({"code": "PROTOCOL_MISMATCH", "expectedProtocol": 4, "supported": [3, 4]})
        );
        assert_eq!(code, 1002, "[{min}, {max}]");
    }
}

#[tokio::test]
async fn invalid_role_answers_and_closes_1008() {
    let server = TestServer::start().await;
    for role in ["admin", "Operator", ""] {
        let params = edited(|p| p["role"] = json!(role));
        let (reply, code) = refused(&server, connect_frame("c1", params)).await;
        assert_invalid(&reply, "c1", "invalid role");
        assert_eq!(code, 1008, "{role:?}");
    }
}

#[tokio::test]
async fn invalid_connect_params_name_the_field_and_close_1008() {
    let server = TestServer::start().await;
    let cases: Vec<(Value, &str)> = vec![
        (
            edited(|p| p["client"]["mode"] = json!("gateway")),
            "client.mode must be one of webchat, cli, ui, backend, node, probe, test",
        ),
        (
            edited(|p| {
                p["client"].as_object_mut().unwrap().remove("id");
            }),
            "client.id is required",
        ),
        (
            edited(|p| p["client"]["version"] = json!("")),
            "client.version must be non-empty",
        ),
        (
            edited(|p| p["client"]["platform"] = json!(7)),
            "client.platform must be a string",
        ),
        (
            edited(|p| {
                p.as_object_mut().unwrap().remove("client");
            }),
            "client is required",
        ),
        (
            edited(|p| p["minProtocol"] = json!("3")),
            "minProtocol must be an integer >= 1",
        ),
        (
            edited(|p| p["maxProtocol"] = json!(0)),
            "maxProtocol must be an integer >= 1",
        ),
        (
            edited(|p| p["scopes"] = json!("operator.read")),
            "scopes must be an array of strings",
        ),
        (
            edited(|p| p["auth"] = json!("secret")),
            "auth must be an object",
        ),
        (
            edited(|p| p["device"] = json!({"id": 42})),
            "device.id must be a string",
        ),
        (edited(|p| p["role"] = json!(1)), "role must be a string"),
    ];
    for (params, why) in cases {
        let (reply, code) = refused(&server, connect_frame("c1", params)).await;
        assert_invalid(&reply, "c1", &format!("invalid connect params: {why}"));
        assert_eq!(code, 1008, "{why}");
    }
}

#[tokio::test]
async fn connect_without_params_is_invalid_params() {
    let server = TestServer::start().await;
    let frame = json!({"type":"req","id":"c1","method":"connect"}).to_string();
    let (reply, code) = refused(&server, frame).await;
    assert_eq!(reply["error"]["code"], "INVALID_REQUEST");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("invalid connect params: "), "{message}");
    assert_eq!(code, 1008);
}

#[tokio::test]
async fn unknown_top_level_and_client_fields_are_ignored() {
    let server = TestServer::start().await;
    let params = edited(|p| {
        p["computerUse"] = json!({"enabled": true});
        p["futureList"] = json!([1, 2]);
        p["client"]["timeZone"] = json!("Europe/Paris");
        p["client"]["nested"] = json!({"a": [null]});
        p["caps"] = json!([]);
        p["commands"] = json!(["system.run"]);
        p["permissions"] = json!({"screen": true});
        p["locale"] = json!("en-US");
        p["userAgent"] = json!("it/1");
        p["pathEnv"] = json!("/bin");
        p["transports"] = json!(["ws"]);
    });
    let (_, hello) = Client::connect(server.addr, params).await;
    assert_eq!(hello["type"], "hello-ok");
}

#[tokio::test]
async fn mode_is_trimmed_and_lowercased() {
    let server = TestServer::start().await;
    let params = edited(|p| p["client"]["mode"] = json!("  WebChat "));
    let (_, hello) = Client::connect(server.addr, params).await;
    let own = hello["snapshot"]["presence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["clientId"] == "it-client")
        .cloned()
        .expect("own entry");
    assert_eq!(own["mode"], "webchat");
}

fn with_token(token: Option<&str>, scopes: &[&str]) -> Value {
    let mut params = connect_params("cli", scopes);
    if let Some(token) = token {
        params["auth"] = json!({"token": token});
    }
    params
}

#[tokio::test]
async fn missing_or_wrong_token_answers_unauthorized_and_closes_1008() {
    let server = TestServer::start_with(|c| c.tokens = vec!["s3cret".parse().unwrap()]).await;
    // OpenClaw clients read `details.code` to tell an auth failure (stop
    // and ask for a token) from an outage (retry).
    for (token, detail) in [
        (None, "AUTH_TOKEN_MISSING"),
        (Some(""), "AUTH_TOKEN_MISSING"),
        (Some("wrong"), "AUTH_TOKEN_MISMATCH"),
        (Some("s3cre"), "AUTH_TOKEN_MISMATCH"),
        (Some("s3cretx"), "AUTH_TOKEN_MISMATCH"),
    ] {
        let params = with_token(token, &["operator.read"]);
        let (reply, code) = refused(&server, connect_frame("c1", params)).await;
        assert_invalid(&reply, "c1", "unauthorized");
        assert_eq!(
            reply["error"]["details"],
            json!({"code": detail}),
            "{token:?}"
        );
        assert_eq!(code, 1008, "{token:?}");
    }
    // An `auth` object without a token is no token.
    let mut params = with_token(None, &[]);
    params["auth"] = json!({"password": "s3cret"});
    let (reply, code) = refused(&server, connect_frame("c1", params)).await;
    assert_invalid(&reply, "c1", "unauthorized");
    assert_eq!(reply["error"]["details"]["code"], "AUTH_TOKEN_MISSING");
    assert_eq!(code, 1008);
}

#[tokio::test]
async fn right_token_is_accepted_with_requested_scopes() {
    let server = TestServer::start_with(|c| c.tokens = vec!["s3cret".parse().unwrap()]).await;
    let scopes = ["operator.read", "operator.write", "operator.admin"];
    let (mut client, hello) =
        Client::connect(server.addr, with_token(Some("s3cret"), &scopes)).await;
    assert_eq!(hello["auth"]["scopes"], json!(scopes));
    assert_eq!(hello["auth"]["role"], "operator");
    assert_eq!(client.call("health", json!({})).await["ok"], true);
}

#[tokio::test]
async fn scopes_are_intersected_with_the_token_grant() {
    let server = TestServer::start_with(|c| {
        c.tokens = vec!["dash:read".parse().unwrap(), "root".parse().unwrap()];
    })
    .await;
    let (mut dash, hello) = Client::connect(
        server.addr,
        with_token(Some("dash"), &["operator.admin", "operator.read"]),
    )
    .await;
    assert_eq!(hello["auth"]["scopes"], json!(["operator.read"]));
    // Admin was asked for and not granted: beacons are refused.
    let reply = dash.request("system-event", json!({"text": "hi"})).await;
    assert_eq!(reply["error"]["code"], "FORBIDDEN", "{reply}");
    assert_eq!(dash.presence().await.len(), 1);
    // The all-scopes token grants exactly what is asked, no more.
    let (_, hello) =
        Client::connect(server.addr, with_token(Some("root"), &["operator.write"])).await;
    assert_eq!(hello["auth"]["scopes"], json!(["operator.write"]));
}

#[tokio::test]
async fn open_mode_grants_requested_scopes_deduplicated() {
    let server = TestServer::start().await;
    let (_, hello) = Client::connect(
        server.addr,
        connect_params("cli", &["operator.admin", "operator.admin", "custom.scope"]),
    )
    .await;
    assert_eq!(
        hello["auth"]["scopes"],
        json!(["operator.admin", "custom.scope"])
    );
}

#[tokio::test]
async fn hello_ok_has_the_documented_shape() {
    let server = TestServer::start_with(|c| {
        c.max_payload = 512 * 1024;
        c.max_buffered_bytes = 2 * 1024 * 1024;
        c.tick_interval = Duration::from_secs(45);
    })
    .await;
    let mut params = connect_params("ui", &["operator.read"]);
    params["client"]["instanceId"] = json!("hello-shape");
    let reply = {
        let mut client = Client::open(server.addr).await;
        client.send_text(connect_frame("c-hello", params)).await;
        client.reply("c-hello").await
    };
    assert_eq!(reply["type"], "res");
    assert_eq!(reply["id"], "c-hello");
    assert_eq!(reply["ok"], true);
    assert!(
        reply.get("seq").is_none(),
        "a reply carries no seq: {reply}"
    );
    let hello = &reply["payload"];
    assert_eq!(hello["type"], "hello-ok");
    assert_eq!(hello["protocol"], 4);
    assert_eq!(hello["server"]["version"], env!("CARGO_PKG_VERSION"));
    let conn_id = hello["server"]["connId"]
        .as_str()
        .expect("connId is a string");
    assert!(!conn_id.is_empty());
    let methods = hello["features"]["methods"].as_array().unwrap();
    for method in ["system-presence", "system-event", "health"] {
        assert!(methods.contains(&json!(method)), "{method} in {methods:?}");
    }
    let events = hello["features"]["events"].as_array().unwrap();
    for event in ["connect.challenge", "presence", "tick", "shutdown"] {
        assert!(events.contains(&json!(event)), "{event} in {events:?}");
    }
    let snapshot = &hello["snapshot"];
    let presence = snapshot["presence"].as_array().expect("presence is a list");
    assert!(
        presence.iter().any(|e| e["instanceId"] == "hello-shape"),
        "the snapshot holds the connection's own entry: {presence:#?}"
    );
    assert!(presence.iter().any(|e| e["reason"] == "self"));
    assert!(snapshot["stateVersion"]["presence"].as_u64().unwrap() >= 2);
    assert!(snapshot["stateVersion"]["health"].is_u64());
    assert!(snapshot["uptimeMs"].is_u64());
    assert!(snapshot["health"].is_object());
    assert_eq!(
        hello["auth"],
        json!({"role": "operator", "scopes": ["operator.read"]})
    );
    assert_eq!(
        hello["policy"],
        json!({"maxPayload": 512 * 1024, "maxBufferedBytes": 2 * 1024 * 1024, "tickIntervalMs": 45_000})
    );
}

#[tokio::test]
async fn hello_snapshot_of_untracked_client_starts_at_version_1_with_self_only() {
    let server = TestServer::start().await;
    let (_, hello) = Client::connect(server.addr, connect_params("cli", &["operator.read"])).await;
    let presence = hello["snapshot"]["presence"].as_array().unwrap();
    assert_eq!(presence.len(), 1, "{presence:#?}");
    assert_eq!(presence[0]["reason"], "self");
    assert_eq!(hello["snapshot"]["stateVersion"]["presence"], 1);
}

#[tokio::test]
async fn bad_frame_after_handshake_answers_invalid_request_frame_and_stays_open() {
    let server = TestServer::start().await;
    let (mut client, _) = Client::connect(server.addr, connect_params("cli", &[])).await;
    let cases = [
        (
            "not json at all".to_owned(),
            "invalid",
            "frame is not valid JSON",
        ),
        ("[1,2]".to_owned(), "invalid", "frame must be a JSON object"),
        (
            json!({"type":"req","id":"m1"}).to_string(),
            "m1",
            "method is required",
        ),
        (
            json!({"type":"req","id":"m2","method":""}).to_string(),
            "m2",
            "method must be non-empty",
        ),
        (
            json!({"type":"req","id":"m3","method":7}).to_string(),
            "m3",
            "method must be a string",
        ),
        (
            json!({"type":"event","id":"m4","method":"health"}).to_string(),
            "m4",
            "type must be \"req\"",
        ),
        (
            json!({"type":"req","method":"health"}).to_string(),
            "invalid",
            "id is required",
        ),
        (
            json!({"type":"req","id":"","method":"health"}).to_string(),
            "invalid",
            "id must be non-empty",
        ),
        (
            json!({"type":"req","id":5,"method":"health"}).to_string(),
            "invalid",
            "id must be a string",
        ),
    ];
    for (frame, id, why) in cases {
        client.send_text(frame).await;
        let reply = client.next_frame().await;
        assert_invalid(&reply, id, &format!("invalid request frame: {why}"));
    }
    // Still open and serving.
    assert_eq!(client.call("health", json!({})).await["ok"], true);
}

#[tokio::test]
async fn unknown_method_answers_unknown_method_name() {
    let server = TestServer::start().await;
    let (mut client, _) = Client::connect(server.addr, connect_params("cli", &[])).await;
    let reply = client.request("nodes.list", json!({})).await;
    assert_eq!(reply["ok"], false);
    assert_eq!(reply["error"]["code"], "INVALID_REQUEST");
    assert_eq!(reply["error"]["message"], "unknown method: nodes.list");
    assert_eq!(client.call("health", json!({})).await["ok"], true);
}

#[tokio::test]
async fn frame_over_max_payload_after_handshake_closes_1009() {
    let server = TestServer::start_with(|c| c.max_payload = 4096).await;
    let (mut client, hello) = Client::connect(server.addr, connect_params("cli", &[])).await;
    assert_eq!(hello["policy"]["maxPayload"], 4096);
    // At the limit is fine.
    let mut params = json!({"pad": ""});
    let frame = |params: &Value| {
        json!({"type":"req","id":"big","method":"health","params":params}).to_string()
    };
    let base = frame(&params).len();
    params["pad"] = json!("x".repeat(4096 - base));
    assert_eq!(frame(&params).len(), 4096);
    client.send_text(frame(&params)).await;
    assert_eq!(client.reply("big").await["ok"], true);
    // One byte over is not.
    params["pad"] = json!("x".repeat(4096 - base + 1));
    client.send_text(frame(&params)).await;
    let closed = client.expect_close().await;
    assert_eq!(closed.code, Some(1009));
}

#[tokio::test]
async fn frames_after_the_handshake_may_exceed_the_pre_handshake_limit() {
    let server = TestServer::start().await;
    let (mut client, _) = Client::connect(server.addr, connect_params("cli", &[])).await;
    let pad = "x".repeat(100 * 1024);
    let reply = client.request("health", json!({"pad": pad})).await;
    assert_eq!(reply["ok"], true, "{reply}");
}

#[tokio::test]
async fn upgrade_on_other_paths_is_refused() {
    // Only `/` and `/ws` upgrade; another path answers plain HTTP.
    let server = TestServer::start().await;
    let request = server.ws_url("/v1/presence").into_client_request().unwrap();
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let result = within(
        "the refused upgrade",
        tokio_tungstenite::client_async(request, tcp),
    )
    .await;
    assert!(result.is_err(), "no upgrade on /v1/presence");
}

#[tokio::test]
async fn max_connections_counts_upgraded_websockets() {
    let server = TestServer::start_with(|c| c.max_connections = 2).await;
    let first = Client::open(server.addr).await;
    let _second = Client::open(server.addr).await;
    // The third socket is accepted by the kernel but not served while two
    // WebSockets hold the limit.
    let third = tokio::time::timeout(
        Duration::from_millis(300),
        tokio_tungstenite::connect_async(format!("ws://{}/", server.addr)),
    )
    .await;
    assert!(
        third.is_err(),
        "a third WebSocket must wait for a free slot"
    );
    first.close().await;
    let third = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(format!("ws://{}/", server.addr)),
    )
    .await;
    assert!(
        matches!(third, Ok(Ok(_))),
        "a slot freed by a closed WebSocket is reused"
    );
}
