//! `rollcall load fleet-sim`: a virtual fleet. It plays G gateways against
//! a real Redis exactly as real gateways do (`gateway.rs`, through the
//! fleet's own `Link`: leases, row hashes, expiry sets, stamps, change
//! messages), holding N rows in total and changing them at a given rate,
//! for a bounded time, so that one real gateway can be measured as a
//! member of a fleet far larger than one box could run. With `--observe`
//! it also measures that gateway through its `/metrics` (`observe.rs`).
//!
//! Phases: every gateway takes its lease and writes its rows; then the
//! changes run for `--duration`, each gateway publishing one batch per
//! `--batch-interval`; then every gateway still running gives its lease
//! back (as a gracefully stopping gateway does), and the observer gets
//! `--settle` for the last messages before its histogram is read.

mod fleet_sim_args;
mod gateway;
mod observe;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::sync::watch;

pub use fleet_sim_args::{FleetSimArgs, MAX_GATEWAYS, MAX_RATE, MAX_ROWS, SimError};
pub use gateway::node_id;
pub use observe::{JoinConvergence, Propagation};

use crate::fleet::{Keys, redact};
use gateway::{Counters, Phase, Plan, Shared};

/// What a run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SimReport {
    /// Simulated gateways.
    pub gateways: u32,
    /// Rows held in total.
    pub rows: u64,
    /// Ms every gateway took to write its rows.
    pub load_ms: u64,
    /// Rows written (load and changes).
    pub rows_written: u64,
    /// Row changes published.
    pub changes: u64,
    /// Changes per second reached during the change phase.
    pub changes_per_sec: f64,
    /// Change messages published (one per batch of one gateway).
    pub messages: u64,
    /// Redis steps that failed.
    pub errors: u64,
    /// Gateways that stopped renewing their lease (`--lapse`).
    pub lapsed: u64,
    /// What the observer saw, with `--observe`.
    pub observed: Option<Observed>,
}

/// What the observer measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Observed {
    /// Change messages the gateway applied between its convergence and
    /// the end of the changes (0: it did not converge, or it keeps no
    /// propagation histogram).
    pub messages: u64,
    /// Propagation delay of those messages, ms (gateway's histogram):
    /// p50, p99, mean.
    pub p50_ms: f64,
    /// See `p50_ms`.
    pub p99_ms: f64,
    /// See `p50_ms`.
    pub mean_ms: f64,
    /// The gateway's convergence on every simulated row.
    pub convergence: JoinConvergence,
}

/// What a caller can do to a run besides its options (tests, embedders).
#[derive(Debug, Clone)]
pub struct Control {
    /// `true` ends the change phase now, before `--duration`.
    pub stop: watch::Receiver<bool>,
    /// `true` makes the `--lapse` gateways stop now, before `--lapse-after`.
    pub lapse: watch::Receiver<bool>,
}

/// Runs a virtual fleet as `args` says (checked first).
pub async fn run(args: FleetSimArgs) -> Result<SimReport, SimError> {
    let (_stop, stop) = watch::channel(false);
    let (_lapse, lapse) = watch::channel(false);
    run_with(args, Control { stop, lapse }).await
}

/// [`run`], ended or lapsed early through `control`.
pub async fn run_with(args: FleetSimArgs, control: Control) -> Result<SimReport, SimError> {
    args.check()?;
    let redis_error = |error: String| SimError::Redis {
        url: redact(&args.redis),
        error,
    };
    let client =
        redis::Client::open(args.redis.as_str()).map_err(|e| redis_error(e.to_string()))?;
    let (phase, _) = watch::channel(Phase::Load);
    let shared = Arc::new(Shared {
        client,
        keys: Keys::new(&args.prefix),
        lease: args.lease,
        ttl: i64::try_from(args.presence_ttl.as_millis()).unwrap_or(i64::MAX),
        batch: args.batch_interval,
        counters: Counters::default(),
        phase,
    });
    let target = args
        .observe
        .as_deref()
        .and_then(observe::ObservedGateway::parse);
    let target = target.map(|t| t.with_token(args.observe_token.clone()));
    let observer = target.clone().map(|target| {
        let seen = Arc::new(std::sync::Mutex::new(observe::Observation::default()));
        let (into, sizes) = (Arc::clone(&seen), (args.rows, args.gateways));
        let task = tokio::spawn(async move { observe::convergence(target, sizes, &into).await });
        (task, seen)
    });
    let gateways = spawn_gateways(&args, &shared, &control.lapse);
    let load_ms = wait_loaded(&shared, &gateways, args.gateways).await;
    let changing = Instant::now();
    let mut stop = control.stop;
    tokio::select! {
        () = tokio::time::sleep(args.duration) => {}
        () = async { let _ = stop.wait_for(|s| *s).await; } => {}
    }
    let _ = shared.phase.send(Phase::Stop);
    let changed = changing.elapsed();
    let mut failures = Vec::new();
    for task in gateways {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(e) => failures.push(e.to_string()),
        }
    }
    let counters = &shared.counters;
    if counters.loaded.load(Relaxed) < u64::from(args.gateways) {
        return Err(redis_error(failures.join("; ")));
    }
    let observed = match (observer, target) {
        (Some(observer), Some(target)) => Some(settle(&args, &target, observer).await),
        _ => None,
    };
    let changes = counters.changes.load(Relaxed);
    Ok(SimReport {
        gateways: args.gateways,
        rows: args.rows,
        load_ms,
        rows_written: counters.rows_written.load(Relaxed),
        changes,
        changes_per_sec: changes as f64 / changed.as_secs_f64().max(1e-9),
        messages: counters.messages.load(Relaxed),
        errors: counters.errors.load(Relaxed) + failures.len() as u64,
        lapsed: counters.lapsed.load(Relaxed),
        observed,
    })
}

