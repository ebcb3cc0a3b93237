//! Live rows in a fleet (docs/protocol.md §5.4, §8), with a real
//! `redis-server`: a row whose connection is alive on gateway A stays
//! listed on gateway B past the TTL, renewed there; once A dies (SIGKILL),
//! B marks it disconnected at the lease lapse and it ages from there.

mod common;

use common::fleet::{KillableGateway, Redis, in_sync, row, tracked};
use common::{Client, TestServer, eventually};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

async fn list(addr: SocketAddr) -> Vec<Value> {
    Client::observer(addr).await.presence().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_row_of_another_gateway_outlives_the_ttl_and_ages_from_the_lapse() {
    let redis = Redis::start().await;
    let ttl = Duration::from_secs(2);
    let url = redis.url();
    let b = TestServer::start_with(move |c| {
        c.fleet = Some(url);
        c.node_id = Some("gw-b".into());
        c.fleet_lease = Duration::from_secs(1);
        c.presence_ttl = ttl;
        c.keepalive = Duration::from_millis(500);
    })
    .await;
    in_sync(&[&b]).await;
    // A pings every second: the client stays only while it answers.
    let mut a =
        KillableGateway::start_with(&redis.url(), "gw-a", ttl, &["--keepalive", "1s"], &[]).await;
    let (mut client, _) = Client::connect(a.addr, tracked("roamer")).await;
    let first = eventually("the row on B", async || {
        row(&list(b.addr).await, "roamer").cloned()
    })
    .await;
    let connected = first["ts"].as_u64().unwrap();
    // The client stays connected (answering pings) until B lists its row
    // renewed two TTLs past its connect; listed as connected at every look.
    let renewed_past = connected + 2 * ttl.as_millis() as u64;
    let renewed = eventually("B to renew the row two TTLs past its connect", async || {
        client.idle_for(ttl / 4).await;
        let listed = list(b.addr).await;
        let live = row(&listed, "roamer").expect("still listed on B past the TTL");
        assert_eq!(live["reason"], "connect", "{live}");
        assert_eq!(live["gatewayId"], "gw-a");
        live["ts"].as_u64().filter(|ts| *ts >= renewed_past)
    })
    .await;

    a.kill();
    let marked = eventually("B to mark the row disconnected", async || {
        row(&list(b.addr).await, "roamer")
            .filter(|r| r["reason"] == "disconnect")
            .cloned()
    })
    .await;
    let lapsed = marked["ts"].as_u64().unwrap();
    assert!(
        lapsed >= renewed,
        "the row ages from the lapse ({lapsed}), not from its connect ({connected})"
    );
    eventually("the dead gateway's row to expire on B", async || {
        row(&list(b.addr).await, "roamer").is_none().then_some(())
    })
    .await;
    drop(client);
}
