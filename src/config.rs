//! Server configuration: the `rollcall serve` flags, their `ROLLCALL_*`
//! environment variables, and the documented defaults.

use crate::engine::{DEFAULT_MAX_BATCH, DEFAULT_QUEUE_CAPACITY};
use crate::presence::{DEFAULT_MAX_ENTRIES, DEFAULT_TTL};
use crate::protocol::KNOWN_SCOPES;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use thiserror::Error;

use crate::tls::{TlsConfig, TlsConfigError};

/// OpenClaw's gateway port.
pub const DEFAULT_BIND: &str = "127.0.0.1:18789";
/// OpenClaw closes connections that have not said `connect` by then.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// "A few seconds" (docs/protocol.md §3.2): a real client sends its request
/// head in one segment, and a dashboard re-opens an idle connection cheaply.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections that may wait for their first request at once: far more
/// than a ramp of thousands of clients per second has in flight (each
/// waits milliseconds), far fewer than the file limit.
pub const DEFAULT_MAX_WAITING_CONNECTIONS: usize = 1024;
/// OpenClaw 2026.9.6 pings every WebSocket this often (docs/protocol.md §1).
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(25);
/// Keys other than its own one connection may beacon per TTL (docs/protocol.md
/// §5.4): plenty for a relay of a few dozen hosts, a small share of the
/// default cap.
pub const DEFAULT_MAX_BEACON_ROWS: usize = 64;
/// OpenClaw's `policy.tickIntervalMs`.
pub const DEFAULT_TICK_INTERVAL: Duration = Duration::from_secs(30);
/// At most one `presence` event per this interval (docs/protocol.md §7).
pub const DEFAULT_COALESCE: Duration = Duration::from_millis(100);
/// OpenClaw's `policy.maxPayload`: the largest frame after the handshake.
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;
/// The largest frame before the handshake completes (docs/protocol.md §3.2).
pub const PRE_AUTH_MAX_PAYLOAD: usize = 64 * 1024;
/// OpenClaw's `policy.maxBufferedBytes`: unsent bytes before events drop.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 8 * 1024 * 1024;
/// Enough for a large fleet on one box; the OS file limit is the real cap.
pub const DEFAULT_MAX_CONNECTIONS: usize = 200_000;
/// Full-list fan-out budget, bytes per second. Measured on a 2-core
/// machine (benches/README.md, "Fan-out"): above it, handshakes during a ramp of
/// `ui` watchers slow down; below it, lists reach watchers later than they
/// need to.
pub const DEFAULT_FANOUT_BUDGET: u64 = 256 * 1024 * 1024;
/// How long graceful shutdown waits for connections to close.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Prefix of the fleet's Redis keys: one Redis can serve several fleets.
pub const DEFAULT_FLEET_PREFIX: &str = "rollcall";
/// A gateway silent this long is dead: short enough that its clients read
/// as disconnected within seconds, long enough to ride out a GC-free stall
/// of a loaded Redis.
pub const DEFAULT_FLEET_LEASE: Duration = Duration::from_secs(5);
/// How far ahead of this gateway's clock a peer's `ts` may be: NTP keeps
/// real clocks within milliseconds; a few seconds forgives a bad one
/// without letting it outlive the TTL or push local rows out.
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(5);
/// The environment variable the fleet's Redis password may come from.
pub const FLEET_PASSWORD_ENV: &str = "ROLLCALL_FLEET_PASSWORD";
/// How much presence a crash can lose without a fleet: at most this much.
pub const DEFAULT_STATE_INTERVAL: Duration = Duration::from_secs(10);

/// What a token grants: scopes, and whether it may connect as a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    /// The secret.
    pub token: String,
    /// Full scope names, e.g. `operator.read`.
    pub scopes: Vec<String>,
    /// May connect as role `node` (and then beacon its own entry).
    pub node: bool,
}

/// Why a `--token` value was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenParseError {
    /// Nothing before the colon.
    #[error("token is empty")]
    Empty,
    /// A grant after the colon is not read, write, admin or node.
    #[error("unknown grant {0:?} in token (use read, write, admin, node or operator.*)")]
    UnknownScope(String),
}

impl TokenGrant {
    fn new(token: &str, scopes: Vec<String>, node: bool) -> Result<TokenGrant, TokenParseError> {
        if token.is_empty() {
            return Err(TokenParseError::Empty);
        }
        Ok(TokenGrant {
            token: token.to_owned(),
            scopes,
            node,
        })
    }
}

