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
//!    to stop, and clients still running after
//!    [`STOP_GRACE`](crate::load::STOP_GRACE) are aborted.
//!    With `--watchers`, the beacon clients and readers stop first; the
//!    watchers then settle (`settle.rs`: up to `--settle`, until each holds the
//!    gateway's last version) and stop last.
//!
//! Invariants:
//! - One task per client; a client's state between frames is its socket, its
//!   reader's buffer and its queue of requests in flight.
//! - The run stops by itself: every wait is bounded by the phase deadlines,
//!   `--max-errors`, or Ctrl-C.
//! - Nothing is printed: progress goes to the caller's callback as
//!   [`LoadProgress`] values, and the summary is returned.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{Instant, Interval};

use super::args::{LoadArgs, LoadError, out_of_range, validate};
use super::crew::{Crew, Schedule};
use super::fdlimit;
use super::fleet::{Protocol, SimulatedFleet};
pub use super::progress::LoadProgress;
use super::requests::{Kind, Requests};
use super::settle::settle;
use super::simulated_client::run_client;
use super::source_ips::source_ips;
use super::stats::Stats;
use super::summary::{RssSummary, RunInfo, Summary, SummaryFrame, read_vm_rss_kib};
use super::watch::run_watcher;
use super::watch_stats::{WatchFrame, WatchStats};
use crate::client::resolve;
use crate::protocol::system_event_params::MAX_TEXT_LEN;

/// Descriptors kept free for stdio, the runtime's epoll and eventfd, and files.
const FD_RESERVE: u64 = 64;

/// Spawn and churn scheduling granularity.
const TICK: Duration = Duration::from_millis(5);

/// Progress refresh period.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

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
    run_with_progress(args, |_| {}).await
}

/// [`run()`], reporting progress to `progress` as it goes.
pub async fn run_with_progress(
    args: LoadArgs,
    progress: impl FnMut(LoadProgress),
) -> Result<Summary, LoadError> {
    let fleet = Arc::new(prepare(&args).await?);
    if args.fill > 0 {
        super::fill::fill(&fleet, args.fill).await?;
    }
    let server_rss_start = args.rss_pid.and_then(|p| read_vm_rss_kib(Some(p)));
    let client_rss_start = read_vm_rss_kib(None);
    let mut phases = Phases::new(&args, fleet.clone(), progress);
    let mut crew = Crew::new();

    let run_start = Instant::now();
    let mut halt = phases.ramp(&mut crew).await;
    let ramp_secs = run_start.elapsed().as_secs_f64();
    let steady_start = Instant::now();
    fleet.stats.measuring.store(true, Ordering::Relaxed);
    if halt.is_none() {
        halt = phases.steady(steady_start).await;
    }
    let duration_secs = steady_start.elapsed().as_secs_f64();
    fleet.stats.measuring.store(false, Ordering::Relaxed);
    let mut run = run_info(&args, &fleet);
    run.duration_secs = duration_secs;
    run.held_at_end = fleet.stats.held.load(Ordering::Relaxed);
    let rss = |pid: u32, start: Option<u64>, end: u64| {
        RssSummary::new(pid, start.unwrap_or(0), end, run.held_at_end)
    };
    run.server_rss = args
        .rss_pid
        .and_then(|pid| Some(rss(pid, server_rss_start, read_vm_rss_kib(Some(pid))?)));
    run.client_rss =
        read_vm_rss_kib(None).map(|end| rss(std::process::id(), client_rss_start, end));
    run.stopped_by = halt.map_or("duration", Halt::as_str);
    let settled = phases.watchers_settle(&mut crew, halt).await;
    (phases.progress)(LoadProgress::Done);
    crew.stop().await;
    // After the stop: each watcher adds its bytes when its connection ends.
    let watchers = settled.map(|frame| fleet.watch.summarize(frame));

    let mut summary = fleet.stats.summarize(SummaryFrame {
        run,
        ramp_secs,
        run_secs: run_start.elapsed().as_secs_f64(),
    });
    summary.watchers = watchers;
    Ok(summary)
}

