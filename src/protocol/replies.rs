//! The replies rollcall renders itself: `hello-ok` (§3.10), `health` and the
//! `system-event` acknowledgement (§4). Pure encoders.
//!
//! Invariant: every reply is one `res` frame whose payload is one JSON
//! value; the presence list inside `hello-ok` is spliced in by a closure.

use super::events::HEALTH_VERSION;
use super::frame::{write_json, write_json_str, write_response_ok_with};
use super::method::{EVENTS, METHOD_NAMES};

/// The payload of a successful `system-event` (§4).
pub const OK_PAYLOAD: &[u8] = br#"{"ok":true}"#;

/// The `policy` object of `hello-ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Largest message after the handshake.
    pub max_payload: usize,
    /// Unsent bytes a connection may hold before it is a slow consumer.
    pub max_buffered_bytes: usize,
    /// The `tick` interval.
    pub tick_interval_ms: u64,
}

/// Everything `hello-ok` says besides the presence list.
#[derive(Debug, Clone, Copy)]
pub struct Hello<'a> {
    /// The negotiated protocol version.
    pub protocol: u32,
    /// The gateway's version.
    pub server_version: &'a str,
    /// This connection's id.
    pub conn_id: &'a str,
    /// `operator` or `node`.
    pub role: &'a str,
    /// The granted scopes.
    pub scopes: &'a [String],
    /// Limits the client should respect.
    pub policy: Policy,
    /// The presence version of the list it carries.
    pub presence_version: u64,
    /// Milliseconds since the gateway started.
    pub uptime_ms: u64,
}

/// The `connect` reply: `{"type":"res","id":ID,"ok":true,"payload":{"type":"hello-ok",…}}`.
/// `list` appends the presence list (`[]` for a connection that may not
/// read it).
pub fn write_hello(
    out: &mut Vec<u8>,
    id: &str,
    hello: &Hello<'_>,
    list: impl FnOnce(&mut Vec<u8>),
) {
    write_response_ok_with(out, id, |out| {
        out.extend_from_slice(br#"{"type":"hello-ok","protocol":"#);
        write_json(out, &hello.protocol);
        out.extend_from_slice(br#","server":{"version":"#);
        write_json_str(out, hello.server_version);
        out.extend_from_slice(br#","connId":"#);
        write_json_str(out, hello.conn_id);
        out.extend_from_slice(br#"},"features":{"methods":"#);
        write_json(out, &METHOD_NAMES);
        out.extend_from_slice(br#","events":"#);
        write_json(out, &EVENTS);
        out.extend_from_slice(br#"},"snapshot":{"presence":"#);
        list(out);
        out.extend_from_slice(br#","health":{},"stateVersion":{"presence":"#);
        write_json(out, &hello.presence_version);
        out.extend_from_slice(br#","health":"#);
        write_json(out, &HEALTH_VERSION);
        out.extend_from_slice(br#"},"uptimeMs":"#);
        write_json(out, &hello.uptime_ms);
        out.extend_from_slice(br#"},"auth":{"role":"#);
        write_json_str(out, hello.role);
        out.extend_from_slice(br#","scopes":"#);
        write_json(out, hello.scopes);
        write_policy(out, &hello.policy);
        out.extend_from_slice(b"}");
    });
}

fn write_policy(out: &mut Vec<u8>, policy: &Policy) {
    out.extend_from_slice(br#"},"policy":{"maxPayload":"#);
    write_json(out, &policy.max_payload);
    out.extend_from_slice(br#","maxBufferedBytes":"#);
    write_json(out, &policy.max_buffered_bytes);
    out.extend_from_slice(br#","tickIntervalMs":"#);
    write_json(out, &policy.tick_interval_ms);
    out.push(b'}');
}

/// The fan-out figures `health` reports (rollcall).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanoutHealth {
    /// The paced interval between full-list fan-outs, in milliseconds.
    pub interval_ms: u64,
    /// Connections that get full lists.
    pub full: u64,
    /// Connections that get deltas.
    pub delta: u64,
}

/// What `health` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health<'a> {
    /// Milliseconds since the gateway started.
    pub uptime_ms: u64,
    /// Rows in the presence list.
    pub entries: usize,
    /// The presence version.
    pub version: u64,
    /// Fan-out pacing.
    pub fanout: FanoutHealth,
    /// In fleet mode, the fleet's state: one JSON object, e.g.
    /// `{"state":"degraded",…}`.
    pub fleet: Option<&'a str>,
    /// With TLS, the SHA-256 fingerprint of the certificate served now
    /// (64 lowercase hex digits, what clients pin).
    pub tls_fingerprint: Option<&'a str>,
}

/// The `health` payload (§4, rollcall):
/// `{"ok":true,"uptimeMs":N,"presence":{"entries":N,"version":N},"fanout":{…},"fleet":{…}?,`
/// `"tls":{"fingerprintSha256":HEX}?}`.
pub fn write_health(out: &mut Vec<u8>, health: &Health<'_>) {
    out.extend_from_slice(br#"{"ok":true,"uptimeMs":"#);
    write_json(out, &health.uptime_ms);
    out.extend_from_slice(br#","presence":{"entries":"#);
    write_json(out, &health.entries);
    out.extend_from_slice(br#","version":"#);
    write_json(out, &health.version);
    out.extend_from_slice(br#"},"fanout":{"intervalMs":"#);
    write_json(out, &health.fanout.interval_ms);
    out.extend_from_slice(br#","watchers":{"full":"#);
    write_json(out, &health.fanout.full);
    out.extend_from_slice(br#","delta":"#);
    write_json(out, &health.fanout.delta);
    out.extend_from_slice(b"}}");
    if let Some(fleet) = health.fleet {
        out.extend_from_slice(br#","fleet":"#);
        out.extend_from_slice(fleet.as_bytes());
    }
    if let Some(fingerprint) = health.tls_fingerprint {
        out.extend_from_slice(br#","tls":{"fingerprintSha256":"#);
        write_json(out, fingerprint);
        out.push(b'}');
    }
    out.push(b'}');
}
