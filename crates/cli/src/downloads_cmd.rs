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
    let client = args.target.client()?;
    let (raw, list): (_, Vec<DownloadView>) = client.get_both("/v1/downloads").await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&raw)?);
    } else {
        println!("{}", render::downloads_table(&list));
    }
    Ok(())
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
