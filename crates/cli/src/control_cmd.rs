//! `highway status` and `highway neighbors`: a running node, through its control API.

use highway_node::NeighbourJson;

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
    show(&args.target, "/v1/status", args.json, render::status_report).await
}

pub async fn neighbors(args: NeighborsArgs) -> anyhow::Result<()> {
    show(
        &args.target,
        "/v1/neighbors",
        args.json,
        |list: &Vec<NeighbourJson>| render::neighbors_table(list),
    )
    .await
}

/// Prints what `GET path` answers: its JSON as the node sent it with `json` (so fields
/// this version does not know are kept), else `text` of it.
pub async fn show<T: serde::de::DeserializeOwned>(
    target: &NodeArgs,
    path: &str,
    json: bool,
    text: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    let client = target.client()?;
    let (raw, value): (_, T) = client.get_both(path).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&raw)?);
    } else {
        println!("{}", text(&value));
    }
    Ok(())
}
