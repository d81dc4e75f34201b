//! `highway status` and `highway neighbors`: a running node, through its control API.

use highway_node::{NeighbourJson, StatusView};

use crate::control_client::NodeArgs;
use crate::render;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    target: NodeArgs,
    /// Print the JSON object of GET /v1/status (see docs/PROTOCOL.md).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct NeighborsArgs {
    #[command(flatten)]
    target: NodeArgs,
    /// Print the JSON array of GET /v1/neighbors (see docs/PROTOCOL.md).
    #[arg(long)]
    json: bool,
}

pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let client = args.target.client()?;
    // Fetched as raw JSON too, so `--json` keeps fields this version does not know.
    let (raw, status): (_, StatusView) = client.get_both("/v1/status").await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&raw)?);
    } else {
        println!("{}", render::status_report(&status));
    }
    Ok(())
}

pub async fn neighbors(args: NeighborsArgs) -> anyhow::Result<()> {
    let client = args.target.client()?;
    let (raw, list): (_, Vec<NeighbourJson>) = client.get_both("/v1/neighbors").await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&raw)?);
    } else {
        println!("{}", render::neighbors_table(&list));
    }
    Ok(())
}
