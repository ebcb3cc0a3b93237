//! Turning what clients say into keyed patches: the connect upsert, the
//! disconnect mark and the `system-event` beacon (docs/protocol.md §5.1, §5.2).
//!
//! These are pure functions: the connection task calls them before it
//! queues an event, so the writer thread only merges.

use super::entry::Patch;
use super::key::Key;
use super::provenance::{ConnTag, KeySource, WriteKind, Writer};
use super::text;

/// How many characters of a beacon's text may serve as its key.
pub const TEXT_KEY_CHARS: usize = 64;

/// What a completed handshake tells presence about one connection.
#[derive(Debug, Clone, Default)]
pub struct ConnectInfo {
    /// The server-made connection id: the key of last resort.
    pub conn_id: String,
    /// `client.id`.
    pub client_id: String,
    /// `client.displayName`.
    pub display_name: Option<String>,
    /// `client.version`.
    pub version: String,
    /// `client.platform`.
    pub platform: String,
    /// `client.mode`, already trimmed and lowercased.
    pub mode: String,
    /// `client.deviceFamily`.
    pub device_family: Option<String>,
    /// `client.modelIdentifier`.
    pub model_identifier: Option<String>,
    /// `client.instanceId`.
    pub instance_id: Option<String>,
    /// `device.id`, an identity hint only.
    pub device_id: Option<String>,
    /// True for role `node`.
    pub is_node: bool,
    /// The role's wire name.
    pub role: String,
    /// The scopes the connection was granted.
    pub scopes: Vec<String>,
    /// The client IP (§5.3); loopback is dropped by the merge.
    pub ip: Option<String>,
    /// The connection, as its `hello-ok` names it, for provenance.
    pub conn: Option<ConnTag>,
}

/// The key and patch a tracked connection upserts after its handshake.
/// The patch's writer says which of `device.id`, `client.instanceId` or
/// the connection id the key came from.
pub fn connect(info: ConnectInfo) -> (Key, Patch) {
    let stable = [
        (info.device_id.as_deref(), KeySource::DeviceId),
        (info.instance_id.as_deref(), KeySource::InstanceId),
    ]
    .into_iter()
    .find_map(|(id, source)| id.filter(|s| !s.trim().is_empty()).map(|id| (id, source)));
    let instance_id = stable.map(|(id, _)| id.to_owned());
    let (key, source) = match stable.and_then(|(id, source)| Some((Key::parse(id)?, source))) {
        Some(keyed) => keyed,
        None => (
            Key::parse(&info.conn_id).unwrap_or_else(|| fallback_key(&info.conn_id)),
            KeySource::ConnectionId,
        ),
    };
    let host = match info.display_name {
        Some(name) if !name.trim().is_empty() => name,
        _ => info.client_id.clone(),
    };
    let patch = Patch {
        instance_id,
        host: Some(host),
        ip: info.ip,
        version: Some(info.version),
        platform: Some(info.platform),
        device_family: info.device_family,
        model_identifier: info.model_identifier,
        mode: Some(info.mode),
        reason: Some(connect_reason(info.is_node).to_owned()),
        device_id: info.device_id,
        client_id: Some(info.client_id),
        roles: vec![info.role],
        scopes: info.scopes,
        by: Writer {
            kind: WriteKind::Connect,
            conn: info.conn,
            source,
        },
        ..Patch::default()
    };
    (key, patch)
}

/// `reason` written by a connect.
pub fn connect_reason(is_node: bool) -> &'static str {
    if is_node { "node-connected" } else { "connect" }
}

/// `reason` written when a tracked connection closes.
pub fn disconnect_reason(is_node: bool) -> &'static str {
    if is_node {
        "node-disconnected"
    } else {
        "disconnect"
    }
}

