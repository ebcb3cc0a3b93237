//! The `rollcall` command line: parses arguments and calls the library.

use clap::{Parser, Subcommand};
use rollcall::client::cli::{BeaconArgs, PresenceArgs};
use rollcall::client::load::LoadArgs;
use rollcall::config::ServeConfig;
use rollcall::gateway::Server;
use std::io::IsTerminal;
use std::process::ExitCode;

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
    Serve(ServeConfig),
    /// Print a gateway's presence list (as a table, or JSON).
    Presence(PresenceArgs),
    /// Send one system-event beacon to a gateway.
    Beacon(BeaconArgs),
    /// Simulate a fleet of clients against a gateway and report throughput and latency.
    Load(LoadArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        Command::Serve(config) => runtime.block_on(serve(config)),
        Command::Presence(args) => report(runtime.block_on(rollcall::client::cli::presence(args))),
        Command::Beacon(args) => report(runtime.block_on(rollcall::client::cli::beacon(args))),
        Command::Load(args) => runtime.block_on(load(args)),
    }
}

fn report(result: Result<(), rollcall::client::cli::CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rollcall: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn serve(config: ServeConfig) -> ExitCode {
    let server = match Server::bind(config).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("rollcall: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(addr = %server.local_addr(), "rollcall listening (HTTP and WebSocket)");
    server.run(shutdown_signal()).await;
    ExitCode::SUCCESS
}

async fn load(args: LoadArgs) -> ExitCode {
    let json = args.json;
    match rollcall::client::load::run(args).await {
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
            summary.print_human();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rollcall: {e}");
            ExitCode::FAILURE
        }
    }
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
