//! The request frames a simulated client sends: `connect`, `system-event`
//! beacons and `system-presence` reads, as JSON text.
//!
//! Invariants:
//! - Every frame is valid JSON; client-chosen strings (mode, token, run id) are
//!   escaped by serde_json, never spliced in raw.
//! - A beacon's text keeps the OpenClaw beacon form
//!   (`Node: HOST (IP) · app V · last input N s ago · mode M · reason R`);
//!   padding for `--frame-bytes` goes at the end of the reason, so the text
//!   still parses.
//! - In the rollcall protocol a beacon text stays within the server's
//!   [`MAX_TEXT_LEN`].

use std::fmt::Write as _;

use serde_json::json;

use crate::presence::text::{self, ParsedText};
use crate::protocol::system_event_params::MAX_TEXT_LEN;

/// Which side of presence a simulated client plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A role-`node` client that sends `system-event` beacons.
    Beacon,
    /// An operator (`operator.read`, mode `cli`) that calls `system-presence`.
    Reader,
}

/// Builds the frames of one run.
#[derive(Debug, Clone)]
pub struct Requests {
    run_id: String,
    /// The beacon clients' mode, as given.
    mode: String,
    /// The mode escaped for the inside of a JSON string (no quotes).
    mode_escaped: String,
    token: Option<String>,
    /// Total beacon frame size asked for with `--frame-bytes`.
    frame_bytes: Option<usize>,
}

/// Escapes `s` for use inside a JSON string literal.
fn escape(s: &str) -> String {
    // Serializing a &str cannot fail.
    let quoted = serde_json::to_string(s).expect("string serializes");
    quoted[1..quoted.len() - 1].to_owned()
}

impl Requests {
    /// Frames for run `run_id`, beacon clients in `mode`, authenticating with `token`.
    pub fn new(run_id: &str, mode: &str, token: Option<&str>, frame_bytes: Option<usize>) -> Self {
        Requests {
            run_id: run_id.to_owned(),
            mode: mode.to_owned(),
            mode_escaped: escape(mode),
            token: token.map(str::to_owned),
            frame_bytes,
        }
    }

    /// The `instanceId` of a client: `load-RUN-N` for beacons, `load-RUN-rN` for readers.
    pub fn instance_id(&self, client: u32, kind: Kind) -> String {
        match kind {
            Kind::Beacon => format!("load-{}-{client}", self.run_id),
            Kind::Reader => format!("load-{}-r{client}", self.run_id),
        }
    }

    /// The `connect` request (id `connect`). Beacon clients connect as role
    /// `node` with no scopes, so `system-event` is allowed and no presence
    /// broadcasts reach them; readers as `operator` with `operator.read`, mode `cli`.
    pub fn connect(&self, client: u32, kind: Kind) -> Vec<u8> {
        let (mode, role, scopes) = match kind {
            Kind::Beacon => (self.mode.as_str(), "node", json!([])),
            Kind::Reader => ("cli", "operator", json!(["operator.read"])),
        };
        self.connect_as(
            mode,
            role,
            scopes,
            self.instance_id(client, kind),
            None,
            None,
        )
    }

    /// The `connect` request of watcher `watcher` (`instanceId`
    /// `load-RUN-wN`): an operator with `operator.read` in `mode`, listing
    /// the `presence.delta` cap when `delta`.
    pub fn watcher_connect(&self, watcher: u32, mode: &str, delta: bool) -> Vec<u8> {
        let id = format!("load-{}-w{watcher}", self.run_id);
        let caps = delta.then(|| json!(["presence.delta"]));
        self.connect_as(mode, "operator", json!(["operator.read"]), id, caps, None)
    }

    /// The `connect` request of the probe that reads the gateway's version at
    /// the end of a watcher run: mode `cli` (untracked by default) and no
    /// scopes, so it neither changes presence nor receives it.
    pub fn probe_connect(&self) -> Vec<u8> {
        let id = format!("load-{}-probe", self.run_id);
        self.connect_as("cli", "operator", json!([]), id, None, None)
    }

