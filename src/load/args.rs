//! The options of `rollcall load` and the checks a run makes before it
//! starts. Every rule an option can break is a [`LoadError`] naming it.

use std::net::SocketAddr;
use std::time::Duration;

use crate::client::UrlError;

/// Longest `--duration` accepted: a load run is a measurement, not a service.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Longest `--handshake-timeout` accepted.
const MAX_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(600);

/// Longest `--settle` accepted: long enough for any paced fan-out, short
/// enough that a run that never converges still ends.
const MAX_SETTLE: Duration = Duration::from_secs(600);

/// Which presence feed a watcher asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WatchFeed {
    /// `presence` events, each the whole list (what OpenClaw clients get).
    Full,
    /// `presence.delta` events (`caps: ["presence.delta"]` in `connect`).
    Delta,
}

impl WatchFeed {
    /// The feed's name in the summary.
    pub fn as_str(self) -> &'static str {
        match self {
            WatchFeed::Full => "full",
            WatchFeed::Delta => "delta",
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}

/// Options of `rollcall load`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Gateway WebSocket URL (`ws://`, or `wss://` to a gateway serving
    /// TLS). With `--echo`, the echo server's URL.
    #[arg(long, default_value = "ws://127.0.0.1:18789/")]
    pub url: String,

    #[command(flatten)]
    /// Whom to trust on `wss://`.
    pub tls: crate::tls::TlsArgs,

    /// Token sent as `auth.token` in `connect`. Not used with `--echo`.
    #[arg(long, env = "ROLLCALL_LOAD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Beacon clients: role `node`, each with its own `instanceId` (`load-RUN-N`).
    #[arg(long, default_value_t = 100)]
    pub clients: u32,

    /// Reader clients: operators (`operator.read`, mode `cli`) that call
    /// `system-presence` in a closed loop, `--reader-in-flight` at a time.
    #[arg(long, default_value_t = 0)]
    pub readers: u32,

    /// Watchers: operators (`operator.read`) that hold a presence feed open and
    /// track the version they hold, the `seq` of every event, and how late
    /// each version arrives.
    #[arg(long, default_value_t = 0)]
    pub watchers: u32,

    /// Offer permessage-deflate (RFC 7692) on every connection, as browsers
    /// and Node's `ws` do; watchers then report wire and inflated bytes.
    #[arg(long)]
    pub deflate: bool,

    /// The feed each watcher asks for: whole lists or deltas.
    #[arg(long, value_enum, default_value = "full")]
    pub watch_feed: WatchFeed,

    /// `client.mode` of the watchers. `ui` (the macOS app) gets a presence
    /// entry; `cli` is untracked by default, so its watchers add no changes.
    #[arg(long, default_value = "ui")]
    pub watch_mode: String,

    /// Watcher connections started per second during the ramp, alongside
    /// the other clients. Default: `--ramp-rate`.
    #[arg(long)]
    pub watch_ramp_rate: Option<u32>,

    /// After the steady phase the other clients stop, and the watchers get
    /// this long to catch up with the gateway's last version (less if they all
    /// hold it sooner).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub settle: Duration,

    /// Length of the steady phase after the ramp (humantime: `10s`, `2m`).
    /// Request rates and latencies cover this phase only.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// New connections started per second during the ramp.
    #[arg(long, default_value_t = 2000)]
    pub ramp_rate: u32,

    /// Open loop: each beacon client sends one `system-event` per interval,
    /// the first at a random-looking offset within it. Ignored with `--in-flight`.
    #[arg(long, default_value = "10s", value_parser = parse_duration, conflicts_with = "in_flight")]
    pub beacon_interval: Duration,

    /// Closed loop: each beacon client keeps this many `system-event` requests
    /// in flight, sending the next as soon as a reply arrives.
    #[arg(long)]
    pub in_flight: Option<u32>,

    /// `system-presence` requests each reader keeps in flight.
    #[arg(long, default_value_t = 1)]
    pub reader_in_flight: u32,

