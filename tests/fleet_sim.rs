//! `rollcall load fleet-sim` against a real `redis-server` and one real
//! in-process gateway: the simulated gateways must be indistinguishable
//! from real ones (leases, hashes, stamps, change messages), so the real
//! gateway lists their rows, applies their changes, and marks the rows of
//! one that stops renewing its lease disconnected.

mod common;

use clap::Parser;
use common::fleet::Redis;
use common::{Client, TestServer, eventually};
use rollcall::load::vfleet::{self, Control, FleetSimArgs};
use serde_json::Value;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: FleetSimArgs,
}

fn sim_args(redis: &str, observe: &str) -> FleetSimArgs {
    let argv = [
        "fleet-sim",
        "--redis",
        redis,
        "--gateways",
        "3",
        "--rows",
        "300",
        "--changes-per-sec",
        "60",
        "--duration",
        "1h",
        "--lease",
        "1s",
        "--lapse",
        "1",
        "--lapse-after",
        "1h",
        "--observe",
        observe,
        "--settle",
        "1s",
    ];
    Cli::parse_from(argv).args
}

fn simulated<'a>(list: &'a [Value], node: &str) -> Vec<&'a Value> {
    let prefix = format!("{node}-");
    let rows = list.iter().filter(|r| r["mode"] == "vfleet");
    rows.filter(|r| {
        r["instanceId"]
            .as_str()
            .is_some_and(|i| i.starts_with(&prefix))
    })
    .collect()
}

fn disconnected(row: &Value) -> bool {
    row["reason"] == "node-disconnected"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_gateway_lists_applies_and_lapses_a_virtual_fleet() {
    let redis = Redis::start().await;
    let url = redis.url();
    let server = TestServer::start_with(|c| {
        c.fleet = Some(url.clone());
        c.node_id = Some("real".into());
        c.fleet_lease = Duration::from_secs(1);
        c.max_entries = 1000;
    })
    .await;
    let (stop_tx, stop) = watch::channel(false);
    let (lapse_tx, lapse) = watch::channel(false);
    let args = sim_args(&url, &format!("http://{}", server.addr));
    let sim = tokio::spawn(vfleet::run_with(args, Control { stop, lapse }));

    let mut observer = Client::observer(server.addr).await;
    eventually(
        "all 300 simulated rows, live, with changes applied",
        async || {
            let list = observer.presence().await;
            let rows: Vec<&Value> = (0..3)
                .flat_map(|g| simulated(&list, &vfleet::node_id(g)))
                .collect();
            let changed = rows.iter().filter(|r| r["reason"] != "change 0").count();
            let live = rows.iter().all(|r| !disconnected(r));
            (rows.len() == 300 && live && changed > 10).then_some(())
        },
    )
    .await;

    lapse_tx.send(true).expect("the run holds the receiver");
    eventually(
        "vfleet-0's rows disconnected, the others still live",
        async || {
            let list = observer.presence().await;
            let lapsed = simulated(&list, "vfleet-0");
            let others = simulated(&list, "vfleet-1");
            let done = lapsed.len() == 100 && lapsed.iter().all(|r| disconnected(r));
            (done && others.len() == 100 && !others.iter().any(|r| disconnected(r))).then_some(())
        },
    )
    .await;

    stop_tx.send(true).expect("the run holds the receiver");
    let report = sim.await.expect("no panic").expect("the run succeeds");
    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!(report.lapsed, 1);
    assert!(report.changes > 0 && report.messages >= 3, "{report:?}");
    assert_eq!(report.rows_written, 300 + report.changes);
    let observed = report.observed.expect("--observe was given");
    assert!(
        observed.messages > 0 && observed.p99_ms > 0.0,
        "no change message measured on the gateway: {observed:?}"
    );
    assert_eq!(observed.convergence.rows_listed, 300);
    assert!(observed.convergence.converged_ms.is_some());
}

#[tokio::test]
async fn bad_options_are_refused_by_name() {
    let cases = [
        (vec!["--gateways", "0"], "--gateways"),
        (vec!["--gateways", "5", "--rows", "4"], "--rows"),
        (vec!["--duration", "0s"], "--duration"),
        (vec!["--lapse", "9"], "--lapse"),
        (vec!["--observe", "ws://x:1"], "--observe"),
    ];
    for (extra, named) in cases {
        let mut argv = vec!["fleet-sim", "--redis", "redis://127.0.0.1:1"];
        argv.extend(extra);
        let error = vfleet::run(Cli::parse_from(argv).args).await.unwrap_err();
        assert!(error.to_string().contains(named), "{named}: {error}");
    }
}
