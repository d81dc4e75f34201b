//! The node a shell talks to: none yet, one attached by its control address, or one the
//! shell started in-process with `start <folder>`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Context, bail};
use highway_node::{NodeConfig, NodeHandle};

use crate::control_client::{ControlClient, TokenArg};
use crate::render;

/// What `start` needs to run a node in-process.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub gatekeeper: String,
    pub bind: IpAddr,
    pub data_dir: PathBuf,
}

#[derive(Debug)]
enum Node {
    /// No node yet, or the attached one left.
    None,
    /// A node running elsewhere (`--node`, or the demo's peer).
    Attached(ControlClient),
    /// A node running in this process; it leaves when the shell ends.
    Own {
        handle: Box<NodeHandle>,
        client: ControlClient,
    },
}

/// The shell's node.
#[derive(Debug)]
pub struct Session {
    node: Node,
    settings: NodeSettings,
}

impl Session {
    pub fn new(
        attach: Option<SocketAddr>,
        token: &TokenArg,
        settings: NodeSettings,
    ) -> anyhow::Result<Self> {
        let node = match attach {
            Some(addr) => Node::Attached(ControlClient::new(addr, token)?),
            None => Node::None,
        };
        Ok(Self { node, settings })
    }

    /// The control API of the current node, or what to do to get one.
    pub fn client(&self) -> anyhow::Result<ControlClient> {
        match &self.node {
            Node::Attached(client) | Node::Own { client, .. } => Ok(client.clone()),
            Node::None => bail!(
                "no node yet: `start <folder>` starts one in this shell, or run \
                 `highway shell --node CONTROL_ADDR` to use a running node"
            ),
        }
    }

    /// True when the node runs inside this process.
    pub fn owns_node(&self) -> bool {
        matches!(self.node, Node::Own { .. })
    }

    /// Shares `root` (absolute): on the current node, or on a new in-process node.
    pub async fn start(&mut self, root: PathBuf) -> anyhow::Result<String> {
        if let Node::Attached(client) | Node::Own { client, .. } = &self.node {
            let files = client.share(root).await?;
            return Ok(format!(
                "the node at {} now shares {}",
                client.addr(),
                sharing(&files)
            ));
        }
        // This node serves only the person at this shell (its control API still needs
        // the token): like them, it may share any folder and download anywhere they can.
        let config = NodeConfig {
            share: Some(root),
            share_roots: vec![PathBuf::from("/")],
            download_dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            allow_download_anywhere: true,
            ..NodeConfig::new(
                self.settings.bind,
                self.settings.gatekeeper.clone(),
                self.settings.data_dir.clone(),
            )
        };
        let handle = highway_node::start(config).await.with_context(|| {
            format!(
                "cannot start a node (Gatekeeper {}, --bind {}, --data-dir {})",
                self.settings.gatekeeper,
                self.settings.bind,
                self.settings.data_dir.display()
            )
        })?;
        let client = ControlClient::with_token(handle.control_addr(), handle.control_token())?;
        let mut text = format!(
            "node {} started: udp {}, tcp {}, control {}",
            handle.id().short(),
            handle.udp_addr(),
            handle.tcp_addr(),
            handle.control_addr()
        );
        if let Ok(files) = client.files().await {
            text.push_str(&format!("\nsharing {}", sharing(&files)));
        }
        self.node = Node::Own {
            handle: Box::new(handle),
            client,
        };
        Ok(text)
    }

    /// Leaves the network: the in-process node stops, an attached one exits.
    pub async fn stop(&mut self) -> anyhow::Result<String> {
        match std::mem::replace(&mut self.node, Node::None) {
            Node::None => bail!("no node to stop"),
            Node::Own { handle, .. } => {
                let id = handle.id().short();
                handle.shutdown().await;
                Ok(format!(
                    "node {id} left the network; `start <folder>` starts another"
                ))
            }
            Node::Attached(client) => match client.leave().await {
                Ok(_) => Ok(format!(
                    "the node at {} left the network and exits",
                    client.addr()
                )),
                Err(e) => {
                    self.node = Node::Attached(client);
                    Err(e.into())
                }
            },
        }
    }

    /// Ends the session: an in-process node leaves gracefully (an attached one is not
    /// ours to stop). Returns what happened, if anything.
    pub async fn close(self) -> Option<String> {
        match self.node {
            Node::Own { handle, .. } => {
                let id = handle.id().short();
                handle.shutdown().await;
                Some(format!("node {id} left the network"))
            }
            Node::Attached(_) | Node::None => None,
        }
    }
}

/// `/root: 12 files indexed; hashing in the background (`files` shows progress)`.
fn sharing(files: &highway_node::views::FilesView) -> String {
    let root = files
        .root
        .as_ref()
        .map_or_else(|| "nothing".to_string(), |r| r.display().to_string());
    let indexed = render::plural(
        usize::try_from(files.total_files).unwrap_or(usize::MAX),
        "file",
        "files",
    );
    if files.scanning {
        format!(
            "{root}: {indexed} indexed so far; hashing goes on in the background (`files` shows progress)"
        )
    } else {
        format!("{root}: {indexed} indexed")
    }
}
