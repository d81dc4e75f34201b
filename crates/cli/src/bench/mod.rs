//! `highway bench`: measured figures, printed with the command that produced them.

mod cpu;
mod gatekeeper;
mod load;
mod report;
mod server;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Gatekeeper throughput and latency: registers N peers, then measures signed joins
    /// and status updates (lease token and signed) over loopback HTTP.
    Gatekeeper(gatekeeper::Args),
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Gatekeeper(args) => gatekeeper::run(args).await,
    }
}
