//! Broadcasts through the real server (docs/protocol.md §7): who gets presence
//! events, coalescing, `seq` and `stateVersion`, `presence.delta`, ticks,
//! slow consumers and graceful shutdown.

mod common;

use common::{Client, TestServer, connect_params, entry_with, within};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn seq(frame: &Value) -> u64 {
    frame["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("a broadcast carries seq: {frame}"))
}

fn presence_version(frame: &Value) -> u64 {
    frame["stateVersion"]["presence"]
        .as_u64()
        .unwrap_or_else(|| panic!("a presence event carries stateVersion: {frame}"))
}

/// The `presence` and `presence.delta` events `client` kept while it
/// waited for something else.
fn presence_pending(client: &mut Client) -> Vec<Value> {
    let pending = client.take_pending().into_iter();
    pending
        .filter(|f| f["event"] == "presence" || f["event"] == "presence.delta")
        .collect()
}

/// An `operator.read` client that takes `presence.delta`.
fn delta_params() -> Value {
    let mut params = connect_params("cli", &["operator.read"]);
    params["caps"] = json!(["presence.delta"]);
    params
}

#[tokio::test]
async fn presence_events_go_only_to_read_scope_operators() {
    let server = TestServer::start().await;
    let mut readers = Vec::new();
    for scope in ["operator.read", "operator.write", "operator.admin"] {
        readers.push(
            Client::connect(server.addr, connect_params("cli", &[scope]))
                .await
                .0,
        );
    }
    let (mut no_scope, _) = Client::connect(server.addr, connect_params("cli", &[])).await;
    let mut node_params = connect_params("node", &["operator.read", "operator.admin"]);
    node_params["role"] = json!("node");
    node_params["client"]["instanceId"] = json!("quiet-node");
    let (mut node, _) = Client::connect(server.addr, node_params).await;
    let mut admin = Client::admin(server.addr).await;
    admin.beacon(json!({"text": "news", "host": "news"})).await;
    for reader in &mut readers {
        reader
            .presence_until(|list| entry_with(list, "host", "news").is_some())
            .await;
    }
    // The fan-out that reached the readers queued everything it would send
    // to the others too, ahead of any later reply.
    for client in [&mut no_scope, &mut node] {
        client.call("health", json!({})).await;
        let stray = presence_pending(client);
        assert!(stray.is_empty(), "no presence events: {stray:?}");
    }
}

/// Through real sockets, without timing: a burst reaches a watcher as
/// fewer events than changes, in version order, the last with the final
/// list. When each goes out (first at once, then one per interval) is
/// asserted on virtual time in `src/gateway/broadcast.rs`'s tests.
#[tokio::test]
async fn burst_of_beacons_is_coalesced_into_fewer_events_ending_on_the_final_list() {
    let server = TestServer::start_with(|c| c.coalesce = Duration::from_millis(400)).await;
    let mut observer = Client::observer(server.addr).await;
    let mut admin = Client::admin(server.addr).await;
    const BURST: usize = 20;
    let mut ids = Vec::new();
    for i in 0..BURST {
        let params = json!({"text": format!("burst {i}"), "instanceId": format!("b{i}")});
        ids.push(admin.send_request("system-event", params).await);
    }
    let mut versions = Vec::new();
    let last = within("the final list", async {
        loop {
            let event = observer.next_event("presence").await;
            versions.push(presence_version(&event));
            let list = event["payload"]["presence"].as_array().unwrap().clone();
            if list.len() == BURST + 1 {
                return list;
            }
        }
    })
    .await;
    for id in ids {
        assert_eq!(admin.reply(&id).await["ok"], true);
    }
    assert!(
        versions.len() < BURST,
        "{BURST} beacons, {} presence events: {versions:?}",
        versions.len()
    );
    assert!(versions.windows(2).all(|v| v[0] < v[1]), "{versions:?}");
    for i in 0..BURST {
        assert!(
            entry_with(&last, "instanceId", &format!("b{i}")).is_some(),
            "the last event carries the final list"
        );
    }
    // The latest list went out: nothing newer is pending.
    let health = observer.call("health", json!({})).await;
    assert_eq!(health["presence"]["version"], *versions.last().unwrap());
}

/// Through real sockets, without timing: with an hour's interval, the
/// first change after a quiet period goes out at once and the next ones
/// wait; the watcher's `health` reply, sent after they were applied,
/// comes with no presence event before it.
#[tokio::test]
async fn changes_inside_the_interval_wait_for_it() {
    let server = TestServer::start_with(|c| c.coalesce = Duration::from_secs(3600)).await;
    let mut observer = Client::observer(server.addr).await;
    let (mut delta, _) = Client::connect(server.addr, delta_params()).await;
    let mut admin = Client::admin(server.addr).await;
    admin
        .beacon(json!({"text": "first", "instanceId": "first"}))
        .await;
    let list = observer.next_event("presence").await;
    let rows = list["payload"]["presence"].as_array().unwrap();
    assert!(entry_with(rows, "instanceId", "first").is_some(), "{list}");
    let step = delta.next_event("presence.delta").await;
    let rows = step["payload"]["upserts"].as_array().unwrap();
    assert!(entry_with(rows, "instanceId", "first").is_some(), "{step}");
    for i in 0..5 {
        admin
            .beacon(json!({"text": format!("later {i}"), "instanceId": format!("l{i}")}))
            .await;
    }
    for (client, sent) in [(&mut observer, &list), (&mut delta, &step)] {
        let health = client.call("health", json!({})).await;
        assert!(
            health["presence"]["version"].as_u64() > Some(presence_version(sent)),
            "the later changes were applied: {health}"
        );
        let early = presence_pending(client);
        assert!(early.is_empty(), "nothing before the interval: {early:?}");
    }
}

#[tokio::test]
async fn seq_is_contiguous_per_connection_and_state_version_rises() {
    let server = TestServer::start_with(|c| {
        c.coalesce = Duration::from_millis(5);
        c.tick_interval = Duration::from_millis(50);
    })
    .await;
    let mut first = Client::observer(server.addr).await;
    let mut second = Client::observer(server.addr).await;
    let mut admin = Client::admin(server.addr).await;
    for i in 0..12 {
        admin
            .beacon(json!({"text": format!("seq {i}"), "instanceId": format!("s{i}")}))
            .await;
    }
    admin
        .beacon(json!({"text": "done", "instanceId": "done"}))
        .await;
    let mut seen = Vec::new();
    for observer in [&mut first, &mut second] {
        let mut frames = Vec::new();
        within("the last beacon's event", async {
            loop {
                let frame = observer.next_frame().await;
                assert_eq!(frame["type"], "event", "{frame}");
                let done = frame["event"] == "presence"
                    && entry_with(
                        frame["payload"]["presence"].as_array().unwrap(),
                        "instanceId",
                        "done",
                    )
                    .is_some();
                frames.push(frame);
                if done {
                    break;
                }
            }
        })
        .await;
        // Numbered per connection when written: 1, 2, 3, … across
        // presence events and ticks, with no gap.
        let seqs: Vec<u64> = frames.iter().map(seq).collect();
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, expected, "seq is contiguous from 1");
        let versions: Vec<u64> = frames
            .iter()
            .filter(|f| f["event"] == "presence")
            .map(presence_version)
            .collect();
        assert!(versions.len() >= 2, "{versions:?}");
        assert!(
            versions.windows(2).all(|v| v[0] < v[1]),
            "stateVersion rises: {versions:?}"
        );
        for tick in frames.iter().filter(|f| f["event"] == "tick") {
            assert!(tick["payload"]["ts"].is_u64(), "{tick}");
        }
        seen.push(frames);
    }
    // Both end at the same final list.
    let last_version = |frames: &[Value]| {
        frames
            .iter()
            .rev()
            .find(|f| f["event"] == "presence")
            .map(presence_version)
    };
    assert_eq!(last_version(&seen[0]), last_version(&seen[1]));
}

