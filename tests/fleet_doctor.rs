//! The doctor (`GET /v1/presence/doctor`) in fleet mode (docs/protocol.md §8),
//! end to end: a real `redis-server` child per test, real fleet gateways
//! (in-process, and the real binary where one must die by SIGKILL), real
//! WebSocket and HTTP clients.
//!
//! Provenance does not travel between gateways: a row from another
//! gateway carries only `remote` writes and the key source `elsewhere`, so
//! these tests check what each gateway's doctor makes of the fleet's rows,
//! and that no gateway's own entry is ever a finding. Reports are at most
//! a second old and the fleet is asynchronous, so every read polls with
//! `eventually` (bounded by `common::TIMEOUT`).

mod common;

use common::doctor::{conn, findings, report, report_until};
use common::fleet::{KillableGateway, Redis, gateway, in_sync, tracked};
use common::{Client, TestServer, connect_params, http_get};
use rollcall::presence::FindingKind::{CapPressure, Duplicate, Gone, StaleConnected};
use rollcall::presence::{Finding, KeySource, Report, RowReport, WriteKind};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

/// Long enough that nothing expires while a test runs.
const TTL: Duration = Duration::from_secs(300);

/// The keys a finding names, as a set.
fn keys(finding: &Finding) -> BTreeSet<&str> {
    finding.keys.iter().map(String::as_str).collect()
}

fn conn_id(hello: &Value) -> String {
    hello["server"]["connId"]
        .as_str()
        .unwrap_or_else(|| panic!("hello-ok has no server.connId: {hello}"))
        .to_owned()
}

/// The list `addr` serves over HTTP.
async fn list(addr: SocketAddr) -> Vec<Value> {
    match http_get(addr, "/v1/presence", &[]).await.json() {
        Value::Array(list) => list,
        other => panic!("not a list: {other}"),
    }
}

/// The keys of the gateways' own entries (mode `gateway`) in `addr`'s
/// list, by `gatewayId`: a self entry's key is its `instanceId`.
async fn gateway_keys(addr: SocketAddr) -> Vec<(String, String)> {
    list(addr)
        .await
        .iter()
        .filter(|e| e["mode"] == "gateway")
        .map(|e| {
            let id = e["instanceId"].as_str().expect("a self entry has an id");
            let node = e["gatewayId"].as_str().expect("a fleet entry has a node");
            (node.to_owned(), id.to_lowercase())
        })
        .collect()
}

/// No finding names a gateway's own entry, and the report describes none.
fn assert_no_gateway_flagged(report: &Report, gateways: &[(String, String)]) {
    for (node, key) in gateways {
        for finding in &report.findings {
            assert!(
                !keys(finding).contains(key.as_str()),
                "{node}'s own entry `{key}` is in a finding: {report:#?}"
            );
        }
        assert!(!report.rows.contains_key(key), "{report:#?}");
    }
}

