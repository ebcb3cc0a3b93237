//! The fleet fault suite (docs/protocol.md §8, "Convergence after
//! faults"): real `redis-server` processes (and a Sentinel), gateways as
//! the real binary, real WebSocket clients. For each fault, every
//! gateway's view must come back to the truth (the rows of clients that
//! are connected, and only those, as `connect`) eventually, within
//! [`DEADLINE`]; the target, 3 lease intervals, is measured, not asserted:
//! each run prints how long convergence took after the fault ended, and
//! appends it to `$ROLLCALL_FAULT_TIMES` when set (`benches/fleet_faults.sh`
//! runs the suite several times and prints the medians).
//!
//! Each fault also changes something the fleet must carry (a client that
//! connects or leaves during it), so a fleet that stopped working cannot
//! pass by showing what it showed before.
//!
//! Slow and multi-process: `#[ignore]`d in plain `cargo test`, run by
//! `.ci/run` as `cargo test --test fleet_faults -- --ignored --test-threads=1`.
//! The clock-skew fault runs one gateway under libfaketime (Debian's
//! `faketime` package, `LD_PRELOAD`ed; `.ci/run` installs it).

mod common;

use common::fleet::{KillableGateway, Redis, free_port, tracked};
use common::{Client, http_get};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// Every gateway's `--fleet-lease`.
const LEASE: Duration = Duration::from_secs(1);
/// Long enough that nothing expires during a test.
const TTL: Duration = Duration::from_secs(300);
/// The test fails past this; the target is 3 leases, the margin is for a
/// loaded CI machine.
const DEADLINE: Duration = Duration::from_secs(20);

/// One gateway and the clients connected to it.
struct Member {
    gateway: KillableGateway,
    clients: Vec<(String, Client)>,
}

/// The gateways under test.
struct World {
    url: String,
    members: Vec<Member>,
    next_client: usize,
}

impl World {
    async fn start(url: &str, nodes: &[&str], clients_each: usize) -> World {
        let mut world = World {
            url: url.to_owned(),
            members: Vec::new(),
            next_client: 0,
        };
        for node in nodes {
            let gateway = KillableGateway::start(url, node, TTL).await;
            world.members.push(Member {
                gateway,
                clients: Vec::new(),
            });
        }
        for i in 0..nodes.len() {
            for _ in 0..clients_each {
                world.connect(i).await;
            }
        }
        world.converge("start", Instant::now()).await;
        world
    }

    /// Connects a new tracked client to member `i`.
    async fn connect(&mut self, i: usize) {
        self.next_client += 1;
        let id = format!("client-{}", self.next_client);
        let (client, _) = Client::connect(self.members[i].gateway.addr, tracked(&id)).await;
        self.members[i].clients.push((id, client));
    }

    /// Closes member `i`'s first client.
    async fn disconnect(&mut self, i: usize) {
        let (_, client) = self.members[i].clients.remove(0);
        client.close().await;
    }

    /// The instance ids of every open client.
    fn truth(&self) -> BTreeSet<String> {
        let clients = self.members.iter().flat_map(|m| &m.clients);
        clients.map(|(id, _)| id.clone()).collect()
    }

    /// Member `i`'s connected rows.
    async fn view(&self, i: usize) -> BTreeSet<String> {
        connected(&self.members[i].gateway).await
    }

