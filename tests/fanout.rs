//! Fan-out at fleet scale (docs/protocol.md §7): full lists paced to the
//! fan-out budget, resumable deltas (`presenceSince`), and handshakes that
//! stay prompt while a fan-out storm runs.

mod common;

use common::{Client, TestServer, connect_params, entry_with, within};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

fn delta_params(since: Option<u64>) -> Value {
    let mut params = connect_params("cli", &["operator.read"]);
    params["caps"] = json!(["presence.delta"]);
    if let Some(since) = since {
        params["presenceSince"] = json!(since);
    }
    params
}

fn version(frame: &Value) -> u64 {
    frame["stateVersion"]["presence"]
        .as_u64()
        .unwrap_or_else(|| panic!("a presence event carries stateVersion: {frame}"))
}

fn hello_version(hello: &Value) -> u64 {
    hello["snapshot"]["stateVersion"]["presence"]
        .as_u64()
        .unwrap()
}

/// Through real sockets, without timing: under a tiny budget the server
/// computes a paced interval from the lists' real size and keeps sending
/// the latest list. That lists go out no more often than that interval is
/// asserted on virtual time in `src/gateway/broadcast.rs`'s tests.
#[tokio::test]
async fn tiny_budget_paces_full_lists_to_the_computed_interval() {
    // Four watchers of a list of about 2 KB at 16 KB/s: at least 0.5 s
    // between two full lists, while changes come every 20 ms.
    let server = TestServer::start_with(|c| {
        c.coalesce = Duration::from_millis(10);
        c.fanout_budget = 16_000;
    })
    .await;
    let mut admin = Client::admin(server.addr).await;
    for i in 0..8 {
        let text = format!("{} {i}", "x".repeat(200));
        admin
            .beacon(json!({"text": text, "instanceId": format!("pad-{i}")}))
            .await;
    }
    let mut watchers = Vec::new();
    for _ in 0..4 {
        watchers.push(Client::observer(server.addr).await);
    }
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let changer = tokio::spawn(async move {
        // Bounded: 500 changes at most, about 10 s.
        let mut last = 0;
        for i in 0..500 {
            if stopped.try_recv().is_ok() {
                break;
            }
            admin
                .beacon(json!({"text": format!("tick {i}"), "instanceId": "busy"}))
                .await;
            last = i;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (admin, last)
    });
    let watcher = &mut watchers[0];
    let mut list = within("five paced lists", async {
        let mut event = Value::Null;
        for _ in 0..5 {
            event = watcher.next_event("presence").await;
        }
        event
    })
    .await;
    let _ = stop.send(());
    let (mut admin, last) = changer.await.unwrap();
    // However the lists were paced, the last change reaches the watcher.
    let text = format!("tick {last}");
    within("the last change's list", async {
        while entry_with(
            list["payload"]["presence"].as_array().unwrap(),
            "text",
            &text,
        )
        .is_none()
        {
            list = watcher.next_event("presence").await;
        }
    })
    .await;
    let health = admin.call("health", json!({})).await;
    assert!(
        health["fanout"]["intervalMs"].as_u64().unwrap() >= 400,
        "{health}"
    );
    assert_eq!(health["fanout"]["watchers"]["full"], 5, "{health}");
}

#[tokio::test]
async fn presence_since_within_the_log_gives_an_empty_hello_and_one_delta() {
    let server = TestServer::start_with(|c| c.coalesce = Duration::from_millis(5)).await;
    let mut admin = Client::admin(server.addr).await;
    let (mut delta, _) = Client::connect(server.addr, delta_params(None)).await;
    // A second delta client stays, to see when the changes have gone out.
    let (mut witness, _) = Client::connect(server.addr, delta_params(None)).await;
    admin
        .beacon(json!({"text": "one", "instanceId": "one"}))
        .await;
    let held = version(&delta.next_event("presence.delta").await);
    delta.close().await;
    // Changes while it is away: a new row, and a rewrite of one it holds.
    admin
        .beacon(json!({"text": "two", "instanceId": "two"}))
        .await;
    admin
        .beacon(json!({"text": "one again", "instanceId": "one"}))
        .await;
    within("the witness to see the rewrite", async {
        loop {
            let event = witness.next_event("presence.delta").await;
            let upserts = event["payload"]["upserts"].as_array().unwrap().clone();
            if entry_with(&upserts, "text", "one again").is_some() {
                return;
            }
        }
    })
    .await;
    let (mut resumed, hello) = Client::connect(server.addr, delta_params(Some(held))).await;
    assert_eq!(hello["snapshot"]["presence"], json!([]), "{hello}");
    let to = hello_version(&hello);
    assert!(to > held, "{hello}");
    let first = resumed.next_frame().await;
    assert_eq!(first["event"], "presence.delta", "{first}");
    assert_eq!(first["seq"], 1, "{first}");
    let payload = &first["payload"];
    assert_eq!(
        (payload["from"].as_u64(), payload["to"].as_u64()),
        (Some(held), Some(to))
    );
    let upserts = payload["upserts"].as_array().unwrap();
    assert!(
        entry_with(upserts, "instanceId", "two").is_some(),
        "{first}"
    );
    assert!(
        entry_with(upserts, "text", "one again").is_some(),
        "{first}"
    );
}

#[tokio::test]
async fn presence_since_too_old_or_ahead_gives_the_full_list() {
    let server = TestServer::start_with(|c| c.coalesce = Duration::from_millis(5)).await;
    let mut admin = Client::admin(server.addr).await;
    admin
        .beacon(json!({"text": "row", "instanceId": "row"}))
        .await;
    for since in [0, 1_000_000] {
        let (_client, hello) = Client::connect(server.addr, delta_params(Some(since))).await;
        let list = hello["snapshot"]["presence"].as_array().unwrap();
        assert!(
            entry_with(list, "instanceId", "row").is_some(),
            "since {since}: {hello}"
        );
    }
}

#[tokio::test]
async fn presence_since_of_the_wrong_type_names_the_field() {
    let server = TestServer::start().await;
    let mut client = Client::open(server.addr).await;
    let mut params = delta_params(None);
    params["presenceSince"] = json!("yesterday");
    client.send_text(common::connect_frame("c1", params)).await;
    let closed = client.expect_close().await;
    let message = closed.frames[0]["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("presenceSince"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_completes_promptly_during_a_fanout_storm() {
    let server = TestServer::start_with(|c| {
        c.coalesce = Duration::from_millis(1);
        // One admin connection pads the list with 100 rows.
        c.max_beacon_rows = 1000;
    })
    .await;
    let mut admin = Client::admin(server.addr).await;
    let pad = "p".repeat(500);
    for i in 0..100 {
        admin
            .beacon(json!({"text": format!("{pad} {i}"), "instanceId": format!("pad-{i}")}))
            .await;
    }
    // 300 full-list watchers that never read: every change is a storm of
    // 50 KB lists, which conflation and pacing must keep from starving
    // handshakes.
    let mut watchers = Vec::new();
    for _ in 0..300 {
        watchers.push(Client::observer(server.addr).await);
    }
    // The storm runs until told to stop, so handshakes that waited for it
    // to end would never complete: each must finish (within the common
    // deadline) while it still runs. How fast is benches/fanout.sh's
    // question, not a wall-clock assertion here.
    let sent = Arc::new(AtomicU64::new(0));
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let storm = tokio::spawn({
        let sent = sent.clone();
        async move {
            while !*stopped.borrow_and_update() {
                let n = sent.fetch_add(1, Ordering::SeqCst);
                admin
                    .beacon(json!({"text": format!("storm {n}"), "instanceId": "storm"}))
                    .await;
            }
        }
    });
    // The storm has begun before the first handshake.
    common::eventually("the storm", async || {
        (sent.load(Ordering::SeqCst) > 1).then_some(())
    })
    .await;
    let before = sent.load(Ordering::SeqCst);
    for _ in 0..10 {
        let (_client, hello) =
            Client::connect(server.addr, connect_params("ui", &["operator.read"])).await;
        assert_eq!(hello["type"], "hello-ok");
    }
    let during = sent.load(Ordering::SeqCst) - before;
    stop.send_replace(true);
    storm.await.unwrap();
    assert!(
        during > 0,
        "the storm went on while the handshakes completed"
    );
    drop(watchers);
}
