//! `highway status` and `highway neighbors`: a running node, through its control API.

use std::net::SocketAddr;

use highway_node::{NeighbourJson, StatusView};

use crate::control_client::{ControlClient, TokenArg};
use crate::render;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The node's control address, as `highway node` printed it (`control: ADDR`).
    #[arg(long, env = "HIGHWAY_NODE", value_name = "CONTROL_ADDR")]
    node: SocketAddr,
    #[command(flatten)]
    token: TokenArg,
    /// Print the JSON object of GET /v1/status (see docs/PROTOCOL.md).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct NeighborsArgs {
    /// The node's control address, as `highway node` printed it (`control: ADDR`).
    #[arg(long, env = "HIGHWAY_NODE", value_name = "CONTROL_ADDR")]
    node: SocketAddr,
    #[command(flatten)]
    token: TokenArg,
    /// Print the JSON array of GET /v1/neighbors (see docs/PROTOCOL.md).
    #[arg(long)]
    json: bool,
}

pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let client = ControlClient::new(args.node, &args.token)?;
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
    let client = ControlClient::new(args.node, &args.token)?;
    let (raw, list): (_, Vec<NeighbourJson>) = client.get_both("/v1/neighbors").await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&raw)?);
    } else {
        println!("{}", render::neighbors_table(&list));
    }
    Ok(())
}