#[tokio::test]
async fn delta_subscribers_get_from_to_upserts_and_removed() {
    let server = TestServer::start_with(|c| c.max_entries = 1).await;
    let (mut delta, hello) = Client::connect(server.addr, delta_params()).await;
    let start = hello["snapshot"]["stateVersion"]["presence"]
        .as_u64()
        .unwrap();
    let mut admin = Client::admin(server.addr).await;
    admin
        .beacon(json!({"text": "alpha", "instanceId": "Alpha"}))
        .await;
    let first = delta.next_event("presence.delta").await;
    let payload = &first["payload"];
    assert_eq!(payload["from"], start, "{first}");
    let to = payload["to"].as_u64().unwrap();
    assert!(to > start);
    assert_eq!(presence_version(&first), to);
    seq(&first);
    let upserts = payload["upserts"].as_array().unwrap();
    assert!(
        entry_with(upserts, "instanceId", "Alpha").is_some(),
        "{first}"
    );
    assert_eq!(payload["removed"], json!([]));
    // The cap of 1 evicts alpha when beta arrives.
    admin
        .beacon(json!({"text": "beta", "instanceId": "Beta"}))
        .await;
    let second = delta.next_event("presence.delta").await;
    let payload = &second["payload"];
    assert_eq!(payload["from"], to, "contiguous deltas chain: {second}");
    let upserts = payload["upserts"].as_array().unwrap();
    assert!(
        entry_with(upserts, "instanceId", "Beta").is_some(),
        "{second}"
    );
    assert!(
        entry_with(upserts, "instanceId", "Alpha").is_none(),
        "{second}"
    );
    assert_eq!(payload["removed"], json!(["alpha"]));
    // A delta subscriber gets no full presence events.
    delta.call("health", json!({})).await;
    let full: Vec<Value> = delta
        .take_pending()
        .into_iter()
        .filter(|f| f["event"] == "presence")
        .collect();
    assert!(full.is_empty(), "{full:?}");
}