/// The validated params of one `system-event`, borrowed from the request
/// frame: the patch built from them copies each value once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BeaconInput<'a> {
    /// Required, non-empty after trim.
    pub text: &'a str,
    /// Explicit `deviceId`.
    pub device_id: Option<&'a str>,
    /// Explicit `instanceId`.
    pub instance_id: Option<&'a str>,
    /// Explicit `host`.
    pub host: Option<&'a str>,
    /// Explicit `ip`.
    pub ip: Option<&'a str>,
    /// Explicit `mode`.
    pub mode: Option<&'a str>,
    /// Explicit `version`.
    pub version: Option<&'a str>,
    /// Explicit `platform`.
    pub platform: Option<&'a str>,
    /// Explicit `deviceFamily`.
    pub device_family: Option<&'a str>,
    /// Explicit `modelIdentifier`.
    pub model_identifier: Option<&'a str>,
    /// Explicit `reason`.
    pub reason: Option<&'a str>,
    /// `None`: absent; `Some(None)`: `null`, clear it.
    pub last_input_seconds: Option<Option<u64>>,
    /// Roles to add.
    pub roles: Vec<&'a str>,
    /// Scopes to add.
    pub scopes: Vec<&'a str>,
}

/// The key and patch of a beacon. Explicit params win over values parsed
/// from the text; both win over what is stored (the merge keeps the rest).
/// The patch's writer says which source gave the key; its connection is
/// the caller's to fill in.
pub fn beacon(input: &BeaconInput<'_>, gateway_host: &str) -> (Key, Patch) {
    let parsed = text::parse(input.text);
    let (key, source) = beacon_key(input, parsed.as_ref(), gateway_host);
    (key, beacon_patch(input, parsed.as_ref(), source))
}

/// The key a beacon names and where it came from: `deviceId`, then
/// `instanceId`, the text's host, its IP, the text itself, and last the
/// gateway's host. `parsed` is [`text::parse`] of the input's text.
pub fn beacon_key(
    input: &BeaconInput<'_>,
    parsed: Option<&text::ParsedText<'_>>,
    gateway_host: &str,
) -> (Key, KeySource) {
    let trimmed_text = input.text.trim();
    [
        (input.device_id, KeySource::BeaconDeviceId),
        (input.instance_id, KeySource::BeaconInstanceId),
        (parsed.map(|p| p.host), KeySource::TextHost),
        (parsed.map(|p| p.ip), KeySource::TextIp),
        (
            Some(text::prefix_chars(trimmed_text, TEXT_KEY_CHARS)),
            KeySource::Text,
        ),
        (Some(gateway_host), KeySource::GatewayHost),
    ]
    .into_iter()
    .find_map(|(s, source)| Some((Key::parse(s?)?, source)))
    .unwrap_or_else(|| (fallback_key(gateway_host), KeySource::GatewayHost))
}

/// The patch a beacon writes, its key taken from `source`; every value is
/// copied once, from the frame or from the parsed text. `parsed` is
/// [`text::parse`] of the input's text.
pub fn beacon_patch(
    input: &BeaconInput<'_>,
    parsed: Option<&text::ParsedText<'_>>,
    source: KeySource,
) -> Patch {
    let or_parsed = |explicit: Option<&str>,
                     pick: for<'t> fn(&'t text::ParsedText<'t>) -> &'t str| {
        explicit
            .filter(|s| !s.trim().is_empty())
            .or_else(|| parsed.map(pick))
            .map(str::to_owned)
    };
    let owned = |value: Option<&str>| value.map(str::to_owned);
    let list = |items: &[&str]| items.iter().map(|&item| item.to_owned()).collect();
    Patch {
        host: or_parsed(input.host, |p| p.host),
        ip: or_parsed(input.ip, |p| p.ip),
        version: or_parsed(input.version, |p| p.version),
        mode: or_parsed(input.mode, |p| p.mode),
        reason: or_parsed(input.reason, |p| p.reason),
        last_input_seconds: input
            .last_input_seconds
            .or_else(|| parsed.map(|p| Some(p.last_input_seconds))),
        instance_id: owned(input.instance_id),
        platform: owned(input.platform),
        device_family: owned(input.device_family),
        model_identifier: owned(input.model_identifier),
        device_id: owned(input.device_id),
        client_id: None,
        roles: list(&input.roles),
        scopes: list(&input.scopes),
        text: Some(input.text.trim().to_owned()),
        by: Writer {
            kind: WriteKind::Beacon,
            conn: None,
            source,
        },
    }
}

