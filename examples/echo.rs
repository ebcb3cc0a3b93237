//! The transport baseline for `rollcall load --echo` (see
//! `rollcall::load::echo`): a bare tokio + hyper + fastwebsockets echo
//! server.
//!
//! ```text
//! cargo run --release --example echo -- --bind 127.0.0.1:18790
//! ```

use anyhow::Context as _;
use clap::Parser;
use std::net::SocketAddr;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A bare WebSocket echo server.
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18790")]
    bind: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Accept failures are logged as warnings on stderr.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    // As many connections as the hard limit allows; a shortfall is not an
    // error here, the load generator reports failed connections itself.
    let _ = rollcall::load::raise_nofile(0);
    // The same listener as rollcall's (deep accept backlog, SO_REUSEADDR).
    let listener =
        rollcall::gateway::listen(args.bind).with_context(|| format!("bind {}", args.bind))?;
    println!("echo listening on ws://{}/", listener.local_addr()?);
    rollcall::load::echo::serve(listener).await;
    Ok(())
}