/// Checks the options, resolves the target, and raises the fd limit: all
/// that can fail before the first client starts.
async fn prepare(args: &LoadArgs) -> Result<SimulatedFleet, LoadError> {
    validate(args)?;
    let mut target = resolve(&args.url, &args.tls).await?;
    target.deflate = args.deflate;
    let connections = connections(args);
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
                format!(
                    "{want} would put the beacon text over {} KiB; at most {max} fits",
                    MAX_TEXT_LEN / 1024
                ),
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
    Ok(SimulatedFleet {
        target,
        protocol,
        requests,
        run_id,
        in_flight: args.in_flight,
        beacon_interval: args.beacon_interval,
        reader_in_flight: args.reader_in_flight,
        handshake_timeout: args.handshake_timeout,
        source_ips,
        churn,
        stats: Stats::new(),
        watch_feed: args.watch_feed,
        watch_mode: args.watch_mode.clone(),
        watch: WatchStats::new(args.watchers),
    })
}

/// Connections a run opens: every client, and the settle's probe.
fn connections(args: &LoadArgs) -> u64 {
    let probe = u64::from(args.watchers > 0);
    u64::from(args.clients) + u64::from(args.readers) + u64::from(args.watchers) + probe
}

/// The run's description; the end-of-run fields are filled in by the caller.
fn run_info(args: &LoadArgs, fleet: &SimulatedFleet) -> RunInfo {
    RunInfo {
        protocol: match fleet.protocol {
            Protocol::Rollcall => "rollcall",
            Protocol::Echo => "echo",
        },
        url: args.url.clone(),
        run_id: fleet.run_id.clone(),
        clients: args.clients,
        readers: args.readers,
        in_flight: args.in_flight,
        beacon_interval_ms: args
            .in_flight
            .is_none()
            .then_some(args.beacon_interval.as_millis() as u64),
        beacon_frame_bytes: fleet.requests.beacon(0, 1).len(),
        source_ips: fleet.source_ips.len().max(1) as u32,
        duration_secs: 0.0,
        held_at_end: 0,
        server_rss: None,
        client_rss: None,
        stopped_by: "duration",
    }
}

/// The ramp and steady phases of one run, and what they share.
struct Phases<'a, P> {
    args: &'a LoadArgs,
    fleet: Arc<SimulatedFleet>,
    progress: P,
    ticker: Interval,
    /// Ctrl-C ends the current phase early and still yields a summary.
    interrupt: Pin<Box<dyn Future<Output = ()> + Send>>,
    next_progress: Instant,
}

impl<'a, P: FnMut(LoadProgress)> Phases<'a, P> {
    fn new(args: &'a LoadArgs, fleet: Arc<SimulatedFleet>, progress: P) -> Self {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let interrupt = Box::pin(async {
            // If the handler cannot be installed, the run just goes on to its deadline.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        });
        Phases {
            args,
            fleet,
            progress,
            ticker,
            interrupt,
            next_progress: Instant::now(),
        }
    }

    fn stats(&self) -> &Stats {
        &self.fleet.stats
    }

    fn over_errors(&self) -> bool {
        let errors = self.stats().errors();
        self.args.max_errors.is_some_and(|max| errors > max)
    }

    /// True (and the next report scheduled) when a progress report is due.
    fn progress_due(&mut self, now: Instant) -> bool {
        if now < self.next_progress {
            return false;
        }
        self.next_progress = now + PROGRESS_EVERY;
        true
    }

    /// Phase 1: starts clients at `--ramp-rate` (and watchers at
    /// `--watch-ramp-rate`) until every first attempt has finished or the
    /// ramp deadline passes.
    async fn ramp(&mut self, crew: &mut Crew) -> Option<Halt> {
        let args = self.args;
        let mut clients = Schedule::new(
            u64::from(args.clients) + u64::from(args.readers),
            args.ramp_rate,
        );
        let watch_rate = args.watch_ramp_rate.unwrap_or(args.ramp_rate);
        let mut watchers = Schedule::new(u64::from(args.watchers), watch_rate);
        let total = clients.total + watchers.total;
        let start = Instant::now();
        let deadline = start
            + clients.span().max(watchers.span())
            + args.handshake_timeout
            + Duration::from_secs(1);
        loop {
            tokio::select! {
                _ = self.ticker.tick() => {}
                _ = &mut self.interrupt => return Some(Halt::Interrupted),
            }
            let now = Instant::now();
            for n in clients.due(now - start) {
                let (client, kind) = self.client_of(n);
                let stop = crew.stop_clients.subscribe();
                crew.clients
                    .spawn(run_client(self.fleet.clone(), client, kind, stop));
            }
            for w in watchers.due(now - start) {
                // Watchers take the source slots after the other clients'.
                let source = (clients.total + w) as u32;
                let stop = crew.stop_watchers.subscribe();
                crew.watchers
                    .spawn(run_watcher(self.fleet.clone(), w as u32, source, stop));
            }
            if self.progress_due(now) {
                let held = self.stats().held.load(Ordering::Relaxed);
                let failed = self.stats().failure_count();
                (self.progress)(LoadProgress::Ramp {
                    held,
                    total,
                    failed,
                });
            }
            if self.over_errors() {
                return Some(Halt::MaxErrors);
            }
            let attempted = self.stats().first_attempts.load(Ordering::Relaxed);
            if attempted >= total || now >= deadline {
                return None;
            }
        }
    }

