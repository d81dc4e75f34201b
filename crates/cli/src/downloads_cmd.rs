//! `highway downloads` and `highway cancel`: a running node's downloads, outside the
//! shell (issue 13: a download started by `highway get` could not be listed or stopped).

use highway_node::views::DownloadView;

use crate::control_client::NodeArgs;
use crate::render;

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    target: NodeArgs,
    /// Print the JSON array of GET /v1/downloads (see docs/PROTOCOL.md).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    #[command(flatten)]
    target: NodeArgs,
    /// The download's id, as `highway downloads` lists it.
    #[arg(value_name = "ID")]
    id: u64,
}

pub async fn list(args: ListArgs) -> anyhow::Result<()> {
    crate::control_cmd::show(
        &args.target,
        "/v1/downloads",
        args.json,
        |list: &Vec<DownloadView>| render::downloads_table(list),
    )
    .await
}

pub async fn cancel(args: CancelArgs) -> anyhow::Result<()> {
    let client = args.target.client()?;
    let view = client.cancel_download(args.id).await?;
    println!(
        "cancelled download {} ({} fetched into {}.part; `highway get` with the same --out \
         resumes it)",
        view.id,
        crate::units::human_bytes(view.done_bytes),
        crate::terminal_text::safe_path(&view.out)
    );
    Ok(())
}
