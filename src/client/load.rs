//! `rollcall load`: a fleet simulator and load generator for the gateway protocol,
//! and (with `--echo`) for a bare WebSocket echo server as the transport baseline.
//!
//! A run has three phases, each bounded in time:
//! 1. **Ramp.** Clients are started at `--ramp-rate` per second. Each opens its
//!    connection (TCP, upgrade, `connect.challenge`, `connect`, `hello-ok`).
//!    The ramp ends when every first attempt has finished, or after
//!    `clients / ramp-rate + handshake-timeout + 1 s`.
//! 2. **Steady.** For `--duration`, request figures are recorded and churn runs.
//! 3. **Stop.** Connections held are counted and memory read, every client is told
//!    to stop, and clients still running after [`STOP_GRACE`] are aborted.
//!
//! Invariants:
//! - One task per client; a client's state between frames is its socket, its
//!   reader's buffer and its queue of requests in flight.
//! - The run stops by itself: every wait is bounded by the phase deadlines,
//!   `--max-errors`, or Ctrl-C.

use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::fdlimit;
use super::requests::{Kind, Requests};
use super::session::{Fleet, Protocol, run_client};
use super::stats::{RssSummary, RunInfo, Stats, SummaryFrame, read_vm_rss_kib};
use super::ws::{UrlError, resolve};

pub use super::stats::Summary;

/// Longest `--duration` accepted: a load run is a measurement, not a service.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Descriptors kept free for stdio, the runtime's epoll and eventfd, and files.
const FD_RESERVE: u64 = 64;

/// Connections per loopback source address when `--source-ips` is not given.
/// The default ephemeral range (32768-60999) has ~28k ports, and Linux's
/// `connect` searches the even half (~14k) first: past that, every connect scans
/// it, and handshakes measured at 19k connections from one address took
/// seconds (p90 1.4 s) instead of milliseconds. 10k per address stays clear.
const PORTS_PER_SOURCE_IP: u64 = 10_000;

/// How long stopped clients get to finish before they are aborted.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Spawn and churn scheduling granularity.
const TICK: Duration = Duration::from_millis(5);

/// Progress bar refresh period.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

fn parse_duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}

/// Options of `rollcall load`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Gateway WebSocket URL (`ws://` only). With `--echo`, the echo server's URL.
    #[arg(long, default_value = "ws://127.0.0.1:18789/")]
    pub url: String,

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
    /// `--url` is not a usable `ws://` URL, or its host did not resolve.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// Neither beacon clients nor readers were asked for.
    #[error("nothing to run: --clients and --readers are both 0")]
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
         fewer --clients/--readers"
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
    /// `--source-ips` binds loopback addresses, which cannot reach another host.
    #[error("--source-ips needs a 127.0.0.0/8 IPv4 target, and {0} is not one")]
    SourceIpsNeedLoopback(SocketAddr),
}

fn out_of_range(option: &'static str, reason: impl Into<String>) -> LoadError {
    LoadError::OutOfRange {
        option,
        reason: reason.into(),
    }
}

/// The loopback source addresses to bind: none when one address will do.
fn source_ips(
    target: SocketAddr,
    asked: Option<u32>,
    connections: u64,
) -> Result<Vec<IpAddr>, LoadError> {
    let loopback_v4 = matches!(target.ip(), IpAddr::V4(v4) if v4.is_loopback());
    let n = match asked {
        Some(0) => return Err(out_of_range("source-ips", "must be at least 1")),
        Some(n) if !loopback_v4 => {
            if n > 1 {
                return Err(LoadError::SourceIpsNeedLoopback(target));
            }
            return Ok(Vec::new());
        }
        Some(n) => n,
        None if !loopback_v4 => return Ok(Vec::new()),
        None => connections.div_ceil(PORTS_PER_SOURCE_IP).max(1) as u32,
    };
    // 127.0.0.1 .. 127.255.255.254 are all local on Linux's lo.
    const MAX: u32 = (1 << 24) - 2;
    if n > MAX {
        return Err(out_of_range("source-ips", format!("must be at most {MAX}")));
    }
    if n == 1 && asked.is_none() {
        return Ok(Vec::new());
    }
    let base = u32::from(Ipv4Addr::new(127, 0, 0, 1));
    Ok((0..n)
        .map(|i| IpAddr::V4(Ipv4Addr::from(base + i)))
        .collect())
}

