//! The `connect` request: its params, their validation (§3.5) and protocol negotiation.
//!
//! Invariants: a `ConnectParams` only exists for params that passed every rule: both protocol
//! bounds are integers >= 1, the four required `client` strings are non-empty, `mode` is one of
//! the known modes, `role` is `operator` or `node`, and every string and array is within its
//! limit. Unknown fields, at the top level and inside `client`, `auth` and `device`, are ignored,
//! because newer OpenClaw clients add fields; a known field of the wrong type is an error that
//! names it. Optional names that are blank read as absent, as presence treats blanks (§5.1).

use std::fmt;

use super::frame::Params;

use super::ErrorShape;
use super::device::{DeviceBlock, MAX_KEY_LEN};
use super::params::{Fields, ParamError};

/// Protocol versions this server speaks, oldest first.
pub const SUPPORTED_PROTOCOLS: [u32; 2] = [3, 4];

/// The newest protocol version; reported as `expectedProtocol` on a mismatch.
pub const PROTOCOL_VERSION: u32 = 4;

/// Scope to read presence (`system-presence`, presence events).
pub const OPERATOR_READ: &str = "operator.read";
/// Scope to call write methods; also enough to read presence.
pub const OPERATOR_WRITE: &str = "operator.write";
/// Scope for everything, including posting `system-event` beacons.
pub const OPERATOR_ADMIN: &str = "operator.admin";
/// Every known scope; a token without a scope list grants all of them.
pub const KNOWN_SCOPES: [&str; 3] = [OPERATOR_READ, OPERATOR_WRITE, OPERATOR_ADMIN];
/// Scopes that allow reading presence (§4): every known scope does.
pub const READ_SCOPES: [&str; 3] = KNOWN_SCOPES;

/// True if `scopes` hold one that allows reading presence.
pub fn grants_read(scopes: &[String]) -> bool {
    scopes.iter().any(|s| READ_SCOPES.contains(&s.as_str()))
}

/// Longest accepted id, name or other short string: real values are well under 100 bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Longest accepted `auth.token` or `auth.password`: room for long JWT-style tokens.
pub const MAX_SECRET_LEN: usize = 4096;
/// Most items accepted in `scopes` or `caps`: real clients send a handful.
pub const MAX_LIST_ITEMS: usize = 64;
/// Longest accepted `userAgent`: browser user agents can exceed `MAX_NAME_LEN`.
pub const MAX_USER_AGENT_LEN: usize = 1024;

/// The role a connection plays (§3.5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Role {
    /// A controlling client: CLI, app, dashboard. The default.
    #[default]
    Operator,
    /// A capability host such as a phone or a headless node.
    Node,
}

impl Role {
    /// The role as written on the wire: `"operator"` or `"node"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Node => "node",
        }
    }

    /// The role named exactly `raw`; no trimming or case folding, as in OpenClaw.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "operator" => Some(Self::Operator),
            "node" => Some(Self::Node),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of client connected (`client.mode`, §3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientMode {
    /// A web chat front end.
    Webchat,
    /// The `openclaw` command-line tool. Untracked in presence by default.
    Cli,
    /// A desktop or mobile app UI.
    Ui,
    /// A server-side integration.
    Backend,
    /// A node host.
    Node,
    /// A health probe.
    Probe,
    /// A test client.
    Test,
}

impl ClientMode {
    /// Every mode, in the order the contract lists them.
    pub const ALL: [Self; 7] = [
        Self::Webchat,
        Self::Cli,
        Self::Ui,
        Self::Backend,
        Self::Node,
        Self::Probe,
        Self::Test,
    ];

    /// The normalized (lowercase) name, as stored in presence.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Webchat => "webchat",
            Self::Cli => "cli",
            Self::Ui => "ui",
            Self::Backend => "backend",
            Self::Node => "node",
            Self::Probe => "probe",
            Self::Test => "test",
        }
    }

    /// The mode `raw` names after trimming and lowercasing, as §3.5 compares modes.
    pub fn parse(raw: &str) -> Option<Self> {
        let normalized = raw.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|mode| mode.as_str() == normalized)
    }
}

