//! `rollcall presence` and `rollcall beacon`: a small OpenClaw-protocol
//! client for people at a terminal. It connects like any client (mode
//! `cli`, so it is not tracked), and turns every failure into a message and
//! an exit code a script can act on. It prints nothing itself: lists and
//! tables go to a callback the binary gives.

use super::handshake::{self, CONNECT_ID, HandshakeError, next_text};
use super::visible::visible;
use super::ws_dial::{Target, TargetError, UrlError, WsConn, connect, resolve};
use crate::presence::Status;
use crate::presence::text::{self, ParsedText};
use crate::tls::TlsArgs;
use fastwebsockets::{Frame, Payload};
use serde_json::{Value, json};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::mpsc;

/// How long to wait for the gateway at each step.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where to connect and how to authenticate.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Gateway URL: ws:// or, to a gateway serving TLS, wss://.
    #[arg(long, env = "ROLLCALL_URL", default_value = "ws://127.0.0.1:18789")]
    pub url: String,
    /// Gateway token, if the gateway requires one.
    #[arg(long, env = "ROLLCALL_CLIENT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    /// Whom to trust on wss://.
    pub tls: TlsArgs,
}

/// `rollcall presence` options.
#[derive(Debug, Clone, clap::Args)]
pub struct PresenceArgs {
    #[command(flatten)]
    /// Connection options.
    pub client: ClientArgs,
    /// Print the raw JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Keep the list live from `presence` events until interrupted.
    #[arg(long)]
    pub watch: bool,
}

/// `rollcall beacon` options: one `system-event`.
#[derive(Debug, Clone, clap::Args)]
pub struct BeaconArgs {
    #[command(flatten)]
    /// Connection options.
    pub client: ClientArgs,
    /// Stable id of the instance the beacon is about.
    #[arg(long)]
    pub instance_id: String,
    /// Host name to report.
    #[arg(long)]
    pub host: Option<String>,
    /// IP address to report.
    #[arg(long)]
    pub ip: Option<String>,
    /// Mode to report (e.g. `ui`, `node`).
    #[arg(long)]
    pub mode: Option<String>,
    /// Reason to report (e.g. `periodic`).
    #[arg(long)]
    pub reason: Option<String>,
    /// Seconds since the last user input.
    #[arg(long)]
    pub last_input_seconds: Option<u64>,
    /// The beacon text; defaults to a `Node: …` line built from the fields.
    #[arg(long)]
    pub text: Option<String>,
}

/// Why a client command failed. Each maps to its own exit code.
#[derive(Debug, Error)]
pub enum CliError {
    /// The URL is not `ws://HOST:PORT[/PATH]` (or `wss://`), or the TLS
    /// options cannot be used.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// Nothing answered at the address.
    #[error("cannot reach the gateway at {url}: {why}")]
    Unreachable {
        /// The URL.
        url: String,
        /// The OS or upgrade error.
        why: String,
    },
    /// The gateway refused the token.
    #[error(
        "the gateway refused the token ({0}); pass the right one with --token or ROLLCALL_CLIENT_TOKEN"
    )]
    Unauthorized(String),
    /// The token lacks a scope the command needs.
    #[error("the token lacks the scope {0} needed for this command")]
    MissingScope(String),
    /// The gateway answered with another error.
    #[error("the gateway answered {code}: {message}")]
    Gateway {
        /// Error code.
        code: String,
        /// Error message.
        message: String,
    },
    /// The gateway did not answer in time.
    #[error("the gateway did not answer within {0:?}")]
    Timeout(Duration),
    /// The connection closed or spoke something unexpected.
    #[error("connection to the gateway failed: {0}")]
    Protocol(String),
}

impl CliError {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Target(_) => 2,
            CliError::Unreachable { .. } | CliError::Timeout(_) => 3,
            CliError::Unauthorized(_) => 4,
            CliError::MissingScope(_) => 5,
            CliError::Gateway { .. } | CliError::Protocol(_) => 1,
        }
    }
}

/// A connected, authenticated client session.
struct Session {
    ws: WsConn,
    next_id: u64,
}