    /// The `n`th client started: beacon clients first, then readers; client
    /// indices are 0-based per kind.
    fn client_of(&self, n: u64) -> (u32, Kind) {
        let clients = u64::from(self.args.clients);
        if n < clients {
            (n as u32, Kind::Beacon)
        } else {
            ((n - clients) as u32, Kind::Reader)
        }
    }

    /// Phase 2: `--duration` of measuring, with churn.
    async fn steady(&mut self, start: Instant) -> Option<Halt> {
        let length = self.args.duration;
        let deadline = start + length;
        let mut churn = Churn::default();
        let (mut last_replies, mut last_at) = (0, start);
        let first = self.steady_progress(Duration::ZERO, 0.0);
        (self.progress)(first);
        loop {
            if Instant::now() >= deadline {
                return None;
            }
            tokio::select! {
                _ = self.ticker.tick() => {}
                _ = tokio::time::sleep_until(deadline) => return None,
                _ = &mut self.interrupt => return Some(Halt::Interrupted),
            }
            let now = Instant::now();
            churn.wake(
                &self.fleet,
                (now - start).as_secs_f64() * self.args.churn_rate,
            );
            if self.progress_due(now) {
                let replies = self.stats().replies();
                let per_sec = (replies - last_replies) as f64 / (now - last_at).as_secs_f64();
                (last_replies, last_at) = (replies, now);
                let report = self.steady_progress(now - start, per_sec);
                (self.progress)(report);
                if self.over_errors() {
                    return Some(Halt::MaxErrors);
                }
            }
        }
    }

    /// With watchers: stops the other clients, lets the watchers settle
    /// (not at all after Ctrl-C), and says how they ended.
    async fn watchers_settle(&mut self, crew: &mut Crew, halt: Option<Halt>) -> Option<WatchFrame> {
        if self.fleet.watch.is_empty() {
            return None;
        }
        crew.stop_clients().await;
        let (length, interrupt) = match halt {
            Some(Halt::Interrupted) => (Duration::ZERO, None),
            _ => (self.args.settle, Some(&mut self.interrupt)),
        };
        let settled = settle(&self.fleet, length, interrupt, &mut self.progress).await;
        Some(WatchFrame {
            feed: self.args.watch_feed.as_str(),
            mode: self.args.watch_mode.clone(),
            end: settled.end,
            final_version: settled.final_version,
            final_version_from: settled.final_version_from,
            settle_secs: settled.secs,
        })
    }

    fn steady_progress(&self, elapsed: Duration, per_sec: f64) -> LoadProgress {
        LoadProgress::Steady {
            elapsed,
            length: self.args.duration,
            held: self.stats().held.load(Ordering::Relaxed),
            per_sec,
            errors: self.stats().errors(),
        }
    }
}

/// Churn's schedule: which beacon client to wake next, and how many so far.
#[derive(Default)]
struct Churn {
    churned: u64,
    next: usize,
}

impl Churn {
    /// Wakes clients until `due` (a running total) have been asked to reconnect.
    fn wake(&mut self, fleet: &SimulatedFleet, due: f64) {
        if fleet.churn.is_empty() {
            return;
        }
        let due = due as u64;
        // Waking a client twice before it reconnects is one reconnect:
        // a burst wider than the fleet is wasted.
        let burst = due
            .saturating_sub(self.churned)
            .min(fleet.churn.len() as u64);
        for _ in 0..burst {
            fleet.churn[self.next].notify_one();
            self.next = (self.next + 1) % fleet.churn.len();
        }
        self.churned = due;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::args::tests::args;
    use std::net::SocketAddr;

    /// The echo baseline on `127.0.0.1:0`.
    async fn echo_server() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(crate::load::echo::serve(listener));
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
