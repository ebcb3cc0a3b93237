//! Reproduces the walkthrough in `docs/troubleshooting.md` against a running
//! gateway, with real WebSocket clients that each make one classic mistake:
//!
//! - "Ada's Mac" (`ui`) connects without `client.instanceId`, drops its
//!   connection and connects again: two rows, one of them gone;
//! - "Bee" connects as `bee-mac` but its beacons say `instanceId`
//!   `bee-macbook`: two rows for one app;
//! - "Cy" connects as `cy-mini`, beacons once, then stays connected and
//!   silent: after `--stale-after` its row is stale while connected.
//!
//! ```text
//! cargo run --release -- serve --stale-after 10s &
//! cargo run --release --example troubleshoot -- ws://127.0.0.1:18789 60
//! cargo run --release -- doctor     # in another terminal, after 10 s
//! ```
//!
//! Arguments: the gateway URL (default `ws://127.0.0.1:18789`) and how many
//! seconds to keep the clients connected (default 60). Set
//! `ROLLCALL_CLIENT_TOKEN` when the gateway needs a token.

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Reads frames until the reply to request `id`; fails on an error reply.
async fn reply(ws: &mut Ws, id: &str) -> anyhow::Result<Value> {
    let wait = Duration::from_secs(10);
    loop {
        let message = tokio::time::timeout(wait, ws.next())
            .await
            .context("no reply within 10 s")?
            .context("the gateway closed the connection")??;
        let Message::Text(text) = message else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text)?;
        if frame["type"] == "res" && frame["id"] == id {
            if frame["ok"] != true {
                bail!("{id} failed: {}", frame["error"]);
            }
            return Ok(frame["payload"].clone());
        }
    }
}

/// Opens a connection and completes `connect`; prints the `connId`.
async fn join(url: &str, name: &str, client: Value, admin: bool) -> anyhow::Result<Ws> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let mut scopes = vec!["operator.read"];
    if admin {
        scopes.push("operator.admin");
    }
    let mut params = json!({
        "minProtocol": 3,
        "maxProtocol": 4,
        "client": {"id": "openclaw-macos", "version": "2026.11.1", "platform": "darwin 24.1.0", "mode": "ui"},
        "role": "operator",
        "scopes": scopes,
    });
    for (k, v) in client.as_object().expect("client fields are an object") {
        params["client"][k] = v.clone();
    }
    if let Ok(token) = std::env::var("ROLLCALL_CLIENT_TOKEN") {
        params["auth"] = json!({ "token": token });
    }
    let request = json!({"type": "req", "id": "connect", "method": "connect", "params": params});
    ws.send(Message::text(request.to_string())).await?;
    let hello = reply(&mut ws, "connect").await?;
    println!("{name}: connected, connId {}", hello["server"]["connId"]);
    Ok(ws)
}

async fn beacon(ws: &mut Ws, params: Value) -> anyhow::Result<()> {
    let request =
        json!({"type": "req", "id": "beacon", "method": "system-event", "params": params});
    ws.send(Message::text(request.to_string())).await?;
    reply(ws, "beacon").await.map(drop)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:18789".to_owned());
    let hold: u64 = args.next().map_or(Ok(60), |s| s.parse())?;

    let ada = json!({"displayName": "Ada's Mac"});
    let first = join(&url, "Ada (1st connection)", ada.clone(), false).await?;
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ada = join(&url, "Ada (2nd connection)", ada, false).await?;

    let bee = json!({"displayName": "Bee's MacBook", "instanceId": "bee-mac"});
    let mut bee = join(&url, "Bee", bee, true).await?;
    let line = "Node: bee-macbook (10.0.0.42) · app 2026.11.1 · last input 3 s ago · mode ui · reason periodic";
    beacon(&mut bee, json!({"text": line, "instanceId": "bee-macbook"})).await?;
    println!("Bee: beacon sent with instanceId bee-macbook");

    let cy = json!({"displayName": "Cy's Mini", "instanceId": "cy-mini"});
    let mut cy = join(&url, "Cy", cy, true).await?;
    beacon(
        &mut cy,
        json!({"text": "Node: cy-mini · mode ui · reason periodic", "instanceId": "cy-mini"}),
    )
    .await?;
    println!("Cy: one beacon, then silence");

    println!("holding the connections for {hold} s; run `rollcall doctor` now");
    tokio::time::sleep(Duration::from_secs(hold)).await;
    Ok(())
}
