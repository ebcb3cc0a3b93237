//! Smoke run of `rollcall load` against the real gateway: about 200
//! clients for about 5 s must see no error, and every simulated client
//! must appear in `system-presence`.

mod common;

use clap::Parser;
use common::{Client, TestServer};
use rollcall::load::{LoadArgs, run};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    load: LoadArgs,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_for_five_seconds_see_no_errors() {
    let server = TestServer::start_with(|c| c.max_entries = 1000).await;
    let url = server.ws_url("/");
    let cli = Cli::parse_from([
        "load",
        "--url",
        &url,
        "--clients",
        "200",
        "--duration",
        "5s",
        "--in-flight",
        "1",
        "--ramp-rate",
        "1000",
    ]);
    let summary = run(cli.load).await.expect("the run starts");

    assert_eq!(summary.ramp.connected, 200, "{summary}");
    assert_eq!(summary.ramp.failed, 0, "{summary}");
    assert_eq!(summary.run.held_at_end, 200, "{summary}");
    assert!(summary.errors_by_code.is_empty(), "{summary}");
    assert!(
        summary.connection_failures.values().all(|&n| n == 0),
        "{summary}"
    );
    let beacons = &summary.methods["system-event"];
    assert!(beacons.ok > 200, "every client beaconed: {summary}");
    assert_eq!(beacons.errors, 0, "{summary}");

    let mut observer = Client::observer(server.addr).await;
    let list = observer.presence().await;
    let prefix = format!("load-{}-", summary.run.run_id);
    let fleet = list
        .iter()
        .filter(|e| {
            e["instanceId"]
                .as_str()
                .is_some_and(|id| id.starts_with(&prefix))
        })
        .count();
    assert_eq!(fleet, 200, "every simulated client is in system-presence");
}
