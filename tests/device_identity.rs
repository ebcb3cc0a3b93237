//! Device identity (docs/protocol.md §3.7) over real sockets: a device
//! that signs its connection's challenge is proven and keys its row; each
//! way of failing is refused with its `details.code` and closes 1008, and
//! writes nothing. A healthy client stays connected throughout.

mod common;

use common::device::{self, key, nonce, payload_v3, signed};
use common::{Client, TestServer, connect_params, entry_with, must_find, now_ms};
use ed25519_dalek::Signer;
use serde_json::{Value, json};

/// One way to spoil a signed `connect`.
type Edit = Box<dyn FnOnce(&mut Value)>;

fn ui_params(instance: &str) -> Value {
    let mut params = connect_params("ui", &["operator.read"]);
    params["client"]["instanceId"] = json!(instance);
    params["client"]["displayName"] = json!(instance);
    params
}

/// Connects with `params` signed over this connection's challenge, then
/// `edit`ed; the refusal's `details` and the close code.
async fn refused(server: &TestServer, edit: impl FnOnce(&mut Value)) -> (Value, Option<u16>) {
    let mut client = Client::open(server.addr).await;
    let mut params = signed(&key(1), ui_params("victim"), &nonce(&client.challenge));
    edit(&mut params);
    let reply = client.request("connect", params).await;
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["error"]["code"], "INVALID_REQUEST", "{reply}");
    (
        reply["error"]["details"].clone(),
        client.expect_close().await.code,
    )
}

#[tokio::test]
async fn a_signed_device_is_proven_and_keys_its_row() {
    let server = TestServer::start().await;
    let key = key(1);
    let (_client, hello) = device::connect(server.addr, &key, ui_params("studio")).await;
    let list = hello["snapshot"]["presence"].as_array().unwrap();
    let own = must_find(list, "host", "studio");
    assert_eq!(own["deviceId"], device::id(&key));
    assert_eq!(
        own["instanceId"],
        device::id(&key),
        "the proven id keys the row"
    );
}

#[tokio::test]
async fn a_v2_signature_and_a_pem_key_are_accepted() {
    let server = TestServer::start().await;
    let key = key(3);
    let mut client = Client::open(server.addr).await;
    let nonce = nonce(&client.challenge);
    let mut params = signed(&key, ui_params("old-client"), &nonce);
    let signed_at = params["device"]["signedAt"].as_u64().unwrap();
    let v3 = payload_v3(&key, &params, &nonce, signed_at);
    let v2 = v3.rsplitn(3, '|').nth(2).unwrap().replacen("v3|", "v2|", 1);
    let signature = key.sign(v2.as_bytes()).to_bytes();
    use base64::Engine;
    params["device"]["signature"] =
        json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature));
    use ed25519_dalek::pkcs8::EncodePublicKey;
    let pem = key
        .verifying_key()
        .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .unwrap();
    params["device"]["publicKey"] = json!(pem);
    client.handshake(params).await;
}

#[tokio::test]
async fn each_device_auth_failure_is_refused_with_its_code() {
    let server = TestServer::start().await;
    let mut healthy = Client::observer(server.addr).await;
    let other = key(2);
    let cases: Vec<(&str, Edit)> = vec![
        (
            "DEVICE_AUTH_PUBLIC_KEY_INVALID",
            Box::new(|p| p["device"]["publicKey"] = json!("bm90LWEta2V5")),
        ),
        (
            "DEVICE_AUTH_DEVICE_ID_MISMATCH",
            Box::new(|p| p["device"]["id"] = json!("studio-mac")),
        ),
        (
            "DEVICE_AUTH_SIGNATURE_EXPIRED",
            Box::new(|p| p["device"]["signedAt"] = json!(now_ms() - 180_000)),
        ),
        (
            "DEVICE_AUTH_NONCE_REQUIRED",
            Box::new(|p| p["device"]["nonce"] = json!("")),
        ),
        (
            "DEVICE_AUTH_NONCE_MISMATCH",
            Box::new(|p| p["device"]["nonce"] = json!(uuid::Uuid::new_v4().to_string())),
        ),
        (
            "DEVICE_AUTH_SIGNATURE_INVALID",
            Box::new(move |p| {
                let forged = signed(&other, p.clone(), p["device"]["nonce"].as_str().unwrap());
                p["device"]["signature"] = forged["device"]["signature"].clone();
            }),
        ),
        (
            "DEVICE_AUTH_SIGNATURE_INVALID",
            Box::new(|p| p["scopes"] = json!(["operator.admin"])),
        ),
        (
            "DEVICE_AUTH_INVALID",
            Box::new(|p| p["device"] = json!({"id": "studio-mac"})),
        ),
    ];
    for (code, edit) in cases {
        let (details, close) = refused(&server, edit).await;
        assert_eq!(details["code"], code, "{details}");
        assert!(details["reason"].as_str().is_some(), "{details}");
        assert_eq!(close, Some(1008), "{code}");
    }
    let list = healthy.presence().await;
    assert!(entry_with(&list, "host", "victim").is_none(), "{list:#?}");
    assert_eq!(healthy.call("health", json!({})).await["ok"], true);
}

#[tokio::test]
async fn a_device_block_replayed_on_another_connection_is_refused() {
    let server = TestServer::start().await;
    let key = key(4);
    let first = Client::open(server.addr).await;
    let captured = signed(&key, ui_params("replayed"), &nonce(&first.challenge));
    let mut second = Client::open(server.addr).await;
    let reply = second.request("connect", captured).await;
    assert_eq!(
        reply["error"]["details"]["code"],
        "DEVICE_AUTH_NONCE_MISMATCH"
    );
}