    /// Disconnects and reconnects per second across the beacon clients, during
    /// the steady phase. A reconnect reuses the client's `instanceId`.
    #[arg(long, default_value_t = 0.0)]
    pub churn_rate: f64,

    /// Spread sockets over this many loopback source addresses (127.0.0.1,
    /// 127.0.0.2, ...), binding each before connect, so more than ~28k
    /// connections fit in the ephemeral port range. Default: one per 10k
    /// connections to a loopback target (past ~14k per address Linux's port
    /// search slows every connect).
    #[arg(long)]
    pub source_ips: Option<u32>,

    /// Pad each beacon frame to this many bytes (the padding ends the beacon's
    /// reason). At most what keeps `text` within 4 KiB in the rollcall protocol.
    #[arg(long)]
    pub frame_bytes: Option<usize>,

    /// Rows written before the ramp by one `operator.admin` connection (the
    /// token must grant it), under distinct `instanceId`s (`load-RUN-fN`):
    /// the run then measures a gateway holding this many rows besides its
    /// clients' own.
    #[arg(long, default_value_t = 0)]
    pub fill: u32,

    /// Raw mode against a WebSocket echo server: no challenge or `connect`;
    /// each request is the same text frame the rollcall mode would send, and any
    /// text frame back answers the oldest request in flight.
    #[arg(long)]
    pub echo: bool,

    /// `client.mode` of the beacon clients (also written in their beacon text).
    #[arg(long, default_value = "backend")]
    pub mode: String,

    /// Bound on TCP connect + upgrade + challenge + `connect` reply, per attempt.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,

    /// Stop early once error replies plus connection failures exceed this.
    #[arg(long)]
    pub max_errors: Option<u64>,

    /// Also report this process's resident memory (the server's), read from
    /// `/proc/PID/status` before the ramp and at the end of the steady phase.
    #[arg(long)]
    pub rss_pid: Option<u32>,

    /// Print the summary as JSON (and hide the progress bar).
    #[arg(long)]
    pub json: bool,
}

/// Why a load run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `--url` is not a usable `ws://` or `wss://` URL, its host did not
    /// resolve, or its TLS options cannot be used.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// No beacon clients, readers or watchers were asked for.
    #[error("nothing to run: --clients, --readers and --watchers are all 0")]
    NoClients,
    /// An option is outside its range.
    #[error("--{option} {reason}")]
    OutOfRange {
        /// The option's name.
        option: &'static str,
        /// The rule it breaks.
        reason: String,
    },
    /// Not enough file descriptors, and the hard limit forbids raising the soft one.
    #[error(
        "{connections} connections need {needed} file descriptors, but RLIMIT_NOFILE allows \
         {soft} (hard limit {hard}). Raise the hard limit (as root: `ulimit -Hn {needed}`; for \
         a service: LimitNOFILE=; for a login: nofile in /etc/security/limits.conf) or use \
         fewer --clients/--readers/--watchers"
    )]
    FdLimit {
        /// Connections asked for.
        connections: u64,
        /// Descriptors needed.
        needed: u64,
        /// Soft limit after raising it to the hard limit.
        soft: u64,
        /// Hard limit.
        hard: u64,
    },
    /// `--fill` could not write its rows.
    #[error(transparent)]
    Fill(#[from] super::FillError),
    /// `--source-ips` binds loopback addresses, which cannot reach another host.
    #[error("--source-ips needs a 127.0.0.0/8 IPv4 target, and {0} is not one")]
    SourceIpsNeedLoopback(SocketAddr),
}

pub(super) fn out_of_range(option: &'static str, reason: impl Into<String>) -> LoadError {
    LoadError::OutOfRange {
        option,
        reason: reason.into(),
    }
}