impl fmt::Display for ClientMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `client` object of `connect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// `client.id`: which client program this is, e.g. `cli`. Non-empty.
    pub id: String,
    /// `client.version`. Non-empty.
    pub version: String,
    /// `client.platform`, e.g. `darwin`. Non-empty.
    pub platform: String,
    /// `client.mode`, normalized.
    pub mode: ClientMode,
    /// `client.displayName`; `None` when absent or blank.
    pub display_name: Option<String>,
    /// `client.deviceFamily`; `None` when absent or blank.
    pub device_family: Option<String>,
    /// `client.modelIdentifier`; `None` when absent or blank.
    pub model_identifier: Option<String>,
    /// `client.instanceId`; `None` when absent or blank.
    pub instance_id: Option<String>,
}

/// The `auth` object of `connect`. `Debug` hides the secrets so they never reach a log.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnectAuth {
    /// `auth.token`, exactly as sent (an empty string is kept, and will not match).
    pub token: Option<String>,
    /// `auth.password`, exactly as sent.
    pub password: Option<String>,
}

impl fmt::Debug for ConnectAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>");
        f.debug_struct("ConnectAuth")
            .field("token", &redact(&self.token))
            .field("password", &redact(&self.password))
            .finish()
    }
}

/// Validated params of a `connect` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectParams {
    /// `minProtocol`, >= 1. May exceed `max_protocol`; negotiation then finds no version.
    pub min_protocol: u64,
    /// `maxProtocol`, >= 1.
    pub max_protocol: u64,
    /// The client's self-description.
    pub client: ClientInfo,
    /// `role`, `operator` when absent.
    pub role: Role,
    /// `scopes` as requested, in order; not yet intersected with any grant.
    pub scopes: Vec<String>,
    /// `auth`; both fields `None` when absent.
    pub auth: ConnectAuth,
    /// `caps`, e.g. `presence.delta`; empty when absent.
    pub caps: Vec<String>,
    /// The `device` block, as sent: an identity only once
    /// [`DeviceBlock::verify`] passed (§3.7).
    pub device: Option<DeviceBlock>,
    /// `locale`; `None` when absent or blank.
    pub locale: Option<String>,
    /// `userAgent`; `None` when absent or blank.
    pub user_agent: Option<String>,
    /// `presenceSince` (rollcall): the last presence version a delta client
    /// holds; `None` when absent.
    pub presence_since: Option<u64>,
}

impl ConnectParams {
    /// The protocol version to speak with this client, if any; see [`negotiate`].
    pub fn negotiate(&self) -> Option<u32> {
        negotiate(self.min_protocol, self.max_protocol)
    }

    /// Whether the client listed `cap` in `caps`.
    pub fn has_cap(&self, cap: &str) -> bool {
        self.caps.iter().any(|listed| listed == cap)
    }
}

/// Why `connect` params were rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// A field is missing, of the wrong type, or over a limit. Display is the WHY of
    /// `invalid connect params: WHY`.
    #[error(transparent)]
    Param(#[from] ParamError),
    /// `role` is a string other than `operator` or `node`. Answered as `invalid role` itself,
    /// not wrapped in `invalid connect params: ` (§3.5).
    #[error("invalid role")]
    InvalidRole,
}

impl ConnectError {
    /// The error to answer the `connect` request with: `invalid role`, or
    /// `invalid connect params: WHY`.
    pub fn to_error_shape(&self) -> ErrorShape {
        match self {
            Self::InvalidRole => ErrorShape::invalid_request("invalid role"),
            Self::Param(why) => ErrorShape::invalid_params("connect", why),
        }
    }
}

/// Picks the highest supported version inside the client's `[min, max]`, or `None`.
pub fn negotiate(min: u64, max: u64) -> Option<u32> {
    SUPPORTED_PROTOCOLS
        .into_iter()
        .rev()
        .find(|&version| (min..=max).contains(&u64::from(version)))
}

/// Validates `connect` params (§3.5).
///
/// # Errors
///
/// [`ConnectError::InvalidRole`] for a role other than `operator` or `node`, else
/// [`ConnectError::Param`] naming the first field that is missing, mistyped or over its limit.
pub fn parse_connect(params: Option<Params<'_>>) -> Result<ConnectParams, ConnectError> {
    let fields = Fields::params(params)?;
    let min_protocol = fields.required_u64_at_least("minProtocol", 1, "an integer >= 1")?;
    let max_protocol = fields.required_u64_at_least("maxProtocol", 1, "an integer >= 1")?;
    let client = parse_client(fields.required_object("client")?)?;

    let role = match fields.optional_str("role", MAX_NAME_LEN) {
        Ok(None) => Role::Operator,
        Ok(Some(raw)) => Role::parse(raw).ok_or(ConnectError::InvalidRole)?,
        // Over-long strings are not roles either; only a non-string names the field.
        Err(ParamError::TooLong { .. }) => return Err(ConnectError::InvalidRole),
        Err(err) => return Err(err.into()),
    };
    let scopes = fields.string_array("scopes", MAX_LIST_ITEMS, MAX_NAME_LEN)?;
    let caps = fields.string_array("caps", MAX_LIST_ITEMS, MAX_NAME_LEN)?;

    let auth = match fields.optional_object("auth")? {
        Some(auth) => ConnectAuth {
            token: auth
                .optional_str("auth.token", MAX_SECRET_LEN)?
                .map(str::to_owned),
            password: auth
                .optional_str("auth.password", MAX_SECRET_LEN)?
                .map(str::to_owned),
        },
        None => ConnectAuth::default(),
    };
    let device = match fields.optional_object("device")? {
        Some(device) => Some(parse_device(device, &fields)?),
        None => None,
    };
    let locale = fields.optional_text("locale", MAX_NAME_LEN)?;
    let user_agent = fields.optional_text("userAgent", MAX_USER_AGENT_LEN)?;
    let presence_since = fields.optional_u64("presenceSince", "an integer >= 0")?;

    // Accepted but not used by presence: checked for type only, and bounded by the frame size.
    fields.check_string_array("commands")?;
    fields.check_bool_map("permissions")?;
    fields.optional_str("pathEnv", usize::MAX)?;
    // `transports` has no settled shape across OpenClaw versions: any value is accepted.

    Ok(ConnectParams {
        min_protocol,
        max_protocol,
        client,
        role,
        scopes,
        auth,
        caps,
        device,
        locale,
        user_agent,
        presence_since,
    })
}

/// Reads the `device` block, and what else of `connect` its signature
/// covers exactly as sent (§3.7).
fn parse_device(device: Fields<'_>, params: &Fields<'_>) -> Result<DeviceBlock, ParamError> {
    let mut signed_token = None;
    if let Some(auth) = params.optional_object("auth")? {
        for path in ["auth.token", "auth.deviceToken", "auth.bootstrapToken"] {
            signed_token = signed_token.or(auth.optional_str(path, MAX_SECRET_LEN)?);
        }
    }
    let signed_token = signed_token.unwrap_or_default().to_owned();
    let signed_mode = params
        .required_object("client")?
        .required_str("client.mode", MAX_NAME_LEN)?
        .to_owned();
    let text = |path| {
        device
            .optional_str(path, MAX_KEY_LEN)
            .map(|v| v.map(str::to_owned))
    };
    Ok(DeviceBlock {
        id: device.optional_text("device.id", MAX_NAME_LEN)?,
        public_key: text("device.publicKey")?,
        signature: text("device.signature")?,
        signed_at: device.optional_u64("device.signedAt", "an integer >= 0")?,
        nonce: device.optional_text("device.nonce", MAX_NAME_LEN)?,
        signed_mode,
        signed_token,
    })
}

/// Validates the `client` object.
fn parse_client(client: Fields<'_>) -> Result<ClientInfo, ParamError> {
    let id = client.required_str("client.id", MAX_NAME_LEN)?.to_owned();
    let version = client
        .required_str("client.version", MAX_NAME_LEN)?
        .to_owned();
    let platform = client
        .required_str("client.platform", MAX_NAME_LEN)?
        .to_owned();
    let mode = client.required_str("client.mode", MAX_NAME_LEN)?;
    let mode = ClientMode::parse(mode).ok_or(ParamError::NotOneOf {
        field: "client.mode",
        allowed: "webchat, cli, ui, backend, node, probe, test",
    })?;
    Ok(ClientInfo {
        id,
        version,
        platform,
        mode,
        display_name: client.optional_text("client.displayName", MAX_NAME_LEN)?,
        device_family: client.optional_text("client.deviceFamily", MAX_NAME_LEN)?,
        model_identifier: client.optional_text("client.modelIdentifier", MAX_NAME_LEN)?,
        instance_id: client.optional_text("client.instanceId", MAX_NAME_LEN)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    /// Params as the `openclaw` CLI sends them.
    fn cli_params() -> Value {
        json!({
            "minProtocol": 3,
            "maxProtocol": 4,
            "client": {
                "id": "cli",
                "displayName": "openclaw",
                "version": "2026.1.0",
                "platform": "darwin",
                "mode": "cli",
                "instanceId": "abc",
            },
            "role": "operator",
            "scopes": ["operator.read", "operator.write", "operator.admin"],
            "caps": [],
            "auth": {"token": "t"},
            "locale": "en-US",
            "userAgent": "openclaw-cli/2026.1.0",
            "device": {"id": "dev1", "publicKey": "...", "signature": "...", "signedAt": 1, "nonce": "n"},
        })
    }

    fn as_params(value: &Value) -> Params<'static> {
        let bytes = serde_json::to_vec(value).expect("test JSON serializes");
        crate::protocol::frame::test_params(&bytes)
    }

    fn parse(value: Value) -> Result<ConnectParams, ConnectError> {
        parse_connect(Some(as_params(&value)))
    }

    /// `cli_params()` with `edit` applied.
    fn parse_edited(edit: impl FnOnce(&mut Value)) -> Result<ConnectParams, ConnectError> {
        let mut params = cli_params();
        edit(&mut params);
        parse(params)
    }

    fn device_id(params: &ConnectParams) -> Option<&str> {
        params.device.as_ref()?.id.as_deref()
    }

    fn why(result: Result<ConnectParams, ConnectError>) -> String {
        result.expect_err("params should be rejected").to_string()
    }

    #[test]
    fn parses_cli_connect() {
        let params = parse(cli_params()).unwrap();
        assert_eq!((params.min_protocol, params.max_protocol), (3, 4));
        assert_eq!(params.negotiate(), Some(4));
        assert_eq!(
            params.client,
            ClientInfo {
                id: "cli".into(),
                version: "2026.1.0".into(),
                platform: "darwin".into(),
                mode: ClientMode::Cli,
                display_name: Some("openclaw".into()),
                device_family: None,
                model_identifier: None,
                instance_id: Some("abc".into()),
            }
        );
        assert_eq!(params.role, Role::Operator);
        assert_eq!(
            params.scopes,
            [OPERATOR_READ, OPERATOR_WRITE, OPERATOR_ADMIN]
        );
        assert_eq!(params.auth.token.as_deref(), Some("t"));
        assert_eq!(params.auth.password, None);
        assert!(params.caps.is_empty());
        assert_eq!(device_id(&params), Some("dev1"));
        assert_eq!(params.locale.as_deref(), Some("en-US"));
        assert_eq!(params.user_agent.as_deref(), Some("openclaw-cli/2026.1.0"));
    }

    #[test]
    fn parses_macos_node_connect() {
        let params = parse(json!({
            "minProtocol": 3,
            "maxProtocol": 3,
            "client": {
                "id": "openclaw-macos",
                "displayName": "Studio Mac",
                "version": "2026.1.5",
                "platform": "macos 15.2",
                "deviceFamily": "Mac",
                "modelIdentifier": "Mac15,8",
                "mode": "node",
                "instanceId": "F1A2",
            },
            "role": "node",
            "scopes": [],
            "caps": ["canvas", "screen", "presence.delta"],
            "commands": ["canvas.present", "system.run"],
            "permissions": {"screenRecording": true, "accessibility": false},
            "pathEnv": "/usr/bin:/bin",
            "auth": {"token": "secret", "deviceToken": "newer-field"},
        }))
        .unwrap();
        assert_eq!(params.role, Role::Node);
        assert_eq!(params.client.mode, ClientMode::Node);
        assert_eq!(params.client.model_identifier.as_deref(), Some("Mac15,8"));
        assert_eq!(params.negotiate(), Some(3));
        assert!(params.has_cap("presence.delta"));
        assert!(!params.has_cap("presence"));
        assert_eq!(device_id(&params), None);
    }

    #[test]
    fn minimal_connect_uses_defaults() {
        let params = parse(json!({
            "minProtocol": 4,
            "maxProtocol": 4,
            "client": {"id": "x", "version": "1", "platform": "linux", "mode": "test"},
        }))
        .unwrap();
        assert_eq!(params.role, Role::Operator);
        assert!(params.scopes.is_empty() && params.caps.is_empty());
        assert_eq!(params.auth, ConnectAuth::default());
        assert_eq!(device_id(&params), None);
    }

    #[test]
    fn params_must_be_an_object() {
        assert_eq!(why(parse_connect(None)), "params must be an object");
        assert_eq!(why(parse(json!([1, 2]))), "params must be an object");
        assert_eq!(why(parse(Value::Null)), "params must be an object");
    }

    #[test]
    fn protocol_bounds_must_be_integers_of_at_least_one() {
        for bad in [json!(0), json!(-3), json!(3.5), json!("3"), json!(true)] {
            let result = parse_edited(|p| p["minProtocol"] = bad.clone());
            assert_eq!(why(result), "minProtocol must be an integer >= 1", "{bad}");
        }
        let result = parse_edited(|p| p["maxProtocol"] = json!(null));
        assert_eq!(why(result), "maxProtocol is required");
    }

    #[test]
    fn inverted_protocol_range_parses_but_negotiates_nothing() {
        let params = parse_edited(|p| {
            p["minProtocol"] = json!(4);
            p["maxProtocol"] = json!(3);
        })
        .unwrap();
        assert_eq!(params.negotiate(), None);
    }

    #[test]
    fn negotiate_picks_highest_common_version() {
        assert_eq!(negotiate(3, 4), Some(4));
        assert_eq!(negotiate(1, 100), Some(4));
        assert_eq!(negotiate(1, 3), Some(3));
        assert_eq!(negotiate(3, 3), Some(3));
        assert_eq!(negotiate(4, u64::MAX), Some(4));
    }

    #[test]
    fn negotiate_finds_nothing_outside_supported_versions() {
        assert_eq!(negotiate(1, 2), None);
        assert_eq!(negotiate(5, 9), None);
        assert_eq!(negotiate(4, 3), None);
        assert_eq!(negotiate(u64::MAX, u64::MAX), None);
    }

    #[test]
    fn client_is_required_and_must_be_an_object() {
        let result = parse_edited(|p| {
            p.as_object_mut().unwrap().remove("client");
        });
        assert_eq!(why(result), "client is required");
        let result = parse_edited(|p| p["client"] = json!("cli"));
        assert_eq!(why(result), "client must be an object");
    }

    #[test]
    fn required_client_fields_must_be_non_empty_strings() {
        for field in ["id", "version", "platform", "mode"] {
            let result = parse_edited(|p| {
                p["client"].as_object_mut().unwrap().remove(field);
            });
            assert_eq!(why(result), format!("client.{field} is required"));
            let result = parse_edited(|p| p["client"][field] = json!(""));
            assert_eq!(why(result), format!("client.{field} must be non-empty"));
            let result = parse_edited(|p| p["client"][field] = json!(7));
            assert_eq!(why(result), format!("client.{field} must be a string"));
        }
    }

    #[test]
    fn connect_rejects_unknown_mode() {
        let result = parse_edited(|p| p["client"]["mode"] = json!("gateway"));
        assert_eq!(
            why(result),
            "client.mode must be one of webchat, cli, ui, backend, node, probe, test"
        );
        let result = parse_edited(|p| p["client"]["mode"] = json!("   "));
        assert!(why(result).starts_with("client.mode must be one of"));
    }

    #[test]
    fn mode_is_trimmed_and_lowercased() {
        let params = parse_edited(|p| p["client"]["mode"] = json!("  WebChat\t")).unwrap();
        assert_eq!(params.client.mode, ClientMode::Webchat);
        assert_eq!(params.client.mode.as_str(), "webchat");
        for mode in ClientMode::ALL {
            assert_eq!(ClientMode::parse(&mode.as_str().to_uppercase()), Some(mode));
        }
    }

    #[test]
    fn unknown_client_fields_are_ignored() {
        let params = parse_edited(|p| {
            p["client"]["timeZone"] = json!("Europe/Paris");
            p["client"]["future"] = json!({"nested": [1, 2, 3]});
        })
        .unwrap();
        assert_eq!(params.client.id, "cli");
    }

    #[test]
    fn unknown_top_level_fields_are_ignored() {
        let params = parse_edited(|p| {
            p["computerUse"] = json!({"enabled": true});
            p["modelCatalog"] = json!([1]);
            p["transports"] = json!(["ws", "webrtc"]);
        })
        .unwrap();
        assert_eq!(params.role, Role::Operator);
    }

    #[test]
    fn optional_client_fields_of_wrong_type_name_the_field() {
        let result = parse_edited(|p| p["client"]["displayName"] = json!(["x"]));
        assert_eq!(why(result), "client.displayName must be a string");
        let result = parse_edited(|p| p["client"]["instanceId"] = json!(1));
        assert_eq!(why(result), "client.instanceId must be a string");
    }

    #[test]
    fn blank_optional_names_read_as_absent() {
        let params = parse_edited(|p| {
            p["client"]["displayName"] = json!(" ");
            p["client"]["instanceId"] = json!("");
            p["device"]["id"] = json!("");
        })
        .unwrap();
        assert_eq!(params.client.display_name, None);
        assert_eq!(params.client.instance_id, None);
        assert_eq!(device_id(&params), None);
    }

    #[test]
    fn null_optional_fields_read_as_absent() {
        let params = parse_edited(|p| {
            p["client"]["displayName"] = Value::Null;
            p["role"] = Value::Null;
            p["scopes"] = Value::Null;
            p["auth"] = Value::Null;
        })
        .unwrap();
        assert_eq!(params.client.display_name, None);
        assert_eq!(params.role, Role::Operator);
        assert!(params.scopes.is_empty());
        assert_eq!(params.auth, ConnectAuth::default());
    }

    #[test]
    fn node_role_is_accepted() {
        let params = parse_edited(|p| p["role"] = json!("node")).unwrap();
        assert_eq!(params.role, Role::Node);
        assert_eq!(params.role.as_str(), "node");
    }

    #[test]
    fn unknown_role_is_invalid_role() {
        for role in ["admin", "Operator", " node", ""] {
            let err = parse_edited(|p| p["role"] = json!(role)).unwrap_err();
            assert_eq!(err, ConnectError::InvalidRole, "{role:?}");
            assert_eq!(err.to_string(), "invalid role");
            assert_eq!(err.to_error_shape().message, "invalid role");
        }
        let err = parse_edited(|p| p["role"] = json!("x".repeat(300))).unwrap_err();
        assert_eq!(err, ConnectError::InvalidRole);
    }

    #[test]
    fn non_string_role_names_the_field() {
        let result = parse_edited(|p| p["role"] = json!(1));
        assert_eq!(why(result), "role must be a string");
    }

    #[test]
    fn param_errors_answer_as_invalid_connect_params() {
        let err = parse_edited(|p| p["client"]["mode"] = json!(5)).unwrap_err();
        let shape = err.to_error_shape();
        assert_eq!(shape.code, crate::protocol::ErrorCode::InvalidRequest);
        assert_eq!(
            shape.message,
            "invalid connect params: client.mode must be a string"
        );
    }

    #[test]
    fn scopes_and_caps_must_be_arrays_of_strings() {
        let result = parse_edited(|p| p["scopes"] = json!("operator.read"));
        assert_eq!(why(result), "scopes must be an array of strings");
        let result = parse_edited(|p| p["caps"] = json!(["a", null]));
        assert_eq!(why(result), "caps[1] must be a string");
    }

    #[test]
    fn oversized_fields_are_rejected_by_name() {
        let long = "x".repeat(MAX_NAME_LEN + 1);
        let result = parse_edited(|p| p["client"]["id"] = json!(long));
        assert_eq!(why(result), "client.id exceeds 256 bytes");
        let result = parse_edited(|p| p["device"]["id"] = json!(long));
        assert_eq!(why(result), "device.id exceeds 256 bytes");
        let result = parse_edited(|p| p["scopes"] = json!(vec!["s"; MAX_LIST_ITEMS + 1]));
        assert_eq!(why(result), "scopes exceeds 64 items");
        let result = parse_edited(|p| p["caps"] = json!([long]));
        assert_eq!(why(result), "caps[0] exceeds 256 bytes");
        let result = parse_edited(|p| p["auth"]["token"] = json!("t".repeat(MAX_SECRET_LEN + 1)));
        assert_eq!(why(result), "auth.token exceeds 4096 bytes");
    }

    #[test]
    fn limits_are_inclusive() {
        let params = parse_edited(|p| {
            p["client"]["id"] = json!("x".repeat(MAX_NAME_LEN));
            p["scopes"] = json!(vec!["s"; MAX_LIST_ITEMS]);
            p["auth"]["token"] = json!("t".repeat(MAX_SECRET_LEN));
        })
        .unwrap();
        assert_eq!(params.client.id.len(), MAX_NAME_LEN);
        assert_eq!(params.scopes.len(), MAX_LIST_ITEMS);
    }

    #[test]
    fn auth_and_device_must_be_objects_and_ignore_extra_fields() {
        let result = parse_edited(|p| p["auth"] = json!("t"));
        assert_eq!(why(result), "auth must be an object");
        let result = parse_edited(|p| p["auth"]["password"] = json!(1234));
        assert_eq!(why(result), "auth.password must be a string");
        let result = parse_edited(|p| p["device"] = json!(["dev1"]));
        assert_eq!(why(result), "device must be an object");
        let result = parse_edited(|p| p["device"]["id"] = json!(7));
        assert_eq!(why(result), "device.id must be a string");
        let result = parse_edited(|p| p["device"]["signedAt"] = json!("whenever"));
        assert_eq!(why(result), "device.signedAt must be an integer >= 0");
        let params = parse_edited(|p| p["device"]["extra"] = json!("ignored")).unwrap();
        assert_eq!(device_id(&params), Some("dev1"));
        let device = params.device.unwrap();
        assert_eq!(
            (device.signed_mode.as_str(), device.signed_token.as_str()),
            ("cli", "t")
        );
    }

    #[test]
    fn accepted_extra_fields_are_type_checked() {
        let result = parse_edited(|p| p["commands"] = json!("system.run"));
        assert_eq!(why(result), "commands must be an array of strings");
        let result = parse_edited(|p| p["commands"] = json!(["a", 2]));
        assert_eq!(why(result), "commands[1] must be a string");
        let result = parse_edited(|p| p["permissions"] = json!({"screen": "yes"}));
        assert_eq!(why(result), "permissions must be an object of booleans");
        let result = parse_edited(|p| p["pathEnv"] = json!(["/bin"]));
        assert_eq!(why(result), "pathEnv must be a string");
        let result = parse_edited(|p| p["locale"] = json!(1));
        assert_eq!(why(result), "locale must be a string");
        let result = parse_edited(|p| p["userAgent"] = json!({}));
        assert_eq!(why(result), "userAgent must be a string");
    }

    #[test]
    fn auth_debug_redacts_secrets() {
        let auth = ConnectAuth {
            token: Some("hunter2".into()),
            password: None,
        };
        let shown = format!("{auth:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn role_parse_is_exact() {
        assert_eq!(Role::parse("operator"), Some(Role::Operator));
        assert_eq!(Role::parse("node"), Some(Role::Node));
        assert_eq!(Role::parse("NODE"), None);
        assert_eq!(Role::default(), Role::Operator);
        assert_eq!(Role::Node.to_string(), "node");
    }

    /// Any JSON value, nested a few levels.
    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
            prop_oneof![
                Just("cli"),
                Just("node"),
                Just("operator"),
                Just(" UI "),
                Just("")
            ]
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let keys = prop_oneof![
                Just("minProtocol".to_owned()),
                Just("maxProtocol".to_owned()),
                Just("client".to_owned()),
                Just("id".to_owned()),
                Just("mode".to_owned()),
                Just("version".to_owned()),
                Just("platform".to_owned()),
                Just("role".to_owned()),
                Just("scopes".to_owned()),
                Just("caps".to_owned()),
                Just("auth".to_owned()),
                Just("device".to_owned()),
                Just("permissions".to_owned()),
                Just("commands".to_owned()),
                "[a-zA-Z]{1,8}",
            ];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                proptest::collection::btree_map(keys, inner, 0..8)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn parse_connect_never_panics_on_arbitrary_json(value in arb_json()) {
            let _ = parse_connect(Some(as_params(&value)));
        }

        #[test]
        fn parse_connect_never_panics_on_mutated_cli_params(
            path in prop_oneof![
                Just(vec!["minProtocol"]),
                Just(vec!["client"]),
                Just(vec!["client", "mode"]),
                Just(vec!["client", "id"]),
                Just(vec!["role"]),
                Just(vec!["scopes"]),
                Just(vec!["auth"]),
                Just(vec!["auth", "token"]),
                Just(vec!["device", "id"]),
                Just(vec!["permissions"]),
            ],
            value in arb_json(),
        ) {
            let mut params = cli_params();
            let mut slot = &mut params;
            for key in &path {
                slot = &mut slot[*key];
            }
            *slot = value;
            let _ = parse_connect(Some(as_params(&params)));
        }

        #[test]
        fn negotiated_version_is_supported_and_inside_the_range(min in 0u64..8, max in 0u64..8) {
            match negotiate(min, max) {
                Some(version) => {
                    prop_assert!(SUPPORTED_PROTOCOLS.contains(&version));
                    prop_assert!((min..=max).contains(&u64::from(version)));
                    prop_assert!(SUPPORTED_PROTOCOLS
                        .iter()
                        .all(|&v| v <= version || !(min..=max).contains(&u64::from(v))));
                }
                None => prop_assert!(SUPPORTED_PROTOCOLS
                    .iter()
                    .all(|&v| !(min..=max).contains(&u64::from(v)))),
            }
        }
    }
}