#[tokio::test]
async fn client_joining_during_a_beacon_stream_misses_no_change() {
    let server = TestServer::start_with(|c| c.coalesce = Duration::from_millis(2)).await;
    let addr = server.addr;
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(async move {
        let mut admin = Client::admin(addr).await;
        let mut i = 0u64;
        while stopped.try_recv().is_err() {
            admin
                .beacon(json!({"text": "stream", "instanceId": format!("w{}", i % 50)}))
                .await;
            i += 1;
        }
    });
    for _ in 0..15 {
        let mut params = connect_params("cli", &["operator.read"]);
        params["caps"] = json!(["presence.delta"]);
        let (mut delta, hello) = Client::connect(addr, params).await;
        let joined = hello["snapshot"]["stateVersion"]["presence"]
            .as_u64()
            .unwrap();
        let event = delta.next_event("presence.delta").await;
        let from = event["payload"]["from"].as_u64().unwrap();
        let to = event["payload"]["to"].as_u64().unwrap();
        assert!(
            from <= joined && joined < to,
            "the first delta continues the hello: from {from}, hello {joined}, to {to}"
        );
        let (mut full, hello) =
            Client::connect(addr, connect_params("cli", &["operator.read"])).await;
        let joined = hello["snapshot"]["stateVersion"]["presence"]
            .as_u64()
            .unwrap();
        let event = full.next_event("presence").await;
        let version = presence_version(&event);
        assert!(
            version > joined,
            "the first event is newer than the hello: hello {joined}, event {version}"
        );
    }
    let _ = stop.send(());
    within("the beacon writer", writer).await.unwrap();
}

#[tokio::test]
async fn tick_events_reach_every_connection() {
    let interval = Duration::from_millis(200);
    let server = TestServer::start_with(|c| c.tick_interval = interval).await;
    let (mut no_scope, hello) = Client::connect(server.addr, connect_params("cli", &[])).await;
    assert_eq!(hello["policy"]["tickIntervalMs"], 200);
    let mut node_params = connect_params("node", &[]);
    node_params["role"] = json!("node");
    let (mut node, _) = Client::connect(server.addr, node_params).await;
    let mut reader = Client::observer(server.addr).await;
    for client in [&mut no_scope, &mut node, &mut reader] {
        let before = common::now_ms();
        let first = client.next_event("tick").await;
        let second = client.next_event("tick").await;
        let after = common::now_ms();
        assert!(seq(&first) < seq(&second));
        let (t1, t2) = (
            first["payload"]["ts"].as_u64().unwrap(),
            second["payload"]["ts"].as_u64().unwrap(),
        );
        assert!(
            before.saturating_sub(300) <= t1 && t2 <= after,
            "{first} {second}"
        );
        assert!(t2 - t1 >= 150, "ticks are {interval:?} apart: {t1} {t2}");
        assert!(first.get("stateVersion").is_none());
    }
}

/// Opens a client whose socket receive buffer is tiny, so that a server
/// writing to it blocks as soon as a few KiB are in flight.
async fn tiny_window_client(server: &TestServer, params: Value) -> Client {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(server.addr).await.unwrap();
    let request = server.ws_url("/").into_client_request().unwrap();
    let (mut client, _) = Client::open_on(tcp, request).await;
    client.handshake(params).await;
    client
}