/// Checks the options that clap's types do not.
pub fn validate(args: &LoadArgs) -> Result<(), LoadError> {
    if args.fill > 0 && args.echo {
        return Err(out_of_range(
            "fill",
            "needs the gateway protocol, not --echo",
        ));
    }
    if args.clients == 0 && args.readers == 0 && args.watchers == 0 {
        return Err(LoadError::NoClients);
    }
    validate_watchers(args)?;
    if args.duration.is_zero() || args.duration > MAX_DURATION {
        return Err(out_of_range(
            "duration",
            format!(
                "must be above 0 and at most {}",
                humantime::format_duration(MAX_DURATION)
            ),
        ));
    }
    if args.ramp_rate == 0 {
        return Err(out_of_range("ramp-rate", "must be at least 1"));
    }
    if args.beacon_interval.is_zero() {
        return Err(out_of_range("beacon-interval", "must be above 0"));
    }
    if matches!(args.in_flight, Some(0)) {
        return Err(out_of_range("in-flight", "must be at least 1"));
    }
    if args.reader_in_flight == 0 {
        return Err(out_of_range("reader-in-flight", "must be at least 1"));
    }
    if !(args.churn_rate >= 0.0 && args.churn_rate.is_finite()) {
        return Err(out_of_range("churn-rate", "must be a finite number >= 0"));
    }
    if args.handshake_timeout.is_zero() || args.handshake_timeout > MAX_HANDSHAKE_TIMEOUT {
        return Err(out_of_range(
            "handshake-timeout",
            "must be above 0 and at most 10m",
        ));
    }
    if args.mode.trim().is_empty() {
        return Err(out_of_range("mode", "must not be empty"));
    }
    Ok(())
}

/// Checks the watcher options.
fn validate_watchers(args: &LoadArgs) -> Result<(), LoadError> {
    if args.watchers > 0 && args.echo {
        return Err(out_of_range(
            "watchers",
            "needs the gateway protocol; an echo server sends no presence",
        ));
    }
    if matches!(args.watch_ramp_rate, Some(0)) {
        return Err(out_of_range("watch-ramp-rate", "must be at least 1"));
    }
    if args.watch_mode.trim().is_empty() {
        return Err(out_of_range("watch-mode", "must not be empty"));
    }
    if args.settle > MAX_SETTLE {
        return Err(out_of_range("settle", "must be at most 10m"));
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        load: LoadArgs,
    }

    /// `LoadArgs` as clap parses `rollcall load EXTRA...`.
    pub(in crate::load) fn args(extra: &[&str]) -> LoadArgs {
        let mut argv = vec!["load"];
        argv.extend_from_slice(extra);
        Cli::parse_from(argv).load
    }

    #[test]
    fn defaults_are_an_open_loop_fleet_of_100() {
        let a = args(&[]);
        assert_eq!(a.url, "ws://127.0.0.1:18789/");
        assert_eq!((a.clients, a.readers, a.ramp_rate), (100, 0, 2000));
        assert_eq!(a.duration, Duration::from_secs(10));
        assert_eq!(a.in_flight, None);
        assert!(validate(&a).is_ok());
    }

    #[test]
    fn in_flight_conflicts_with_beacon_interval() {
        let r = Cli::try_parse_from(["load", "--in-flight", "4", "--beacon-interval", "1s"]);
        assert!(r.is_err());
    }

    #[test]
    fn zero_duration_is_rejected() {
        assert!(validate(&args(&["--duration", "0s"])).is_err());
        assert!(validate(&args(&["--clients", "0"])).is_err());
    }

    #[test]
    fn watchers_alone_are_a_run_but_not_against_an_echo_server() {
        let a = args(&["--clients", "0", "--watchers", "5", "--watch-feed", "delta"]);
        assert!(validate(&a).is_ok());
        assert_eq!(
            (a.watch_feed, a.watch_mode.as_str()),
            (WatchFeed::Delta, "ui")
        );
        assert_eq!(a.settle, Duration::from_secs(5));
        assert!(validate(&args(&["--watchers", "1", "--echo"])).is_err());
        assert!(validate(&args(&["--watchers", "1", "--watch-ramp-rate", "0"])).is_err());
    }
}