    /// A `connect` request; `since` is a delta client's `presenceSince`.
    fn connect_as(
        &self,
        mode: &str,
        role: &str,
        scopes: serde_json::Value,
        instance_id: String,
        caps: Option<serde_json::Value>,
        since: Option<u64>,
    ) -> Vec<u8> {
        let mut params = json!({
            "minProtocol": 3,
            "maxProtocol": 4,
            "client": {
                "id": "rollcall-load",
                "version": env!("CARGO_PKG_VERSION"),
                "platform": "linux",
                "mode": mode,
                "instanceId": instance_id,
            },
            "role": role,
            "scopes": scopes,
        });
        if let Some(token) = &self.token {
            params["auth"] = json!({ "token": token });
        }
        if let Some(caps) = caps {
            params["caps"] = caps;
        }
        if let Some(since) = since {
            params["presenceSince"] = json!(since);
        }
        let req = json!({"type": "req", "id": "connect", "method": "connect", "params": params});
        // A json! value always serializes.
        serde_json::to_vec(&req).expect("json value serializes")
    }

    /// A `system-event` beacon from client `client` with request id `id`,
    /// padded to `--frame-bytes` when that is larger than the natural size.
    pub fn beacon(&self, client: u32, id: u64) -> Vec<u8> {
        let mut buf = String::with_capacity(self.frame_bytes.unwrap_or(0).max(256));
        let [_, a, b, c] = client.to_be_bytes();
        let host = format!("load-{client}");
        let ip = format!("10.{a}.{b}.{c}");
        // Writing into a String cannot fail.
        write!(
            buf,
            r#"{{"type":"req","id":"{id}","method":"system-event","params":{{"text":""#
        )
        .expect("write to String");
        // The mode goes in JSON-escaped; the other values need no escaping.
        let beacon = ParsedText {
            host: &host,
            ip: &ip,
            version: env!("CARGO_PKG_VERSION"),
            last_input_seconds: 0,
            mode: &self.mode_escaped,
            reason: "periodic",
        };
        text::write(&mut buf, &beacon).expect("write to String");
        let pad_at = buf.len();
        write!(buf, r#"","instanceId":"load-{}-{client}"}}}}"#, self.run_id)
            .expect("write to String");
        let mut buf = buf.into_bytes();
        let pad = self.frame_bytes.unwrap_or(0).saturating_sub(buf.len());
        if pad > 0 {
            buf.splice(
                pad_at..pad_at,
                std::iter::once(b' ').chain(std::iter::repeat_n(b'x', pad - 1)),
            );
        }
        buf
    }

    /// A `system-presence` request with id `id`.
    /// The `connect` of the `--fill` connection: an operator with
    /// `operator.admin`, which may beacon for any instance, mode `cli`
    /// (untracked by default). It lists the `presence.delta` cap, so its
    /// presence events carry only what changed, and resumes at `since`
    /// (`presenceSince`) when known, so its `hello-ok` carries no list.
    pub fn fill_connect(&self, since: Option<u64>) -> Vec<u8> {
        let id = format!("load-{}-fill", self.run_id);
        let caps = Some(json!(["presence.delta"]));
        self.connect_as(
            "cli",
            "operator",
            json!(["operator.admin"]),
            id,
            caps,
            since,
        )
    }

    /// The `--fill` beacon for row `row`, which is also its request id.
    pub fn fill_beacon(&self, row: u32) -> Vec<u8> {
        let host = format!("fill-{row}");
        let mut text = String::with_capacity(160);
        let beacon = ParsedText {
            host: &host,
            ip: "10.255.0.1",
            version: env!("CARGO_PKG_VERSION"),
            last_input_seconds: 0,
            mode: &self.mode_escaped,
            reason: "periodic",
        };
        text::write(&mut text, &beacon).expect("write to String");
        let id = format!("load-{}-f{row}", self.run_id);
        let params = json!({ "text": text, "instanceId": id });
        let req = json!({"type": "req", "id": row.to_string(), "method": "system-event", "params": params});
        serde_json::to_vec(&req).expect("json value serializes")
    }

    pub fn presence(&self, id: u64) -> Vec<u8> {
        format!(r#"{{"type":"req","id":"{id}","method":"system-presence","params":{{}}}}"#)
            .into_bytes()
    }

    /// A `health` request with id `id`.
    pub fn health(&self, id: u64) -> Vec<u8> {
        format!(r#"{{"type":"req","id":"{id}","method":"health","params":{{}}}}"#).into_bytes()
    }

    /// The largest `--frame-bytes` whose beacon text still fits [`MAX_TEXT_LEN`]
    /// for every client and request id.
    ///
    /// Padding makes every frame the same size, so the text gets what the rest
    /// of the frame leaves. The rest is smallest for client 0's first request
    /// (fewest digits in the id and the instance id), which is the binding case.
    pub fn max_frame_bytes(&self) -> usize {
        let natural = Requests {
            frame_bytes: None,
            ..self.clone()
        };
        let overhead = natural.beacon(0, 1).len() - natural.beacon_text_len(0);
        overhead + MAX_TEXT_LEN
    }

    fn beacon_text_len(&self, client: u32) -> usize {
        let frame = self.beacon(client, 1);
        // Decoding our own frame: it is valid JSON with a string text.
        let v: serde_json::Value = serde_json::from_slice(&frame).expect("own frame is JSON");
        v["params"]["text"].as_str().map_or(0, str::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beacon_is_json_with_the_openclaw_text_form() {
        let r = Requests::new("abc", "backend", None, None);
        let v: serde_json::Value = serde_json::from_slice(&r.beacon(258, 7)).unwrap();
        assert_eq!(v["id"], "7");
        assert_eq!(v["method"], "system-event");
        assert_eq!(v["params"]["instanceId"], "load-abc-258");
        let want = format!(
            "Node: load-258 (10.0.1.2) · app {} · last input 0 s ago · mode backend · reason periodic",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(v["params"]["text"], want.as_str());
    }

    #[test]
    fn frame_bytes_pads_the_reason_to_the_exact_size() {
        let r = Requests::new("abc", "backend", None, Some(1000));
        let frame = r.beacon(3, 12);
        assert_eq!(frame.len(), 1000);
        let v: serde_json::Value = serde_json::from_slice(&frame).unwrap();
        assert!(
            v["params"]["text"]
                .as_str()
                .unwrap()
                .contains("reason periodic xxx")
        );
    }

    #[test]
    fn frame_bytes_below_natural_size_changes_nothing() {
        let r = Requests::new("abc", "backend", None, Some(10));
        assert_eq!(
            r.beacon(3, 1),
            Requests::new("abc", "backend", None, None).beacon(3, 1)
        );
    }

    #[test]
    fn max_frame_bytes_keeps_every_text_within_the_limit() {
        let r = Requests::new("abc", "backend", None, None);
        let max = r.max_frame_bytes();
        let padded = Requests::new("abc", "backend", None, Some(max));
        assert_eq!(padded.beacon_text_len(0), MAX_TEXT_LEN);
        for client in [1, 9, 10, 255, 65_536, 1_000_000] {
            assert!(
                padded.beacon_text_len(client) <= MAX_TEXT_LEN,
                "client {client}"
            );
        }
    }

    #[test]
    fn connect_escapes_mode_and_token() {
        let r = Requests::new("abc", "we\"ird", Some("t\"k"), None);
        let v: serde_json::Value = serde_json::from_slice(&r.connect(1, Kind::Beacon)).unwrap();
        assert_eq!(v["params"]["client"]["mode"], "we\"ird");
        assert_eq!(v["params"]["auth"]["token"], "t\"k");
        assert_eq!(v["params"]["role"], "node");
        let v: serde_json::Value = serde_json::from_slice(&r.connect(1, Kind::Reader)).unwrap();
        assert_eq!(v["params"]["scopes"][0], "operator.read");
        assert_eq!(v["params"]["client"]["mode"], "cli");
        assert_eq!(v["params"]["client"]["instanceId"], "load-abc-r1");
        let v: serde_json::Value =
            serde_json::from_slice(&r.watcher_connect(4, "ui", true)).unwrap();
        assert_eq!(v["params"]["caps"][0], "presence.delta");
        assert_eq!(v["params"]["client"]["instanceId"], "load-abc-w4");
        assert_eq!(v["params"]["scopes"][0], "operator.read");
        let v: serde_json::Value =
            serde_json::from_slice(&r.watcher_connect(4, "cli", false)).unwrap();
        assert!(v["params"].get("caps").is_none());
        let v: serde_json::Value = serde_json::from_slice(&r.probe_connect()).unwrap();
        assert_eq!(v["params"]["scopes"], json!([]));
        // The fill asks for deltas only, and resumes where the gateway is.
        let v: serde_json::Value = serde_json::from_slice(&r.fill_connect(Some(7))).unwrap();
        assert_eq!(v["params"]["scopes"], json!(["operator.admin"]));
        assert_eq!(v["params"]["caps"], json!(["presence.delta"]));
        assert_eq!(v["params"]["presenceSince"], 7);
        let v: serde_json::Value = serde_json::from_slice(&r.fill_connect(None)).unwrap();
        assert!(v["params"].get("presenceSince").is_none());
        let b: serde_json::Value = serde_json::from_slice(&r.beacon(1, 1)).unwrap();
        assert!(
            b["params"]["text"]
                .as_str()
                .unwrap()
                .contains("mode we\"ird")
        );
    }
}