#[tokio::test]
async fn slow_consumer_does_not_stall_others_and_gets_only_the_latest_list() {
    let server = TestServer::start_with(|c| {
        c.max_buffered_bytes = 64 * 1024;
        c.coalesce = Duration::from_millis(5);
        // One admin connection writes many rows.
        c.max_beacon_rows = 10_000;
    })
    .await;
    // Reads nothing until the end.
    let mut slow = tiny_window_client(&server, connect_params("cli", &["operator.read"])).await;
    let mut fast = Client::admin(server.addr).await;
    let pad = "p".repeat(300);
    let conflated =
        |text: &str| common::metric(text, "rollcall_events_conflated_total{event=\"presence\"}");
    let mut round = 0u64;
    // Beacon until the server reports conflating presence events for the
    // stalled client; the fast one keeps getting its replies meanwhile
    // (each within the common deadline).
    within("events to be conflated for the slow client", async {
        loop {
            for _ in 0..20 {
                let text = format!("{pad} {round}");
                fast.beacon(json!({"text": text, "instanceId": format!("k{}", round % 60)}))
                    .await;
                round += 1;
            }
            let metrics = common::http_get(server.addr, "/metrics", &[]).await.body;
            if conflated(&metrics).unwrap_or(0.0) > 0.0 {
                return;
            }
        }
    })
    .await;
    // The fast client got every broadcast, in seq order without gaps, up
    // to the final list.
    let last_key = format!("k{}", (round - 1) % 60);
    let last_text = format!("{pad} {}", round - 1);
    let mut fast_seqs = Vec::new();
    within("the fast client's final list", async {
        loop {
            let event = fast.next_event("presence").await;
            fast_seqs.push(seq(&event));
            let list = event["payload"]["presence"].as_array().unwrap();
            if entry_with(list, "instanceId", &last_key).is_some_and(|e| e["text"] == last_text) {
                return;
            }
        }
    })
    .await;
    assert!(
        fast_seqs.windows(2).all(|s| s[1] == s[0] + 1),
        "the fast client missed nothing: {fast_seqs:?}"
    );
    // The slow client is still connected; once it reads, its seq has no
    // gap, its lists only get newer (the unsent ones were replaced, never
    // queued), and later changes reach it again.
    let (seqs_tx, mut seqs_rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Value)>();
    let reader = tokio::spawn(async move {
        loop {
            let event = slow.next_event("presence").await;
            if seqs_tx.send((seq(&event), event)).is_err() {
                return;
            }
        }
    });
    let mut slow_seqs = Vec::new();
    let mut slow_versions = Vec::new();
    let mut after = 0;
    within("a change after the slow client caught up", async {
        loop {
            fast.beacon(json!({"text": "after", "instanceId": format!("after-{after}")}))
                .await;
            after += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
            while let Ok((seq, event)) = seqs_rx.try_recv() {
                slow_seqs.push(seq);
                slow_versions.push(presence_version(&event));
                let list = event["payload"]["presence"].as_array().unwrap();
                if list.iter().any(|e| e["text"] == "after") {
                    return;
                }
            }
        }
    })
    .await;
    reader.abort();
    assert!(
        slow_seqs.windows(2).all(|s| s[1] == s[0] + 1),
        "seq has no gap: {slow_seqs:?}"
    );
    assert!(
        slow_versions.windows(2).all(|v| v[0] < v[1]),
        "never an older list after a newer: {slow_versions:?}"
    );
    assert!(
        slow_versions.windows(2).any(|v| v[1] > v[0] + 1),
        "unsent lists were replaced, not queued: {slow_versions:?}"
    );
}

#[tokio::test]
async fn reply_backlog_over_budget_closes_1008_slow_consumer() {
    let server = TestServer::start_with(|c| {
        c.max_buffered_bytes = 256 * 1024;
        // One admin connection pads the list with 100 rows.
        c.max_beacon_rows = 1000;
    })
    .await;
    // A large list makes each system-presence reply about 100 KiB.
    let mut admin = Client::admin(server.addr).await;
    for i in 0..100 {
        admin
            .beacon(json!({"text": "x".repeat(1000), "instanceId": format!("big-{i}")}))
            .await;
    }
    let mut slow = tiny_window_client(&server, connect_params("cli", &["operator.read"])).await;
    for _ in 0..12 {
        slow.send_request("system-presence", json!({})).await;
    }
    let closed = slow.expect_close().await;
    assert_eq!(closed.code, Some(1008), "{:?}", closed.reason);
    assert_eq!(closed.reason, "slow consumer");
    assert!(closed.frames.len() < 12, "{} replies", closed.frames.len());
    // Nobody else is affected.
    assert_eq!(admin.presence().await.len(), 101);
    let metrics = common::http_get(server.addr, "/metrics", &[]).await.body;
    assert_eq!(
        common::metric(&metrics, "rollcall_slow_consumer_closes_total"),
        Some(1.0)
    );
}

