//! The `rollcall` command line: parses arguments, calls the library, and
//! prints what it returns (tables, summaries, the progress bar).

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rollcall::client::cli::{self, BeaconArgs, CliError, PresenceArgs};
use rollcall::client::doctor_cli::{self, DoctorArgs};
use rollcall::client::{visible, visible_json};
use rollcall::config::ServeConfig;
use rollcall::config_file::{self, ConfigFileError, ServeArgs};
use rollcall::gateway::Server;
use rollcall::load::vfleet::FleetSimArgs;
use rollcall::load::{LoadArgs, LoadProgress};
use serde_json::Value;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Presence engine for OpenClaw-protocol gateways.
#[derive(Parser)]
#[command(name = "rollcall", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (HTTP + WebSocket on one port).
    Serve(Box<ServeArgs>),
    /// Print a gateway's presence list (as a table, or JSON).
    Presence(PresenceArgs),
    /// Send one system-event beacon to a gateway.
    Beacon(BeaconArgs),
    /// Ask a gateway's doctor about its presence rows: duplicates, connected
    /// rows nothing writes, disconnected rows kept until the TTL, cap pressure.
    #[command(after_help = doctor_cli::EXIT_CODES)]
    Doctor(DoctorArgs),
    /// Simulate a fleet of clients against a gateway and report throughput
    /// and latency; `load fleet-sim`: a virtual fleet of gateways on a Redis.
    Load(Box<LoadCommand>),
}

/// `rollcall load`: clients against a gateway, or a virtual fleet.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct LoadCommand {
    #[command(subcommand)]
    mode: Option<LoadMode>,
    #[command(flatten)]
    args: LoadArgs,
}

#[derive(Subcommand)]
enum LoadMode {
    /// Play G gateways against a Redis exactly as real gateways do (leases,
    /// row hashes, expiry sets, change messages), holding N rows and
    /// changing them at a given rate; with `--observe`, measure a real
    /// gateway's propagation delay and convergence.
    FleetSim(FleetSimArgs),
}

/// The command line, with `serve --config FILE`'s values where no flag or
/// environment variable set them.
fn parse_cli() -> Result<Cli, ConfigFileError> {
    let matches = config_file::parse_with_config(Cli::command(), std::env::args_os().collect())?;
    Ok(Cli::from_arg_matches(&matches)?)
}

fn main() -> ExitCode {
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(ConfigFileError::Parse(e)) => e.exit(),
        Err(e) => {
            eprintln!("rollcall: {e}");
            return ExitCode::from(2);
        }
    };
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("rollcall: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args.serve)),
        Command::Presence(args) => report(runtime.block_on(presence(args))),
        Command::Beacon(args) => {
            let instance_id = args.instance_id.clone();
            let done = runtime.block_on(cli::beacon(args));
            if done.is_ok() {
                println!("beacon for {instance_id} applied");
            }
            report(done)
        }
        Command::Doctor(args) => run_doctor(&runtime, &args),
        Command::Load(command) => match command.mode {
            Some(LoadMode::FleetSim(args)) => runtime.block_on(fleet_sim(args)),
            None => runtime.block_on(load(command.args)),
        },
    }
}

/// `rollcall doctor`: the report as text, or the gateway's JSON as is; exit
/// 0 when clean, 1 with findings, 2 and up on errors.
fn run_doctor(runtime: &tokio::runtime::Runtime, args: &DoctorArgs) -> ExitCode {
    match runtime.block_on(doctor_cli::fetch(args)) {
        Ok(fetched) => {
            let text = if args.json {
                let body = String::from_utf8_lossy(&fetched.body);
                format!("{}\n", visible_json(&body)).into_bytes()
            } else {
                doctor_cli::render(&fetched.report).into_bytes()
            };
            let mut out = std::io::stdout().lock();
            if let Err(e) = out.write_all(&text).and_then(|()| out.flush()) {
                // The verdict stands; only its text was lost.
                eprintln!("rollcall: cannot write to stdout: {e}");
            }
            ExitCode::from(fetched.exit_code())
        }
        Err(e) => {
            eprintln!("rollcall: {}", visible(&e.to_string()));
            ExitCode::from(e.exit_code())
        }
    }
}

