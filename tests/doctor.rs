//! The doctor end to end (issue 12): each finding reproduced with real
//! WebSocket clients against the in-process gateway, then read twice: from
//! `GET /v1/presence/doctor` and through the real `rollcall doctor` binary
//! (text, `--json`, exit codes). Also its auth, and how the CLI fails.

mod common;

use common::doctor::{conn, report, report_until, the_finding};
use common::{Client, TestServer, connect_params, http_get};
use rollcall::presence::FindingKind::{CapPressure, Duplicate, Gone, StaleConnected};
use rollcall::presence::{Finding, KeySource, Report, WriteKind};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::process::Output;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Runs the real binary with `args`; `env` adds variables to a clean
/// client environment.
async fn rollcall_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollcall"));
    command
        .args(args)
        .env_remove("ROLLCALL_CLIENT_TOKEN")
        .env_remove("ROLLCALL_URL");
    for (name, value) in env {
        command.env(name, value);
    }
    common::within("the rollcall binary", command.output())
        .await
        .expect("the rollcall binary runs")
}

/// `rollcall doctor --url URL EXTRA…`.
async fn doctor_cli(server: &TestServer, extra: &[&str]) -> Output {
    let url = server.ws_url("/");
    let mut args = vec!["doctor", "--url", url.as_str()];
    args.extend_from_slice(extra);
    rollcall_env(&args, &[]).await
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Text with every run of whitespace made one space, so a phrase the
/// report wrapped over two lines still matches.
fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The CLI's text report; asserts the exit code.
async fn doctor_text(server: &TestServer, code: i32) -> String {
    let out = doctor_cli(server, &[]).await;
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{text}\nstderr:\n{}",
        stderr(&out)
    );
    text
}

/// The CLI's `--json` report; asserts the exit code.
async fn doctor_json(server: &TestServer, code: i32) -> Report {
    let out = doctor_cli(server, &["--json"]).await;
    assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("--json prints the report as JSON")
}

fn keys(finding: &Finding) -> Vec<&str> {
    finding.keys.iter().map(String::as_str).collect()
}

/// A tracked `ui` client that may also post beacons, with extra `client`
/// fields.
fn ui_params(client: Value) -> Value {
    let mut params = connect_params("ui", &["operator.read", "operator.admin"]);
    for (k, v) in client.as_object().expect("client fields are an object") {
        params["client"][k] = v.clone();
    }
    params
}

fn conn_id(hello: &Value) -> String {
    hello["server"]["connId"]
        .as_str()
        .unwrap_or_else(|| panic!("hello-ok has no server.connId: {hello}"))
        .to_owned()
}

#[tokio::test]
async fn reconnect_without_instance_id_is_a_duplicate_and_leaves_a_gone_row() {
    let server = TestServer::start().await;
    let params = ui_params(json!({"displayName": "laptop"}));
    let (first, hello) = Client::connect(server.addr, params.clone()).await;
    let old = conn_id(&hello);
    first.close().await;
    report_until(server.addr, "the first row gone", |r| r.count(Gone) == 1).await;
    let (_second, hello) = Client::connect(server.addr, params).await;
    let new = conn_id(&hello);
    assert_ne!(old, new);

    let r = report_until(server.addr, "a duplicate", |r| r.count(Duplicate) == 1).await;
    let dup = the_finding(&r, Duplicate);
    assert_eq!(dup.key, new.as_str(), "the newer row is the suspect");
    assert_eq!(keys(dup), [new.as_str(), old.as_str()]);
    let fix = dup.fix.as_deref().unwrap();
    assert!(fix.contains("sends no `client.instanceId`"), "{fix}");
    let gone = the_finding(&r, Gone);
    assert_eq!(gone.key, old.as_str());
    let ttl = r.cap.ttl_ms;
    let left = gone.removed_in_ms.unwrap();
    assert!(left > 0 && left <= ttl, "removedInMs {left}, ttl {ttl}");
    assert_eq!(r.count(StaleConnected) + r.count(CapPressure), 0);
    let rows = &r.rows;
    assert_eq!(rows[&new].key_source, KeySource::ConnectionId);
    assert!(rows[&new].live);
    assert_eq!(conn(&rows[&new].created), Some(new.clone()));
    assert!(!rows[&old].live);
    let last = rows[&old].writes.last().unwrap();
    assert_eq!(
        (last.by.kind, conn(last)),
        (WriteKind::Disconnect, Some(old.clone()))
    );

    let text = doctor_text(&server, 1).await;
    assert!(
        text.starts_with("rollcall doctor: 2 findings in 3 rows"),
        "{text}"
    );
    assert!(text.contains("\nduplicate (1): "), "{text}");
    assert!(
        text.contains(&format!("  - `{new}` (with `{old}`)")),
        "{text}"
    );
    assert!(text.contains("\ngone (1): "), "{text}");
    let flat = flat(&text);
    assert!(flat.contains("sends no `client.instanceId`"), "{text}");
    assert!(flat.contains(&format!("ago, connection {new}")), "{text}");
    assert!(flat.contains("key from the connection id"), "{text}");

    let json = doctor_json(&server, 1).await;
    assert_eq!(the_finding(&json, Duplicate).key, new);
    assert_eq!(the_finding(&json, Gone).key, old);
}