    /// Waits until every member's view is the truth; returns how long
    /// that took after `since` (the fault's end) and reports it.
    async fn converge(&self, fault: &str, since: Instant) -> Duration {
        let truth = self.truth();
        loop {
            let mut views = Vec::new();
            for i in 0..self.members.len() {
                views.push(self.view(i).await);
            }
            if views.iter().all(|view| *view == truth) {
                let took = since.elapsed();
                report(fault, took);
                return took;
            }
            if since.elapsed() > DEADLINE {
                panic!(
                    "{fault}: no convergence within {DEADLINE:?}: truth {truth:?}, views {views:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The `instanceId`s a gateway lists as connected clients.
async fn connected(gateway: &KillableGateway) -> BTreeSet<String> {
    let reply = http_get(gateway.addr, "/v1/presence", &[]).await;
    let Value::Array(rows) = reply.json() else {
        panic!("not a list: {}", reply.body);
    };
    rows.iter()
        .filter(|row| row["mode"] != "gateway")
        .filter(|row| row["reason"] == "connect" || row["reason"] == "node-connected")
        .filter_map(|row| row["instanceId"].as_str().map(str::to_owned))
        .collect()
}

/// Prints one measurement and appends it to `$ROLLCALL_FAULT_TIMES`.
fn report(fault: &str, took: Duration) {
    let leases = took.as_secs_f64() / LEASE.as_secs_f64();
    eprintln!(
        "FAULT {fault}: converged {} ms after it ended ({leases:.1} leases)",
        took.as_millis()
    );
    if let Some(path) = std::env::var_os("ROLLCALL_FAULT_TIMES") {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("the times file opens");
        writeln!(file, "{fault}\t{}", took.as_millis()).expect("the times file takes a line");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "multi-process fault suite: cargo test --test fleet_faults -- --ignored --test-threads=1"]
async fn a_gateway_killed_and_restarted() {
    let redis = Redis::start().await;
    let mut world = World::start(&redis.url(), &["gw-a", "gw-b", "gw-c"], 2).await;
    world.members[1].gateway.kill();
    let killed = Instant::now();
    world.members[1].clients.clear();
    // The survivors' views, without the dead gateway's (it answers nothing).
    let dead = world.members.remove(1);
    world.converge("gateway SIGKILLed", killed).await;
    drop(dead);
    let gateway = KillableGateway::start(&world.url, "gw-b", TTL).await;
    let restarted = Instant::now();
    world.members.insert(
        1,
        Member {
            gateway,
            clients: Vec::new(),
        },
    );
    world.connect(1).await;
    world.converge("gateway restarted", restarted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "multi-process fault suite: cargo test --test fleet_faults -- --ignored --test-threads=1"]
async fn redis_paused_longer_than_a_lease() {
    let redis = Redis::start().await;
    let mut world = World::start(&redis.url(), &["gw-a", "gw-b"], 2).await;
    redis.signal("STOP");
    world.connect(0).await;
    world.disconnect(1).await;
    tokio::time::sleep(LEASE * 3).await;
    redis.signal("CONT");
    let resumed = Instant::now();
    world
        .converge("Redis SIGSTOPped for 3 leases", resumed)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "multi-process fault suite: cargo test --test fleet_faults -- --ignored --test-threads=1"]
async fn redis_restarted() {
    let mut redis = Redis::start().await;
    let mut world = World::start(&redis.url(), &["gw-a", "gw-b"], 2).await;
    redis.stop();
    world.connect(0).await;
    world.disconnect(1).await;
    let _back = Redis::start_on(redis.port).await;
    let started = Instant::now();
    world.converge("Redis restarted (empty)", started).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "multi-process fault suite: cargo test --test fleet_faults -- --ignored --test-threads=1"]
async fn flushall() {
    let redis = Redis::start().await;
    let mut world = World::start(&redis.url(), &["gw-a", "gw-b"], 2).await;
    let mut con = redis.connection().await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut con).await.unwrap();
    let flushed = Instant::now();
    // A gateway that joins now knows only what Redis holds.
    let gateway = KillableGateway::start(&world.url, "gw-c", TTL).await;
    world.members.push(Member {
        gateway,
        clients: Vec::new(),
    });
    world
        .converge("FLUSHALL (then a new gateway joins)", flushed)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "multi-process fault suite: cargo test --test fleet_faults -- --ignored --test-threads=1"]
async fn a_lease_deleted_repeatedly() {
    let redis = Redis::start().await;
    let world = World::start(&redis.url(), &["gw-a", "gw-b"], 2).await;
    let mut con = redis.connection().await;
    let until = Instant::now() + LEASE * 4;
    while Instant::now() < until {
        let _: () = redis::cmd("DEL")
            .arg("rollcall:node:gw-a:lease")
            .query_async(&mut con)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stopped = Instant::now();
    world
        .converge("a lease deleted every 50 ms for 4 leases", stopped)
        .await;
}

/// A TCP proxy between one gateway and Redis that the test can cut:
/// `cut` drops every proxied connection and refuses new ones.
struct Proxy {
    port: u16,
    target: u16,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    async fn start(target: u16) -> Proxy {
        let mut proxy = Proxy {
            port: free_port(),
            target,
            task: None,
        };
        proxy.restore().await;
        proxy
    }

    async fn restore(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        let target = self.target;
        self.task = Some(tokio::spawn(async move {
            // Dropped with the task: every proxied connection closes.
            let mut links = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                links.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }

    fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "multi-process fault suite: cargo test --test fleet_faults -- --ignored --test-threads=1"]
async fn the_link_between_a_gateway_and_redis_cut_and_restored() {
    let redis = Redis::start().await;
    let mut proxy = Proxy::start(redis.port).await;
    let through = format!("redis://127.0.0.1:{}", proxy.port);
    let mut world = World::start(&redis.url(), &["gw-b"], 2).await;
    let cut_off = KillableGateway::start(&through, "gw-a", TTL).await;
    world.members.insert(
        0,
        Member {
            gateway: cut_off,
            clients: Vec::new(),
        },
    );
    world.connect(0).await;
    world.converge("start", Instant::now()).await;
    proxy.cut();
    world.connect(0).await;
    world.disconnect(1).await;
    tokio::time::sleep(LEASE * 3).await;
    proxy.restore().await;
    let restored = Instant::now();
    world
        .converge("gateway-Redis link cut for 3 leases", restored)
        .await;
}

/// A Sentinel watching one master, on a free port.
struct Sentinel {
    port: u16,
    child: Child,
    conf: PathBuf,
}

impl Sentinel {
    async fn start(master: u16) -> Sentinel {
        let port = free_port();
        let conf = std::env::temp_dir().join(format!("rollcall-sentinel-{port}.conf"));
        let text = format!(
            "port {port}\nbind 127.0.0.1\nsentinel monitor main 127.0.0.1 {master} 1\n\
             sentinel down-after-milliseconds main 1000\nsentinel failover-timeout main 3000\n"
        );
        std::fs::write(&conf, text).expect("the sentinel config is written");
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel starts");
        let sentinel = Sentinel { port, child, conf };
        common::eventually("the sentinel to list the replica", async || {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
            let mut con = client.get_multiplexed_async_connection().await.ok()?;
            let replicas: redis::Value = redis::cmd("SENTINEL")
                .arg("REPLICAS")
                .arg("main")
                .query_async(&mut con)
                .await
                .ok()?;
            let replicas = match replicas {
                redis::Value::Array(items) => items,
                _ => Vec::new(),
            };
            (!replicas.is_empty()).then_some(())
        })
        .await;
        sentinel
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.conf);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "multi-process fault suite: cargo test --test fleet_faults -- --ignored --test-threads=1"]
async fn the_sentinel_master_killed() {
    let mut master = Redis::start().await;
    let replica_port = free_port();
    let replicaof = ["--replicaof", "127.0.0.1", &master.port.to_string()].map(String::from);
    let args: Vec<&str> = replicaof.iter().map(String::as_str).collect();
    let replica = Redis::start_with(replica_port, &args).await;
    let mut con = replica.connection().await;
    common::eventually("the replica to sync", async || {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut con)
            .await
            .ok()?;
        info.contains("master_link_status:up").then_some(())
    })
    .await;
    let sentinel = Sentinel::start(master.port).await;
    let url = format!("redis+sentinel://127.0.0.1:{}/main", sentinel.port);
    let mut world = World::start(&url, &["gw-a", "gw-b"], 2).await;
    master.stop();
    let killed = Instant::now();
    let promoted = tokio::spawn(promotion(sentinel.port, replica_port));
    world.connect(0).await;
    world.disconnect(1).await;
    let took = world
        .converge("Sentinel master SIGKILLed (from the kill)", killed)
        .await;
    let promoted = promoted.await.expect("the promotion watch ends");
    report(
        "Sentinel master SIGKILLed (from the promotion)",
        took.saturating_sub(promoted.duration_since(killed)),
    );
}

/// When the Sentinel names the replica as master.
async fn promotion(sentinel: u16, replica: u16) -> Instant {
    let client = redis::Client::open(format!("redis://127.0.0.1:{sentinel}")).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    loop {
        let addr: Option<(String, String)> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg("main")
            .query_async(&mut con)
            .await
            .unwrap_or(None);
        if addr.is_some_and(|(_, port)| port == replica.to_string()) {
            return Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "multi-process fault suite: cargo test --test fleet_faults -- --ignored --test-threads=1"]
async fn a_peer_with_a_skewed_clock() {
    let libfaketime = ["x86_64-linux-gnu", "aarch64-linux-gnu"]
        .iter()
        .map(|arch| format!("/usr/lib/{arch}/faketime/libfaketimeMT.so.1"))
        .find(|path| std::path::Path::new(path).is_file())
        .expect("libfaketime is not installed: `sudo apt-get install -y faketime` (.ci/run installs it)");
    let redis = Redis::start().await;
    let mut world = World::start(&redis.url(), &["gw-a"], 2).await;
    let envs = [("LD_PRELOAD", libfaketime.as_str()), ("FAKETIME", "+120s")];
    let ahead = KillableGateway::start_with(&redis.url(), "gw-b", TTL, &[], &envs).await;
    let joined = Instant::now();
    world.members.push(Member {
        gateway: ahead,
        clients: Vec::new(),
    });
    world.connect(1).await;
    world.connect(1).await;
    world
        .converge("a peer's clock 120 s ahead (joins)", joined)
        .await;
    let a = world.members[0].gateway.addr;
    let list = http_get(a, "/v1/presence", &[]).await.json();
    let now = common::now_ms();
    for row in list.as_array().unwrap() {
        let ts = row["ts"].as_u64().unwrap();
        assert!(ts <= now + 6_000, "ts clamped on A: {row}");
    }
    common::eventually("A to warn about B's clock", async || {
        let body = http_get(a, "/healthz", &[]).await.body;
        body.contains("gw-b +").then_some(())
    })
    .await;
}