fn spawn_gateways(
    args: &FleetSimArgs,
    shared: &Arc<Shared>,
    lapse_now: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<Result<(), String>>> {
    let g = u64::from(args.gateways);
    let rate = args.changes_per_sec as f64 / g as f64;
    (0..args.gateways)
        .map(|index| {
            let plan = Plan {
                index,
                rows: args.rows / g + u64::from(u64::from(index) < args.rows % g),
                rate,
            };
            let (shared, lapse) = (Arc::clone(shared), index < args.lapse);
            let (lapse_after, lapse_now) = (args.lapse_after, lapse_now.clone());
            tokio::spawn(async move {
                let run = gateway::run(&shared, plan);
                if lapse {
                    lapsing(&shared, run, (lapse_after, lapse_now)).await
                } else {
                    run.await
                }
            })
        })
        .collect()
}

/// Runs a gateway that stops (without giving its lease back) `after` the
/// change phase began, or when `now` turns true.
async fn lapsing(
    shared: &Shared,
    run: impl Future<Output = Result<(), String>>,
    (after, mut now): (Duration, watch::Receiver<bool>),
) -> Result<(), String> {
    let mut phase = shared.phase.subscribe();
    tokio::pin!(run);
    let timer = async {
        let _ = phase.wait_for(|p| *p != Phase::Load).await;
        tokio::time::sleep(after).await;
    };
    let deadline = async {
        tokio::select! {
            () = timer => {}
            () = async { let _ = now.wait_for(|n| *n).await; } => {}
        }
    };
    tokio::select! {
        done = &mut run => done,
        () = deadline => {
            shared.counters.lapsed.fetch_add(1, Relaxed);
            Ok(())
        }
    }
}

/// Waits until every gateway wrote its rows (or one failed), then starts
/// the changes; returns how long the load took (ms).
async fn wait_loaded(
    shared: &Shared,
    gateways: &[tokio::task::JoinHandle<Result<(), String>>],
    count: u32,
) -> u64 {
    let start = Instant::now();
    while shared.counters.loaded.load(Relaxed) < u64::from(count)
        && !gateways.iter().any(|g| g.is_finished())
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = shared.phase.send(Phase::Change);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// After the changes: gives the gateway a moment for the last messages,
/// then reads its propagation histogram since its convergence.
async fn settle(
    args: &FleetSimArgs,
    target: &observe::ObservedGateway,
    (convergence, seen): (
        tokio::task::JoinHandle<()>,
        Arc<std::sync::Mutex<observe::Observation>>,
    ),
) -> Observed {
    tokio::time::sleep(args.settle).await;
    convergence.abort();
    let after = observe::propagation_now(target).await;
    let seen = seen.lock().expect("no panics under the lock");
    let window = match &seen.at_convergence {
        Some(before) => after.since(before),
        None => observe::Propagation::default(),
    };
    Observed {
        messages: window.count(),
        p50_ms: window.quantile_ms(0.5),
        p99_ms: window.quantile_ms(0.99),
        mean_ms: window.mean_ms(),
        convergence: seen.convergence,
    }
}

impl fmt::Display for SimReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "virtual fleet: {} gateways, {} rows (loaded in {} ms)",
            self.gateways, self.rows, self.load_ms
        )?;
        writeln!(f, "  rows written     {}", self.rows_written)?;
        writeln!(
            f,
            "  changes          {} ({:.0}/s)",
            self.changes, self.changes_per_sec
        )?;
        writeln!(f, "  messages         {}", self.messages)?;
        writeln!(f, "  errors           {}", self.errors)?;
        writeln!(f, "  lapsed gateways  {}", self.lapsed)?;
        if let Some(o) = &self.observed {
            writeln!(f, "observed gateway:")?;
            writeln!(
                f,
                "  propagation      p50 {:.1} ms, p99 {:.1} ms, mean {:.1} ms ({} messages after it converged)",
                o.p50_ms, o.p99_ms, o.mean_ms, o.messages
            )?;
            match (o.convergence.first_answer_ms, o.convergence.converged_ms) {
                (Some(first), Some(done)) => writeln!(
                    f,
                    "  convergence      all rows listed {done} ms after its first answer ({first} ms into the run)"
                )?,
                (Some(first), None) => writeln!(
                    f,
                    "  convergence      not all rows listed: {} of {} (first answer {first} ms into the run)",
                    o.convergence.rows_listed, self.rows
                )?,
                _ => writeln!(f, "  convergence      the gateway never answered")?,
            }
        }
        Ok(())
    }
}
