//! Device identity for tests (docs/protocol.md §3.7): ed25519 keys made
//! from a seed, and `device` blocks signed over a connection's challenge
//! as the OpenClaw clients sign them (the v3 payload).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A device key from a one-byte seed: the same seed is the same device.
pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// The device id `key` proves: lowercase hex SHA-256 of the raw key.
pub fn id(key: &SigningKey) -> String {
    Sha256::digest(key.verifying_key().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The v3 payload of `params` for `nonce`, signed at `signed_at`.
pub fn payload_v3(key: &SigningKey, params: &Value, nonce: &str, signed_at: u64) -> String {
    let client = &params["client"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let scopes: Vec<String> = params["scopes"]
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default();
    let role = params["role"].as_str().unwrap_or("operator");
    let token = text(&params["auth"]["token"]);
    format!(
        "v3|{}|{}|{}|{role}|{}|{signed_at}|{token}|{nonce}|{}|{}",
        id(key),
        text(&client["id"]),
        text(&client["mode"]),
        scopes.join(","),
        text(&client["platform"]).trim().to_ascii_lowercase(),
        text(&client["deviceFamily"]).trim().to_ascii_lowercase(),
    )
}

/// `params` with a `device` block that `key` signed over `nonce` now.
pub fn signed(key: &SigningKey, mut params: Value, nonce: &str) -> Value {
    let signed_at = crate::common::now_ms();
    let payload = payload_v3(key, &params, nonce, signed_at);
    params["device"] = json!({
        "id": id(key),
        "publicKey": URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()),
        "signature": URL_SAFE_NO_PAD.encode(key.sign(payload.as_bytes()).to_bytes()),
        "signedAt": signed_at,
        "nonce": nonce,
    });
    params
}

/// The nonce of a client's `connect.challenge`.
pub fn nonce(challenge: &Value) -> String {
    challenge["payload"]["nonce"]
        .as_str()
        .expect("connect.challenge carries a nonce")
        .to_owned()
}

/// Opens a connection and completes the handshake with `params` signed
/// by `key` over its challenge; the client and the `hello-ok` payload.
pub async fn connect(
    addr: std::net::SocketAddr,
    key: &SigningKey,
    params: Value,
) -> (crate::common::Client, Value) {
    let mut client = crate::common::Client::open(addr).await;
    let params = signed(key, params, &nonce(&client.challenge));
    let hello = client.handshake(params).await;
    (client, hello)
}
