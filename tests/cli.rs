//! `rollcall presence` and `rollcall beacon` run as the real binary against
//! a live in-process gateway.

mod common;

use common::{Client, TestServer, must_find};
use serde_json::Value;
use std::process::Output;

async fn rollcall(args: Vec<String>) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(args)
        .env_remove("ROLLCALL_CLIENT_TOKEN")
        .env_remove("ROLLCALL_URL")
        .output()
        .await
        .expect("the rollcall binary runs")
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn url(server: &TestServer) -> String {
    server.ws_url("/")
}

#[tokio::test]
async fn beacon_then_presence_table_shows_the_row_with_status() {
    let server = TestServer::start().await;
    let out = rollcall(args(&[
        "beacon",
        "--url",
        &url(&server),
        "--instance-id",
        "mini-1",
        "--host",
        "mini",
        "--ip",
        "10.0.0.9",
        "--mode",
        "ui",
        "--reason",
        "periodic",
    ]))
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = rollcall(args(&["presence", "--url", &url(&server)])).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("STATUS") && lines[0].contains("HOST"),
        "{table}"
    );
    assert!(
        lines[1].contains("gateway") && lines[1].starts_with("active"),
        "{table}"
    );
    let row = lines
        .iter()
        .find(|l| l.contains("mini"))
        .expect("the beacon's row");
    assert!(
        row.starts_with("active") && row.contains("10.0.0.9") && row.contains("periodic"),
        "{table}"
    );
}

#[tokio::test]
async fn presence_json_is_the_raw_list_and_the_cli_is_not_tracked() {
    let server = TestServer::start().await;
    let out = rollcall(args(&["presence", "--json", "--url", &url(&server)])).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).expect("stdout is a JSON array");
    assert_eq!(list.len(), 1, "only the gateway: mode cli is untracked");
    assert_eq!(list[0]["mode"], "gateway");
    let mut observer = Client::observer(server.addr).await;
    let now = observer.presence().await;
    must_find(&now, "mode", "gateway");
    assert_eq!(now.len(), 1);
}

#[tokio::test]
async fn refused_token_exits_non_zero_with_a_readable_message() {
    let server = TestServer::start_with(|c| c.tokens = vec!["root".parse().unwrap()]).await;
    let out = rollcall(args(&[
        "presence",
        "--url",
        &url(&server),
        "--token",
        "wrong",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refused the token"), "{stderr}");

    let ok = rollcall(args(&[
        "presence",
        "--url",
        &url(&server),
        "--token",
        "root",
    ]))
    .await;
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[tokio::test]
async fn missing_scope_and_unreachable_gateway_have_their_own_exit_codes() {
    let server = TestServer::start_with(|c| c.tokens = vec!["dash:read".parse().unwrap()]).await;
    let out = rollcall(args(&[
        "beacon",
        "--url",
        &url(&server),
        "--token",
        "dash",
        "--instance-id",
        "x",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("operator.admin"));

    // Bind then drop a listener: nothing listens on that port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = rollcall(args(&[
        "presence",
        "--url",
        &format!("ws://127.0.0.1:{port}"),
    ]))
    .await;
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the gateway"));

    let out = rollcall(args(&["presence", "--url", "http://127.0.0.1:1"])).await;
    assert_eq!(out.status.code(), Some(2));
}

/// `rollcall serve` with `env` set, bounded: these runs must exit at once.
async fn serve_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollcall"));
    command.arg("serve").args(args).kill_on_drop(true);
    for var in ["ROLLCALL_BIND", "ROLLCALL_TOKEN", "ROLLCALL_CONFIG"] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    tokio::time::timeout(std::time::Duration::from_secs(60), command.output())
        .await
        .expect("a refused configuration exits")
        .expect("the rollcall binary runs")
}

#[tokio::test]
async fn serve_config_file_is_overridden_by_env_and_flags() {
    // An open bind without a token is refused at start, naming the address:
    // which address it names says which source won.
    let path = std::env::temp_dir().join(format!("rollcall-cli-{}.toml", std::process::id()));
    std::fs::write(&path, "bind = \"0.0.0.0:18789\"\n").unwrap();
    let path = path.to_str().unwrap();
    let refused = |out: &Output, addr: &str| {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!("listen on {addr} without a token")),
            "{stderr}"
        );
    };
    refused(
        &serve_with_env(&["--config", path], &[]).await,
        "0.0.0.0:18789",
    );
    let env = [("ROLLCALL_BIND", "0.0.0.0:1")];
    refused(
        &serve_with_env(&["--config", path], &env).await,
        "0.0.0.0:1",
    );
    let flag = ["--config", path, "--bind", "0.0.0.0:2"];
    refused(&serve_with_env(&flag, &env).await, "0.0.0.0:2");
    let env = [("ROLLCALL_CONFIG", path)];
    refused(&serve_with_env(&[], &env).await, "0.0.0.0:18789");

    std::fs::write(path, "bnid = \"0.0.0.0:3\"\n").unwrap();
    let out = serve_with_env(&["--config", path], &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("unknown key `bnid` (did you mean `bind`?)"),
        "{stderr}"
    );
}