#[tokio::test]
async fn beacons_with_another_instance_id_are_a_duplicate_of_the_connect_row() {
    let server = TestServer::start().await;
    let params = ui_params(json!({"instanceId": "mac-1", "displayName": "studio"}));
    let (mut client, hello) = Client::connect(server.addr, params).await;
    let conn = conn_id(&hello);
    // `system-event` answers once the write is applied.
    client
        .beacon(json!({"text": "studio is here", "instanceId": "mac-2"}))
        .await;

    let r = report_until(server.addr, "a duplicate", |r| r.count(Duplicate) == 1).await;
    let dup = the_finding(&r, Duplicate);
    assert_eq!(dup.key, "mac-2");
    assert_eq!(keys(dup), ["mac-2", "mac-1"]);
    let fix = dup.fix.as_deref().unwrap();
    assert!(
        fix.contains("beacons use `instanceId` mac-2 while its connect used mac-1"),
        "{fix}"
    );
    assert!(fix.contains(&conn), "the fix names the connection: {fix}");
    let beacon_row = &r.rows["mac-2"];
    assert_eq!(beacon_row.key_source, KeySource::BeaconInstanceId);
    let last = beacon_row.writes.last().unwrap();
    assert_eq!(last.by.kind, WriteKind::Beacon);
    assert_eq!(
        common::doctor::conn(last).as_ref(),
        Some(&conn),
        "the beacon's connection is the hello's connId"
    );
    let connect_row = &r.rows["mac-1"];
    assert_eq!(connect_row.created.by.kind, WriteKind::Connect);
    assert_eq!(
        common::doctor::conn(&connect_row.created).as_ref(),
        Some(&conn)
    );
    assert_eq!(r.findings.len(), 1, "{r:#?}");

    let text = doctor_text(&server, 1).await;
    assert!(
        text.starts_with("rollcall doctor: 1 finding in 3 rows"),
        "{text}"
    );
    assert!(text.contains("  - `mac-2` (with `mac-1`)"), "{text}");
    assert!(text.contains("  `mac-1`: connected, "), "{text}");
    assert!(
        text.contains("  `mac-2`: no open connection, "),
        "a beacon row has no connection of its own: {text}"
    );
    let flat = flat(&text);
    assert!(
        flat.contains("beacons use `instanceId` mac-2 while its connect used mac-1"),
        "{text}"
    );
    assert!(flat.contains("key from the beacon's instanceId"), "{text}");
    assert!(flat.contains(&format!("ago, connection {conn}")), "{text}");

    let json = doctor_json(&server, 1).await;
    assert_eq!(
        common::doctor::conn(&json.rows["mac-2"].writes[0]).as_ref(),
        Some(&conn),
        "{json:#?}"
    );
}

