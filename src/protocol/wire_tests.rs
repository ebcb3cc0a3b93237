//! Every encoder's output parses as JSON and carries the fields
//! docs/protocol.md names for it (§2, §3.1, §3.10, §4, §7, §9).

use super::*;
use crate::presence::{Entry, Snapshot, Store, StoreConfig};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::Arc;

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

fn list(out: &mut Vec<u8>) {
    out.extend_from_slice(br#"[{"host":"a","ts":1}]"#);
}

/// A store's first snapshot: only its self entry, host `a`.
fn snapshot() -> Arc<Snapshot> {
    let me = Entry {
        host: Some("a".into()),
        instance_id: Some("self".into()),
        ..Entry::default()
    };
    Arc::new(Store::new(StoreConfig::default(), me).publish(1))
}

fn hello(scopes: &[String]) -> Hello<'_> {
    Hello {
        protocol: 4,
        server_version: "0.1.0",
        conn_id: "c-1",
        role: "operator",
        scopes,
        policy: Policy {
            max_payload: 1_048_576,
            max_buffered_bytes: 8_388_608,
            tick_interval_ms: 30_000,
        },
        presence_version: 5,
        uptime_ms: 81_234,
    }
}

#[test]
fn challenge_carries_nonce_and_ts_and_no_seq() {
    let mut out = Vec::new();
    write_challenge(&mut out, "n-\"1", 42);
    let v = parse(&out);
    assert_eq!(v["type"], "event");
    assert_eq!(v["event"], "connect.challenge");
    assert_eq!(v["payload"], json!({"nonce": "n-\"1", "ts": 42}));
    assert!(v.get("seq").is_none());
}

#[test]
fn tick_carries_ts_and_seq() {
    let v = parse(&SharedEvent::tick(7).to_frame(Some(3)));
    assert_eq!(v["type"], "event");
    assert_eq!(v["event"], "tick");
    assert_eq!(v["payload"], json!({"ts": 7}));
    assert_eq!(v["seq"], 3);
    assert!(v.get("stateVersion").is_none());
}

#[test]
fn shutdown_carries_a_reason_and_its_seq_when_given() {
    let v = parse(&SharedEvent::shutdown().to_frame(Some(9)));
    assert_eq!(v["event"], "shutdown");
    assert_eq!(v["payload"]["reason"], SHUTDOWN_REASON);
    assert_eq!(v["seq"], 9);
    let v = parse(&SharedEvent::shutdown().to_frame(None));
    assert!(v.get("seq").is_none());
}

#[test]
fn presence_event_carries_list_seq_and_state_version() {
    let snapshot = snapshot();
    let event = SharedEvent::presence_of(&snapshot, 7);
    let v = parse(&event.to_frame(Some(2)));
    assert_eq!(v["event"], "presence");
    assert_eq!(v["payload"]["presence"][0]["host"], "a");
    assert_eq!(v["payload"]["presence"][0]["ts"], 7);
    assert_eq!(v["seq"], 2);
    let version = snapshot.version();
    assert_eq!(v["stateVersion"], json!({"presence": version, "health": 1}));
}

#[test]
fn shared_bytes_are_the_same_for_every_seq() {
    let event = SharedEvent::presence_of(&snapshot(), 7);
    let (a, b) = (event.to_frame(Some(1)), event.to_frame(Some(1_000_000)));
    let head = event.head().len();
    assert_eq!(a[..head], b[..head]);
    assert_eq!(parse(&b)["seq"], 1_000_000);
}