impl FromStr for TokenGrant {
    type Err = TokenParseError;

    /// `SECRET` grants every scope and role `node`; `SECRET:read,node`
    /// grants those. Scope names may be short (`read`) or full
    /// (`operator.read`). A secret that itself contains `:` must be given
    /// with an explicit list.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((token, list)) = s.rsplit_once(':') else {
            return TokenGrant::new(
                s,
                KNOWN_SCOPES.iter().map(|s| s.to_string()).collect(),
                true,
            );
        };
        let mut scopes: Vec<String> = Vec::new();
        let mut node = false;
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let full = match name {
                "node" => {
                    node = true;
                    continue;
                }
                "read" | "operator.read" => "operator.read",
                "write" | "operator.write" => "operator.write",
                "admin" | "operator.admin" => "operator.admin",
                other => return Err(TokenParseError::UnknownScope(other.to_owned())),
            };
            if !scopes.iter().any(|s| s == full) {
                scopes.push(full.to_owned());
            }
        }
        TokenGrant::new(token, scopes, node)
    }
}

/// `rollcall serve` options.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address to listen on (HTTP and WebSocket on one port).
    #[arg(long, env = "ROLLCALL_BIND", default_value = DEFAULT_BIND)]
    pub bind: SocketAddr,

    /// Accepted token, repeatable. `SECRET` grants all scopes and role
    /// `node`; `SECRET:read`, `SECRET:read,write`, `SECRET:admin`,
    /// `SECRET:node` grant those.
    /// In ROLLCALL_TOKEN, separate several tokens with spaces.
    #[arg(
        long = "token",
        env = "ROLLCALL_TOKEN",
        value_delimiter = ' ',
        hide_env_values = true
    )]
    pub tokens: Vec<TokenGrant>,

    /// Presence entries older than this are removed.
    #[arg(long, env = "ROLLCALL_PRESENCE_TTL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub presence_ttl: Duration,

    /// Most presence entries kept besides the gateway's own.
    #[arg(long, env = "ROLLCALL_MAX_ENTRIES", default_value_t = DEFAULT_MAX_ENTRIES)]
    pub max_entries: usize,

    /// Client modes that get no presence entry (comma-separated).
    #[arg(
        long,
        env = "ROLLCALL_UNTRACKED_MODES",
        value_delimiter = ',',
        default_value = "cli"
    )]
    pub untracked_modes: Vec<String>,

    /// Proxy whose X-Forwarded-For is trusted (IP or CIDR), repeatable.
    #[arg(long = "trusted-proxy", env = "ROLLCALL_TRUSTED_PROXY", value_delimiter = ',', value_parser = parse_net)]
    pub trusted_proxies: Vec<IpNet>,

    /// Browser origin allowed to connect and call HTTP (`https://host:port`,
    /// or `*` for any), repeatable. The gateway's own page and loopback
    /// pages (for a client on loopback) need none (docs/protocol.md §3.6).
    #[arg(
        long = "allowed-origin",
        env = "ROLLCALL_ALLOWED_ORIGIN",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// Close an SSE stream whose last list stays unsent this long (the
    /// client does not read).
    #[arg(long, env = "ROLLCALL_SSE_STALL_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub sse_stall_timeout: Duration,

    /// Most concurrent connections (HTTP and WebSocket); more wait in the
    /// kernel's accept backlog.
    #[arg(long, env = "ROLLCALL_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Close HTTP connections that have not sent a whole request head by
    /// then, and keep-alive connections idle that long.
    #[arg(long, env = "ROLLCALL_HTTP_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub http_timeout: Duration,

    /// Most connections that have not sent a request yet; past it the
    /// oldest of them is closed to make room.
    #[arg(long, env = "ROLLCALL_MAX_WAITING_CONNECTIONS", default_value_t = DEFAULT_MAX_WAITING_CONNECTIONS)]
    pub max_waiting_connections: usize,

    /// Close connections that have not completed `connect` by then.
    #[arg(long, env = "ROLLCALL_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,

    /// Interval of `tick` events.
    #[arg(long, env = "ROLLCALL_TICK_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub tick_interval: Duration,

    /// Ping every WebSocket this often; a connection that has sent nothing
    /// (no pong, no frame) by the next ping is closed. Rows of connections
    /// that are alive are renewed twice per interval. `0s` turns pings off
    /// (live rows are then renewed only when the TTL reaches them).
    #[arg(long, env = "ROLLCALL_KEEPALIVE", default_value = "25s", value_parser = humantime::parse_duration)]
    pub keepalive: Duration,

    /// Most keys other than its own that one connection may write through
    /// `system-event` beacons per TTL; more answer UNAVAILABLE, so one
    /// client cannot fill the cap.
    #[arg(long, env = "ROLLCALL_MAX_BEACON_ROWS", default_value_t = DEFAULT_MAX_BEACON_ROWS)]
    pub max_beacon_rows: usize,

    /// At most one `presence` event per this interval.
    #[arg(long, env = "ROLLCALL_COALESCE", default_value = "100ms", value_parser = humantime::parse_duration)]
    pub coalesce: Duration,

    /// Bytes per second that full-list `presence` events may take in all;
    /// their interval stretches to keep within it (deltas are not paced).
    #[arg(long, env = "ROLLCALL_FANOUT_BUDGET", default_value_t = DEFAULT_FANOUT_BUDGET)]
    pub fanout_budget: u64,

    /// Largest frame after the handshake, in bytes.
    #[arg(long, env = "ROLLCALL_MAX_PAYLOAD", default_value_t = DEFAULT_MAX_PAYLOAD)]
    pub max_payload: usize,

    /// Unsent reply bytes per connection above which it is a slow consumer.
    #[arg(long, env = "ROLLCALL_MAX_BUFFERED_BYTES", default_value_t = DEFAULT_MAX_BUFFERED_BYTES)]
    pub max_buffered_bytes: usize,

    /// Bound of the presence event queue.
    #[arg(long, env = "ROLLCALL_QUEUE_CAPACITY", default_value_t = DEFAULT_QUEUE_CAPACITY)]
    pub queue_capacity: usize,

    /// Most events the writer applies between two publishes.
    #[arg(long, env = "ROLLCALL_MAX_BATCH", default_value_t = DEFAULT_MAX_BATCH)]
    pub max_batch: usize,

    /// How long graceful shutdown waits for connections to close.
    #[arg(long, env = "ROLLCALL_SHUTDOWN_GRACE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// Share presence with the other gateways of a fleet through this Redis
    /// or Valkey: `redis://HOST:PORT`, `rediss://HOST:PORT` (TLS) or
    /// `redis+sentinel://HOST:PORT[,HOST:PORT…]/MASTER`. Without it, the
    /// gateway runs alone. A password may be in the URL, in
    /// ROLLCALL_FLEET_PASSWORD or in --fleet-password-file; it is never shown.
    #[arg(long, env = "ROLLCALL_FLEET", hide_env_values = true)]
    pub fleet: Option<String>,

    /// Read the fleet's Redis password from this file (first line).
    #[arg(long, env = "ROLLCALL_FLEET_PASSWORD_FILE")]
    pub fleet_password_file: Option<PathBuf>,

    /// Check a `rediss://` server's certificate against the CA
    /// certificates in this PEM file instead of the system's roots.
    #[arg(long, env = "ROLLCALL_FLEET_CA_FILE")]
    pub fleet_ca_file: Option<PathBuf>,

    /// Start even if another gateway holds this node id's lease, taking it
    /// over (the other one stops writing and reports why).
    #[arg(long, env = "ROLLCALL_FLEET_TAKEOVER")]
    pub fleet_takeover: bool,

    /// How far ahead of this gateway's clock another gateway's `ts` may
    /// be; later ones are clamped, and a peer that far off is reported.
    #[arg(long, env = "ROLLCALL_MAX_CLOCK_SKEW", default_value = "5s", value_parser = humantime::parse_duration)]
    pub max_clock_skew: Duration,

    /// Prefix of every Redis key and channel the fleet uses.
    #[arg(long, env = "ROLLCALL_FLEET_PREFIX", default_value = DEFAULT_FLEET_PREFIX)]
    pub fleet_prefix: String,

    /// This gateway's id in the fleet (default: host name and port, stable
    /// across restarts, so a restart is warm).
    #[arg(long, env = "ROLLCALL_NODE_ID")]
    pub node_id: Option<String>,

    /// How long the fleet waits for a silent gateway before marking its
    /// connections disconnected; its heartbeat runs three times as often.
    #[arg(long, env = "ROLLCALL_FLEET_LEASE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub fleet_lease: Duration,

    /// Without a fleet: keep presence across restarts in this file (written
    /// atomically on shutdown and periodically, read at start).
    #[arg(long, env = "ROLLCALL_STATE_FILE")]
    pub state_file: Option<PathBuf>,

    /// How often the state file is rewritten while running.
    #[arg(long, env = "ROLLCALL_STATE_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub state_interval: Duration,

    /// The doctor reports a connected row nothing wrote for longer than
    /// this as stale (the client stopped beaconing). Default: the age at
    /// which the dashboard stops showing a row as Active.
    #[arg(long, env = "ROLLCALL_STALE_AFTER", default_value = "120s", value_parser = humantime::parse_duration)]
    pub stale_after: Duration,

    /// TLS on the port (`--tls-cert`, `--tls-key`, `--tls-self-signed`).
    #[command(flatten)]
    pub tls: TlsConfig,
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net);
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{s:?} is not an IP address or CIDR"))
}