/// Every write of a row's provenance is of `kind`.
fn writes_are(row: &RowReport, kind: WriteKind) -> bool {
    !row.writes.is_empty() && row.writes.iter().all(|w| w.by.kind == kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_roaming_from_a_to_b_without_instance_id_is_one_duplicate_on_both() {
    let redis = Redis::start().await;
    let a = gateway(&redis.url(), "gw-a", TTL).await;
    let b = gateway(&redis.url(), "gw-b", TTL).await;
    in_sync(&[&a, &b]).await;
    let mut params = connect_params("ui", &["operator.read"]);
    params["client"]["displayName"] = json!("Roamer");

    let (on_a, hello) = Client::connect(a.addr, params.clone()).await;
    let first = conn_id(&hello);
    on_a.close().await;
    // B has seen the disconnect before the client shows up there.
    report_until(b.addr, "A's row gone on B", |r| {
        findings(r, Gone).iter().any(|f| f.key == first.as_str())
    })
    .await;
    let (_on_b, hello) = Client::connect(b.addr, params).await;
    let second = conn_id(&hello);
    assert_ne!(first, second);

    let both = BTreeSet::from([first.as_str(), second.as_str()]);
    for (server, local, remote) in [(a.addr, &first, &second), (b.addr, &second, &first)] {
        let r = report_until(server, "one duplicate naming both rows", |r| {
            r.count(Duplicate) == 1 && keys(findings(r, Duplicate)[0]) == both
        })
        .await;
        let dup = findings(&r, Duplicate)[0];
        // Only the row held here is known to be keyed by a connection id:
        // the other one's provenance stayed on its gateway.
        assert_eq!(dup.key, local.as_str(), "{r:#?}");
        let fix = dup.fix.as_deref().expect("a duplicate has a fix");
        assert!(fix.contains("sends no `client.instanceId`"), "{fix}");
        let summary = dup.summary.as_str();
        assert!(summary.contains("host \"Roamer\""), "{summary}");

        let rows = &r.rows;
        assert_eq!(rows[local].key_source, KeySource::ConnectionId, "{r:#?}");
        assert_eq!(rows[local].created.by.kind, WriteKind::Connect, "{r:#?}");
        assert_eq!(conn(&rows[local].created).as_ref(), Some(local), "{r:#?}");
        assert_eq!(rows[remote].key_source, KeySource::Elsewhere, "{r:#?}");
        assert!(writes_are(&rows[remote], WriteKind::Remote), "{r:#?}");
        assert_eq!(rows[remote].created.by.kind, WriteKind::Remote, "{r:#?}");
        assert!(rows[remote].created.by.conn.is_none(), "{r:#?}");
        assert!(!rows[&first].live, "{r:#?}");
        assert!(rows[&second].live, "{r:#?}");
        let gone = findings(&r, Gone);
        assert_eq!(gone.len(), 1, "{r:#?}");
        assert_eq!(gone[0].key, first.as_str());
        assert_eq!(r.count(StaleConnected) + r.count(CapPressure), 0);
        assert_no_gateway_flagged(&r, &gateway_keys(server).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stable_clients_on_one_host_across_gateways_are_no_finding_and_no_self_entry_is() {
    let redis = Redis::start().await;
    let a = gateway(&redis.url(), "gw-a", TTL).await;
    let b = gateway(&redis.url(), "gw-b", TTL).await;
    // A third gateway: B then holds two other gateways' entries, on the
    // same host with the same mode and ip, as one box running a fleet does.
    let c = gateway(&redis.url(), "gw-c", TTL).await;
    in_sync(&[&a, &b, &c]).await;
    let mut desk_1 = tracked("desk-1");
    desk_1["client"]["displayName"] = json!("Desk");
    let mut desk_2 = tracked("desk-2");
    desk_2["client"]["displayName"] = json!("Desk");
    let (_on_a, _) = Client::connect(a.addr, desk_1).await;
    let (_on_c, _) = Client::connect(c.addr, desk_2).await;

    // Three self entries and two client rows, the same on every gateway.
    for server in [b.addr, a.addr, c.addr] {
        let r = report_until(server, "every row of the fleet", |r| r.entries == 5).await;
        assert!(r.findings.is_empty(), "{r:#?}");
        assert!(r.rows.is_empty(), "{r:#?}");
        let gateways = gateway_keys(server).await;
        let nodes: BTreeSet<&str> = gateways.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(nodes, BTreeSet::from(["gw-a", "gw-b", "gw-c"]));
        let hosts: BTreeSet<String> = list(server)
            .await
            .iter()
            .filter(|e| e["mode"] == "gateway")
            .map(|e| e["host"].to_string())
            .collect();
        assert_eq!(hosts.len(), 1, "one host runs the whole fleet: {hosts:?}");
        assert_no_gateway_flagged(&r, &gateways);
    }
}

/// Gateway A (the real binary) killed with a tracked client on it, as B
/// saw it.
struct Killed {
    b: TestServer,
    /// Both gateways' own entries, as B listed them before the kill.
    gateways: Vec<(String, String)>,
    /// B's first report listing the client (`doomed-1`) as `gone`.
    report: Report,
}

async fn kill_a_with_a_client_on_it(redis: &Redis) -> Killed {
    let b = gateway(&redis.url(), "gw-b", TTL).await;
    in_sync(&[&b]).await;
    let mut a = KillableGateway::start(&redis.url(), "gw-a", TTL).await;
    let (_client, _) = Client::connect(a.addr, tracked("doomed-1")).await;
    let before = report_until(b.addr, "A's client on B", |r| r.entries == 3).await;
    assert!(before.findings.is_empty(), "{before:#?}");
    let gateways = gateway_keys(b.addr).await;
    assert_eq!(gateways.len(), 2, "{gateways:?}");

    a.kill();
    // Eventually, within the common deadline (10 s: ten of these 1 s
    // leases), not a measured lapse: A's process clock cannot be paused,
    // and a loaded machine stretches every step.
    let report = report_until(b.addr, "A's client gone on B", |r| {
        findings(r, Gone).iter().any(|f| f.key == "doomed-1")
    })
    .await;
    Killed {
        b,
        gateways,
        report,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateways_client_is_gone_on_b_after_the_lease() {
    let redis = Redis::start().await;
    let Killed { report: r, .. } = kill_a_with_a_client_on_it(&redis).await;
    let row = &r.rows["doomed-1"];
    assert!(!row.live, "{r:#?}");
    assert_eq!(row.key_source, KeySource::Elsewhere, "{r:#?}");
    let writes = &row.writes;
    assert_eq!(writes.last().unwrap().by.kind, WriteKind::Lapse, "{r:#?}");
    assert!(
        writes[..writes.len() - 1]
            .iter()
            .all(|w| w.by.kind == WriteKind::Remote)
    );
    let gone = findings(&r, Gone);
    let gone = gone.iter().find(|f| f.key == "doomed-1").unwrap();
    let left = gone.removed_in_ms.unwrap();
    assert!(left <= TTL.as_millis() as u64, "{gone:?}");
    let summary = gone.summary.as_str();
    assert!(summary.contains("disconnected"), "{summary}");
    assert_eq!(r.count(Duplicate), 0, "{r:#?}");
}

// Other gateways' own entries (pinned rows) are never diagnosed like client
// rows: not gone when their gateway dies, not counted against the cap, not
// a duplicate of a beacon that calls itself a gateway. Each of these failed
// before snapshots carried `pinned`.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateways_own_entry_is_no_finding_on_b() {
    let redis = Redis::start().await;
    let killed = kill_a_with_a_client_on_it(&redis).await;
    assert_no_gateway_flagged(&killed.report, &killed.gateways);
    let later = report(killed.b.addr).await;
    assert_no_gateway_flagged(&later, &killed.gateways);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_gateways_own_entries_are_not_cap_pressure() {
    let redis = Redis::start().await;
    let a = gateway(&redis.url(), "gw-a", TTL).await;
    let url = redis.url();
    // The cap exempts A's own entry (docs/protocol.md §5.4): B holds two client
    // rows before it evicts anything.
    let b = TestServer::start_with(move |c| {
        c.fleet = Some(url);
        c.node_id = Some("gw-b".into());
        c.fleet_lease = Duration::from_secs(1);
        c.max_entries = 2;
    })
    .await;
    in_sync(&[&a, &b]).await;
    let (_desk, _) = Client::connect(a.addr, tracked("desk-1")).await;
    let r = report_until(b.addr, "A's client on B", |r| r.entries == 3).await;
    assert_no_gateway_flagged(&r, &gateway_keys(b.addr).await);
    assert_eq!(r.count(CapPressure), 0, "1 of 2 rows in use: {r:#?}");
    assert_eq!(r.cap.entries, 1, "{r:#?}");
    assert_eq!(r.cap.oldest_key.as_deref(), Some("desk-1"), "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_like_beacon_is_no_duplicate_of_another_gateways_own_entry() {
    let redis = Redis::start().await;
    let a = gateway(&redis.url(), "gw-a", TTL).await;
    let b = gateway(&redis.url(), "gw-b", TTL).await;
    in_sync(&[&a, &b]).await;
    let gateways = gateway_keys(b.addr).await;
    let listed = list(b.addr).await;
    let own_a = listed.iter().find(|e| e["gatewayId"] == "gw-a").unwrap();
    let host = own_a["host"].as_str().expect("a self entry has a host");
    let ip = own_a["ip"].as_str().unwrap_or("192.0.2.9");
    // A beacon without an id from something calling itself a gateway on
    // this host (a script, a gateway outside the fleet): keyed by its host.
    let text = format!(
        "Node: {host} ({ip}) · app 1.0 · last input 0 s ago · mode gateway · reason periodic"
    );
    let mut admin = Client::admin(b.addr).await;
    admin.beacon(json!({ "text": text })).await;
    let r = report_until(b.addr, "the beacon row", |r| r.entries == 3).await;
    assert_no_gateway_flagged(&r, &gateways);
}
