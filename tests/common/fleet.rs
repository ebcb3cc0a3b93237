//! Fleet helpers (docs/protocol.md §8) shared by `tests/fleet.rs` and
//! `tests/fleet_doctor.rs`: a real `redis-server` child per test, fleet
//! gateways in-process or as the real binary (for SIGKILL), and the
//! waits that tell when their link is up.
//!
//! A missing `redis-server` fails the test with one line saying how to get
//! it (the README's test command, `bash .ci/test`, installs it): skipping
//! would hide a broken setup.

use super::{Client, TestServer, connect_params, eventually};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `redis-server` child process on a free port.
pub struct Redis {
    /// Where it listens, on 127.0.0.1.
    pub port: u16,
    child: Child,
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("bound").port()
}

/// The one line a test fails with when `redis-server` is missing.
pub const REDIS_MISSING: &str = "redis-server is not installed: run the tests with \
     `bash .ci/test` (it installs it), or `sudo apt-get install -y redis-server`";

/// `redis-server` on `PATH`. A missing one fails the calling test with
/// [`REDIS_MISSING`], one line.
fn redis_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file());
    match found {
        Some(binary) => binary,
        None => panic!("{REDIS_MISSING}"),
    }
}

impl Redis {
    /// Starts one on a free port and waits until it accepts connections.
    pub async fn start() -> Redis {
        Redis::start_on(free_port()).await
    }

    /// Starts one on `port` (a restart on the port of one that stopped).
    pub async fn start_on(port: u16) -> Redis {
        Redis::start_with(port, &[]).await
    }

    /// Starts one on `port` with extra `redis-server` arguments.
    pub async fn start_with(port: u16, extra: &[&str]) -> Redis {
        let child = Command::new(redis_binary())
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let redis = Redis { port, child };
        eventually("redis-server to accept connections", async || {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
        })
        .await;
        redis
    }

    /// The `--fleet` URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A connection for the test's own commands (faults, checks).
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("a valid URL")
            .get_multiplexed_async_connection()
            .await
            .expect("redis accepts a connection")
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Kills it (idempotent).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A fleet gateway named `node`, in-process, with a 1 s lease.
pub async fn gateway(url: &str, node: &str, ttl: Duration) -> TestServer {
    let (url, node) = (url.to_owned(), node.to_owned());
    TestServer::start_with(move |c| {
        c.fleet = Some(url);
        c.node_id = Some(node);
        c.fleet_lease = Duration::from_secs(1);
        c.presence_ttl = ttl;
    })
    .await
}

/// Waits until every server's fleet link is up.
pub async fn in_sync(servers: &[&TestServer]) {
    for server in servers {
        let status = server.state.http.fleet.clone().expect("fleet mode");
        eventually("the fleet link to come up", async || {
            status.is_connected().then_some(())
        })
        .await;
    }
}

/// A tracked client (`ui`) under `instance`.
pub fn tracked(instance: &str) -> Value {
    let mut params = connect_params("ui", &["operator.read"]);
    params["client"]["instanceId"] = json!(instance);
    params
}

/// The real `rollcall` binary as a fleet gateway named `node`, with a 1 s
/// lease: the one way to make a gateway die without a word (SIGKILL).
/// Dropping it kills it too, so a failing test leaves no gateway behind.
pub struct KillableGateway {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
}

impl KillableGateway {
    /// Starts it with `--presence-ttl ttl` (whole seconds) and waits until
    /// it listens.
    pub async fn start(url: &str, node: &str, ttl: Duration) -> KillableGateway {
        KillableGateway::start_with(url, node, ttl, &[], &[]).await
    }

    /// Like [`KillableGateway::start`], with `extra` serve arguments and
    /// `envs` set for the process (for example libfaketime's `LD_PRELOAD`
    /// and `FAKETIME`: the gateway itself is the child, so it can be
    /// killed).
    pub async fn start_with(
        url: &str,
        node: &str,
        ttl: Duration,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> KillableGateway {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_rollcall"));
        command.envs(envs.iter().copied());
        let stderr = match std::env::var_os("ROLLCALL_TEST_GATEWAY_LOGS") {
            Some(_) => Stdio::inherit(),
            None => Stdio::null(),
        };
        let child = command
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .args(["--fleet", url, "--node-id", node])
            .args(["--fleet-lease", "1s"])
            .args(["--presence-ttl", &format!("{}s", ttl.as_secs())])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("the rollcall binary starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
        let gateway = KillableGateway { addr, child };
        eventually("the gateway binary to listen", async || {
            tokio::net::TcpStream::connect(addr).await.ok()
        })
        .await;
        gateway
    }

    /// SIGKILL: no disconnect is written, the lease is not released.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }
}

impl Drop for KillableGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The row for `instance` in `list`, if any.
pub fn row<'a>(list: &'a [Value], instance: &str) -> Option<&'a Value> {
    list.iter().find(|e| e["instanceId"] == instance)
}

/// Waits until `server`'s list has a row for `instance` that `check`
/// accepts; returns it.
pub async fn row_where(
    server: SocketAddr,
    instance: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let mut observer = Client::observer(server).await;
    eventually(&format!("a matching row for {instance}"), async || {
        let list = observer.presence().await;
        row(&list, instance).filter(|r| check(r)).cloned()
    })
    .await
}