#[tokio::test]
async fn a_silent_open_connection_is_stale_connected_then_gone_once_closed() {
    let server = TestServer::start_with(|c| c.stale_after = Duration::from_secs(1)).await;
    let params = ui_params(json!({"instanceId": "quiet-1", "displayName": "quiet"}));
    let (mut client, hello) = Client::connect(server.addr, params).await;
    let conn = conn_id(&hello);
    // Only a row older than --stale-after is ever stale, by the server's
    // own clock (no wall time measured here).
    client
        .beacon(json!({"text": "once", "instanceId": "quiet-1"}))
        .await;
    let fresh = report(server.addr).await;
    for f in fresh.listed(StaleConnected) {
        assert!(f.age_ms.unwrap() > 1000, "{fresh:#?}");
    }

    let r = report_until(server.addr, "stale-connected", |r| {
        r.count(StaleConnected) == 1
    })
    .await;
    let stale = the_finding(&r, StaleConnected);
    assert_eq!(stale.key, "quiet-1");
    assert!(stale.age_ms.unwrap() > 1000, "{stale:?}");
    let summary = stale.summary.as_str();
    assert!(
        summary.contains("is connected but its last beacon was"),
        "{summary}"
    );
    assert!(summary.contains(&conn), "{summary}");
    assert!(r.rows["quiet-1"].live);
    assert_eq!(r.count(Gone) + r.count(Duplicate), 0, "{r:#?}");

    let text = doctor_text(&server, 1).await;
    assert!(text.contains("\nstale-connected (1): "), "{text}");
    assert!(text.contains("  `quiet-1`: connected, active"), "{text}");
    assert!(flat(&text).contains("Make the client send a `system-event` beacon"));

    client.close().await;
    let r = report_until(server.addr, "gone instead of stale", |r| {
        r.count(Gone) == 1 && r.count(StaleConnected) == 0
    })
    .await;
    assert_eq!(the_finding(&r, Gone).key, "quiet-1");
    assert!(!r.rows["quiet-1"].live);
    let text = doctor_text(&server, 1).await;
    assert!(text.contains("\ngone (1): "), "{text}");
    assert!(!text.contains("stale-connected ("), "{text}");
}

#[tokio::test]
async fn a_disconnect_is_gone_until_the_ttl() {
    let server = TestServer::start().await;
    let params = ui_params(json!({"instanceId": "left-1", "displayName": "left"}));
    let (client, hello) = Client::connect(server.addr, params).await;
    let conn = conn_id(&hello);
    let before = report(server.addr).await;
    assert!(before.findings.is_empty(), "{before:#?}");
    client.close().await;

    let r = report_until(server.addr, "a gone row", |r| r.count(Gone) == 1).await;
    let gone = the_finding(&r, Gone);
    assert_eq!(gone.key, "left-1");
    let ttl = r.cap.ttl_ms;
    let left = gone.removed_in_ms.unwrap();
    assert!(
        left <= ttl && left > ttl - 10_000,
        "removedInMs {left}, ttl {ttl}"
    );
    assert!(gone.summary.as_str().contains("disconnected"));
    assert_eq!(r.findings.len(), 1, "{r:#?}");
    let writes = &r.rows["left-1"].writes;
    let kinds: Vec<WriteKind> = writes.iter().map(|w| w.by.kind).collect();
    assert_eq!(kinds, [WriteKind::Connect, WriteKind::Disconnect]);
    assert!(
        writes
            .iter()
            .all(|w| common::doctor::conn(w).as_ref() == Some(&conn))
    );

    let text = doctor_text(&server, 1).await;
    assert!(text.contains("\ngone (1): "), "{text}");
    assert!(text.contains("  - `left-1`, "), "{text}");
    assert!(text.contains(", removed in "), "{text}");
    assert!(text.contains("  `left-1`: disconnected"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("disconnect ")
                && l.ends_with(&format!("ago, connection {conn}"))),
        "{text}"
    );
}

