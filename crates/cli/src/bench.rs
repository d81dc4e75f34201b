//! `highway bench`: measured figures, printed with the command that produced them.

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {}
}
