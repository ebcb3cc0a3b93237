//! Failed auth is rate-limited per client address (docs/protocol.md §3.8),
//! over real sockets: after ten wrong tokens from one address, even the
//! right token is answered `AUTH_RATE_LIMITED` with `retryAfterMs` (the
//! secret is not checked), while another address and an already connected
//! client are not hurt.

mod common;

use common::{Client, TestServer, connect_frame, connect_params};
use rollcall::auth::MAX_FAILURES;
use serde_json::{Value, json};
use std::net::SocketAddr;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn params(token: &str) -> Value {
    let mut params = connect_params("ui", &["operator.read"]);
    params["auth"] = json!({"token": token});
    params
}

/// Opens a WebSocket from `from` (another loopback address is another
/// client address) and sends `connect` with `token`; the reply.
async fn connect_from(server: SocketAddr, from: &str, token: &str) -> Value {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let tcp = socket.connect(server).await.unwrap();
    let request = format!("ws://{server}/").into_client_request().unwrap();
    let (mut client, _) = Client::open_on(tcp, request).await;
    client.send_text(connect_frame("c1", params(token))).await;
    client.reply("c1").await
}

#[tokio::test]
async fn repeated_wrong_tokens_lock_the_address_out_without_checking_the_secret() {
    let server = TestServer::start_with(|c| c.tokens = vec!["right".parse().unwrap()]).await;
    let (mut healthy, _) = Client::connect(server.addr, params("right")).await;
    for _ in 0..MAX_FAILURES {
        let reply = connect_from(server.addr, "127.0.0.1", "wrong").await;
        assert_eq!(
            reply["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH",
            "{reply}"
        );
    }
    let reply = connect_from(server.addr, "127.0.0.1", "right").await;
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(
        reply["error"]["details"]["code"], "AUTH_RATE_LIMITED",
        "{reply}"
    );
    let retry = reply["error"]["details"]["retryAfterMs"].as_u64().unwrap();
    assert!(retry > 0, "{reply}");
    assert_eq!(reply["error"]["retryAfterMs"], retry);
    assert_eq!(reply["error"]["retryable"], true);
    // Another address is not limited, and a connected client is unhurt.
    let reply = connect_from(server.addr, "127.0.0.2", "right").await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(healthy.call("health", json!({})).await["ok"], true);
}

#[tokio::test]
async fn a_missing_token_is_no_guess_and_is_not_counted() {
    let server = TestServer::start_with(|c| c.tokens = vec!["right".parse().unwrap()]).await;
    for _ in 0..MAX_FAILURES * 2 {
        let reply = connect_from(server.addr, "127.0.0.3", "").await;
        assert_eq!(
            reply["error"]["details"]["code"], "AUTH_TOKEN_MISSING",
            "{reply}"
        );
    }
    let reply = connect_from(server.addr, "127.0.0.3", "right").await;
    assert_eq!(reply["ok"], true, "{reply}");
}