#[tokio::test]
async fn a_full_cap_evicting_rows_is_cap_pressure() {
    let server = TestServer::start_with(|c| c.max_entries = 2).await;
    let mut clients = Vec::new();
    for n in 1..=4 {
        let params =
            ui_params(json!({"instanceId": format!("cap-{n}"), "displayName": format!("box-{n}")}));
        clients.push(Client::connect(server.addr, params).await.0);
    }
    let r = report_until(server.addr, "two evictions", |r| r.cap.evicted_recent >= 2).await;
    let cap = &r.cap;
    assert_eq!((cap.entries, cap.max_entries), (2, 2));
    let pressure = the_finding(&r, CapPressure);
    assert_eq!(Some(&pressure.key), cap.oldest_key.as_ref());
    // The oldest went first: what is left are the two newest rows.
    let list = http_get(server.addr, "/v1/presence", &[]).await.json();
    let mut ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["instanceId"].as_str())
        .filter(|id| id.starts_with("cap-"))
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["cap-3", "cap-4"]);
    assert!(matches!(pressure.key.as_str(), "cap-3" | "cap-4"));
    assert!(
        pressure.summary.contains("evicted 2 row(s)"),
        "{pressure:?}"
    );
    assert!(pressure.fix.as_deref().unwrap().contains("--max-entries"));
    assert_eq!(r.count(Duplicate), 0, "distinct instanceIds: {r:#?}");

    let text = doctor_text(&server, 1).await;
    assert!(text.contains("\ncap-pressure (1): "), "{text}");
    assert!(
        text.contains("cap: 2 of 2 rows in use; in the last 5m 0s the cap evicted 2"),
        "{text}"
    );
    let json = doctor_json(&server, 1).await;
    assert!(json.cap.evicted_recent >= 2);
}

#[tokio::test]
async fn a_clean_gateway_exits_zero_and_says_so() {
    let server = TestServer::start().await;
    let params = ui_params(json!({"instanceId": "good-1", "displayName": "good"}));
    let (mut client, _) = Client::connect(server.addr, params).await;
    client
        .beacon(json!({"text": "still here", "instanceId": "good-1"}))
        .await;
    let r = report(server.addr).await;
    assert!(r.findings.is_empty(), "{r:#?}");
    assert_eq!(r.entries, 2);

    let text = doctor_text(&server, 0).await;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("rollcall doctor: all good, no findings in 2 rows"),
        "{text}"
    );
    assert!(lines[1].starts_with("cap: 1 of 200 rows in use"), "{text}");
    let json = doctor_json(&server, 0).await;
    assert!(json.findings.is_empty());
    // http:// names the same port.
    let http = format!("http://{}", server.addr);
    let out = rollcall_env(&["doctor", "--url", &http], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // The same gateway with a finding exits 1.
    client.close().await;
    report_until(server.addr, "a gone row", |r| r.count(Gone) == 1).await;
    doctor_text(&server, 1).await;
}

