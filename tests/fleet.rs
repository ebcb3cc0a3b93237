//! Fleet mode (docs/protocol.md §8) and warm restarts, end to end: real
//! gateways (in-process, and the real binary where one must die by
//! SIGKILL), a real `redis-server` child per test, real WebSocket and HTTP
//! clients.
//!
//! Every test that needs Redis starts its own `redis-server` on a free
//! port and stops it afterwards (`common::fleet`).

mod common;

use common::fleet::{KillableGateway, Redis, free_port, gateway, in_sync, row, row_where, tracked};
use common::{Client, TestServer, eventually, http_get};
use rollcall::metrics::ModeLabels;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

fn http_list(reply: &common::HttpReply) -> Vec<Value> {
    match reply.json() {
        Value::Array(list) => list,
        other => panic!("not a list: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_on_a_is_visible_through_b_over_websocket_and_http() {
    let redis = Redis::start().await;
    let a = gateway(&redis.url(), "gw-a", Duration::from_secs(300)).await;
    let b = gateway(&redis.url(), "gw-b", Duration::from_secs(300)).await;
    in_sync(&[&a, &b]).await;

    // Eventually (the common deadline); how fast is a benchmark's question
    // (`examples/fleet_propagation.rs`, benches/README.md).
    let (_laptop, _) = Client::connect(a.addr, tracked("laptop-1")).await;
    let seen = row_where(b.addr, "laptop-1", |_| true).await;
    assert_eq!(seen["gatewayId"], "gw-a");
    assert_eq!(seen["reason"], "connect");

    let http = http_list(&http_get(b.addr, "/v1/presence", &[]).await);
    let over_http = row(&http, "laptop-1").expect("the row over HTTP too");
    assert_eq!(over_http["gatewayId"], "gw-a");
    let gateways: Vec<&Value> = http.iter().filter(|e| e["mode"] == "gateway").collect();
    assert_eq!(gateways.len(), 2, "both self entries: {http:?}");
    assert_eq!(http[0]["gatewayId"], "gw-b", "B's own entry comes first");
    let own = Client::observer(a.addr).await.presence().await;
    assert_eq!(row(&own, "laptop-1").unwrap()["gatewayId"], "gw-a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_moves_from_a_to_b_stays_one_row() {
    let redis = Redis::start().await;
    let a = gateway(&redis.url(), "gw-a", Duration::from_secs(300)).await;
    let b = gateway(&redis.url(), "gw-b", Duration::from_secs(300)).await;
    in_sync(&[&a, &b]).await;

    let (on_a, _) = Client::connect(a.addr, tracked("mover")).await;
    row_where(b.addr, "mover", |r| r["gatewayId"] == "gw-a").await;
    let (_on_b, _) = Client::connect(b.addr, tracked("mover")).await;
    row_where(a.addr, "mover", |r| r["gatewayId"] == "gw-a").await;
    // A's disconnect comes after B's connect: it must not win anywhere.
    on_a.close().await;
    for server in [a.addr, b.addr] {
        row_where(server, "mover", |r| {
            r["gatewayId"] == "gw-b" && r["reason"] == "connect"
        })
        .await;
    }
    // A marker that follows A's disconnect down the same path: made on A
    // once A let go of the mover's connection (the step that lowers the
    // gauge queues the disconnect next, without yielding; the marker's
    // handshake takes far longer), applied by A's writer after it, carried
    // by Redis to B. Once both list it, what the disconnect caused has
    // arrived.
    let ui = ModeLabels { mode: "ui" };
    eventually("A to let go of the mover's connection", async || {
        let open = a.state.metrics().connections.get_or_create(&ui).get();
        (open == 0).then_some(())
    })
    .await;
    let (_marker, _) = Client::connect(a.addr, tracked("marker")).await;
    for server in [a.addr, b.addr] {
        row_where(server, "marker", |r| r["gatewayId"] == "gw-a").await;
    }
    for server in [a.addr, b.addr] {
        let list = Client::observer(server).await.presence().await;
        let rows: Vec<&Value> = list.iter().filter(|e| e["instanceId"] == "mover").collect();
        assert_eq!(rows.len(), 1, "{list:?}");
        assert_eq!(rows[0]["gatewayId"], "gw-b");
        assert_eq!(rows[0]["reason"], "connect");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateway_is_marked_disconnected_within_the_lease_and_expires_with_the_ttl() {
    let redis = Redis::start().await;
    let ttl = Duration::from_secs(4);
    let b = gateway(&redis.url(), "gw-b", ttl).await;
    let mut a = KillableGateway::start(&redis.url(), "gw-a", ttl).await;
    let a_addr = a.addr;
    let (_client, _) = Client::connect(a_addr, tracked("doomed")).await;
    let live = row_where(b.addr, "doomed", |r| r["reason"] == "connect").await;

    a.kill();
    // Marked before the TTL (4 s) could remove it: the row is seen as
    // `disconnect`, not only gone. A's clock is a child process's and
    // cannot be paused, so no lapse is measured here.
    let marked = row_where(b.addr, "doomed", |r| r["reason"] == "disconnect").await;
    assert_eq!(marked["ts"], live["ts"], "marking keeps ts");
    assert_eq!(marked["gatewayId"], "gw-a");

    let ts = live["ts"].as_u64().unwrap();
    let mut observer = Client::observer(b.addr).await;
    eventually("the dead gateway's row to expire", async || {
        let list = observer.presence().await;
        row(&list, "doomed").is_none().then_some(())
    })
    .await;
    // Not before the TTL; how late is the writer's expiry sweep's
    // business, bounded here only by the common deadline.
    let gone_at = common::now_ms();
    let due = ts + ttl.as_millis() as u64;
    assert!(gone_at >= due, "expired early: {gone_at} < {due}");
}

async fn health(addr: SocketAddr) -> Value {
    Client::observer(addr).await.call("health", json!({})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_redis_degrades_without_a_crash_and_the_return_resyncs() {
    let mut redis = Redis::start().await;
    let a = gateway(&redis.url(), "gw-a", Duration::from_secs(300)).await;
    let b = gateway(&redis.url(), "gw-b", Duration::from_secs(300)).await;
    in_sync(&[&a, &b]).await;
    assert_eq!(health(a.addr).await["fleet"]["state"], "ok");
    let (_before, _) = Client::connect(a.addr, tracked("before")).await;
    row_where(b.addr, "before", |_| true).await;

    redis.stop();
    let degraded = async || {
        let h = health(a.addr).await;
        (h["fleet"]["state"] == "degraded").then_some(h)
    };
    let h = eventually("A to report degraded", degraded).await;
    assert!(h["fleet"]["error"].is_string(), "{h}");
    let healthz = http_get(a.addr, "/healthz", &[]).await;
    assert_eq!(healthz.status, 200);
    assert!(healthz.body.starts_with("degraded"), "{healthz:?}");
    let stats = http_get(a.addr, "/v1/presence/stats", &[]).await.json();
    assert_eq!(stats["fleet"]["state"], "degraded");
    let metrics = http_get(a.addr, "/metrics", &[]).await.body;
    assert!(metrics.contains("rollcall_fleet_degraded 1"), "{metrics}");

    // Accepted while degraded, served locally, and not lost.
    let (_during, _) = Client::connect(a.addr, tracked("during")).await;
    row_where(a.addr, "during", |_| true).await;

    let _back = Redis::start_on(redis.port).await;
    in_sync(&[&a, &b]).await;
    row_where(b.addr, "during", |r| r["gatewayId"] == "gw-a").await;
    row_where(b.addr, "before", |r| r["reason"] == "connect").await;
    let metrics = http_get(a.addr, "/metrics", &[]).await.body;
    assert!(metrics.contains("rollcall_fleet_degraded 0"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_at_start_serves_local_presence_degraded() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    let a = gateway(&url, "gw-a", Duration::from_secs(300)).await;
    let (_c, _) = Client::connect(a.addr, tracked("local")).await;
    let r = row_where(a.addr, "local", |_| true).await;
    assert_eq!(r["gatewayId"], "gw-a");
    assert_eq!(health(a.addr).await["fleet"]["state"], "degraded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_fleet_gateway_shows_its_rows_at_once() {
    let redis = Redis::start().await;
    let mut a = gateway(&redis.url(), "gw-a", Duration::from_secs(300)).await;
    in_sync(&[&a]).await;
    let (_c, _) = Client::connect(a.addr, tracked("survivor")).await;
    let before = row_where(a.addr, "survivor", |_| true).await;
    let mut b = gateway(&redis.url(), "gw-b", Duration::from_secs(300)).await;
    in_sync(&[&b]).await;
    row_where(b.addr, "survivor", |_| true).await;
    a.begin_shutdown().await.expect("A stops");
    b.begin_shutdown().await.expect("B stops");

    let a = gateway(&redis.url(), "gw-a", Duration::from_secs(300)).await;
    // No waiting: the first list after the restart already has it.
    let list = Client::observer(a.addr).await.presence().await;
    let restored = row(&list, "survivor").expect("restored at once");
    assert_eq!(restored["reason"], "disconnect");
    // Its `ts` is the connect's, or the disconnect's when graceful shutdown
    // closed the connection first; never later than the restart.
    assert_ts_kept(restored, &before);
    assert_eq!(restored["gatewayId"], "gw-a");
}

/// A restored row's `ts` is that of its last write before the restart:
/// the connect, or the disconnect that graceful shutdown wrote.
fn assert_ts_kept(restored: &Value, before: &Value) {
    let (restored_ts, before_ts) = (restored["ts"].as_u64(), before["ts"].as_u64());
    assert!(
        restored_ts >= before_ts && restored_ts <= Some(common::now_ms()),
        "restored {restored} after {before}"
    );
}

fn temp_state(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rollcall-fleet-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    dir.join("state.json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_a_state_file_shows_the_rows_at_once() {
    let path = temp_state("warm");
    let start = || {
        let path = path.clone();
        TestServer::start_with(move |c| c.state_file = Some(path))
    };
    let mut first = start().await;
    let (_c, _) = Client::connect(first.addr, tracked("kept")).await;
    let before = row_where(first.addr, "kept", |_| true).await;
    assert!(before.get("gatewayId").is_none(), "no fleet, no gatewayId");
    first.begin_shutdown().await.expect("stops");

    let second = start().await;
    let list = Client::observer(second.addr).await.presence().await;
    let restored = row(&list, "kept").expect("restored at once");
    assert_eq!(restored["reason"], "disconnect");
    assert_ts_kept(restored, &before);
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_state_file_is_ignored() {
    let path = temp_state("corrupt");
    std::fs::write(&path, b"{\"format\": not json").expect("write");
    let server = {
        let path = path.clone();
        TestServer::start_with(move |c| c.state_file = Some(path)).await
    };
    let list = Client::observer(server.addr).await.presence().await;
    assert_eq!(list.len(), 1, "only the self entry: {list:?}");
    let (_c, _) = Client::connect(server.addr, tracked("fresh")).await;
    row_where(server.addr, "fresh", |_| true).await;
    let _ = std::fs::remove_file(&path);
}