fn report(result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rollcall: {}", visible(&e.to_string()));
            ExitCode::from(e.exit_code())
        }
    }
}

async fn serve(config: ServeConfig) -> ExitCode {
    let server = match Server::bind(config).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("rollcall: {}", visible(&e.to_string()));
            return ExitCode::FAILURE;
        }
    };
    let addr = server.local_addr();
    match server.tls() {
        Some(tls) => {
            let made = if tls.generated() { "made" } else { "loaded" };
            tracing::info!(
                fingerprint = %tls.fingerprint(),
                "TLS certificate {made}; clients pin its SHA-256: --tls-fingerprint {}",
                tls.fingerprint()
            );
            tracing::info!(%addr, "rollcall listening (TLS only: https and wss)");
        }
        None => tracing::info!(%addr, "rollcall listening (HTTP and WebSocket)"),
    }
    server.run(shutdown_signal()).await;
    ExitCode::SUCCESS
}

/// `rollcall presence`: the list as JSON or a table; with `--watch`, each
/// table is drawn over the last on a terminal.
async fn presence(args: PresenceArgs) -> Result<(), CliError> {
    let (json, redraw) = (args.json, args.watch);
    cli::presence(args, |list| print_list(list, json, redraw)).await
}

fn print_list(list: &Value, json: bool, redraw: bool) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let text = if json {
        format!("{}\n", visible_json(&list.to_string()))
    } else {
        let mut table = String::new();
        if redraw && std::io::stdout().is_terminal() {
            table.push_str("\x1b[2J\x1b[H");
        }
        table.push_str(&cli::render_table(list, rollcall::clock::now_millis()));
        table
    };
    out.write_all(text.as_bytes()).and_then(|()| out.flush())
}

async fn load(args: LoadArgs) -> ExitCode {
    let json = args.json;
    let bar = progress_bar(json);
    let shown = rollcall::load::run_with_progress(args, |p| show_progress(&bar, p)).await;
    bar.finish_and_clear();
    match shown {
        Ok(summary) if json => match serde_json::to_string_pretty(&summary) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rollcall: cannot encode the summary: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(summary) => {
            print!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rollcall: {}", visible(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}

async fn fleet_sim(args: FleetSimArgs) -> ExitCode {
    let json = args.json;
    match rollcall::load::vfleet::run(args).await {
        Ok(report) if json => match serde_json::to_string_pretty(&report) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rollcall: cannot encode the report: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rollcall: {}", visible(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}

/// The load run's progress bar on stderr; hidden with `--json` or when
/// stderr is not a terminal.
fn progress_bar(json: bool) -> ProgressBar {
    let target = if json || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(None, target);
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

fn show_progress(bar: &ProgressBar, progress: LoadProgress) {
    match progress {
        LoadProgress::Ramp {
            held,
            total,
            failed,
        } => {
            bar.set_length(total);
            bar.set_position(held);
            bar.set_message(format!("failed {failed}"));
        }
        LoadProgress::Steady {
            elapsed,
            length,
            held,
            per_sec,
            errors,
        } => {
            let message = format!("held {held}  {per_sec:.0} req/s  errors {errors}");
            show_timed(bar, "steady", elapsed, length, message);
        }
        LoadProgress::Settle {
            elapsed,
            length,
            held,
            converged,
        } => {
            let message = format!("watchers {converged}/{held} converged");
            show_timed(bar, "settle", elapsed, length, message);
        }
        LoadProgress::Done => bar.finish_and_clear(),
    }
}

/// A phase of known length, drawn as time elapsed out of it.
fn show_timed(
    bar: &ProgressBar,
    phase: &'static str,
    elapsed: Duration,
    length: Duration,
    message: String,
) {
    bar.set_prefix(phase);
    bar.set_length(length.as_millis() as u64);
    bar.set_position(elapsed.as_millis() as u64);
    bar.set_message(message);
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