#[tokio::test]
async fn graceful_shutdown_sends_shutdown_then_1001_and_run_returns() {
    // A grace period longer than the common deadline: `run` returns within
    // that deadline only if every connection completed its close.
    let mut server = TestServer::start_with(|c| c.shutdown_grace = Duration::from_secs(60)).await;
    let mut observer = Client::observer(server.addr).await;
    let (mut tracked, _) = Client::connect(server.addr, {
        let mut p = connect_params("ui", &[]);
        p["client"]["instanceId"] = json!("bye");
        p
    })
    .await;
    let mut node_params = connect_params("node", &[]);
    node_params["role"] = json!("node");
    let (mut node, _) = Client::connect(server.addr, node_params).await;
    let run = server.begin_shutdown();
    for client in [&mut observer, &mut tracked, &mut node] {
        let closed = client.expect_close().await;
        assert_eq!(closed.code, Some(1001), "{closed:?}");
        let last = closed
            .frames
            .last()
            .expect("a shutdown event before the close");
        assert_eq!(last["type"], "event");
        assert_eq!(last["event"], "shutdown");
        assert!(last["payload"]["reason"].is_string(), "{last}");
        seq(last);
    }
    within("run to return before the grace period ends", run)
        .await
        .expect("run does not panic");
}

#[tokio::test]
async fn shutdown_during_a_coalescing_wait_is_still_announced() {
    // A long interval: the second change waits in the broadcaster's
    // coalescing sleep when shutdown begins.
    let mut server = TestServer::start_with(|c| c.coalesce = Duration::from_secs(30)).await;
    let mut observer = Client::observer(server.addr).await;
    let mut admin = Client::admin(server.addr).await;
    admin.beacon(json!({"text": "one"})).await;
    observer.next_event("presence").await;
    admin.beacon(json!({"text": "two"})).await;
    let run = server.begin_shutdown();
    for client in [&mut observer, &mut admin] {
        let closed = client.expect_close().await;
        assert_eq!(closed.code, Some(1001), "{closed:?}");
        let last = closed
            .frames
            .last()
            .expect("a shutdown event before the close");
        assert_eq!(last["event"], "shutdown", "{closed:?}");
    }
    within("run to return", run)
        .await
        .expect("run does not panic");
}

#[tokio::test]
async fn shutdown_closes_connections_that_have_not_completed_connect() {
    let mut server = TestServer::start().await;
    let mut pending = Client::open(server.addr).await;
    let mut connected = Client::observer(server.addr).await;
    let run = server.begin_shutdown();
    let closed = connected.expect_close().await;
    assert_eq!(closed.code, Some(1001));
    let closed = pending.expect_close().await;
    assert_eq!(closed.code, Some(1001), "{closed:?}");
    assert_eq!(closed.frames.len(), 1, "{closed:?}");
    assert_eq!(closed.frames[0]["event"], "shutdown");
    assert!(closed.frames[0]["payload"]["reason"].is_string());
    within("run to return", run)
        .await
        .expect("run does not panic");
}

/// Fills the store with `n` entries of about 1 KiB each, so that the list
/// (and every presence event) is about `n` KiB.
async fn fill(admin: &mut Client, n: usize) {
    for i in 0..n {
        admin
            .beacon(json!({"text": "f".repeat(1000), "instanceId": format!("fill-{i}")}))
            .await;
    }
}

#[tokio::test]
async fn presence_event_larger_than_the_budget_reaches_an_idle_client() {
    // Nothing is unsent, so nothing exceeds the budget: the event goes out
    // even though it alone is larger than the budget.
    let server = TestServer::start_with(|c| c.max_buffered_bytes = 16 * 1024).await;
    let mut observer = Client::observer(server.addr).await;
    let mut admin = Client::admin(server.addr).await;
    fill(&mut admin, 30).await;
    admin
        .beacon(json!({"text": "last", "instanceId": "last"}))
        .await;
    let list = observer
        .presence_until(|list| entry_with(list, "instanceId", "last").is_some())
        .await;
    assert_eq!(list.len(), 32);
}

#[tokio::test]
async fn hello_and_replies_larger_than_the_budget_reach_an_idle_client() {
    // An idle connection has not fallen behind on anything: a hello or a
    // system-presence reply larger than the budget is still an answer, not
    // something to drop or a reason to close.
    let server = TestServer::start_with(|c| c.max_buffered_bytes = 16 * 1024).await;
    let mut admin = Client::admin(server.addr).await;
    fill(&mut admin, 30).await;
    let (mut reader, hello) =
        Client::connect(server.addr, connect_params("cli", &["operator.read"])).await;
    assert_eq!(hello["snapshot"]["presence"].as_array().unwrap().len(), 31);
    assert_eq!(reader.presence().await.len(), 31);
    assert_eq!(reader.presence().await.len(), 31);
}
