//! Smoke runs of `rollcall load` against the real gateway: about 200
//! clients for about 5 s must see no error, and every simulated client
//! must appear in `system-presence`; watchers on either feed must all hold
//! on, converge on the gateway's version, and see no `seq` or delta gaps;
//! `--fill` writes its rows first, and says so when it may not.

mod common;

use clap::Parser;
use common::{Client, TestServer};
use rollcall::load::{LoadArgs, run};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    load: LoadArgs,
}

/// `rollcall load --url URL FLAGS` as the binary would parse it; `flags`
/// is split on whitespace.
fn load_args(url: &str, flags: &str) -> LoadArgs {
    let mut argv = vec!["load", "--url", url];
    argv.extend(flags.split_whitespace());
    Cli::parse_from(argv).load
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_for_five_seconds_see_no_errors() {
    let server = TestServer::start_with(|c| c.max_entries = 1000).await;
    let url = server.ws_url("/");
    let flags = "--clients 200 --duration 5s --in-flight 1 --ramp-rate 1000";
    let args = load_args(&url, flags);
    let summary = run(args).await.expect("the run starts");

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
    let fleet = with_prefix(&list, &prefix);
    assert_eq!(fleet, 200, "every simulated client is in system-presence");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_writes_its_rows_before_the_clients_start() {
    // One connection writes all 600 rows: past the default per-connection
    // limit on beacon rows.
    let server = TestServer::start_with(|c| {
        c.max_entries = 2000;
        c.max_beacon_rows = 1000;
    })
    .await;
    let url = server.ws_url("/");
    let flags = "--fill 600 --clients 2 --duration 1s --in-flight 1";
    let summary = run(load_args(&url, flags)).await.expect("the run starts");
    assert_eq!(summary.ramp.connected, 2, "{summary}");

    let mut observer = Client::observer(server.addr).await;
    let list = observer.presence().await;
    let prefix = format!("load-{}-f", summary.run.run_id);
    let filled = with_prefix(&list, &prefix);
    assert_eq!(filled, 600, "every --fill row is in system-presence");

    // A second fill against the filled gateway resumes its delta feed at
    // the gateway's version (no list in its hello) and still waits for
    // every acknowledgement.
    let flags = "--fill 700 --clients 1 --duration 1s --in-flight 1";
    let second = run(load_args(&url, flags)).await.expect("the run starts");
    let list = observer.presence().await;
    let prefix = format!("load-{}-f", second.run.run_id);
    assert_eq!(with_prefix(&list, &prefix), 700, "{second}");
}

#[tokio::test]
async fn fill_refused_without_admin_names_the_scope() {
    // The token grants role `node` only: no `operator.admin`.
    let server = TestServer::start_with(|c| c.tokens = vec!["n:node".parse().unwrap()]).await;
    let url = server.ws_url("/");
    let flags = "--token n --fill 10 --clients 1 --duration 1s";
    let error = run(load_args(&url, flags))
        .await
        .expect_err("the fill needs operator.admin");
    assert!(error.to_string().contains("--fill"), "{error}");
}

/// A watcher run against the real gateway: `watchers` on `feed` while five
/// beacon clients change presence, then the summary's watcher figures.
async fn watcher_run(feed: &str) -> rollcall::load::WatchSummary {
    watcher_run_with(feed, "").await
}

/// [`watcher_run`] with extra flags.
async fn watcher_run_with(feed: &str, extra: &str) -> rollcall::load::WatchSummary {
    let server = TestServer::start().await;
    let url = server.ws_url("/");
    let flags = format!(
        "--clients 5 --beacon-interval 200ms --watchers 10 --watch-feed {feed} \
         --duration 2s --settle 10s {extra}"
    );
    let args = load_args(&url, &flags);
    let summary = run(args).await.expect("the run starts");
    assert!(summary.connection_failures.is_empty(), "{summary}");
    assert!(summary.errors_by_code.is_empty(), "{summary}");
    summary.watchers.expect("a run with watchers reports them")
}

/// What every watcher run must show: all held on, all converged on the
/// gateway's version, no gaps, bytes and delays recorded.
fn assert_watchers_kept_up(w: &rollcall::load::WatchSummary) {
    assert_eq!(w.watchers, 10, "{w:?}");
    assert_eq!(w.held, 10, "every watcher held: {w:?}");
    assert_eq!(w.converged, 10, "every watcher converged: {w:?}");
    assert_eq!(w.final_version_from, "health", "{w:?}");
    assert_eq!(w.seq_gaps, 0, "{w:?}");
    assert_eq!(w.delta_gaps, 0, "{w:?}");
    assert_eq!(w.handshake_latency_us.count, 10, "{w:?}");
    assert!(w.bytes_per_watcher > 0.0, "{w:?}");
    // Five beacons every 200 ms for 2 s: each watcher sees many versions.
    assert!(w.presence_events >= 10 * 5, "{w:?}");
    assert!(w.delay_us.count > 0, "delay recorded: {w:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_list_watchers_hold_converge_and_see_no_seq_gaps() {
    let w = watcher_run("full").await;
    assert_eq!(w.feed, "full");
    assert_watchers_kept_up(&w);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_watchers_hold_converge_and_see_no_gaps() {
    let w = watcher_run("delta").await;
    assert_eq!(w.feed, "delta");
    assert_watchers_kept_up(&w);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deflate_watchers_keep_up_and_read_fewer_bytes_than_they_inflate() {
    let plain = watcher_run("full").await;
    assert!(
        plain.bytes_per_watcher > plain.inflated_bytes_per_watcher,
        "uncompressed, the wire adds frame headers: {plain:?}"
    );
    let w = watcher_run_with("full", "--deflate").await;
    assert_watchers_kept_up(&w);
    assert!(
        w.bytes_per_watcher < w.inflated_bytes_per_watcher,
        "compressed on the wire: {w:?}"
    );
}

/// How many rows of `list` have an `instanceId` starting with `prefix`.
fn with_prefix(list: &[serde_json::Value], prefix: &str) -> usize {
    list.iter()
        .filter(|e| {
            e["instanceId"]
                .as_str()
                .is_some_and(|id| id.starts_with(prefix))
        })
        .count()
}
