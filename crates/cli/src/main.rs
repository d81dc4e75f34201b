//! `highway`: one binary for every role.

mod bench;
mod control_client;
mod control_cmd;
mod demo;
mod downloads_cmd;
mod gatekeeper_cmd;
mod get_cmd;
mod hit_groups;
mod node_cmd;
mod overlay_flags;
mod peers_cmd;
mod render;
mod search_cmd;
mod share_cmd;
mod shell;
mod sim_cmd;
mod terminal_text;
mod units;

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
    /// Simulate thousands of peers in virtual time and write a report (docs/SCALE.md).
    Sim(sim_cmd::Args),
    /// Search the network through a running node; hits print as they arrive.
    Search(search_cmd::Args),
    /// Download a file by content hash or ticket through a running node, verified
    /// (Ctrl-C cancels it; the same command again resumes).
    Get(get_cmd::Args),
    /// Print tickets for files a running node shares (a folder not shared yet becomes
    /// its share); `highway get TICKET` fetches one anywhere on the network.
    Share(share_cmd::Args),
    /// List a running node's downloads: state, progress, rate, destination.
    Downloads(downloads_cmd::ListArgs),
    /// Cancel one of a running node's downloads (what it fetched stays, to resume).
    Cancel(downloads_cmd::CancelArgs),
    /// Pause one of a running node's downloads (kept across node restarts).
    Pause(downloads_cmd::CancelArgs),
    /// Resume a paused, cancelled or failed download from what it fetched.
    Resume(downloads_cmd::CancelArgs),
    /// An interactive shell: share a folder, search, download (scriptable from stdin).
    Shell(shell::Args),
    /// A whole network on this machine: search, verified download, then a shell.
    Demo(demo::Args),
    /// Measure performance (prints figures; see docs/BENCHMARKS.md).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Logs go to stderr, filtered by `HIGHWAY_LOG` or `default`; coloured only when stderr
/// is a terminal (a log file gets no escape codes).
fn init_logging(default: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("HIGHWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// A command that ran to its end with an outcome scripts must tell apart from success
/// (nothing more to print): its exit status.
#[derive(Debug)]
pub struct ExitStatus(pub u8);

/// `highway search` found nothing.
pub const EXIT_NO_HITS: u8 = 3;

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for ExitStatus {}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The shell and the demo run nodes next to a prompt: only warnings by default, so
    // routine logs do not interleave with what the user reads.
    let quiet = matches!(cli.command, Command::Shell(_) | Command::Demo(_));
    init_logging(if quiet { "warn" } else { "info" });
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
            Command::Search(args) => search_cmd::run(args).await,
            Command::Get(args) => get_cmd::run(args).await,
            Command::Downloads(args) => downloads_cmd::list(args).await,
            Command::Cancel(args) => downloads_cmd::cancel(args).await,
            Command::Share(args) => share_cmd::run(args).await,
            Command::Pause(args) => downloads_cmd::pause(args, true).await,
            Command::Resume(args) => downloads_cmd::pause(args, false).await,
            Command::Shell(args) => shell::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Bench(cmd) => bench::run(cmd).await,
            Command::Sim(args) => sim_cmd::run(args),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<ExitStatus>().is_some() => {
            let code = e.downcast_ref::<ExitStatus>().map_or(1, |s| s.0);
            std::process::ExitCode::from(code)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
