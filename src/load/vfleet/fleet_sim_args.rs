//! The options of `rollcall load fleet-sim` and their checks: every rule an
//! option can break is a [`SimError`] naming it.

use std::time::Duration;
use thiserror::Error;

use super::super::args::MAX_DURATION;
use crate::fleet::redact;

/// The most simulated gateways: well under the node set a real gateway
/// reads per poll (`MAX_NODES`, 1024), leaving room for real ones.
pub const MAX_GATEWAYS: u32 = 1000;
/// The most rows a run holds.
pub const MAX_ROWS: u64 = 10_000_000;
/// The highest fleet-wide change rate.
pub const MAX_RATE: u64 = 1_000_000;

fn parse_duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}

/// Options of `rollcall load fleet-sim`.
#[derive(Debug, Clone, clap::Args)]
pub struct FleetSimArgs {
    /// The fleet's Redis (`redis://` or `rediss://`), as given to `serve --fleet`.
    #[arg(long)]
    pub redis: String,

    /// Prefix of every key and channel (`serve --fleet-prefix`).
    #[arg(long, default_value = crate::config::DEFAULT_FLEET_PREFIX)]
    pub prefix: String,

    /// Simulated gateways, node ids `vfleet-0`, `vfleet-1`, ...
    #[arg(long, default_value_t = 3)]
    pub gateways: u32,

    /// Rows held in total, spread evenly over the gateways.
    #[arg(long, default_value_t = 300)]
    pub rows: u64,

    /// Row changes per second, fleet-wide.
    #[arg(long, default_value_t = 100)]
    pub changes_per_sec: u64,

    /// How long the changes run after the rows are written.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Each gateway publishes its changes in one batch per interval.
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    pub batch_interval: Duration,

    /// The lease each simulated gateway holds (`serve --fleet-lease`).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub lease: Duration,

    /// The presence TTL the rows' expiry is computed with (`serve --presence-ttl`).
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub presence_ttl: Duration,

    /// This many gateways (the first ones) stop renewing their lease and
    /// writing after `--lapse-after`, as a hung gateway does.
    #[arg(long, default_value_t = 0)]
    pub lapse: u32,

    /// When the `--lapse` gateways stop.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub lapse_after: Duration,

    /// A real gateway's HTTP base URL (`http://127.0.0.1:PORT`): measure,
    /// from its `/metrics`, how long it takes to list every simulated row
    /// and how long the changes take to become visible on it.
    #[arg(long)]
    pub observe: Option<String>,

    /// Bearer token for `--observe`, if that gateway requires one.
    #[arg(long, env = "ROLLCALL_OBSERVE_TOKEN", hide_env_values = true)]
    pub observe_token: Option<String>,

    /// After the changes stop, how long the observed gateway gets for the
    /// last messages before its histogram is read.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub settle: Duration,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Why a fleet simulation cannot start or failed.
#[derive(Debug, Error)]
pub enum SimError {
    /// An option is out of range.
    #[error("{option} must be {rule} (got {got})")]
    Option {
        /// The flag.
        option: &'static str,
        /// What it must be.
        rule: String,
        /// What was given.
        got: String,
    },
    /// Redis refused, or another boot holds a simulated node id.
    #[error("redis {url}: {error}")]
    Redis {
        /// The URL, password redacted.
        url: String,
        /// What went wrong.
        error: String,
    },
}

fn out_of_range(option: &'static str, rule: impl Into<String>, got: impl ToString) -> SimError {
    SimError::Option {
        option,
        rule: rule.into(),
        got: got.to_string(),
    }
}

impl FleetSimArgs {
    /// Checks every option.
    pub fn check(&self) -> Result<(), SimError> {
        if !(1..=MAX_GATEWAYS).contains(&self.gateways) {
            return Err(out_of_range(
                "--gateways",
                format!("1..={MAX_GATEWAYS}"),
                self.gateways,
            ));
        }
        if self.rows < u64::from(self.gateways) || self.rows > MAX_ROWS {
            let rule = format!("between --gateways and {MAX_ROWS}");
            return Err(out_of_range("--rows", rule, self.rows));
        }
        if self.changes_per_sec > MAX_RATE {
            return Err(out_of_range(
                "--changes-per-sec",
                format!("at most {MAX_RATE}"),
                self.changes_per_sec,
            ));
        }
        let positive = [
            ("--duration", self.duration, MAX_DURATION),
            (
                "--batch-interval",
                self.batch_interval,
                Duration::from_secs(60),
            ),
            ("--lease", self.lease, Duration::from_secs(3600)),
            ("--presence-ttl", self.presence_ttl, MAX_DURATION),
            ("--settle", self.settle, Duration::from_secs(600)),
        ];
        for (option, value, max) in positive {
            if value.is_zero() || value > max {
                let rule = format!("above 0 and at most {}", humantime::format_duration(max));
                return Err(out_of_range(
                    option,
                    rule,
                    humantime::format_duration(value),
                ));
            }
        }
        if self.lapse > self.gateways {
            return Err(out_of_range("--lapse", "at most --gateways", self.lapse));
        }
        if self.prefix.is_empty() {
            return Err(out_of_range("--prefix", "not empty", "\"\""));
        }
        if redis::Client::open(self.redis.as_str()).is_err() {
            return Err(out_of_range(
                "--redis",
                "a redis:// or rediss:// URL",
                redact(&self.redis),
            ));
        }
        match &self.observe {
            Some(url) if super::observe::ObservedGateway::parse(url).is_none() => {
                Err(out_of_range("--observe", "an http://HOST:PORT URL", url))
            }
            _ => Ok(()),
        }
    }
}
