//! `highway status` and `highway neighbors`: a running node, through its control API.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use highway_node::{NeighbourJson, StatusView};
use serde::de::DeserializeOwned;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The node's control address, as `highway node` printed it (`control: ADDR`).
    #[arg(long, value_name = "CONTROL_ADDR")]
    node: SocketAddr,
    /// Print the JSON object of GET /v1/status (see docs/PROTOCOL.md).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct NeighborsArgs {
    /// The node's control address, as `highway node` printed it (`control: ADDR`).
    #[arg(long, value_name = "CONTROL_ADDR")]
    node: SocketAddr,
    /// Print the JSON array of GET /v1/neighbors (see docs/PROTOCOL.md).
    #[arg(long)]
    json: bool,
}

/// GETs `path` from the control API at `node`; the JSON value and its typed form.
async fn fetch<T: DeserializeOwned>(
    node: SocketAddr,
    path: &str,
) -> anyhow::Result<(serde_json::Value, T)> {
    if !node.ip().is_loopback() {
        bail!(
            "{node} is not a loopback address; a node's control API only listens on loopback \
             (give the `control:` address `highway node` printed, e.g. 127.0.0.1:PORT)"
        );
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let url = format!("http://{node}{path}");
    let response = http.get(&url).send().await.map_err(|e| {
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            reason = format!("{reason}: {cause}");
            source = cause.source();
        }
        anyhow::anyhow!(
            "cannot reach a node's control API at {node} ({reason}); is `highway node` \
             running? it prints its control address at start"
        )
    })?;
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .await
        .with_context(|| format!("{url} did not answer with JSON; is {node} a Highway node?"))?;
    if !status.is_success() {
        let message = body["message"].as_str().unwrap_or("no message");
        bail!("{node} answered {path} with {status}: {message}");
    }
    let typed = serde_json::from_value(body.clone())
        .with_context(|| format!("{url} answered JSON this version cannot read"))?;
    Ok((body, typed))
}

pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let (raw, status): (_, StatusView) = fetch(args.node, "/v1/status").await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&raw)?);
        return Ok(());
    }
    let s = &status.stats;
    println!("id:         {}", status.id);
    println!("udp:        {}", status.addr.udp_addr());
    println!("tcp:        {}", status.addr.tcp_addr());
    println!("phase:      {}", status.phase);
    println!(
        "degree:     {} (target {}, max {})",
        status.degree, status.target_degree, status.max_degree
    );
    println!("gatekeeper: {}", status.gatekeeper);
    println!(
        "heartbeats: {} sent, {} received; suspicions {}, refuted {}, failures {}",
        s.heartbeats_sent, s.heartbeats_received, s.suspicions, s.refuted, s.failures
    );
    Ok(())
}

pub async fn neighbors(args: NeighborsArgs) -> anyhow::Result<()> {
    let (raw, list): (_, Vec<NeighbourJson>) = fetch(args.node, "/v1/neighbors").await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&raw)?);
        return Ok(());
    }
    println!(
        "{:<12}  {:<32}  {:<7}  {:>10}  {:>10}  inbound",
        "peer", "address", "state", "last heard", "linked for"
    );
    for n in &list {
        let addr = format!("{} udp {} tcp {}", n.addr.ip, n.addr.udp, n.addr.tcp);
        println!(
            "{:<12}  {:<32}  {:<7}  {:>10}  {:>10}  {}",
            n.short_id,
            addr,
            n.state,
            format!("{} ago", short_duration(n.last_heard_ms_ago)),
            short_duration(n.linked_for_ms),
            if n.inbound { "yes" } else { "no" },
        );
    }
    let noun = if list.len() == 1 {
        "neighbour"
    } else {
        "neighbours"
    };
    println!("{} {noun}", list.len());
    Ok(())
}

/// `850ms`, `12.4s`, `7m05s`, `3h12m`.
fn short_duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::short_duration;

    #[test]
    fn durations_print_short() {
        assert_eq!(short_duration(0), "0ms");
        assert_eq!(short_duration(999), "999ms");
        assert_eq!(short_duration(12_400), "12.4s");
        assert_eq!(short_duration(425_000), "7m05s");
        assert_eq!(short_duration(11_520_000), "3h12m");
    }
}