impl Session {
    async fn open(args: &ClientArgs, scopes: &[&str]) -> Result<Session, CliError> {
        let target = parse_url(&args.url, &args.tls).await?;
        let unreachable = |why: String| CliError::Unreachable {
            url: args.url.clone(),
            why,
        };
        let mut ws = tokio::time::timeout(STEP_TIMEOUT, connect(&target))
            .await
            .map_err(|_| unreachable("timed out".into()))?
            .map_err(|e| unreachable(with_sources(&e)))?;
        let request = connect_request(args, scopes);
        let hello = tokio::time::timeout(STEP_TIMEOUT, handshake::hello(&mut ws, request))
            .await
            .map_err(|_| CliError::Timeout(STEP_TIMEOUT))?
            .map_err(protocol_error)?;
        let reply: Value = serde_json::from_slice(&hello.reply)
            .map_err(|e| CliError::Protocol(format!("invalid JSON from the gateway: {e}")))?;
        let hello = response_payload(reply)?;
        let granted: Vec<&str> = hello["auth"]["scopes"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(missing) = scopes.iter().find(|s| !granted.contains(s)) {
            return Err(CliError::MissingScope((*missing).to_owned()));
        }
        Ok(Session { ws, next_id: 1 })
    }

    async fn send(&mut self, frame: Value) -> Result<(), CliError> {
        let bytes = frame.to_string().into_bytes();
        self.ws
            .write
            .write_frame(Frame::text(Payload::Owned(bytes)))
            .await
            .map_err(|e| CliError::Protocol(e.to_string()))
    }

    async fn read_json(&mut self) -> Result<Value, CliError> {
        tokio::time::timeout(STEP_TIMEOUT, read_text(&mut self.ws))
            .await
            .map_err(|_| CliError::Timeout(STEP_TIMEOUT))?
    }

    /// Sends a request and waits for its response, skipping events.
    async fn call(&mut self, method: &str, params: Value) -> Result<Value, CliError> {
        let id = self.next_id.to_string();
        self.next_id += 1;
        self.send(json!({"type": "req", "id": id, "method": method, "params": params}))
            .await?;
        loop {
            let frame = self.read_json().await?;
            if frame["type"] == "res" && frame["id"] == id.as_str() {
                return response_payload(frame);
            }
        }
    }
}

/// The CLI's `connect` request: an untracked operator (mode `cli`).
fn connect_request(args: &ClientArgs, scopes: &[&str]) -> Vec<u8> {
    let mut params = json!({
        "minProtocol": 3,
        "maxProtocol": 4,
        "client": {
            "id": "rollcall-cli",
            "displayName": "rollcall",
            "version": env!("CARGO_PKG_VERSION"),
            "platform": std::env::consts::OS,
            "mode": "cli",
        },
        "role": "operator",
        "scopes": scopes,
        "caps": [],
    });
    if let Some(token) = &args.token {
        params["auth"] = json!({ "token": token });
    }
    json!({"type": "req", "id": CONNECT_ID, "method": "connect", "params": params})
        .to_string()
        .into_bytes()
}

fn protocol_error(e: HandshakeError) -> CliError {
    CliError::Protocol(with_sources(&e))
}

/// Reads one text message as JSON.
async fn read_text(ws: &mut WsConn) -> Result<Value, CliError> {
    let text = next_text(ws).await.map_err(protocol_error)?;
    serde_json::from_slice(text)
        .map_err(|e| CliError::Protocol(format!("invalid JSON from the gateway: {e}")))
}

/// An error and its causes, `outer: inner: innermost`.
pub(crate) fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn response_payload(frame: Value) -> Result<Value, CliError> {
    if frame["ok"] == true {
        return Ok(frame["payload"].clone());
    }
    let error = &frame["error"];
    let code = error["code"].as_str().unwrap_or("UNKNOWN").to_owned();
    let message = error["message"].as_str().unwrap_or("").to_owned();
    if message == "unauthorized" {
        return Err(CliError::Unauthorized(message));
    }
    if code == "FORBIDDEN" {
        let scope = error["details"]["missingScope"]
            .as_str()
            .unwrap_or(&message);
        return Err(CliError::MissingScope(scope.to_owned()));
    }
    Err(CliError::Gateway { code, message })
}

async fn parse_url(url: &str, tls: &TlsArgs) -> Result<Target, CliError> {
    resolve(url, tls).await.map_err(|e| match e {
        UrlError::Invalid { url, reason } => TargetError::BadUrl { url, why: reason }.into(),
        UrlError::Tls(e) => TargetError::Tls(e).into(),
        UrlError::Resolve { .. } => CliError::Unreachable {
            url: url.to_owned(),
            why: with_sources(&e),
        },
    })
}

/// Runs `rollcall presence`: hands the list to `show`, then, with
/// `--watch`, every list a `presence` event brings and (for a table) the
/// same list again each second, so ages keep moving.
pub async fn presence(
    args: PresenceArgs,
    mut show: impl FnMut(&Value) -> std::io::Result<()>,
) -> Result<(), CliError> {
    let mut show = move |list: &Value| {
        show(list).map_err(|e| CliError::Protocol(format!("cannot write to stdout: {e}")))
    };
    let mut session = Session::open(&args.client, &["operator.read"]).await?;
    let list = session.call("system-presence", json!({})).await?;
    show(&list)?;
    if !args.watch {
        return Ok(());
    }
    // Messages are read by their own task, so the table can also re-render
    // on a timer while a read is pending.
    let (tx, mut rx) = mpsc::channel::<Result<Value, CliError>>(16);
    let mut ws = session.ws;
    let reader = tokio::spawn(async move {
        loop {
            let frame = read_text(&mut ws).await;
            let stop = frame.is_err();
            if tx.send(frame).await.is_err() || stop {
                return;
            }
        }
    });
    let mut latest = list;
    let mut refresh = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            frame = rx.recv() => {
                let Some(frame) = frame else { break };
                let frame = frame?;
                if frame["event"] == "presence" {
                    latest = frame["payload"]["presence"].clone();
                    show(&latest)?;
                } else if frame["event"] == "shutdown" {
                    reader.abort();
                    return Err(CliError::Protocol("the gateway is shutting down".into()));
                }
            }
            _ = refresh.tick(), if !args.json => show(&latest)?,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    reader.abort();
    Ok(())
}

/// The beacon text `rollcall beacon` sends when `--text` is not given.
fn beacon_text(args: &BeaconArgs) -> String {
    text::format(&ParsedText {
        host: args.host.as_deref().unwrap_or(&args.instance_id),
        ip: args.ip.as_deref().unwrap_or("unknown"),
        version: env!("CARGO_PKG_VERSION"),
        last_input_seconds: args.last_input_seconds.unwrap_or(0),
        mode: args.mode.as_deref().unwrap_or("cli"),
        reason: args.reason.as_deref().unwrap_or("manual"),
    })
}

/// Runs `rollcall beacon`; `Ok` once the gateway applied the beacon.
pub async fn beacon(args: BeaconArgs) -> Result<(), CliError> {
    let mut session = Session::open(&args.client, &["operator.admin"]).await?;
    let text = args.text.clone().unwrap_or_else(|| beacon_text(&args));
    let mut params = json!({ "text": text, "instanceId": args.instance_id });
    for (name, value) in [
        ("host", &args.host),
        ("ip", &args.ip),
        ("mode", &args.mode),
        ("reason", &args.reason),
    ] {
        if let Some(value) = value {
            params[name] = json!(value);
        }
    }
    if let Some(seconds) = args.last_input_seconds {
        params["lastInputSeconds"] = json!(seconds);
    }
    session.call("system-event", params).await?;
    Ok(())
}

/// The presence list as an aligned table with a status column.
pub fn render_table(list: &Value, now: i64) -> String {
    const HEADERS: [&str; 8] = [
        "STATUS", "HOST", "IP", "MODE", "VERSION", "PLATFORM", "AGE", "REASON",
    ];
    let mut rows: Vec<[String; 8]> = Vec::new();
    for entry in list.as_array().map(Vec::as_slice).unwrap_or_default() {
        // Row data is the clients': never send its control characters.
        let field = |name: &str| visible(entry[name].as_str().unwrap_or("-")).into_owned();
        let ts = entry["ts"].as_i64().unwrap_or(0);
        let status = match Status::of(ts, now) {
            Status::Active => "active",
            Status::Idle => "idle",
            Status::Stale => "stale",
        };
        let age = format!("{}s", (now - ts).max(0) / 1000);
        rows.push([
            status.to_owned(),
            field("host"),
            field("ip"),
            field("mode"),
            field("version"),
            field("platform"),
            age,
            field("reason"),
        ]);
    }
    let mut widths = HEADERS.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let parts: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(&HEADERS);
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cells);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_status_and_fields() {
        let now = 1_000_000;
        let list = json!([
            {"host": "gw", "mode": "gateway", "reason": "self", "ts": now},
            {"host": "mini", "ip": "10.0.0.7", "mode": "ui", "ts": now - 200_000},
        ]);
        let table = render_table(&list, now);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("STATUS"));
        assert!(lines[1].starts_with("active") && lines[1].contains("gw"));
        assert!(lines[2].starts_with("idle") && lines[2].contains("10.0.0.7"));
    }

    #[tokio::test]
    async fn urls_must_be_ws_or_wss() {
        let none = TlsArgs::default();
        assert!(matches!(
            parse_url("http://x", &none).await,
            Err(CliError::Target(TargetError::BadUrl { .. }))
        ));
        let missing = TlsArgs {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsArgs::default()
        };
        let err = parse_url("wss://127.0.0.1:9", &missing).await.unwrap_err();
        assert!(
            matches!(err, CliError::Target(TargetError::Tls(_))),
            "{err}"
        );
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        assert_eq!(err.exit_code(), 2);
        let target = parse_url("ws://127.0.0.1:9/ws", &none).await.unwrap();
        assert_eq!(target.path, "/ws");
        assert_eq!(target.addr.port(), 9);
    }
}