#[tokio::test]
async fn with_tokens_the_doctor_needs_a_read_token() {
    let server = TestServer::start_with(|c| {
        c.tokens = ["root", "dash:read", "pen:node"]
            .iter()
            .map(|t| t.parse().expect("a valid token grant"))
            .collect();
    })
    .await;
    let route = "/v1/presence/doctor";
    assert_eq!(http_get(server.addr, route, &[]).await.status, 401);
    let no_read = http_get(server.addr, route, &[("authorization", "Bearer pen")]).await;
    assert_eq!(no_read.status, 401);
    let ok = http_get(server.addr, route, &[("authorization", "Bearer dash")]).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["findings"], json!([]));

    let addr = server.addr.to_string();
    let out = doctor_cli(&server, &[]).await;
    assert_eq!(out.status.code(), Some(4), "{}", stdout(&out));
    let message = stderr(&out);
    assert!(
        message.contains("token") && message.contains("--token"),
        "{message}"
    );
    assert!(message.contains(&addr), "{message}");
    assert!(out.stdout.is_empty());

    let out = doctor_cli(&server, &["--token", "wrong"]).await;
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stderr(&out).contains("refused the token"),
        "{}",
        stderr(&out)
    );

    let out = doctor_cli(&server, &["--token", "pen"]).await;
    assert_eq!(out.status.code(), Some(5));
    assert!(
        stderr(&out).contains("lacks a read scope"),
        "{}",
        stderr(&out)
    );

    let out = doctor_cli(&server, &["--token", "dash"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let url = server.ws_url("/");
    let args = ["doctor", "--url", url.as_str()];
    let out = rollcall_env(&args, &[("ROLLCALL_CLIENT_TOKEN", "dash")]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[tokio::test]
async fn an_unreachable_gateway_or_tls_url_is_an_error_naming_it() {
    // Bind then drop a listener: nothing listens on that port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.1:{port}");
    let out = rollcall_env(&["doctor", "--url", &url], &[]).await;
    assert_eq!(out.status.code(), Some(3));
    let message = stderr(&out);
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(message.contains("cannot reach the gateway"), "{message}");

    // Over TLS the same, naming the https:// endpoint it tried.
    let pin = "0".repeat(64);
    let url = format!("wss://127.0.0.1:{port}");
    let out = rollcall_env(&["doctor", "--url", &url, "--tls-fingerprint", &pin], &[]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.contains(&format!("https://127.0.0.1:{port}/v1/presence/doctor")),
        "{message}"
    );
}

/// A one-trick HTTP server: reads each request head and answers `answer`,
/// or holds the connection without answering when there is none.
async fn fake_gateway(answer: Option<&'static str>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                match answer {
                    Some(answer) => {
                        let _ = socket.write_all(answer.as_bytes()).await;
                    }
                    None => std::future::pending::<()>().await,
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_old_gateway_a_bad_body_and_a_silent_one_have_error_codes() {
    let old = fake_gateway(Some(
        "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    ))
    .await;
    let url = format!("ws://{old}");
    let out = rollcall_env(&["doctor", "--url", &url], &[]).await;
    assert_eq!(out.status.code(), Some(6));
    assert!(stderr(&out).contains("has no doctor"), "{}", stderr(&out));

    let bad = fake_gateway(Some(
        "HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\nnot json",
    ))
    .await;
    let url = format!("ws://{bad}");
    let out = rollcall_env(&["doctor", "--url", &url], &[]).await;
    assert_eq!(out.status.code(), Some(6));
    assert!(
        stderr(&out).contains("not a doctor's report"),
        "{}",
        stderr(&out)
    );

    let silent = fake_gateway(None).await;
    let url = format!("ws://{silent}");
    let out = rollcall_env(&["doctor", "--url", &url, "--timeout", "300ms"], &[]).await;
    assert_eq!(out.status.code(), Some(3));
    let message = stderr(&out);
    assert!(
        message.contains("did not answer") && message.contains(&silent.to_string()),
        "{message}"
    );
}

#[tokio::test]
async fn a_read_only_client_that_never_beacons_is_not_stale() {
    let server = TestServer::start_with(|c| c.stale_after = Duration::from_secs(1)).await;
    let mut params = connect_params("ui", &["operator.read"]);
    params["client"]["instanceId"] = json!("watcher-1");
    let (_watcher, _) = Client::connect(server.addr, params).await;
    let (mut admin, _) = Client::connect(
        server.addr,
        ui_params(json!({"instanceId": "admin-1", "displayName": "admin"})),
    )
    .await;
    admin
        .beacon(json!({"text": "once", "instanceId": "admin-1"}))
        .await;
    // The admin client beaconed once and went quiet: stale. The read-only
    // watcher cannot beacon and never did: its row ages by design.
    let r = report_until(server.addr, "the admin row stale", |r| {
        r.count(StaleConnected) >= 1
    })
    .await;
    let stale = the_finding(&r, StaleConnected);
    assert_eq!(stale.key, "admin-1", "{r:#?}");
    assert!(
        stale
            .summary
            .as_str()
            .contains("stopped sending the beacons it used to send"),
        "{stale:?}"
    );
    assert_eq!(r.count(StaleConnected), 1, "{r:#?}");
    assert!(!r.rows.contains_key("watcher-1"), "{r:#?}");
}
