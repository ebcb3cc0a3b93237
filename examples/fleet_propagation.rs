//! Measures fleet propagation: from a beacon applied on gateway A (its ack
//! from A's writer) to its row in gateway B's published snapshot, at a
//! steady beacon rate, through a real `redis-server` child process.
//!
//! ```text
//! cargo run --release --example fleet_propagation -- [RATE_PER_S] [SECONDS]
//! ```
//!
//! Both gateways run in this process (same clock); beacons go straight into
//! A's engine queue, as a connection's would, so the figure is the fleet's
//! share only: A's sync task, Redis, B's subscriber and B's writer.

use rollcall::config::ServeConfig;
use rollcall::engine::Event;
use rollcall::gateway::Server;
use rollcall::presence::{self, BeaconInput};
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let rate: u64 = args.next().map_or(Ok(1000), |a| a.parse())?;
    let seconds: u64 = args.next().map_or(Ok(10), |a| a.parse())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut redis = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let url = format!("redis://127.0.0.1:{port}");
    let a = start(&url, "gw-a").await?;
    let b = start(&url, "gw-b").await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let latencies = Arc::new(Mutex::new(hdrhistogram::Histogram::<u64>::new(3)?));
    let watcher = tokio::spawn(watch(
        b.state().reader.clone(),
        Arc::clone(&sent),
        Arc::clone(&latencies),
    ));
    let sender = a.state().sender.clone();
    let tasks = (
        tokio::spawn(a.run(std::future::pending())),
        tokio::spawn(b.run(std::future::pending())),
    );
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    for n in 0..rate * seconds {
        tick.tick().await;
        let text = format!("probe {n}");
        let instance_id = format!("probe-{}", n % 100);
        let input = BeaconInput {
            text: &text,
            instance_id: Some(&instance_id),
            ..BeaconInput::default()
        };
        let (key, patch) = presence::beacon(&input, "gw-a");
        let Ok(applied) = sender.try_push_acked(Event::Beacon { key, patch }) else {
            continue;
        };
        let sent = Arc::clone(&sent);
        tokio::spawn(async move {
            if applied.await.is_ok() {
                sent.lock().unwrap().insert(text, Instant::now());
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    watcher.abort();
    let h = latencies.lock().unwrap();
    println!(
        "rate {rate}/s for {seconds}s: {} of {} beacons seen on B; A-applied -> B-snapshot p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        h.len(),
        rate * seconds,
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0
    );
    tasks.0.abort();
    tasks.1.abort();
    let _ = redis.kill();
    Ok(())
}

async fn start(url: &str, node: &str) -> anyhow::Result<Server> {
    let mut config = ServeConfig::defaults();
    config.bind = "127.0.0.1:0".parse()?;
    config.fleet = Some(url.to_owned());
    config.node_id = Some(node.to_owned());
    Ok(Server::bind(config).await?)
}

/// Records, for each probe text first seen in B's snapshots, the time since
/// A acked it. Probes seen before their ack is recorded count as 0.
async fn watch(
    reader: rollcall::engine::SnapshotReader,
    sent: Arc<Mutex<HashMap<String, Instant>>>,
    latencies: Arc<Mutex<hdrhistogram::Histogram<u64>>>,
) {
    let mut version = reader.version();
    loop {
        reader.wait_for(version + 1).await;
        let snapshot = reader.load_full();
        version = snapshot.version();
        let now = Instant::now();
        for row in snapshot.entries() {
            let entry = row.entry();
            if !entry.text.starts_with("probe ") {
                continue;
            }
            if let Some(at) = sent.lock().unwrap().remove(&entry.text) {
                let micros = now.saturating_duration_since(at).as_micros() as u64;
                let _ = latencies.lock().unwrap().record(micros);
            }
        }
    }
}
