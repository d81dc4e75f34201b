//! `highway downloads`, `cancel`, `pause` and `resume`: a running node's downloads,
//! outside the shell (issue 13: a download started by `highway get` could not be listed
//! or stopped).

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

/// `cancel`, `pause` and `resume` take the same arguments.
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
        "cancelled download {} ({} fetched into {}.part; `highway resume {}` or the same \
         `highway get` resumes it)",
        view.id,
        crate::units::human_bytes(view.done_bytes),
        crate::terminal_text::safe_path(&view.out),
        view.id
    );
    Ok(())
}

/// `highway pause ID` (`pause`) and `highway resume ID`.
pub async fn pause(args: CancelArgs, pause: bool) -> anyhow::Result<()> {
    let client = args.target.client()?;
    let view = client.pause_download(args.id, pause).await?;
    let fetched = crate::units::human_bytes(view.done_bytes);
    let text = match view.state.as_str() {
        "paused" => format!(
            "download {} is paused ({fetched} fetched); `highway resume {}` goes on",
            view.id, view.id
        ),
        "queued" => format!(
            "download {} is queued: it goes on as soon as fewer than 16 downloads run",
            view.id
        ),
        state => format!("download {} is {state} ({fetched} fetched)", view.id),
    };
    println!("{text}");
    Ok(())
}
