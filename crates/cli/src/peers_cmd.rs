//! `highway peers`: what a Gatekeeper knows, for people and scripts.

use anyhow::Context;
use ed25519_dalek::SigningKey;
use highway_gatekeeper::{ClientConfig, GatekeeperClient};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Gatekeeper's URL, e.g. http://127.0.0.1:7700 or https://gk.example.org.
    #[arg(long, value_name = "URL")]
    gatekeeper: String,
    /// For an https:// Gatekeeper whose certificate comes from a private CA: a PEM file
    /// of the certificates to trust (instead of the system's roots).
    #[arg(long, env = "HIGHWAY_GATEKEEPER_CA", value_name = "FILE")]
    gatekeeper_ca: Option<std::path::PathBuf>,
    /// Print the peers as a JSON array of PeerInfo objects.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    // Listing needs no identity; the key only satisfies the client's constructor.
    let key = SigningKey::from_bytes(&rand::random());
    let config = ClientConfig {
        ca_file: args.gatekeeper_ca.clone(),
        ..ClientConfig::default()
    };
    let client = GatekeeperClient::new(&args.gatekeeper, key, config)?;
    let peers = client
        .all_peers()
        .await
        .with_context(|| format!("cannot list peers from {}", args.gatekeeper))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&peers)?);
        return Ok(());
    }
    println!(
        "{:<12} {:>10} {:>8}  addresses",
        "peer", "neighbours", "capacity"
    );
    for peer in &peers {
        let addrs: Vec<String> = peer.addrs.iter().map(ToString::to_string).collect();
        println!(
            "{:<12} {:>10} {:>8}  {}",
            peer.id.short(),
            peer.neighbours,
            peer.capacity,
            addrs.join(", ")
        );
    }
    println!("{} live peers", peers.len());
    Ok(())
}