/// A key for sources that are blank after trimming; only reachable when the
/// server itself supplied a blank id or hostname.
fn fallback_key(source: &str) -> Key {
    Key::parse(source)
        .or_else(|| Key::parse("unknown"))
        .expect("\"unknown\" is not blank")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> ConnectInfo {
        ConnectInfo {
            conn_id: "conn-1".into(),
            client_id: "openclaw-macos".into(),
            version: "2.0".into(),
            platform: "darwin 24.1".into(),
            mode: "ui".into(),
            role: "operator".into(),
            scopes: vec!["operator.read".into()],
            ..ConnectInfo::default()
        }
    }

    #[test]
    fn connect_key_prefers_device_then_instance_then_conn_id() {
        let mut i = info();
        assert_eq!(connect(i.clone()).0.as_str(), "conn-1");
        i.instance_id = Some("Inst-1".into());
        assert_eq!(connect(i.clone()).0.as_str(), "inst-1");
        i.device_id = Some(" Dev-1 ".into());
        let (key, patch) = connect(i);
        assert_eq!(key.as_str(), "dev-1");
        assert_eq!(patch.instance_id.as_deref(), Some(" Dev-1 "));
    }

    #[test]
    fn connect_host_is_display_name_else_client_id() {
        let mut i = info();
        assert_eq!(connect(i.clone()).1.host.as_deref(), Some("openclaw-macos"));
        i.display_name = Some("Ada's Mac".into());
        assert_eq!(connect(i).1.host.as_deref(), Some("Ada's Mac"));
    }

    #[test]
    fn connect_writes_role_scopes_and_reason() {
        let mut i = info();
        let patch = connect(i.clone()).1;
        assert_eq!(patch.roles, ["operator"]);
        assert_eq!(patch.scopes, ["operator.read"]);
        assert_eq!(patch.reason.as_deref(), Some("connect"));
        assert_eq!(patch.client_id.as_deref(), Some("openclaw-macos"));
        i.is_node = true;
        i.role = "node".into();
        assert_eq!(connect(i).1.reason.as_deref(), Some("node-connected"));
        assert_eq!(disconnect_reason(true), "node-disconnected");
        assert_eq!(disconnect_reason(false), "disconnect");
    }

    const LINE: &str =
        "Node: Mini (10.0.0.7) · app 2.1.0 · last input 3 s ago · mode ui · reason periodic";

    #[test]
    fn beacon_key_precedence() {
        fn with<'a>(f: impl FnOnce(&mut BeaconInput<'a>)) -> Key {
            let mut input = BeaconInput {
                text: LINE,
                ..BeaconInput::default()
            };
            f(&mut input);
            beacon(&input, "GW-Host").0
        }
        assert_eq!(with(|_| {}).as_str(), "mini");
        assert_eq!(with(|i| i.instance_id = Some("I")).as_str(), "i");
        assert_eq!(
            with(|i| {
                i.instance_id = Some("I");
                i.device_id = Some("D");
            })
            .as_str(),
            "d"
        );
        assert_eq!(
            with(|i| i.instance_id = Some("   ")).as_str(),
            "mini",
            "blank instanceId is absent"
        );
        assert_eq!(with(|i| i.text = "plain words").as_str(), "plain words");
        let long = "Hello ".repeat(20);
        assert_eq!(
            with(|i| i.text = &long).as_str(),
            text::prefix_chars(&"hello ".repeat(20), 64).trim()
        );
    }

    #[test]
    fn beacon_explicit_params_win_over_parsed_text() {
        let input = BeaconInput {
            text: LINE,
            host: Some("explicit"),
            mode: Some("node"),
            last_input_seconds: Some(None),
            ..BeaconInput::default()
        };
        let (_, patch) = beacon(&input, "gw");
        assert_eq!(patch.host.as_deref(), Some("explicit"));
        assert_eq!(patch.ip.as_deref(), Some("10.0.0.7"));
        assert_eq!(patch.version.as_deref(), Some("2.1.0"));
        assert_eq!(patch.mode.as_deref(), Some("node"));
        assert_eq!(patch.reason.as_deref(), Some("periodic"));
        assert_eq!(patch.last_input_seconds, Some(None));
        assert_eq!(patch.text.as_deref(), Some(LINE));
    }

    #[test]
    fn beacon_without_form_carries_only_explicit_fields() {
        let input = BeaconInput {
            text: "hello",
            ..BeaconInput::default()
        };
        let (key, patch) = beacon(&input, "gw");
        assert_eq!(key.as_str(), "hello");
        assert_eq!(patch.host, None);
        assert_eq!(patch.last_input_seconds, None);
    }
}