#[test]
fn delta_carries_from_to_upserts_and_removed() {
    let delta = Delta {
        from: 3,
        to: 5,
        upserts: [&br#"{"ts":1}"#[..], &br#"{"ts":2}"#[..]],
        removed: ["gone", "q\"uote"],
    };
    let v = parse(&SharedEvent::delta(delta).to_frame(Some(4)));
    assert_eq!(v["event"], "presence.delta");
    assert_eq!(
        v["payload"],
        json!({"from": 3, "to": 5, "upserts": [{"ts": 1}, {"ts": 2}], "removed": ["gone", "q\"uote"]})
    );
    assert_eq!(v["seq"], 4);
    assert_eq!(v["stateVersion"]["presence"], 5);
}

#[test]
fn empty_delta_is_valid() {
    let mut out = Vec::new();
    let none: [&[u8]; 0] = [];
    let gone: [&str; 0] = [];
    write_delta_payload(
        &mut out,
        Delta {
            from: 1,
            to: 1,
            upserts: none,
            removed: gone,
        },
    );
    assert_eq!(
        parse(&out),
        json!({"from": 1, "to": 1, "upserts": [], "removed": []})
    );
}

#[test]
fn hello_ok_has_every_field_section_3_7_names() {
    let scopes = vec!["operator.read".to_owned()];
    let mut out = Vec::new();
    write_hello(&mut out, "r-1", &hello(&scopes), list);
    let v = parse(&out);
    assert_eq!(v["type"], "res");
    assert_eq!(v["id"], "r-1");
    assert_eq!(v["ok"], true);
    let p = &v["payload"];
    assert_eq!(p["type"], "hello-ok");
    assert_eq!(p["protocol"], 4);
    assert_eq!(p["server"], json!({"version": "0.1.0", "connId": "c-1"}));
    assert_eq!(p["features"]["methods"], json!(METHOD_NAMES));
    assert_eq!(p["features"]["events"], json!(EVENTS));
    assert_eq!(p["snapshot"]["presence"][0]["host"], "a");
    assert_eq!(p["snapshot"]["health"], json!({}));
    assert_eq!(
        p["snapshot"]["stateVersion"],
        json!({"presence": 5, "health": 1})
    );
    assert_eq!(p["snapshot"]["uptimeMs"], 81_234);
    assert_eq!(
        p["auth"],
        json!({"role": "operator", "scopes": ["operator.read"]})
    );
    assert_eq!(
        p["policy"],
        json!({"maxPayload": 1_048_576, "maxBufferedBytes": 8_388_608, "tickIntervalMs": 30_000})
    );
}

#[test]
fn health_payload_has_uptime_entries_and_version() {
    let mut out = Vec::new();
    let health = Health {
        uptime_ms: 10,
        entries: 3,
        version: 7,
        fanout: FanoutHealth {
            interval_ms: 100,
            full: 2,
            delta: 1,
        },
        fleet: None,
        tls_fingerprint: None,
    };
    write_health(&mut out, &health);
    assert_eq!(
        parse(&out),
        json!({"ok": true, "uptimeMs": 10, "presence": {"entries": 3, "version": 7},
               "fanout": {"intervalMs": 100, "watchers": {"full": 2, "delta": 1}}})
    );
    out.clear();
    write_health(
        &mut out,
        &Health {
            tls_fingerprint: Some("ab12"),
            ..health
        },
    );
    assert_eq!(parse(&out)["tls"], json!({"fingerprintSha256": "ab12"}));
    assert_eq!(parse(OK_PAYLOAD), json!({"ok": true}));
}

#[test]
fn sse_payload_has_version_server_time_and_list() {
    let mut out = Vec::new();
    write_sse_presence(&mut out, 4, 99, list);
    let v = parse(&out);
    assert_eq!(v["version"], 4);
    assert_eq!(v["serverTime"], 99);
    assert_eq!(v["presence"][0]["ts"], 1);
}

proptest! {
    #[test]
    fn encoders_escape_any_string(id in ".*", nonce in ".*", role in ".*", scope in ".*") {
        let scopes = vec![scope.clone()];
        let mut h = hello(&scopes);
        h.conn_id = &nonce;
        h.role = &role;
        let mut out = Vec::new();
        write_hello(&mut out, &id, &h, list);
        let v = parse(&out);
        prop_assert_eq!(v["id"].as_str(), Some(id.as_str()));
        prop_assert_eq!(v["payload"]["auth"]["scopes"][0].as_str(), Some(scope.as_str()));
        out.clear();
        write_challenge(&mut out, &nonce, 1);
        let challenge = parse(&out);
        prop_assert_eq!(challenge["payload"]["nonce"].as_str(), Some(nonce.as_str()));
    }
}
