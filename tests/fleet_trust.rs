//! The fleet's trust boundary and self-repair (docs/protocol.md §8), end to
//! end against a real `redis-server`: what the test writes into Redis
//! plays a hostile or broken peer, an operator's mistake or Redis losing
//! data, and real gateways must keep showing the truth.

mod common;

use common::fleet::{Redis, free_port, gateway, in_sync, row, row_where, tracked};
use common::{Client, TestServer, eventually, http_get, now_ms};
use redis::AsyncCommands;
use rollcall::config::ServeConfig;
use rollcall::gateway::Server;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;

const TTL: Duration = Duration::from_secs(300);

/// The value of one metric series in `/metrics` (0 when absent).
async fn metric(addr: SocketAddr, series: &str) -> f64 {
    let body = http_get(addr, "/metrics", &[]).await.body;
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// A change message as a gateway publishes it, with `rows` upserts.
fn message(node: &str, boot: &str, seq: u64, at: u64, rows: &[Value]) -> String {
    json!({"node": node, "boot": boot, "seq": seq, "at": at, "upserts": rows, "removed": []})
        .to_string()
}

fn record(key: &str, ts: u64, pinned: bool) -> Value {
    json!({"key": key, "live": true, "pinned": pinned,
           "entry": {"instanceId": key, "mode": "gateway", "reason": "connect", "text": key, "ts": ts}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_from_a_node_without_a_lease_are_not_believed() {
    let redis = Redis::start().await;
    let a = TestServer::start_with(|c| {
        c.fleet = Some(redis.url());
        c.node_id = Some("gw-a".into());
        c.fleet_lease = Duration::from_secs(1);
        c.max_entries = 20;
    })
    .await;
    in_sync(&[&a]).await;
    let mut clients = Vec::new();
    for i in 0..10 {
        clients.push(
            Client::connect(a.addr, tracked(&format!("real-{i}")))
                .await
                .0,
        );
    }
    row_where(a.addr, "real-9", |_| true).await;

    let mut con = redis.connection().await;
    let year_2100 = 4_102_444_800_000;
    for seq in 1..=2 {
        let rows: Vec<Value> = (0..150)
            .map(|i| record(&format!("ghost-{seq}-{i}"), year_2100, true))
            .collect();
        let _: () = con
            .publish(
                "rollcall:changes",
                message("ghost", "g", seq, year_2100, &rows),
            )
            .await
            .unwrap();
    }
    let unheard = "rollcall_fleet_messages_unheard_total";
    eventually("both ghost messages to be refused", async || {
        (metric(a.addr, unheard).await >= 2.0).then_some(())
    })
    .await;
    let list = Client::observer(a.addr).await.presence().await;
    assert!(
        list.iter().all(|r| r["gatewayId"] != "ghost"),
        "no ghost row: {list:?}"
    );
    for i in 0..10 {
        assert!(row(&list, &format!("real-{i}")).is_some(), "real-{i} kept");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_clock_running_ahead_is_clamped_and_reported() {
    let redis = Redis::start().await;
    let a = gateway(&redis.url(), "gw-a", TTL).await;
    in_sync(&[&a]).await;
    // A registered peer with a live lease whose clock is 10 minutes ahead.
    let mut con = redis.connection().await;
    let _: () = con
        .set_ex("rollcall:node:gw-b:lease", "boot-b", 60)
        .await
        .unwrap();
    let _: () = con.sadd("rollcall:nodes", "gw-b").await.unwrap();
    eventually("A to see gw-b's lease", async || {
        (metric(a.addr, "rollcall_fleet_peers").await == 1.0).then_some(())
    })
    .await;
    let ahead = now_ms() + 600_000;
    let rows = [record("from-the-future", ahead, false)];
    let _: () = con
        .publish(
            "rollcall:changes",
            message("gw-b", "boot-b", 1, ahead, &rows),
        )
        .await
        .unwrap();
    let seen = row_where(a.addr, "from-the-future", |_| true).await;
    let ts = seen["ts"].as_u64().unwrap();
    assert!(ts <= now_ms() + 5_000, "ts {ts} clamped to A's clock + 5 s");
    assert_eq!(seen["gatewayId"], "gw-b");
    let healthz = eventually("/healthz to report the skew", async || {
        let body = http_get(a.addr, "/healthz", &[]).await.body;
        body.contains("clock skew").then_some(body)
    })
    .await;
    assert!(healthz.starts_with("ok"), "{healthz}");
    assert!(healthz.contains("gw-b +"), "{healthz}");
    let skew = metric(a.addr, "rollcall_fleet_peer_clock_skew_ms{node=\"gw-b\"}").await;
    assert!(skew > 590_000.0, "skew {skew}");
    assert!(metric(a.addr, "rollcall_fleet_ts_clamped_total").await >= 1.0);
}

fn same_node(url: &str, takeover: bool) -> ServeConfig {
    let mut config = ServeConfig::defaults();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.fleet = Some(url.to_owned());
    config.node_id = Some("same".into());
    config.fleet_lease = Duration::from_secs(1);
    config.fleet_takeover = takeover;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_gateway_with_a_taken_node_id_refuses_to_start_unless_told_to_take_over() {
    let redis = Redis::start().await;
    let first = gateway(&redis.url(), "same", TTL).await;
    in_sync(&[&first]).await;
    let refused = Server::bind(same_node(&redis.url(), false)).await;
    let error = refused.err().expect("the second gateway must not start");
    let message = error.to_string();
    assert!(message.contains("\"same\""), "{message}");
    assert!(message.contains("--node-id"), "{message}");
    assert_eq!(http_get(first.addr, "/healthz", &[]).await.body, "ok");

    let second = Server::bind(same_node(&redis.url(), true))
        .await
        .expect("--fleet-takeover starts");
    let healthz = eventually("the first gateway to say why it stopped", async || {
        let body = http_get(first.addr, "/healthz", &[]).await.body;
        body.contains("held by another gateway").then_some(body)
    })
    .await;
    assert!(healthz.starts_with("degraded"), "{healthz}");
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_deleted_again_and_again_converges_back_to_connected() {
    let redis = Redis::start().await;
    let a = gateway(&redis.url(), "gw-a", TTL).await;
    let b = gateway(&redis.url(), "gw-b", TTL).await;
    in_sync(&[&a, &b]).await;
    let (_client, _) = Client::connect(a.addr, tracked("steady")).await;
    row_where(b.addr, "steady", |r| r["reason"] == "connect").await;

    let mut con = redis.connection().await;
    for _ in 0..60 {
        let _: () = con.del("rollcall:node:gw-a:lease").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        metric(b.addr, "rollcall_fleet_lapses_total").await >= 1.0,
        "the deletes made B lapse A at least once"
    );
    row_where(b.addr, "steady", |r| r["reason"] == "connect").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_flushall_every_gateway_rewrites_its_rows_and_a_new_one_sees_them() {
    let redis = Redis::start().await;
    let a = gateway(&redis.url(), "gw-a", TTL).await;
    in_sync(&[&a]).await;
    let (_client, _) = Client::connect(a.addr, tracked("kept")).await;
    row_where(a.addr, "kept", |_| true).await;
    let mut con = redis.connection().await;
    eventually("A's row in Redis", async || {
        let n: u64 = con.hlen("rollcall:node:gw-a:rows").await.unwrap();
        (n >= 2).then_some(())
    })
    .await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut con).await.unwrap();
    eventually("A to repair its rows", async || {
        (metric(a.addr, "rollcall_fleet_repairs_total").await >= 1.0).then_some(())
    })
    .await;
    let c = gateway(&redis.url(), "gw-c", TTL).await;
    in_sync(&[&c]).await;
    let seen = row_where(c.addr, "kept", |r| r["reason"] == "connect").await;
    assert_eq!(seen["gatewayId"], "gw-a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_from_a_file_works_and_is_never_shown() {
    let port = free_port();
    let _redis = Redis::start_with(port, &["--requirepass", "hunter2-secret"]).await;
    let file = std::env::temp_dir().join(format!("rollcall-pw-{port}"));
    std::fs::write(&file, "hunter2-secret\n").unwrap();
    let url = format!("redis://127.0.0.1:{port}");
    let a = TestServer::start_with(|c| {
        c.fleet = Some(url.clone());
        c.fleet_password_file = Some(file.clone());
        c.node_id = Some("gw-a".into());
        c.fleet_lease = Duration::from_secs(1);
    })
    .await;
    in_sync(&[&a]).await;
    let _ = std::fs::remove_file(&file);

    // The real binary: `--help` with the URL in the environment, and a
    // serve whose Redis is unreachable (it warns, naming the URL).
    let secret_url = format!("redis://:hunter2-secret@127.0.0.1:{}", free_port());
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(["serve", "--help"])
        .env("ROLLCALL_FLEET", &secret_url)
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("ROLLCALL_FLEET"), "{help}");
    assert!(!help.contains("hunter2"), "{help}");
    let mut serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(["serve", "--bind", &format!("127.0.0.1:{}", free_port())])
        .args(["--fleet", &secret_url, "--fleet-lease", "1s"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stderr = serve.stderr.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
    let mut logs = String::new();
    common::within("the unreachable-redis warning", async {
        while let Some(line) = lines.next_line().await.unwrap() {
            logs.push_str(&line);
            logs.push('\n');
            if line.contains("unreachable") {
                return;
            }
        }
    })
    .await;
    assert!(
        logs.contains("127.0.0.1"),
        "the warning names the URL: {logs}"
    );
    assert!(logs.contains(":***@"), "{logs}");
    assert!(!logs.contains("hunter2"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_over_rediss_shares_presence_over_tls() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!("rollcall-rediss-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let port = free_port();
    let (cert_arg, key_arg) = (cert.display().to_string(), key.display().to_string());
    let tls_port = port.to_string();
    let _redis = Redis::start_with(
        port,
        &[
            "--port",
            "0",
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &cert_arg,
            "--tls-key-file",
            &key_arg,
            "--tls-ca-cert-file",
            &cert_arg,
            "--tls-auth-clients",
            "no",
        ],
    )
    .await;
    // The self-signed certificate is its own CA: --fleet-ca-file trusts it.
    let url = format!("rediss://localhost:{port}");
    let over_tls = async |node: &str| {
        let (url, node, ca) = (url.clone(), node.to_owned(), cert.clone());
        TestServer::start_with(move |c| {
            c.fleet = Some(url);
            c.fleet_ca_file = Some(ca);
            c.node_id = Some(node);
            c.fleet_lease = Duration::from_secs(1);
        })
        .await
    };
    let a = over_tls("gw-a").await;
    let b = over_tls("gw-b").await;
    in_sync(&[&a, &b]).await;
    let (_client, _) = Client::connect(a.addr, tracked("over-tls")).await;
    let seen = row_where(b.addr, "over-tls", |r| r["reason"] == "connect").await;
    assert_eq!(seen["gatewayId"], "gw-a");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes what peer `p` holds, as one of its transactions would, without
/// the change message (it is lost).
async fn peer_writes(con: &mut redis::aio::MultiplexedConnection, seq: u64, keys: &[&str]) {
    let now = now_ms();
    let mut pipe = redis::pipe();
    pipe.atomic();
    for key in keys {
        let mut row = record(key, now, false);
        row["entry"]["mode"] = json!("ui");
        pipe.hset("rollcall:node:p:rows", *key, row.to_string())
            .ignore();
    }
    pipe.set(
        "rollcall:node:p:stamp",
        format!("boot-p {seq} {}", keys.len()),
    )
    .ignore()
    .sadd("rollcall:nodes", "p")
    .ignore()
    .set_ex("rollcall:node:p:lease", "boot-p", 600)
    .ignore();
    let _: () = pipe.query_async(con).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_change_message_was_lost_is_reloaded() {
    let redis = Redis::start().await;
    let a = TestServer::start_with(|c| {
        c.fleet = Some(redis.url());
        c.node_id = Some("gw-a".into());
        c.fleet_lease = Duration::from_secs(1);
    })
    .await;
    in_sync(&[&a]).await;
    let mut con = redis.connection().await;
    peer_writes(&mut con, 1, &["first"]).await;
    row_where(a.addr, "first", |r| r["gatewayId"] == "p").await;
    let reloads = metric(a.addr, "rollcall_fleet_reloads_total").await;
    // Message 2 never comes: its stamp is ahead once A has read every
    // message published before its next poll, and A reloads p.
    peer_writes(&mut con, 2, &["first", "second"]).await;
    row_where(a.addr, "second", |r| r["gatewayId"] == "p").await;
    assert!(metric(a.addr, "rollcall_fleet_reloads_total").await > reloads);
}