/// Why the configuration cannot be served.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// Without tokens, anyone who can reach the port could read presence.
    #[error(
        "refusing to listen on {0} without a token: anyone who can reach it could read and write presence. Pass --token (or ROLLCALL_TOKEN), or bind to a loopback address"
    )]
    OpenNonLoopback(SocketAddr),
    /// `--fleet` is not a Redis URL (the message shows it redacted).
    #[error(transparent)]
    FleetUrl(#[from] crate::fleet::EndpointError),
    /// `--fleet-password-file` or `--fleet-ca-file` cannot be read.
    #[error("{flag} {path}: {source}")]
    FleetFile {
        /// The flag that names it.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An `--allowed-origin` that is not `scheme://host[:port]` or `*`.
    #[error("--allowed-origin {0:?} is not an origin (scheme://host[:port], or *)")]
    AllowedOrigin(String),
    /// A limit that makes the server useless.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// The TLS flags do not name a certificate and key.
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
}

impl ServeConfig {
    /// The defaults, as `rollcall serve` with no flags and no env.
    pub fn defaults() -> ServeConfig {
        ServeConfig {
            bind: DEFAULT_BIND.parse().expect("DEFAULT_BIND is an address"),
            tokens: Vec::new(),
            presence_ttl: DEFAULT_TTL,
            max_entries: DEFAULT_MAX_ENTRIES,
            untracked_modes: vec!["cli".into()],
            trusted_proxies: Vec::new(),
            allowed_origins: Vec::new(),
            sse_stall_timeout: Duration::from_secs(10),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            http_timeout: DEFAULT_HTTP_TIMEOUT,
            max_waiting_connections: DEFAULT_MAX_WAITING_CONNECTIONS,
            tick_interval: DEFAULT_TICK_INTERVAL,
            keepalive: DEFAULT_KEEPALIVE,
            max_beacon_rows: DEFAULT_MAX_BEACON_ROWS,
            coalesce: DEFAULT_COALESCE,
            fanout_budget: DEFAULT_FANOUT_BUDGET,
            max_payload: DEFAULT_MAX_PAYLOAD,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_batch: DEFAULT_MAX_BATCH,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            fleet: None,
            fleet_password_file: None,
            fleet_ca_file: None,
            fleet_takeover: false,
            max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
            fleet_prefix: DEFAULT_FLEET_PREFIX.into(),
            node_id: None,
            fleet_lease: DEFAULT_FLEET_LEASE,
            state_file: None,
            state_interval: DEFAULT_STATE_INTERVAL,
            stale_after: crate::presence::ACTIVE_MAX_AGE,
            tls: TlsConfig::default(),
        }
    }

    /// Checks what clap cannot: the open-port rule and non-zero limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // With or without TLS: TLS hides the tokens, it does not replace them.
        if self.tokens.is_empty() && !self.bind.ip().is_loopback() {
            return Err(ConfigError::OpenNonLoopback(self.bind));
        }
        self.tls.files()?;
        for (name, value) in [
            ("--max-connections", self.max_connections),
            ("--max-waiting-connections", self.max_waiting_connections),
            ("--max-payload", self.max_payload),
            ("--queue-capacity", self.queue_capacity),
            ("--max-batch", self.max_batch),
            (
                "--fanout-budget",
                usize::try_from(self.fanout_budget).unwrap_or(usize::MAX),
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if let Some(url) = &self.fleet {
            let password = self.fleet_password()?;
            let ca = self.fleet_ca()?;
            crate::fleet::Endpoint::open(url, password.as_deref(), ca.as_deref())?;
        }
        for (name, value) in [
            ("--tick-interval", self.tick_interval),
            ("--handshake-timeout", self.handshake_timeout),
            ("--http-timeout", self.http_timeout),
            ("--sse-stall-timeout", self.sse_stall_timeout),
            ("--presence-ttl", self.presence_ttl),
            ("--fleet-lease", self.fleet_lease),
            ("--state-interval", self.state_interval),
            ("--stale-after", self.stale_after),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Zero(name));
            }
        }
        Ok(())
    }

    /// The PEM bytes of `--fleet-ca-file`, if set.
    pub fn fleet_ca(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        let Some(path) = &self.fleet_ca_file else {
            return Ok(None);
        };
        std::fs::read(path)
            .map(Some)
            .map_err(|source| ConfigError::FleetFile {
                flag: "--fleet-ca-file",
                path: path.clone(),
                source,
            })
    }

    /// The fleet's Redis password when not in the URL: the first line of
    /// `--fleet-password-file`, else `ROLLCALL_FLEET_PASSWORD`.
    pub fn fleet_password(&self) -> Result<Option<String>, ConfigError> {
        if let Some(path) = &self.fleet_password_file {
            let read = std::fs::read_to_string(path).map_err(|source| ConfigError::FleetFile {
                flag: "--fleet-password-file",
                path: path.clone(),
                source,
            })?;
            let line = read.lines().next().unwrap_or_default().trim_end();
            return Ok(Some(line.to_owned()));
        }
        Ok(std::env::var(FLEET_PASSWORD_ENV)
            .ok()
            .filter(|p| !p.is_empty()))
    }

    /// This gateway's fleet node id: `--node-id`, else host name and port.
    pub fn node_id(&self) -> String {
        match self.node_id.as_deref().map(str::trim) {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => format!(
                "{}:{}",
                gethostname::gethostname().to_string_lossy(),
                self.bind.port()
            ),
        }
    }

    /// True if connections in `mode` get no presence entry.
    pub fn is_untracked(&self, mode: &str) -> bool {
        let mode = mode.trim();
        self.untracked_modes
            .iter()
            .any(|m| m.trim().eq_ignore_ascii_case(mode))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_without_scopes_grants_all() {
        let grant: TokenGrant = "secret".parse().unwrap();
        assert_eq!(grant.token, "secret");
        assert_eq!(grant.scopes, KNOWN_SCOPES);
        assert!(grant.node, "a bare secret keeps granting everything");
    }

    #[test]
    fn node_is_granted_only_when_listed() {
        let read: TokenGrant = "r:read".parse().unwrap();
        assert!(!read.node);
        let node: TokenGrant = "n:node".parse().unwrap();
        assert!(node.node);
        assert!(node.scopes.is_empty(), "node grants no operator scope");
    }

    #[test]
    fn token_scopes_accept_short_and_full_names() {
        let grant: TokenGrant = "dash:read, operator.write,read".parse().unwrap();
        assert_eq!(grant.token, "dash");
        assert_eq!(grant.scopes, ["operator.read", "operator.write"]);
    }

    #[test]
    fn token_with_unknown_scope_is_refused() {
        assert_eq!(
            "dash:root".parse::<TokenGrant>(),
            Err(TokenParseError::UnknownScope("root".into()))
        );
        assert_eq!(":read".parse::<TokenGrant>(), Err(TokenParseError::Empty));
    }

    #[test]
    fn open_non_loopback_bind_is_refused() {
        let mut config = ServeConfig::defaults();
        config.bind = "0.0.0.0:18789".parse().unwrap();
        assert!(matches!(
            config.validate(),
            Err(ConfigError::OpenNonLoopback(_))
        ));
        config.tokens.push("t".parse().unwrap());
        assert!(config.validate().is_ok());
        assert!(ServeConfig::defaults().validate().is_ok());
    }

    #[test]
    fn default_node_id_is_stable_host_and_port() {
        let config = ServeConfig::defaults();
        assert_eq!(config.node_id(), config.node_id());
        assert!(config.node_id().ends_with(":18789"));
        let mut named = ServeConfig::defaults();
        named.node_id = Some(" gw-1 ".into());
        assert_eq!(named.node_id(), "gw-1");
    }

    #[test]
    fn untracked_modes_compare_trimmed_and_case_insensitively() {
        let config = ServeConfig::defaults();
        assert!(config.is_untracked(" CLI "));
        assert!(!config.is_untracked("ui"));
    }

    #[test]
    fn trusted_proxy_accepts_ip_or_cidr() {
        assert_eq!(parse_net("10.0.0.1").unwrap().to_string(), "10.0.0.1/32");
        assert_eq!(parse_net("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert!(parse_net("proxy").is_err());
    }
}
