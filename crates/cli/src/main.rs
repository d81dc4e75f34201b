//! `highway`: one binary for every role.

mod bench;
mod control_cmd;
mod gatekeeper_cmd;
mod node_cmd;
mod peers_cmd;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "highway",
    version,
    about = "Highway: a peer-to-peer file-sharing network"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Gatekeeper registry (embedded store by default, or Redis).
    Gatekeeper(gatekeeper_cmd::Args),
    /// List the live peers a Gatekeeper knows.
    Peers(peers_cmd::Args),
    /// Run a headless peer (Ctrl-C or SIGTERM leaves the overlay gracefully).
    Node(node_cmd::Args),
    /// Show a running node's id, addresses, phase and degree.
    Status(control_cmd::StatusArgs),
    /// Show a running node's neighbours and their state.
    #[command(alias = "neighbours")]
    Neighbors(control_cmd::NeighborsArgs),
    /// Measure performance (prints figures; see docs/BENCHMARKS.md).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HIGHWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Gatekeeper(args) => gatekeeper_cmd::run(args).await,
            Command::Peers(args) => peers_cmd::run(args).await,
            Command::Node(args) => node_cmd::run(args).await,
            Command::Status(args) => control_cmd::status(args).await,
            Command::Neighbors(args) => control_cmd::neighbors(args).await,
            Command::Bench(cmd) => bench::run(cmd).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