fn validate(args: &LoadArgs) -> Result<(), LoadError> {
    if args.clients == 0 && args.readers == 0 {
        return Err(LoadError::NoClients);
    }
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
    if args.handshake_timeout.is_zero() || args.handshake_timeout > Duration::from_secs(600) {
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

fn progress(args: &LoadArgs, total: u64) -> ProgressBar {
    let target = if args.json || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    bar.set_style(
        // A constant template: it parses.
        ProgressStyle::with_template(
            "{prefix:>6} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
        )
        .expect("valid progress template"),
    );
    bar.set_prefix("ramp");
    bar
}

/// Why a phase loop returned early.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Halt {
    MaxErrors,
    Interrupted,
}

impl Halt {
    fn as_str(self) -> &'static str {
        match self {
            Halt::MaxErrors => "max-errors",
            Halt::Interrupted => "interrupted",
        }
    }
}

/// Runs a load test and returns its summary. Setup problems (bad options, the
/// file-descriptor limit, an unresolvable host) are errors; everything that goes
/// wrong once clients run is counted in the summary.
pub async fn run(args: LoadArgs) -> Result<Summary, LoadError> {
    validate(&args)?;
    let target = resolve(&args.url).await?;
    let connections = u64::from(args.clients) + u64::from(args.readers);
    let source_ips = source_ips(target.addr, args.source_ips, connections)?;
    let protocol = if args.echo {
        Protocol::Echo
    } else {
        Protocol::Rollcall
    };

    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let requests = Requests::new(&run_id, &args.mode, args.token.as_deref(), args.frame_bytes);
    if let Some(want) = args.frame_bytes {
        let max = requests.max_frame_bytes();
        if protocol == Protocol::Rollcall && want > max {
            return Err(out_of_range(
                "frame-bytes",
                format!("{want} would put the beacon text over 4 KiB; at most {max} fits"),
            ));
        }
    }
    let needed = connections + FD_RESERVE;
    fdlimit::raise_nofile(needed).map_err(|s| LoadError::FdLimit {
        connections,
        needed: s.needed,
        soft: s.soft,
        hard: s.hard,
    })?;

    let churn: Box<[Notify]> = if args.churn_rate > 0.0 {
        (0..args.clients).map(|_| Notify::new()).collect()
    } else {
        Box::new([])
    };
    let fleet = Arc::new(Fleet {
        target,
        protocol,
        requests,
        in_flight: args.in_flight,
        beacon_interval: args.beacon_interval,
        reader_in_flight: args.reader_in_flight,
        handshake_timeout: args.handshake_timeout,
        source_ips,
        churn,
        stats: Stats::new(),
    });
    let stats = &fleet.stats;
    let server_rss_start = args.rss_pid.and_then(|p| read_vm_rss_kib(Some(p)));
    let client_rss_start = read_vm_rss_kib(None);

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let bar = progress(&args, connections);
    // Ctrl-C ends the current phase early and still yields a summary. If the
    // handler cannot be installed, the run just goes on to its deadline.
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(ctrl_c);
    let over_errors = |stats: &Stats| args.max_errors.is_some_and(|max| stats.errors() > max);

    // Phase 1: ramp.
    let run_start = Instant::now();
    let ramp_deadline = run_start
        + Duration::from_secs_f64(connections as f64 / f64::from(args.ramp_rate))
        + args.handshake_timeout
        + Duration::from_secs(1);
    let mut spawned: u64 = 0;
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_progress = run_start;
    let mut halt = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = &mut ctrl_c => { halt = Some(Halt::Interrupted); break; }
        }
        let now = Instant::now();
        let due = ((now - run_start).as_secs_f64() * f64::from(args.ramp_rate)) as u64 + 1;
        while spawned < due.min(connections) {
            // Clients first, then readers; client indices are 0-based per kind.
            let (client, kind) = if spawned < u64::from(args.clients) {
                (spawned as u32, Kind::Beacon)
            } else {
                ((spawned - u64::from(args.clients)) as u32, Kind::Reader)
            };
            tasks.spawn(run_client(fleet.clone(), client, kind, stop_rx.clone()));
            spawned += 1;
        }
        let attempted = stats.first_attempts.load(Ordering::Relaxed);
        if now >= next_progress {
            next_progress = now + PROGRESS_EVERY;
            bar.set_position(stats.held.load(Ordering::Relaxed));
            bar.set_message(format!("failed {}", stats.failure_count()));
        }
        if over_errors(stats) {
            halt = Some(Halt::MaxErrors);
            break;
        }
        if attempted >= connections || now >= ramp_deadline {
            break;
        }
    }
    let ramp_secs = run_start.elapsed().as_secs_f64();

    // Phase 2: steady.
    let steady_start = Instant::now();
    stats.measuring.store(true, Ordering::Relaxed);
    if halt.is_none() {
        let deadline = steady_start + args.duration;
        bar.set_prefix("steady");
        bar.set_position(0);
        bar.set_length(args.duration.as_millis() as u64);
        bar.set_message("");
        let mut churned: u64 = 0;
        let mut churn_next: usize = 0;
        let mut last_replies = 0;
        let mut last_at = steady_start;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            tokio::select! {
                _ = ticker.tick() => {}
                _ = tokio::time::sleep_until(deadline) => break,
                _ = &mut ctrl_c => { halt = Some(Halt::Interrupted); break; }
            }
            let now = Instant::now();
            if !fleet.churn.is_empty() {
                let due = ((now - steady_start).as_secs_f64() * args.churn_rate) as u64;
                // Waking a client twice before it reconnects is one reconnect:
                // a burst wider than the fleet is wasted.
                let burst = due.saturating_sub(churned).min(fleet.churn.len() as u64);
                for _ in 0..burst {
                    fleet.churn[churn_next].notify_one();
                    churn_next = (churn_next + 1) % fleet.churn.len();
                }
                churned = due;
            }
            if now >= next_progress {
                next_progress = now + PROGRESS_EVERY;
                let replies = stats.replies();
                let per_sec = (replies - last_replies) as f64 / (now - last_at).as_secs_f64();
                (last_replies, last_at) = (replies, now);
                bar.set_position((now - steady_start).as_millis() as u64);
                bar.set_message(format!(
                    "held {}  {per_sec:.0} req/s  errors {}",
                    stats.held.load(Ordering::Relaxed),
                    stats.errors()
                ));
                if over_errors(stats) {
                    halt = Some(Halt::MaxErrors);
                    break;
                }
            }
        }
    }
    let duration_secs = steady_start.elapsed().as_secs_f64();

    // Phase 3: stop.
    stats.measuring.store(false, Ordering::Relaxed);
    let held_at_end = stats.held.load(Ordering::Relaxed);
    let server_rss = args.rss_pid.and_then(|pid| {
        let end = read_vm_rss_kib(Some(pid))?;
        Some(RssSummary::new(
            pid,
            server_rss_start.unwrap_or(0),
            end,
            held_at_end,
        ))
    });
    let client_rss = read_vm_rss_kib(None).map(|end| {
        RssSummary::new(
            std::process::id(),
            client_rss_start.unwrap_or(0),
            end,
            held_at_end,
        )
    });
    bar.finish_and_clear();
    // The receivers may all be gone already (every client ended); that is fine.
    let _ = stop_tx.send(true);
    let grace = tokio::time::sleep(STOP_GRACE);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            joined = tasks.join_next() => if joined.is_none() { break },
            _ = &mut grace => { tasks.shutdown().await; break; }
        }
    }

    Ok(stats.summarize(SummaryFrame {
        run: RunInfo {
            protocol: match protocol {
                Protocol::Rollcall => "rollcall",
                Protocol::Echo => "echo",
            },
            url: args.url.clone(),
            run_id,
            clients: args.clients,
            readers: args.readers,
            in_flight: args.in_flight,
            beacon_interval_ms: args
                .in_flight
                .is_none()
                .then_some(args.beacon_interval.as_millis() as u64),
            beacon_frame_bytes: fleet.requests.beacon(0, 1).len(),
            source_ips: fleet.source_ips.len().max(1) as u32,
            duration_secs,
            held_at_end,
            server_rss,
            client_rss,
            stopped_by: halt.map_or("duration", Halt::as_str),
        },
        ramp_secs,
        run_secs: run_start.elapsed().as_secs_f64(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        load: LoadArgs,
    }

    fn args(extra: &[&str]) -> LoadArgs {
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
    fn source_ips_spread_large_fleets_over_loopback() {
        let lo: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(source_ips(lo, None, 1000).unwrap().is_empty());
        let ips = source_ips(lo, None, 100_000).unwrap();
        assert_eq!(ips.len(), 10);
        assert_eq!(ips[3], IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4)));
        assert_eq!(
            source_ips(lo, Some(300), 1).unwrap()[299],
            IpAddr::V4(Ipv4Addr::new(127, 0, 1, 44))
        );
        let remote: SocketAddr = "10.0.0.1:1".parse().unwrap();
        assert!(source_ips(remote, Some(2), 1).is_err());
    }

    /// The echo baseline on `127.0.0.1:0`.
    async fn echo_server() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(crate::client::echo::serve(listener));
        addr
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn echo_run_answers_every_request_and_churns() {
        let addr = echo_server().await;
        let url = format!("ws://{addr}/");
        let summary = run(args(&[
            "--echo",
            "--url",
            &url,
            "--clients",
            "4",
            "--readers",
            "2",
            "--in-flight",
            "2",
            "--duration",
            "400ms",
            "--churn-rate",
            "20",
        ]))
        .await
        .unwrap();
        assert_eq!(summary.run.protocol, "echo");
        assert_eq!(summary.ramp.connected, 6);
        assert!(summary.connection_failures.is_empty(), "{summary}");
        assert!(summary.errors_by_code.is_empty(), "{summary}");
        assert!(summary.methods["system-event"].ok > 0, "{summary}");
        assert!(summary.methods["system-presence"].ok > 0, "{summary}");
        assert!(summary.reconnects > 0, "{summary}");
        assert_eq!(summary.run.stopped_by, "duration");
    }

    #[tokio::test]
    async fn refused_connections_are_counted_not_fatal() {
        // Bind then drop: the port is very likely closed for the test's lifetime.
        let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let url = format!("ws://{addr}/");
        let summary = run(args(&[
            "--url",
            &url,
            "--clients",
            "3",
            "--duration",
            "50ms",
        ]))
        .await
        .unwrap();
        assert_eq!(summary.ramp.failed, 3);
        assert_eq!(summary.connection_failures["refused"], 3);
        assert_eq!(summary.run.held_at_end, 0);
    }

    #[tokio::test]
    async fn too_many_connections_name_the_fd_limit() {
        let err = run(args(&[
            "--clients",
            "2000000000",
            "--url",
            "ws://127.0.0.1:9/",
        ]))
        .await
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("RLIMIT_NOFILE"), "{msg}");
        assert!(msg.contains("ulimit -Hn"), "{msg}");
    }
}
